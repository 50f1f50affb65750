//! Handler results recorded together, across executions.
//!
//! Alone, every result is one transaction: lock its execution, write, and
//! commit. Under load that is a commit (and its round trips) per step, and
//! results of one execution (a fan-out finishing together) would queue on
//! its lock. Instead, at most [`LEADERS`] results at a time are recorded
//! directly; a result that arrives while they are busy is handed to one of
//! them and recorded in its next transaction together with everything else
//! that arrived meanwhile: every execution locked by one statement, in id
//! order (so two such transactions never wait on each other in a cycle),
//! its results applied through the same attempt fence as alone, all the
//! executions' changes written by one more statement, one commit for all.
//! A lone chain never waits: with nothing in flight, its result goes
//! straight in.
//!
//! The steps a combined transaction makes ready go back to the handler
//! whose result readied them, so a chain goes on on its own task. If a
//! combined transaction fails, every result in it is recorded alone
//! ([`Engine::complete`]), so an error (a value Postgres refuses, say) stays
//! with the result that caused it.

use std::collections::{BTreeMap, HashSet};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use uuid::Uuid;

use super::Engine;
use super::complete::Handoff;
use super::model::ClaimedStep;
use crate::actions::StepOutcome;
use crate::db;

/// Results recorded at once (directly, or as the leader of a combined
/// transaction). On the 2-core bench, with a batch written by one
/// statement: 2 left 15 % of the CPU idle (the leaders' round trips were
/// the limit), 4 gave the best throughput, 6 and 8 made smaller batches
/// and gave Postgres back the per-statement cost batching removes.
const LEADERS: usize = 4;
/// At most this many results in one combined transaction.
const BATCH: usize = 64;

/// A result handed to a leader.
pub(crate) struct Handed {
    step: ClaimedStep,
    outcome: StepOutcome,
    /// The slot its handler ran in, for a step the results make ready.
    own: Option<OwnedSemaphorePermit>,
    /// The steps it made ready once committed; `None`: record it alone.
    recorded: oneshot::Sender<Option<Vec<Handoff>>>,
}

#[derive(Default)]
pub(crate) struct Combiner {
    leaders: usize,
    queue: Vec<Handed>,
    /// Executions whose results a leader is recording now. Another result
    /// of one of them waits for the next batch: in a batch of its own it
    /// would wait for that execution's lock while holding the locks of
    /// every other execution in it (a fan-out's results arrive together).
    recording: HashSet<Uuid>,
}

impl Combiner {
    /// Up to [`BATCH`] queued results of executions no leader is
    /// recording, marked as being recorded.
    fn take_batch(&mut self) -> Vec<Handed> {
        let mut batch = Vec::new();
        let mut taken = HashSet::new();
        let mut left = Vec::new();
        for handed in self.queue.drain(..) {
            let id = handed.step.execution_id;
            if batch.len() < BATCH && (taken.contains(&id) || !self.recording.contains(&id)) {
                taken.insert(id);
                self.recording.insert(id);
                batch.push(handed);
            } else {
                left.push(handed);
            }
        }
        self.queue = left;
        batch
    }
}

