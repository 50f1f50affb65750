//! Handler results of one execution recorded together.
//!
//! Every result takes the execution's lock, so the results of a fan-out (say
//! eight parallel steps that finish within a millisecond) would queue on it
//! and commit one after another, each transaction loading the same steps
//! again. Instead, the first handler to finish becomes the execution's
//! leader and records its result; the results that arrive meanwhile are
//! handed to it and recorded in its next transaction, together. Each one
//! passes the same attempt fence as alone, and its handler returns only once
//! the transaction holding its result has committed.
//!
//! If a combined transaction fails, every result in it falls back to being
//! recorded on its own ([`Engine::complete`]), so an error (a value Postgres
//! refuses, say) stays with the result that caused it.

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use uuid::Uuid;

use super::Engine;
use super::complete::Handoff;
use super::model::ClaimedStep;
use crate::actions::StepOutcome;

/// A result handed to the execution's leader.
pub(crate) struct Handed {
    step: ClaimedStep,
    outcome: StepOutcome,
    /// `true` once committed; `false` to record it alone after all.
    recorded: oneshot::Sender<bool>,
}

impl Engine {
    /// Record a handler's result, with any other results of its execution
    /// that arrive meanwhile. Returns the steps made ready here, to run.
    pub async fn complete_combined(
        &self,
        step: &ClaimedStep,
        outcome: StepOutcome,
        own: Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Handoff>, sqlx::Error> {
        let execution_id = step.execution_id;
        let handed = {
            let mut leaders = self.inner.combining.lock().expect("combining lock");
            match leaders.get_mut(&execution_id) {
                Some(queue) => {
                    let (recorded, done) = oneshot::channel();
                    queue.push(Handed {
                        step: step.clone(),
                        outcome: outcome.clone(),
                        recorded,
                    });
                    Some(done)
                }
                None => {
                    leaders.insert(execution_id, Vec::new());
                    None
                }
            }
        };
        if let Some(done) = handed {
            // The leader claims what the results made ready with slots of
            // its own; ours is free again.
            drop(own);
            return match done.await {
                Ok(true) => Ok(Vec::new()),
                // The leader's transaction failed (or it went away).
                _ => self.complete(step, outcome, None).await,
            };
        }

        // Our own result first, the usual way; what arrives meanwhile is
        // recorded together in the next transaction, and so on until
        // nothing is waiting. Steps claimed by those rounds start at once
        // (ours too): held back until the leader steps down, their leases,
        // which only running handlers renew, could run out.
        let mut handoffs = match self.complete(step, outcome, own).await {
            Ok(handoffs) => handoffs,
            Err(e) => {
                self.release_leadership(execution_id);
                return Err(e);
            }
        };
        loop {
            let queue = {
                let mut leaders = self.inner.combining.lock().expect("combining lock");
                let queue = leaders
                    .get_mut(&execution_id)
                    .map(std::mem::take)
                    .unwrap_or_default();
                if queue.is_empty() {
                    leaders.remove(&execution_id);
                }
                queue
            };
            if queue.is_empty() {
                return Ok(handoffs);
            }
            self.spawn_handoffs(std::mem::take(&mut handoffs));
            let (batch, senders): (Vec<_>, Vec<_>) = queue
                .into_iter()
                .map(|h| ((h.step, h.outcome), h.recorded))
                .unzip();
            let recorded = match self.complete_many(execution_id, &batch).await {
                Ok(more) => {
                    self.spawn_handoffs(more);
                    true
                }
                Err(e) => {
                    tracing::warn!(%execution_id, error = %e, results = batch.len(),
                        "recording results together failed; each is recorded alone");
                    false
                }
            };
            for sender in senders {
                let _ = sender.send(recorded);
            }
        }
    }

    /// Step down as the execution's leader; results handed over since are
    /// told to record themselves.
    fn release_leadership(&self, execution_id: Uuid) {
        let queue = self
            .inner
            .combining
            .lock()
            .expect("combining lock")
            .remove(&execution_id);
        for handed in queue.unwrap_or_default() {
            let _ = handed.recorded.send(false);
        }
    }

    /// Several results of one execution in one transaction.
    async fn complete_many(
        &self,
        execution_id: Uuid,
        batch: &[(ClaimedStep, StepOutcome)],
    ) -> Result<Vec<Handoff>, sqlx::Error> {
        let results = batch
            .iter()
            .map(|(step, outcome)| (step, outcome.clone()))
            .collect();
        let handoffs = self.record(execution_id, results, None).await?;
        self.inner
            .metrics
            .combined_results
            .inc_by(batch.len() as u64);
        Ok(handoffs)
    }
}
