//! The one way the engine changes an execution: lock its row, load its
//! steps, change them in memory, write back what changed together with the
//! outbox rows those changes imply, in ONE transaction.
//!
//! Everything that moves an execution (a step result, an event, a timer, a
//! cancel, a retry, a reclaimed lease) goes through [`Locked`], so the
//! rules about readiness, finishing and notifications live in one place.
//! Claims take the same execution lock (with `SKIP LOCKED`), so a loaded
//! row never goes stale while the lock is held.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Engine;
use super::advance::{self, Finish};
use super::inline::InlineRun;
use super::model::{ExecutionRow, ExecutionStatus, StepRow, StepStatus};
use super::outbox::{self, Audience, OutboxEvent};
use crate::actions::bud_event::StageReport;
use crate::dag::Dag;
use crate::db;
use crate::db::executions::Locking;

pub struct Locked {
    pub tx: Transaction<'static, Postgres>,
    pub exec: ExecutionRow,
    pub rows: Vec<StepRow>,
    pub dag: Arc<Dag>,
    /// What rendering a condition or the outputs may build
    /// (`TEMPLATE_MAX_BYTES`).
    pub template_max_bytes: usize,
    /// (status, attempt) of each row when loaded, to derive notifications.
    before: Vec<Before>,
    exec_before: ExecutionStatus,
    exec_dirty: bool,
    /// Steps made claimable by this transition that no replica holds yet.
    pub released: usize,
    /// Stages that waiting steps' operations reported in this transition,
    /// republished as progress (or `eta`) events.
    pub stage_reports: Vec<(usize, StageReport)>,
    /// Attempts of pure steps that began and ended in this transition.
    pub(crate) inline_runs: Vec<InlineRun>,
}

/// What a committed transition must still tell this process: the outbox
/// publisher, the dispatchers (here and, through the notifier, elsewhere)
/// and the metrics.
#[must_use = "apply it once the transaction has committed"]
pub struct AfterCommit {
    published: bool,
    released: usize,
    finished: Option<ExecutionStatus>,
    /// (action, outcome, seconds) of every attempt that ended.
    ended: Vec<(String, String, f64)>,
    /// The earliest retry this transition scheduled, from now.
    retry_in: Option<std::time::Duration>,
}

impl AfterCommit {
    pub fn apply(self, engine: &Engine) {
        if self.published {
            engine.inner.outbox_wake.notify_one();
        }
        if let Some(delay) = self.retry_in {
            engine.retry_at(delay);
        }
        if self.released > 0 {
            // Work none of the replicas holds yet: wake ours, and the others
            // through the notifier (see `dispatch::run_notifier`).
            engine.inner.wake.notify_one();
            engine.inner.tell_others.notify_one();
        }
        if let Some(status) = self.finished {
            engine.inner.metrics.execution_finished(status);
        }
        // Every ended attempt, whichever path ended it (a handler, an event,
        // a timer, a reclaim), by action and how it ended.
        for (action, outcome, seconds) in self.ended {
            engine
                .inner
                .metrics
                .step_finished(&action, &outcome, seconds);
        }
    }
}

impl Locked {
    pub fn now(&self) -> DateTime<Utc> {
        self.exec.now
    }

    pub fn index(&self, step_id: &str) -> Option<usize> {
        // Rows are in declaration order (`rows[i]` is `dag.steps[i]`).
        self.dag
            .step_index(step_id)
            .filter(|&i| self.rows.get(i).is_some_and(|r| r.step_id == step_id))
            .or_else(|| self.rows.iter().position(|r| r.step_id == step_id))
    }

    pub fn params(&self) -> serde_json::Map<String, Value> {
        self.exec.params_map()
    }

