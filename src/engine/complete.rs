//! Recording what happened to a step: a handler's outcome, an event's
//! verdict, a timer. Always inside a [`Locked`] execution.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{Map, Value};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::Engine;
use super::advance::rows_context;
use super::model::{ClaimedStep, ExecutionStatus, StepRow, StepStatus};
use super::transition::Locked;
use crate::actions::StepOutcome;
use crate::dag::template;

/// A waiting outcome still to be recorded ([`Locked::settle`]).
pub(crate) struct Wait {
    external_id: String,
    outputs: Map<String, Value>,
    timeout: Option<std::time::Duration>,
}

/// A step claimed by a transition, with the slot it will run in.
pub struct Handoff {
    pub step: ClaimedStep,
    pub slot: Slot,
}

/// Where a claimed step's handler runs.
pub enum Slot {
    /// In this slot, held now.
    Held(OwnedSemaphorePermit),
    /// In the next slot free; until then it counts among the queued steps
    /// (and stops counting when this is dropped, run or not).
    Queued(Queued),
}

/// One of the steps claimed here that wait for a slot ([`Engine::reserve_queued`]).
pub struct Queued(pub(crate) std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Locked {
    /// Record a handler's (or a timer's) outcome for row `i`. The caller has
    /// checked the attempt fence.
    pub async fn apply_outcome(
        &mut self,
        engine: &Engine,
        i: usize,
        outcome: StepOutcome,
    ) -> Result<(), crate::engine::Error> {
        if let Some(wait) = self.settle(i, outcome) {
            self.await_event(engine, i, wait.external_id, wait.outputs, wait.timeout)
                .await?;
        }
        Ok(())
    }

    /// [`Locked::apply_outcome`] up to a wait, which needs the database
    /// and is handed back to be recorded ([`Locked::await_event`]).
    pub(crate) fn settle(&mut self, i: usize, outcome: StepOutcome) -> Option<Wait> {
        let now = self.now();
        // The attempt ended with a result: its process survived it.
        self.rows[i].survived();
        if self.exec.status != ExecutionStatus::Running {
            // Cancelled, failed or timed out meanwhile: the result is discarded.
            let status = if self.exec.timed_out {
                StepStatus::Timeout
            } else {
                StepStatus::Cancelled
            };
            self.rows[i].finish(status, now);
            return None;
        }
        match outcome {
            StepOutcome::Completed { outputs } => self.complete_step(i, outputs),
            StepOutcome::Failed {
                error,
                retryable,
                outputs,
            } => self.fail_attempt(i, error, retryable, outputs),
            StepOutcome::AwaitEvent {
                external_id,
                outputs,
                timeout,
            } => {
                return Some(Wait {
                    external_id,
                    outputs,
                    timeout,
                });
            }
        }
        None
    }

    /// An attempt that ended with a failure (and whatever outputs it had).
    pub fn fail_attempt(
        &mut self,
        i: usize,
        error: String,
        retryable: bool,
        outputs: Map<String, Value>,
    ) {
        if !outputs.is_empty() {
            self.rows[i].outputs = Some(Value::Object(outputs));
        }
        // A handler cut off at its deadline ends the attempt TIMEOUT
        // (DAG.md), as when the sweeper finds it past it.
        let now = self.now();
        let status = if self.rows[i].timeout_at.is_some_and(|t| t <= now) {
            StepStatus::Timeout
        } else {
            StepStatus::Failed
        };
        self.fail_step(i, error, retryable, status);
    }

    pub fn complete_step(&mut self, i: usize, outputs: Map<String, Value>) {
        let now = self.now();
        let row = &mut self.rows[i];
        row.outputs = Some(Value::Object(outputs));
        row.error = None;
        row.progress = Some(100.0);
        row.crashes = 0;
        row.finish(StepStatus::Completed, now);
    }

    /// A failed attempt: retry later (a due time, not a sleep) while the
    /// policy allows, else the step ends `status`.
    pub fn fail_step(&mut self, i: usize, error: String, retryable: bool, status: StepStatus) {
        let now = self.now();
        let policy = self.dag.steps[i].effective_retry();
        let row = &mut self.rows[i];
        row.failures += 1;
        row.error = Some(error);
        if retryable && (row.failures as u32) < policy.max_attempts {
            let delay = policy.backoff(row.failures as u32);
            row.retry_at(now + ChronoDuration::from_std(delay).unwrap_or_default());
        } else {
            row.finish(status, now);
        }
    }

    /// The step now waits for an event correlated by `external_id`.
    async fn await_event(
        &mut self,
        engine: &Engine,
        i: usize,
        external_id: String,
        outputs: Map<String, Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), crate::engine::Error> {
        let now = self.now();
        // Serialises with /workflow-events on this correlation id, so an
        // event that arrives while the wait is being recorded is either seen
        // here as early, or sees this step waiting: never neither.
        crate::db::events::lock_correlation(&mut self.tx, &external_id).await?;
        let taken = crate::db::steps::another_waits_on(
            &mut self.tx,
            &external_id,
            self.exec.id,
            &self.rows[i].step_id,
        )
        .await?;
        if taken {
            let error =
                format!("another step is already waiting on correlation id '{external_id}'");
            self.fail_step(i, error, false, StepStatus::Failed);
            return Ok(());
        }
        let row = &mut self.rows[i];
        // The step's own `timeout_seconds` bounds the whole attempt, waiting
        // included, counted from its claim (DAG.md); an action's own timer
        // (wait_until's wake-up time) can only bring the deadline forward.
        let own = own_deadline(row).or_else(|| row.timeout_seconds.map(|s| now + seconds(s)));
        let action = timeout.map(|t| now + ChronoDuration::from_std(t).unwrap_or_default());
        let timeout_at = match (own, action) {
            (Some(own), Some(action)) => Some(own.min(action)),
            (own, action) => own.or(action),
        };
        row.start_waiting(external_id.clone(), outputs, timeout_at);
        self.consume_early_events(engine, i, &external_id).await
    }

    /// Claim steps this transition made ready, for this replica, in the same
    /// transaction (one commit per step on a chain). `own` are the slots of
    /// the handlers whose results these are, used before any other.
    ///
    /// Steps that go on from those results (a fan-out) are claimed even
    /// with every slot busy, to wait here for one: left ready, each would
    /// cost a row write to release it and a claim round to take it back.
    /// New work (a submit, a retry, an event, a timer) only takes a free
    /// slot, so a flood of it cannot fill that queue ahead of the
    /// executions already under way.
    pub fn claim_locally(
        &mut self,
        engine: &Engine,
        ready: &[usize],
        own: Vec<OwnedSemaphorePermit>,
    ) -> Vec<Handoff> {
        let mut handoffs = Vec::new();
        if engine.is_draining() || ready.is_empty() {
            return handoffs;
        }
        let queue = !own.is_empty();
        let mut own = own;
        let now = self.now();
        let lease = ChronoDuration::from_std(engine.settings().lease).unwrap_or_default();
        let params = self.params();
        let mut context: Option<Value> = None;
        for &i in ready {
            // A queued step's lease is renewed while it waits, like a
            // running step's.
            let slot = match own.pop() {
                Some(p) => Slot::Held(p),
                None => match engine.inner.permits.clone().try_acquire_owned() {
                    Ok(p) => Slot::Held(p),
                    Err(_) => match queue.then(|| engine.reserve_queued()).flatten() {
                        Some(q) => Slot::Queued(q),
                        None => break,
                    },
                },
            };
            let resolved = self.step_params(i, &params, &mut context, engine);
            let row = &mut self.rows[i];
            row.claim(engine.replica_id(), now, lease);
            self.released -= 1;
            handoffs.push(Handoff {
                step: ClaimedStep {
                    execution_id: self.exec.id,
                    step_id: row.step_id.clone(),
                    action: row.action.clone(),
                    attempt: row.attempt,
                    params: resolved,
                    workflow_params: params.clone(),
                    timeout: row.timeout_seconds.map(std::time::Duration::from_secs_f64),
                    trace_id: self.exec.trace_id.clone(),
                },
                slot,
            });
        }
        handoffs
    }
}

impl Locked {
    /// Row `i`'s params, resolved against `context` (built on first use
    /// from `params` and every step's outputs, and reused while the rows'
    /// outputs stay as they are). The context is built only for params
    /// that read it, so a plain step costs the same in a DAG of 10 or of
    /// 1,000.
    pub(crate) fn step_params(
        &self,
        i: usize,
        params: &Map<String, Value>,
        context: &mut Option<Value>,
        engine: &Engine,
    ) -> Result<Map<String, Value>, String> {
        let step_params = &self.dag.steps[i].params;
        if !params_render(step_params) {
            return Ok(step_params.clone());
        }
        let ctx = context.get_or_insert_with(|| rows_context(params, &self.rows));
        resolve_params(step_params, ctx, engine.settings().template_max_bytes)
    }
}

/// When the step's own `timeout_seconds` ends the current attempt: its
/// claim plus that many seconds.
pub(crate) fn own_deadline(row: &StepRow) -> Option<DateTime<Utc>> {
    Some(row.started_at? + seconds(row.timeout_seconds?))
}

fn seconds(s: f64) -> ChronoDuration {
    ChronoDuration::microseconds((s * 1e6) as i64)
}

/// Whether a step's params hold anything to render.
pub(crate) fn params_render(params: &Map<String, Value>) -> bool {
    params.values().any(template::contains_template)
}

/// Resolve a step's params; an error (a template that does not render, or
/// builds more than `max_bytes`, `TEMPLATE_MAX_BYTES`) becomes the step's
/// (permanent) failure.
pub(crate) fn resolve_params(
    params: &Map<String, Value>,
    ctx: &Value,
    max_bytes: usize,
) -> Result<Map<String, Value>, String> {
    let budget = template::Budget::new(max_bytes);
    match template::resolve(&Value::Object(params.clone()), ctx, &budget) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("params did not resolve to an object".into()),
        Err(e) => Err(format!("params: {e}")),
    }
}

