//! The durable execution engine (ENGINE.md).
//!
//! Postgres is the only state. A replica claims ready steps with
//! `FOR UPDATE SKIP LOCKED` under a lease, runs their handlers on tokio
//! tasks under a semaphore, and records each result in one transaction that
//! also readies the dependents, claims the next ones for itself, finishes
//! the execution and writes the outbox ([`transition`]). Timers (step
//! timeouts, retry backoff, `wait_until`, execution deadlines) are rows with
//! a due time fired by whichever replica's [`sweep`] sees them first.

pub(crate) mod advance;
mod cache;
pub(crate) mod claim;
pub(crate) mod combine;
pub(crate) mod complete;
pub(crate) mod control;
pub(crate) mod cron;
pub(crate) mod dispatch;
mod error;
pub(crate) mod event_triggers;
pub(crate) mod events;
pub(crate) mod inline;
pub mod model;
pub(crate) mod outbox;
pub(crate) mod schedule;
pub(crate) mod step;
pub(crate) mod storable;
pub(crate) mod sweep;

pub use error::{Error, Result};
pub(crate) mod transition;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::actions::Registry;
use crate::config::Settings;
use crate::dag::Dag;
use crate::metrics::Metrics;

/// The `LISTEN/NOTIFY` channel that tells replicas new work is claimable.
pub const WORK_CHANNEL: &str = "budpipeline_work";

/// Identifies one attempt of one step.
pub type AttemptKey = (Uuid, String, i32);

#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: PgPool,
    pub registry: Registry,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub replica_id: Uuid,
    /// DAG versions are immutable, so they are cached forever (bounded by
    /// the number of versions an operator creates).
    dags: Mutex<HashMap<(Uuid, i32), Arc<Dag>>>,
    /// Work became claimable here (or a slot freed up).
    pub wake: Notify,
    /// Work became claimable that the other replicas should hear of.
    pub tell_others: Notify,
    pub outbox_wake: Notify,
    /// A schedule was created or changed on this replica.
    pub schedule_wake: Notify,
    /// One permit per step handler in flight on this replica.
    pub permits: Arc<Semaphore>,
    /// Steps a transition here claimed with no slot free, waiting for one
    /// (at most `max_concurrent_steps`; see [`Locked::claim_locally`]).
    ///
    /// [`Locked::claim_locally`]: transition::Locked::claim_locally
    pub queued: Arc<AtomicUsize>,
    /// Handlers in flight, so a lost lease or shutdown can abort them.
    pub inflight: Mutex<HashMap<AttemptKey, Arc<Notify>>>,
    pub draining: AtomicBool,
    /// Executions whose handler results a leader is recording, with the
    /// results handed to it meanwhile ([`combine`]).
    pub combining: Mutex<combine::Combiner>,
    /// The last claim round may have left claimable steps behind (a full
    /// batch, executions held elsewhere, or no free slot): a slot freed by
    /// a finished chain should start a claim round.
    pub backlog: AtomicBool,
    /// When retries scheduled by this replica's transitions fall due.
    pub retries: Mutex<Vec<std::time::Instant>>,
    /// The step rows of executions this replica moved last ([`cache`]).
    pub steps: cache::StepCache,
    /// Executions whose pure steps are claimed one by one ([`inline`]).
    pub inline_refused: Mutex<std::collections::HashSet<Uuid>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("replica_id", &self.inner.replica_id)
            .finish()
    }
}

impl Engine {
    pub fn new(
        replica_id: Uuid,
        pool: PgPool,
        registry: Registry,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_concurrent_steps));
        Self {
            inner: Arc::new(Inner {
                pool,
                registry,
                settings,
                metrics,
                replica_id,
                dags: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                tell_others: Notify::new(),
                outbox_wake: Notify::new(),
                schedule_wake: Notify::new(),
                permits,
                queued: Arc::new(AtomicUsize::new(0)),
                inflight: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                combining: Mutex::new(combine::Combiner::default()),
                backlog: AtomicBool::new(true),
                retries: Mutex::new(Vec::new()),
                steps: cache::StepCache::default(),
                inline_refused: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn replica_id(&self) -> Uuid {
        self.inner.replica_id
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Stop claiming new work (the first step of a graceful shutdown).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        self.inner.wake.notify_waiters();
    }

    /// Wait until no step is being claimed or run on this replica: all
    /// handler slots are free and no claimed step waits for one. `None` if
    /// that takes longer than `limit`.
    pub async fn wait_idle(&self, limit: std::time::Duration) -> Option<()> {
        let all = self.inner.settings.max_concurrent_steps as u32;
        let idle = async {
            loop {
                let permits = self.inner.permits.acquire_many(all).await.ok()?;
                if self.inner.queued.load(Ordering::SeqCst) == 0 {
                    return Some(());
                }
                // A queued step not yet waiting for its slot: let it take one.
                drop(permits);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(limit, idle).await.ok()?
    }

    /// Count one more claimed step waiting for a slot, unless as many wait
    /// already as there are slots.
    pub(crate) fn reserve_queued(&self) -> Option<complete::Queued> {
        let most = self.inner.settings.max_concurrent_steps;
        self.inner
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| complete::Queued(self.inner.queued.clone()))
    }

    /// Handlers running on this replica now.
    pub fn inflight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }

    /// The DAG of one workflow version.
    pub async fn dag(
        &self,
        workflow_id: Uuid,
        version: i32,
    ) -> Result<Arc<Dag>, crate::engine::Error> {
        if let Some(dag) = self
            .inner
            .dags
            .lock()
            .expect("dag cache lock")
            .get(&(workflow_id, version))
        {
            return Ok(dag.clone());
        }
        let doc = crate::db::workflows::dag(&self.inner.pool, workflow_id, version).await?;
        let dag: Dag = serde_json::from_value(doc).map_err(|e| {
            Error::Corrupt(format!("workflow {workflow_id} version {version}: {e}"))
        })?;
        let dag = Arc::new(dag);
        self.inner
            .dags
            .lock()
            .expect("dag cache lock")
            .insert((workflow_id, version), dag.clone());
        Ok(dag)
    }

    /// Wake this replica's dispatcher (work was created here).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(slots: &str) -> Engine {
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://nobody@127.0.0.1:1/none".into()),
            "MAX_CONCURRENT_STEPS" => Some(slots.into()),
            _ => None,
        })
        .unwrap();
        let pool = crate::db::pool(&settings, None).unwrap();
        Engine::new(
            Uuid::new_v4(),
            pool,
            Registry::new(),
            Arc::new(settings),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn as_many_steps_may_wait_for_a_slot_as_there_are_slots_and_each_counts_until_dropped() {
        let engine = engine("2");
        let first = engine.reserve_queued().expect("one");
        let second = engine.reserve_queued().expect("two");
        assert!(
            engine.reserve_queued().is_none(),
            "a third waits in the database"
        );
        // A claimed step whose transaction failed is dropped unrun: it stops
        // counting all the same.
        drop(first);
        let third = engine.reserve_queued().expect("a place again");
        drop((second, third));
        assert_eq!(engine.inner.queued.load(Ordering::SeqCst), 0);
        assert!(
            engine
                .wait_idle(std::time::Duration::from_secs(1))
                .await
                .is_some(),
            "idle once nothing waits"
        );
    }
}