    /// Run the planner and apply its verdict to the execution.
    pub fn advance(&mut self) -> Vec<usize> {
        if self.exec.status != ExecutionStatus::Running {
            return Vec::new();
        }
        let params = self.params();
        let plan = advance::advance(
            &self.dag,
            &mut self.rows,
            &params,
            self.exec.now,
            self.template_max_bytes,
        );
        if let Some(finish) = plan.finish {
            self.finish(finish);
        }
        // Steps released earlier that nobody has claimed yet (every slot was
        // busy then) come first: this transition holds the execution, so it
        // can claim them now instead of leaving them to a claim round, whose
        // claim would also make the kept rows stale.
        let now = self.exec.now;
        let mut ready: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let row = &self.rows[i];
                row.status == StepStatus::Pending
                    && row.available_at.is_some_and(|at| at <= now)
                    && plan.ready_now.binary_search(&i).is_err()
            })
            .collect();
        ready.extend(plan.ready_now);
        // Every claimable step of the execution nobody holds, whenever it was
        // released: [`Locked::claim_locally`] counts down what it takes, and
        // what is left wakes the dispatchers.
        self.released = ready.len();
        ready
    }

    /// Put the execution in a terminal state (outputs resolved on success).
    pub fn finish(&mut self, finish: Finish) {
        let params = self.params();
        self.exec.outputs =
            advance::final_outputs(&self.dag, &self.rows, &params, self.template_max_bytes);
        self.exec.status = finish.status;
        self.exec.error = finish.error;
        self.exec.completed_at = Some(self.exec.now);
        self.exec_dirty = true;
    }

    /// Hand row `i` back to be claimed again now (a dead replica's lease,
    /// or this replica shutting down); the attempt is not counted as failed.
    pub fn release(&mut self, i: usize) {
        let now = self.now();
        self.rows[i].release(now);
        self.released += 1;
    }

    pub fn touch_execution(&mut self) {
        self.exec_dirty = true;
    }

    /// Write everything back and commit.
    pub async fn commit(self, engine: &Engine) -> Result<(), crate::engine::Error> {
        let (tx, effects) = self.write_back(engine).await?;
        tx.commit().await?;
        effects.apply(engine);
        Ok(())
    }

    /// Write everything back WITHOUT committing: the caller's transaction
    /// goes on (a schedule firing, a webhook's counters) and commits; then
    /// [`AfterCommit::apply`] wakes whoever must hear of the change.
    pub async fn write_back(
        self,
        engine: &Engine,
    ) -> Result<(Transaction<'static, Postgres>, AfterCommit), crate::engine::Error> {
        let id = self.exec.id;
        let inline = !self.inline_runs.is_empty();
        let (mut tx, write, effects) = self.stage(engine);
        if !write.is_empty() {
            match db::steps::write_transition(&mut tx, &write).await {
                Err(e) if inline && db::unstorable(&e) => {
                    // Perhaps a pure step's result: try again without running
                    // them here, so each is recorded (and refused) on its own.
                    return Err(engine.refuse_inline(id, &e.into()));
                }
                other => other?,
            }
        }
        Ok((tx, effects))
    }

    /// Everything this transition changed, ready to be written: alone
    /// ([`Locked::write_back`]), or in one statement with the transitions
    /// of other executions this transaction holds
    /// ([`db::steps::write_transitions`]). The rows are kept for the next
    /// transition now, while this one holds the lock: at the new revision
    /// (its own, see `super::cache`) they are used only if this commits.
    pub(crate) fn stage(
        mut self,
        engine: &Engine,
    ) -> (
        Transaction<'static, Postgres>,
        db::steps::TransitionWrite,
        AfterCommit,
    ) {
        let mut events = Vec::new();
        self.notifications(engine, &mut events);
        // Progress is read from the steps; the execution row is rewritten
        // only when the execution itself changes (one row write less a step).
        let attempts = self.attempts();
        let ended: Vec<(String, String, f64)> = attempts
            .steps
            .iter()
            .zip(attempts.outcomes.iter().zip(&attempts.started))
            .filter_map(|(id, (outcome, started))| {
                let i = self.index(id)?;
                let seconds =
                    (self.exec.now - *started).num_microseconds().unwrap_or(0) as f64 / 1e6;
                Some((
                    self.rows[i].action.clone(),
                    outcome.clone(),
                    seconds.max(0.0),
                ))
            })
            .collect();
        // Retries this transition scheduled, so the dispatcher wakes for
        // them on time (both times are the database's clock).
        let now = self.exec.now;
        let retry_in = self
            .rows
            .iter()
            .filter(|r| r.dirty && r.status == StepStatus::Pending)
            .filter_map(|r| r.available_at.filter(|at| *at > now))
            .min()
            .and_then(|at| (at - now).to_std().ok());
        for row in self.rows.iter_mut().filter(|r| r.dirty) {
            // Postgres keeps microseconds: the rows kept in memory must read
            // exactly as the database would give them back.
            row.truncate_to_micros();
        }
        let dirty: Vec<StepRow> = self.rows.iter().filter(|r| r.dirty).cloned().collect();
        // The execution row changes with any step row: its revision is what
        // tells copies of the old rows (here and elsewhere) that they are
        // stale. This transaction's own revision is one no other writer can
        // reach (see `super::cache`).
        let exec = (!dirty.is_empty() || self.exec_dirty).then(|| db::steps::ExecutionWrite {
            status: self.exec.status.as_str(),
            outputs: self.exec.outputs.clone(),
            error: self.exec.error.clone(),
            started_at: self.exec.started_at,
            completed_at: self.exec.completed_at,
            deadline_at: self.exec.deadline_at,
            timed_out: self.exec.timed_out,
            revision: (Uuid::new_v4().as_u64_pair().0 >> 1) as i64,
            finished_steps: finished_steps(&self.rows) as i32,
        });
        let revision = exec.as_ref().map_or(self.exec.revision, |e| e.revision);
        let finished = (self.exec_before != self.exec.status && self.exec.status.is_terminal())
            .then_some(self.exec.status);
        if self.exec.status == ExecutionStatus::Running {
            let mut rows = std::mem::take(&mut self.rows);
            for row in &mut rows {
                row.dirty = false;
            }
            engine.inner.steps.put(self.exec.id, revision, rows);
        } else {
            engine.inner.steps.forget(self.exec.id);
        }
        let effects = AfterCommit {
            published: !events.is_empty(),
            retry_in,
            released: self.released,
            finished,
            ended,
        };
        let write = db::steps::TransitionWrite {
            execution_id: self.exec.id,
            dirty,
            attempts,
            events,
            exec,
        };
        (self.tx, write, effects)
    }

    /// The attempts that ended in this transition. An attempt's row is
    /// written once, when it ends; the running attempt lives on the step row.
    fn attempts(&self) -> db::steps::AttemptRows {
        let mut out = db::steps::AttemptRows::default();
        for (row, b) in self.rows.iter().zip(&self.before) {
            let claimed_again = row.attempt > b.attempt;
            let ended = b.status == StepStatus::Running
                && (row.status != StepStatus::Running || claimed_again);
            let (Some(owner), Some(started_at)) = (b.owner, b.started_at) else {
                continue;
            };
            if ended {
                out.steps.push(row.step_id.clone());
                out.numbers.push(b.attempt);
                out.owners.push(owner);
                out.started.push(started_at);
                // Claimed again in this very transition (a released step, or
                // a retry due at once): the attempt ended as the step stood
                // just before that claim, PENDING.
                let status = if claimed_again {
                    StepStatus::Pending
                } else {
                    row.status
                };
                let outcome = if status == StepStatus::Pending && row.error.is_none() {
                    "RELEASED"
                } else {
                    status.as_str()
                };
                out.outcomes.push(outcome.to_owned());
            }
        }
        for run in &self.inline_runs {
            let row = &self.rows[run.index];
            out.steps.push(row.step_id.clone());
            out.numbers.push(run.attempt);
            out.owners.push(run.owner);
            out.started.push(self.exec.now);
            out.outcomes.push(run.outcome.to_owned());
        }
        out
    }

    /// Derive the progress events of API.md from what changed.
    fn notifications(&self, engine: &Engine, out: &mut Vec<OutboxEvent>) {
        let notify_topic = engine.inner.settings.notify_topic.as_deref();
        let audience = Audience::of(&self.exec, notify_topic);
        if audience.is_empty() {
            return;
        }
        let id = self.exec.id;
        let mut step_finished = false;
        for (i, (row, b)) in self.rows.iter().zip(&self.before).enumerate() {
            let (status, attempt) = (b.status, b.attempt);
            if row.status == StepStatus::Running && !row.awaiting_event && row.attempt > attempt {
                let content = outbox::step_started(&row.name, row.attempt);
                audience.rows(id, &row.step_id, content, out);
            }
            // A pure step run in this transition started too.
            for run in self.inline_runs.iter().filter(|r| r.index == i) {
                let content = outbox::step_started(&row.name, run.attempt);
                audience.rows(id, &row.step_id, content, out);
            }
            if row.status != status && row.status.is_terminal() {
                step_finished = true;
                let (label, message) = match row.status {
                    StepStatus::Completed => {
                        ("COMPLETED", format!("Step '{}' completed", row.name))
                    }
                    StepStatus::Failed | StepStatus::Timeout => (
                        "FAILED",
                        row.error
                            .clone()
                            .unwrap_or_else(|| format!("Step '{}' failed", row.name)),
                    ),
                    _ => continue, // skipped and cancelled steps publish nothing
                };
                let result =
                    json!({ "outputs": row.outputs, "status": row.status, "attempt": row.attempt });
                audience.rows(
                    id,
                    &row.step_id,
                    outbox::content(&row.name, &message, label, result),
                    out,
                );
            }
        }
        for (i, report) in &self.stage_reports {
            let row = &self.rows[*i];
            if row.is_waiting() {
                stage_event(id, row, report, &self.rows, &audience, out);
            }
        }
        let terminal = self.exec.status.is_terminal() && self.exec_before != self.exec.status;
        let progress = |pct: f64, out: &mut Vec<OutboxEvent>| {
            let content = outbox::content(
                "Pipeline Execution",
                &format!("Progress: {pct:.1}%"),
                "RUNNING",
                json!({ "progress_percentage": pct }),
            );
            audience.rows(id, "progress", content, out);
        };
        // Pure steps run here stand for transitions of their own: the
        // progress each of them started from is published, as the
        // transition before it would have (once per figure).
        let finished_before = self
            .before
            .iter()
            .filter(|b| b.status.is_terminal())
            .count();
        let mut shown = percentage(finished_before, self.rows.len());
        for run in &self.inline_runs {
            if run.progress_before > shown {
                shown = run.progress_before;
                progress(shown, out);
            }
        }
        if step_finished && !terminal && self.exec.status == ExecutionStatus::Running {
            let pct = progress_percentage(&self.rows);
            if pct > shown || self.inline_runs.is_empty() {
                progress(pct, out);
            }
        }
        if terminal {
            let success = self.exec.status == ExecutionStatus::Completed;
            let mut result = json!({ "outputs": self.exec.outputs, "success": success });
            let message = match self.exec.status {
                ExecutionStatus::Completed => "Pipeline execution completed".to_owned(),
                ExecutionStatus::Cancelled => {
                    result["cancelled"] = Value::Bool(true);
                    "Pipeline execution cancelled".to_owned()
                }
                _ => self
                    .exec
                    .error
                    .clone()
                    .unwrap_or_else(|| "Pipeline execution failed".into()),
            };
            let label = if success { "COMPLETED" } else { "FAILED" };
            audience.rows(
                id,
                "results",
                outbox::content("Pipeline Execution", &message, label, result),
                out,
            );
        }
    }
}

