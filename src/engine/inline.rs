//! Pure steps run inside the transition that makes them ready.
//!
//! A step whose action is pure ([`crate::actions::StepHandler::pure`]:
//! `log`, `set_output`, `transform`, …) needs nothing but its params, so
//! claiming it, committing the claim, running it and committing its result
//! would spend two row writes and a commit on microseconds of work. Instead
//! the transition that readies it runs it at once, under the execution's
//! lock, and goes on with what its result makes ready: a chain of pure
//! steps after a deploy finishes in the deploy's own commit. Nothing a
//! caller reads changes: each such step still has its attempt (claimed and
//! ended at the transition's time, by this replica), its `step_started` and
//! completion events, its span and its metrics. Like Airflow's scheduler
//! finishing an `EmptyOperator` itself, or Temporal's local activities.
//!
//! `INLINE_STEPS=false` turns it off: pure steps are then claimed and run
//! like any other.

use super::Engine;
use super::dispatch::{record_outcome, step_span};
use super::model::StepStatus;
use super::transition::Locked;
use crate::actions::{PureFn, StepContext, StepOutcome};

/// Pure steps one transition runs at most; the rest are claimed as usual,
/// so a long pure chain never holds its execution's lock for long.
const BUDGET: usize = 64;
/// Executions remembered as refusing a pure step's result; beyond this
/// many the memory starts over (each would be refused, and added, again).
const REFUSED_KEPT: usize = 4096;

/// An attempt that began and ended inside one transition.
pub(crate) struct InlineRun {
    pub index: usize,
    pub attempt: i32,
    /// This replica.
    pub owner: uuid::Uuid,
    /// How it ended, as its `step_attempts` row says.
    pub outcome: &'static str,
    /// The execution's progress when it began: what a `progress` event
    /// after the step before it would have said.
    pub progress_before: f64,
}

impl Locked {
    /// [`Locked::advance`], then run the ready pure steps here and advance
    /// again, until none is left (or [`BUDGET`] are spent). Returns the
    /// ready steps left to claim.
    pub fn advance_inline(&mut self, engine: &Engine) -> Vec<usize> {
        let mut ready = self.advance();
        if !engine.settings().inline_steps || engine.inline_refused(self.exec.id) {
            return ready;
        }
        let mut budget = BUDGET;
        while budget > 0 {
            let pure: Vec<(usize, PureFn)> = ready
                .iter()
                .filter_map(|&i| {
                    let pure = engine.registry().get(&self.rows[i].action)?.pure()?;
                    Some((i, pure))
                })
                .take(budget)
                .collect();
            if pure.is_empty() {
                break;
            }
            budget -= pure.len();
            for (i, run) in pure {
                self.run_inline(engine, i, run);
                let status = self.rows[i].status;
                if status.is_terminal() && status != StepStatus::Completed {
                    // A failure may stop the execution (fail-fast): the
                    // planner decides before any other step runs.
                    break;
                }
            }
            ready = self.advance();
        }
        ready
    }

    /// Claim row `i` for this replica, run its pure handler and record the
    /// outcome, all in memory (the transition writes it).
    fn run_inline(&mut self, engine: &Engine, i: usize, pure: PureFn) {
        let progress_before = super::transition::progress_percentage(&self.rows);
        let now = self.now();
        let lease = chrono::Duration::from_std(engine.settings().lease).unwrap_or_default();
        let workflow_params = self.params();
        // A fresh context: the steps run just before this one changed it.
        let params = self.step_params(i, &workflow_params, &mut None, engine);
        self.rows[i].claim(engine.replica_id(), now, lease);
        let row = &self.rows[i];
        let trace_id = self.exec.trace_id.as_deref();
        let span = step_span(
            self.exec.id,
            &row.step_id,
            row.attempt,
            &row.action,
            trace_id,
        );
        span.record("inline", true);
        let outcome = match params {
            Ok(params) => span.in_scope(|| {
                pure(&StepContext {
                    execution_id: self.exec.id,
                    step_id: row.step_id.clone(),
                    attempt: row.attempt,
                    params,
                    workflow_params,
                    traceparent: None,
                })
            }),
            Err(e) => StepOutcome::permanent(e),
        };
        let outcome = super::storable::storable(outcome);
        record_outcome(&span, &outcome);
        let attempt = row.attempt;
        if self.settle(i, outcome).is_some() {
            self.fail_step(
                i,
                "a pure action cannot wait for an event".into(),
                false,
                StepStatus::Failed,
            );
        }
        self.inline_runs.push(InlineRun {
            index: i,
            attempt,
            owner: engine.replica_id(),
            // A failure to be retried leaves the step PENDING, as a
            // handler's does.
            outcome: self.rows[i].status.as_str(),
            progress_before,
        });
    }
}

impl Engine {
    /// Whether pure steps of `execution_id` are no longer run inline here.
    fn inline_refused(&self, execution_id: uuid::Uuid) -> bool {
        let refused = self.inner.inline_refused.lock().expect("inline lock");
        refused.contains(&execution_id)
    }

    /// A transition of `execution_id` that ran pure steps could not be
    /// written: the database refused a value, perhaps one of theirs. From
    /// now on this replica claims that execution's pure steps one by one,
    /// so a refused value fails only its own step, as a handler's does.
    /// The error returned is transient: the caller tries the same change
    /// again, which then runs nothing inline.
    pub(crate) fn refuse_inline(
        &self,
        execution_id: uuid::Uuid,
        cause: &crate::engine::Error,
    ) -> crate::engine::Error {
        let mut refused = self.inner.inline_refused.lock().expect("inline lock");
        if refused.len() >= REFUSED_KEPT {
            refused.clear();
        }
        refused.insert(execution_id);
        tracing::warn!(%execution_id, error = %cause,
            "a transition with pure steps run inline could not be stored; trying again with them claimed one by one");
        crate::engine::Error::Contended(format!(
            "a transition with pure steps run inline could not be stored ({cause}); try again"
        ))
    }
}
