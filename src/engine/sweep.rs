//! Timers and recovery, fired by whichever replica sees them due first:
//! step timeouts of waiting steps (and `wait_until` wake-ups), execution
//! deadlines, leases of replicas that died, early events past their TTL,
//! and retention of finished executions.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Engine;
use super::complete::own_deadline;
use super::model::{ExecutionStatus, SkipReason, StepStatus};
use super::transition::Locked;
use crate::actions::StepOutcome;
use crate::db;

pub(crate) const EXECUTION_TIMEOUT: &str = "execution timed out";
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Rows one retention statement deletes: each batch is a short transaction,
/// so a long history goes without holding locks for long.
const RETENTION_BATCH: i64 = 500;
/// While retention works off a backlog, it pauses after each full batch
/// this many times as long as the batch took: the work running beside it
/// keeps most of the database (a backlog is no emergency; on 2 cores a
/// batch deletes about 15,000 executions a second while it runs).
const RETENTION_PAUSE_FACTOR: u32 = 2;
/// How long one round of retention may run before the timers that share
/// this loop get their turn again.
const RETENTION_ROUND: Duration = Duration::from_secs(2);

impl Engine {
    pub async fn run_sweeper(self) {
        let mut last_retention: Option<Instant> = None;
        loop {
            if self.is_draining() {
                return;
            }
            match self.sweep_once().await {
                Ok(n) if n > 0 => tracing::debug!(executions = n, "sweeper fired due timers"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed; will try again"),
            }
            if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                last_retention = Some(Instant::now());
                match self.housekeeping().await {
                    // A backlog left: the next round comes after this
                    // loop's timers, not a minute later.
                    Ok(true) => last_retention = None,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "retention cleanup failed"),
                }
            }
            tokio::time::sleep(self.settings().sweep_interval).await;
        }
    }

    /// Handle every execution with something due. Returns how many.
    pub async fn sweep_once(&self) -> Result<usize, crate::engine::Error> {
        let due = db::executions::due(self.pool()).await?;
        // One execution's failure is its own: the others' timers still fire.
        for &execution_id in &due {
            match self.sweep_execution(execution_id).await {
                Ok(()) => {}
                Err(e) if e.is_corrupt() => self.quarantine(execution_id, &e).await,
                Err(e) => {
                    tracing::warn!(%execution_id, error = %e, "sweeping an execution failed; will try again")
                }
            }
        }
        Ok(due.len())
    }

    async fn sweep_execution(&self, execution_id: Uuid) -> Result<(), crate::engine::Error> {
        // Skip an execution another transaction holds (perhaps a stalled
        // replica); the next sweep tries again.
        if let Some(mut locked) = self.try_lock(execution_id).await? {
            // A firing is a span of the execution's trace.
            let span = tracing::info_span!("sweep", %execution_id);
            crate::telemetry::join_execution(
                &span,
                Some(execution_id),
                locked.exec.trace_id.as_deref(),
            );
            let fire = async move {
                self.fire_due(&mut locked).await;
                let ready = locked.advance_inline(self);
                let handoffs = locked.claim_locally(self, &ready, Vec::new());
                locked.commit(self).await?;
                Ok::<_, crate::engine::Error>(handoffs)
            };
            let handoffs = tracing::Instrument::instrument(fire, span).await?;
            self.spawn_handoffs(handoffs);
        }
        Ok(())
    }

    /// Fail an execution whose rows cannot be read back, without reading
    /// them: it can never move again, and leaving it due would make every
    /// sweep trip over it. Its unfinished steps fail with it.
    pub async fn quarantine(&self, execution_id: Uuid, error: &crate::engine::Error) {
        tracing::error!(%execution_id, error = %error, "failing an execution whose stored rows cannot be read");
        let message = format!("the execution's stored state cannot be read: {error}");
        if let Err(e) = db::executions::fail_unread(self.pool(), execution_id, &message).await {
            tracing::warn!(%execution_id, error = %e, "could not fail an unreadable execution; will try again");
        }
    }

    async fn fire_due(&self, locked: &mut Locked) {
        let now = locked.now();
        if locked.exec.status == ExecutionStatus::Running
            && locked.exec.deadline_at.is_some_and(|d| d < now)
        {
            let limit = locked.dag.settings.timeout_seconds;
            for row in locked.rows.iter_mut() {
                if row.status == StepStatus::Pending {
                    row.skip(SkipReason::UpstreamFailed, now);
                } else if row.is_waiting() {
                    row.error = Some(EXECUTION_TIMEOUT.into());
                    row.finish(StepStatus::Timeout, now);
                }
            }
            locked.finish(super::advance::Finish {
                status: ExecutionStatus::Failed,
                error: Some(format!("{EXECUTION_TIMEOUT} after {limit}s")),
            });
            locked.exec.timed_out = true;
        }
        for i in 0..locked.rows.len() {
            let row = &locked.rows[i];
            let lease_gone = row.is_in_handler() && row.lease_expires_at.is_some_and(|t| t < now);
            let timed_out = row.timeout_at.is_some_and(|t| t < now);
            if lease_gone {
                if locked.exec.status != ExecutionStatus::Running {
                    locked.rows[i].finish(StepStatus::Cancelled, now);
                } else if timed_out {
                    locked.fail_step(i, "step timed out".into(), true, StepStatus::Timeout);
                } else {
                    // Its replica died (or lost the database): run it again,
                    // unless running it is what keeps killing replicas.
                    self.reclaim(locked, i);
                }
            } else if row.is_waiting() && timed_out {
                let Some(handler) = self.registry().get(&row.action).cloned() else {
                    locked.fail_step(i, "step timed out".into(), true, StepStatus::Timeout);
                    continue;
                };
                // Past the step's own timeout_seconds the attempt is TIMEOUT,
                // even for an action whose own timer completes it (wait_until).
                let own_expired = own_deadline(row).is_some_and(|d| d <= now);
                match handler.on_timeout(&row.outputs_map()) {
                    StepOutcome::Completed { outputs } if !own_expired => {
                        locked.complete_step(i, outputs)
                    }
                    StepOutcome::Completed { .. } => {
                        locked.fail_step(i, "step timed out".into(), true, StepStatus::Timeout)
                    }
                    StepOutcome::Failed {
                        error, retryable, ..
                    } => locked.fail_step(i, error, retryable, StepStatus::Timeout),
                    StepOutcome::AwaitEvent { .. } => {
                        locked.fail_step(i, "step timed out".into(), true, StepStatus::Timeout)
                    }
                }
            }
        }
    }

    /// A step whose lease expired without a result: run it again, or fail
    /// it when this has happened `STEP_CRASH_LIMIT` times in a row (a step
    /// whose template or handler kills its process would otherwise take
    /// down every replica that claims it, one after the other, forever).
    fn reclaim(&self, locked: &mut Locked, i: usize) {
        let limit = self.settings().step_crash_limit as i32;
        let row = &mut locked.rows[i];
        row.crashes += 1;
        let crashes = row.crashes;
        if crashes >= limit {
            tracing::error!(execution_id = %locked.exec.id, step_id = %row.step_id, crashes,
                "failing a step whose process died every time it ran");
            let error = format!("the step's process died {crashes} times while running it");
            locked.fail_step(i, error, false, StepStatus::Failed);
            return;
        }
        tracing::info!(execution_id = %locked.exec.id, step_id = %row.step_id, attempt = row.attempt,
            crashes, "reclaiming a step whose lease expired");
        locked.release(i);
    }

    /// Expire early events and delete finished executions past retention.
    /// Never touches a running execution.
    /// Deletes in batches of [`RETENTION_BATCH`], pausing after each full
    /// one ([`RETENTION_PAUSE_FACTOR`]), for at most [`RETENTION_ROUND`];
    /// `true` when rows past retention are left.
    pub async fn housekeeping(&self) -> Result<bool, crate::engine::Error> {
        db::events::expire_early(self.pool()).await?;
        let days = self.settings().retention_days as i32;
        let started = Instant::now();
        let mut deleted = 0;
        let mut more = true;
        while more && started.elapsed() < RETENTION_ROUND {
            let batch = Instant::now();
            let executions =
                db::executions::delete_finished(self.pool(), days, RETENTION_BATCH).await?;
            let events = db::events::delete_old(self.pool(), days, RETENTION_BATCH).await?;
            deleted += executions;
            more = executions as i64 == RETENTION_BATCH || events as i64 == RETENTION_BATCH;
            if more && !self.is_draining() {
                tokio::time::sleep(batch.elapsed() * RETENTION_PAUSE_FACTOR).await;
            }
        }
        db::pipelines::delete_orphaned_ephemeral(self.pool(), days).await?;
        db::firings::delete_old(self.pool(), days).await?;
        db::outbox::delete_failed(self.pool(), days).await?;
        if deleted > 0 {
            tracing::info!(deleted, more, "deleted finished executions past retention");
        }
        Ok(more)
    }
}