/// A stage of a waiting step's operation, as API.md's progress event: an
/// `eta` stage as `event: "eta"` with the minutes as the message (what the
/// original published and budapp reads with `int(content.message)`), any
/// other stage as `event: "progress"` naming the step and the stage.
fn stage_event(
    id: Uuid,
    row: &StepRow,
    report: &StageReport,
    rows: &[StepRow],
    audience: &Audience<'_>,
    out: &mut Vec<OutboxEvent>,
) {
    let mut result = json!({
        "step_id": row.step_id,
        "progress_percentage": progress_percentage(rows),
    });
    if let Some(p) = row.progress {
        result["step_progress"] = json!(p);
    }
    if let Some(stage) = &report.stage {
        result["stage"] = json!(stage);
    }
    let content = match report.eta_minutes {
        Some(minutes) => {
            result["eta_minutes"] = json!(minutes);
            outbox::content(&row.name, &minutes.to_string(), "RUNNING", result)
        }
        None => {
            let stage = report.stage.as_deref().unwrap_or("progress");
            let message = match (&report.message, &report.status) {
                (Some(message), _) => format!("{}: {message}", row.name),
                (None, Some(status)) => format!("{}: {stage} {status}", row.name),
                (None, None) => format!("{}: {stage}", row.name),
            };
            outbox::content(&row.name, &message, "RUNNING", result)
        }
    };
    let event = if report.eta_minutes.is_some() {
        crate::actions::bud_event::ETA_STAGE
    } else {
        "progress"
    };
    audience.rows(id, event, content, out);
}