impl Engine {
    /// Record a handler's result, directly or together with others that
    /// arrive meanwhile. Returns the steps made ready here, to run.
    pub async fn complete_combined(
        &self,
        step: &ClaimedStep,
        outcome: StepOutcome,
        own: Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Handoff>, crate::engine::Error> {
        let mut own = own;
        let execution_id = step.execution_id;
        let waiting = {
            let mut combiner = self.inner.combining.lock().expect("combining lock");
            if combiner.leaders < LEADERS && !combiner.recording.contains(&execution_id) {
                combiner.leaders += 1;
                combiner.recording.insert(execution_id);
                None
            } else {
                let (recorded, done) = oneshot::channel();
                combiner.queue.push(Handed {
                    step: step.clone(),
                    outcome: outcome.clone(),
                    own: own.take(),
                    recorded,
                });
                Some(done)
            }
        };
        if let Some(done) = waiting {
            return match done.await {
                Ok(Some(handoffs)) => Ok(handoffs),
                // The combined transaction failed (or its leader went away).
                _ => self.complete(step, outcome, None).await,
            };
        }

        // Ours first, the usual way; then whatever was handed over meanwhile,
        // until nothing is waiting. Steps made ready by our own result start
        // at once when more work follows: held back until we step down,
        // their leases, which only running handlers renew, could run out.
        let mut leading = Leading {
            engine: self,
            recording: vec![execution_id],
            stepped_down: false,
        };
        let mine = self.complete(step, outcome, own).await;
        let mut mine = Some(mine);
        loop {
            let batch = {
                let mut combiner = self.inner.combining.lock().expect("combining lock");
                for id in leading.recording.drain(..) {
                    combiner.recording.remove(&id);
                }
                let batch = combiner.take_batch();
                if batch.is_empty() {
                    // What is left (if anything) waits for executions that
                    // other leaders are recording; they take it next.
                    combiner.leaders -= 1;
                    leading.stepped_down = true;
                    break;
                }
                batch
            };
            leading.recording = batch.iter().map(|h| h.step.execution_id).collect();
            if let Some(Ok(handoffs)) = mine.as_mut() {
                self.spawn_handoffs(std::mem::take(handoffs));
            }
            self.record_handed(batch).await;
        }
        mine.unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Record handed results in one transaction and tell each how it went.
    async fn record_handed(&self, batch: Vec<Handed>) {
        let count = batch.len() as u64;
        // Grouped by execution, in id order: the order locks are taken in.
        let mut groups: BTreeMap<Uuid, Vec<Handed>> = BTreeMap::new();
        for handed in batch {
            groups
                .entry(handed.step.execution_id)
                .or_default()
                .push(handed);
        }
        match self.record_groups(&mut groups).await {
            Ok(mut handoffs) => {
                self.inner.metrics.combined_results.inc_by(count);
                for (execution_id, handeds) in groups {
                    // One step for each result's handler, so each chain goes on
                    // in the slot it had; any more go to the first.
                    let mut shares: Vec<Vec<Handoff>> =
                        handeds.iter().map(|_| Vec::new()).collect();
                    let ready = handoffs.remove(&execution_id).unwrap_or_default();
                    let results = shares.len();
                    for (k, handoff) in ready.into_iter().enumerate() {
                        shares[if k < results { k } else { 0 }].push(handoff);
                    }
                    for (handed, share) in handeds.into_iter().zip(shares) {
                        let _ = handed.recorded.send(Some(share));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, results = count,
                    "recording results together failed; each is recorded alone");
                for handed in groups.into_values().flatten() {
                    let _ = handed.recorded.send(None);
                }
            }
        }
    }

    async fn record_groups(
        &self,
        groups: &mut BTreeMap<Uuid, Vec<Handed>>,
    ) -> Result<BTreeMap<Uuid, Vec<Handoff>>, crate::engine::Error> {
        // Each row of the batch's write is found by its key. The planner
        // would otherwise join on a guess of the tables' sizes: statistics
        // lag behind a table that grows by thousands of steps a second, and
        // a plan made on them read every step row to write a few dozen.
        // With that settled, the batch's statements are planned once
        // (planning the lock of a batch's executions afresh each time cost
        // half as much as running it).
        let mut tx = self
            .pool()
            .begin_with(
                "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
                 SET LOCAL enable_mergejoin = off; SET LOCAL plan_cache_mode = force_generic_plan",
            )
            .await?;
        // Every execution locked by one statement, in id order; their
        // changes written by one more. Postgres' cost per statement is then
        // paid twice a batch, not twice an execution.
        let ids: Vec<Uuid> = groups.keys().copied().collect();
        let execs = db::executions::lock_rows(&mut tx, &ids).await?;
        let mut writes = Vec::with_capacity(execs.len());
        let mut effects = Vec::with_capacity(execs.len());
        let mut handoffs = BTreeMap::new();
        for exec in execs {
            let execution_id = exec.id;
            let Some(handeds) = groups.get_mut(&execution_id) else {
                continue;
            };
            let mut locked = self.held(tx, exec, true).await?;
            // A plain Vec, not a lazy map: a closure held across the await
            // would make this future not `Send`.
            let mut results: Vec<(&ClaimedStep, StepOutcome)> = Vec::with_capacity(handeds.len());
            for handed in handeds.iter() {
                results.push((&handed.step, handed.outcome.clone()));
            }
            if locked.apply_results(self, results).await? > 0 {
                let ready = locked.advance_inline(self);
                let own = handeds.iter_mut().filter_map(|h| h.own.take()).collect();
                handoffs.insert(execution_id, locked.claim_locally(self, &ready, own));
            }
            let (back, write, effect) = locked.stage(self);
            tx = back;
            if !write.is_empty() {
                writes.push(write);
            }
            effects.push(effect);
        }
        if !writes.is_empty() {
            db::steps::write_transitions(&mut tx, &writes).await?;
        }
        tx.commit().await?;
        for effect in effects {
            effect.apply(self);
        }
        Ok(handoffs)
    }
}

/// A leader's place, given back if its task ends early (a panic, or the
/// runtime shutting down): the results handed to it are told to record
/// themselves, and the place is free for the next result.
struct Leading<'a> {
    engine: &'a Engine,
    /// The executions whose results it is recording.
    recording: Vec<Uuid>,
    /// It gave its place back the usual way.
    stepped_down: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.stepped_down {
            return;
        }
        let queue = {
            let mut combiner = self
                .engine
                .inner
                .combining
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            combiner.leaders = combiner.leaders.saturating_sub(1);
            for id in &self.recording {
                combiner.recording.remove(id);
            }
            std::mem::take(&mut combiner.queue)
        };
        for handed in queue {
            let _ = handed.recorded.send(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn handed(execution_id: Uuid, step_id: &str) -> Handed {
        let (recorded, _) = oneshot::channel();
        Handed {
            step: ClaimedStep {
                execution_id,
                step_id: step_id.to_owned(),
                action: "log".to_owned(),
                attempt: 1,
                params: Ok(Map::new()),
                workflow_params: Map::new(),
                timeout: None,
                trace_id: None,
            },
            outcome: StepOutcome::Completed {
                outputs: Map::new(),
            },
            own: None,
            recorded,
        }
    }

    fn steps(batch: &[Handed]) -> Vec<&str> {
        batch.iter().map(|h| h.step.step_id.as_str()).collect()
    }

    #[test]
    fn a_batch_leaves_the_results_of_executions_another_leader_records() {
        let (x, y, z) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut combiner = Combiner {
            queue: vec![
                handed(x, "x1"),
                handed(y, "y1"),
                handed(x, "x2"),
                handed(z, "z1"),
                handed(y, "y2"),
            ],
            recording: HashSet::from([x]),
            ..Combiner::default()
        };
        let batch = combiner.take_batch();
        assert_eq!(steps(&batch), ["y1", "z1", "y2"]);
        assert_eq!(steps(&combiner.queue), ["x1", "x2"]);
        assert_eq!(combiner.recording, HashSet::from([x, y, z]));

        // Once x's leader is done, the next batch takes both of its results.
        combiner.recording.remove(&x);
        assert_eq!(steps(&combiner.take_batch()), ["x1", "x2"]);
        assert!(combiner.queue.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_batch_results() {
        let mut combiner = Combiner {
            queue: (0..BATCH + 3)
                .map(|i| handed(Uuid::new_v4(), &format!("s{i}")))
                .collect(),
            ..Combiner::default()
        };
        assert_eq!(combiner.take_batch().len(), BATCH);
        assert_eq!(combiner.queue.len(), 3);
    }
}