impl Engine {
    /// Record the outcome of one attempt this replica ran, and claim what it
    /// made ready. A result whose attempt no longer holds the step (lease
    /// lost, execution cancelled and retried) is discarded.
    pub async fn complete(
        &self,
        step: &ClaimedStep,
        outcome: StepOutcome,
        own: Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Handoff>, crate::engine::Error> {
        self.record(step.execution_id, vec![(step, outcome)], own)
            .await
    }

    /// Record results of one execution in one transaction, each through the
    /// attempt fence, then claim what they made ready. Nothing is written
    /// when none of them still holds its step.
    pub(crate) async fn record(
        &self,
        execution_id: Uuid,
        results: Vec<(&ClaimedStep, StepOutcome)>,
        own: Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Handoff>, crate::engine::Error> {
        let Some(mut locked) = self.lock_cached(execution_id).await? else {
            return Ok(Vec::new());
        };
        if locked.apply_results(self, results).await? == 0 {
            return Ok(Vec::new());
        }
        let ready = locked.advance_inline(self);
        let handoffs = locked.claim_locally(self, &ready, own.into_iter().collect());
        locked.commit(self).await?;
        Ok(handoffs)
    }
}

impl Locked {
    /// Apply handler results, each through the attempt fence; how many
    /// still held their step (the rest are counted stale and dropped).
    pub(crate) async fn apply_results<'s>(
        &mut self,
        engine: &Engine,
        results: impl IntoIterator<Item = (&'s ClaimedStep, StepOutcome)>,
    ) -> Result<usize, crate::engine::Error> {
        let mut applied = 0;
        for (step, outcome) in results {
            let Some(i) = self.index(&step.step_id) else {
                continue;
            };
            if !self.holds(i, step.attempt) {
                engine.stale_result(step);
                continue;
            }
            self.apply_outcome(engine, i, outcome).await?;
            applied += 1;
        }
        Ok(applied)
    }
}

impl Engine {
    /// Count and log a result whose attempt no longer holds its step.
    pub(crate) fn stale_result(&self, step: &ClaimedStep) {
        self.inner.metrics.stale_results.inc();
        tracing::warn!(execution_id = %step.execution_id, step_id = %step.step_id, attempt = step.attempt,
            "discarding a result whose attempt no longer holds the step");
    }
}

impl Locked {
    /// Whether attempt `attempt` still holds row `i` (is inside its handler):
    /// the fence every handler result passes.
    pub fn holds(&self, i: usize, attempt: i32) -> bool {
        let row = &self.rows[i];
        row.is_in_handler() && row.attempt == attempt
    }
}