pub(crate) fn progress_percentage(rows: &[StepRow]) -> f64 {
    percentage(finished_steps(rows), rows.len())
}

/// 100 × finished ÷ all steps; 100 when there are none.
fn percentage(finished: usize, steps: usize) -> f64 {
    if steps == 0 {
        return 100.0;
    }
    100.0 * finished as f64 / steps as f64
}

/// How many of the steps have finished: the progress events' figure, and
/// the count lists read from the execution row.
fn finished_steps(rows: &[StepRow]) -> usize {
    rows.iter().filter(|r| r.status.is_terminal()).count()
}

impl Engine {
    /// Lock an execution and load its steps. `None` when it does not exist.
    pub async fn lock(&self, execution_id: Uuid) -> Result<Option<Locked>, crate::engine::Error> {
        let tx = self.inner.pool.begin().await?;
        self.lock_in(tx, execution_id).await
    }

    /// [`Engine::lock`] that reuses the rows this replica wrote last when
    /// they are still current ([`super::cache`]): for recording a handler's
    /// result or an event, which never read `lease_expires_at`.
    pub async fn lock_cached(
        &self,
        execution_id: Uuid,
    ) -> Result<Option<Locked>, crate::engine::Error> {
        let tx = self.inner.pool.begin().await?;
        self.lock_with(tx, execution_id, Locking::Wait, true).await
    }

    /// [`Engine::lock`] that gives up at once (`None`) when another
    /// transaction holds the execution: for background work (timers,
    /// reclaims) that must never queue behind a stalled replica.
    pub async fn try_lock(
        &self,
        execution_id: Uuid,
    ) -> Result<Option<Locked>, crate::engine::Error> {
        let tx = self.inner.pool.begin().await?;
        self.lock_with(tx, execution_id, Locking::SkipLocked, false)
            .await
    }

    /// [`Engine::lock`] inside a transaction already open (one that just
    /// created the execution, say).
    pub async fn lock_in(
        &self,
        tx: Transaction<'static, Postgres>,
        execution_id: Uuid,
    ) -> Result<Option<Locked>, crate::engine::Error> {
        self.lock_with(tx, execution_id, Locking::Wait, false).await
    }

    async fn lock_with(
        &self,
        tx: Transaction<'static, Postgres>,
        execution_id: Uuid,
        locking: Locking,
        cached: bool,
    ) -> Result<Option<Locked>, crate::engine::Error> {
        Ok(self.load(tx, execution_id, locking, cached).await?.ok())
    }

    async fn load(
        &self,
        mut tx: Transaction<'static, Postgres>,
        execution_id: Uuid,
        locking: Locking,
        cached: bool,
    ) -> Result<Result<Locked, Transaction<'static, Postgres>>, crate::engine::Error> {
        let exec = db::executions::lock_row(&mut tx, execution_id, locking).await?;
        let Some(exec) = exec else { return Ok(Err(tx)) };
        self.held(tx, exec, cached).await.map(Ok)
    }

    /// An execution whose row `tx` has locked already ([`db::executions::lock_rows`]
    /// locks many at once), with its steps: the rows kept from this
    /// replica's last write of it when `cached` and still current.
    pub(crate) async fn held(
        &self,
        mut tx: Transaction<'static, Postgres>,
        exec: ExecutionRow,
        cached: bool,
    ) -> Result<Locked, crate::engine::Error> {
        let execution_id = exec.id;
        let kept = cached.then(|| self.inner.steps.take(execution_id, exec.revision));
        if let Some(kept) = &kept {
            let outcome = match kept {
                Ok(_) => "hit",
                Err(miss) => miss.as_str(),
            };
            self.metrics()
                .step_rows_kept
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc();
        }
        let kept = kept.and_then(Result::ok);
        let rows: Vec<StepRow> = match kept {
            Some(rows) => rows,
            None => db::steps::of_execution(&mut tx, execution_id).await?,
        };
        let dag = self.dag(exec.workflow_id, exec.workflow_version).await?;
        let max_bytes = self.settings().template_max_bytes;
        Ok(Locked::new(tx, exec, rows, dag, max_bytes))
    }
}

impl Locked {
    /// An execution and its steps as this transaction sees them, locked
    /// (or created) by it.
    pub fn new(
        tx: Transaction<'static, Postgres>,
        exec: ExecutionRow,
        rows: Vec<StepRow>,
        dag: Arc<Dag>,
        template_max_bytes: usize,
    ) -> Self {
        let before = rows
            .iter()
            .map(|r| Before {
                status: r.status,
                attempt: r.attempt,
                owner: r.lease_owner,
                started_at: r.started_at,
            })
            .collect();
        let exec_before = exec.status;
        Locked {
            tx,
            exec,
            rows,
            dag,
            template_max_bytes,
            before,
            exec_before,
            exec_dirty: false,
            released: 0,
            stage_reports: Vec::new(),
            inline_runs: Vec::new(),
        }
    }
}

/// What a row looked like when the transition loaded it.
struct Before {
    status: StepStatus,
    attempt: i32,
    owner: Option<Uuid>,
    started_at: Option<DateTime<Utc>>,
}
