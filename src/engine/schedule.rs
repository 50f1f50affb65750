//! Firing schedules (COMPAT.md "Triggers"; README "Triggers").
//!
//! Every replica runs [`Engine::run_scheduler`]. A due schedule is fired in
//! ONE transaction that
//!
//! 1. locks the schedule row (`FOR UPDATE SKIP LOCKED`: a replica never
//!    waits for another, it takes the next due schedule instead),
//! 2. inserts the firing row keyed by (schedule, due time),
//! 3. records the execution (its rows and its first claimed steps),
//! 4. moves `next_run_at` past the due time and counts the run,
//!
//! and commits. Either all of it happened or none of it, and no second
//! transaction can fire the same due time: it cannot lock the row while the
//! first holds it, sees `next_run_at` moved on once the first commits, and
//! the primary key on (schedule, due time) would refuse it anyway. A replica
//! killed at any point leaves either nothing (Postgres rolls the open
//! transaction back and another replica fires the due time) or the whole
//! firing. `POST /internal/schedule-poll` runs the same code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Engine;
use super::control::{ControlError, NewExecution};
use super::cron::{Raw, Spec};
use crate::db;
use crate::db::triggers::ScheduleRow;

/// Schedules fired in one pass at most (the rest wait for the next pass,
/// which follows at once).
const BATCH: usize = 100;

/// One schedule handled by a pass.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    pub schedule_id: Uuid,
    pub schedule_name: String,
    pub workflow_id: Uuid,
    pub scheduled_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
    pub next_run_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `triggered`, `failed`, `expired` or `completed`.
    #[serde(skip)]
    pub outcome: &'static str,
}

/// What a pass did: the original's `/internal/schedule-poll` answer.
#[derive(Debug, Default)]
pub struct PollReport {
    pub fired: Vec<Fired>,
}

impl PollReport {
    pub fn triggered(&self) -> impl Iterator<Item = &Fired> {
        self.fired.iter().filter(|f| f.outcome == "triggered")
    }

    pub fn errors(&self) -> impl Iterator<Item = &Fired> {
        self.fired.iter().filter(|f| f.outcome == "failed")
    }
}

/// The `_trigger` parameter of a scheduled run.
pub(crate) fn trigger_param(
    row: &ScheduleRow,
    scheduled_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let mut t = json!({
        "type": "scheduled",
        "schedule_id": row.id,
        "schedule_name": row.name,
        "triggered_at": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    match scheduled_at {
        Some(at) => {
            t["scheduled_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        None => t["manual"] = json!(true),
    }
    t
}

/// The execution a schedule starts: its `params` (with `overrides` on top)
/// plus `_trigger`.
pub(crate) fn execution_for(
    row: &ScheduleRow,
    overrides: Option<&Map<String, Value>>,
    trigger: Value,
) -> NewExecution {
    NewExecution::triggered(
        row.workflow_id,
        &row.params,
        overrides.cloned().unwrap_or_default(),
        trigger,
        format!("schedule:{}", row.id),
    )
}

/// A stored schedule's timing (checked when it was stored).
pub(crate) fn spec_of(row: &ScheduleRow) -> Result<Spec, String> {
    let run_at = row.run_at.map(|t| t.to_rfc3339());
    let raw = Raw {
        kind: Some(&row.schedule_type),
        expression: row.expression.as_deref(),
        timezone: Some(&row.timezone),
        run_at: run_at.as_deref(),
    };
    // A one-time run_at is in the past by the time it fires: check it
    // against the epoch.
    Spec::parse(&raw, DateTime::<Utc>::UNIX_EPOCH).map_err(|e| e.join("; "))
}

/// The status after a run: `completed` once `max_runs` is reached or
/// nothing is due any more, `expired` when the next due time is past
/// `expires_at`.
fn status_after(
    row: &ScheduleRow,
    runs: i32,
    next: Option<DateTime<Utc>>,
) -> (&'static str, Option<DateTime<Utc>>) {
    if row.max_runs.is_some_and(|m| runs >= m) || next.is_none() {
        return ("completed", None);
    }
    if let (Some(n), Some(e)) = (next, row.expires_at) {
        if n > e {
            return ("expired", None);
        }
    }
    ("active", next)
}

impl Engine {
    /// Fire due schedules until told to stop: at each one's due time (this
    /// replica computes when the next is due), and at least every
    /// `SCHEDULE_POLL_INTERVAL_MS` (a schedule created on another replica).
    pub async fn run_scheduler(self) {
        let poll = self.settings().schedule_poll_interval;
        loop {
            if self.is_draining() {
                return;
            }
            // A schedule still due after a pass that fired nothing is being
            // fired by another replica (its row is locked): look again
            // shortly rather than spin on it.
            let mut floor = Duration::ZERO;
            match self.fire_due_schedules().await {
                Ok(report) if !report.fired.is_empty() => {
                    tracing::debug!(handled = report.fired.len(), "fired due schedules");
                    if report.fired.len() >= BATCH {
                        continue;
                    }
                }
                Ok(_) => floor = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, "firing schedules failed; will try again");
                    floor = poll;
                }
            }
            let wait = match self.until_next_due().await {
                Ok(Some(d)) => d.max(floor).min(poll),
                Ok(None) => poll,
                Err(_) => poll,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.schedule_wake.notified() => {}
            }
        }
    }

    /// How long until the earliest active schedule is due (by the
    /// database's clock, the one that decides).
    async fn until_next_due(&self) -> Result<Option<Duration>, crate::engine::Error> {
        let secs = db::firings::next_due_in(self.pool()).await?;
        // A little past the due time, so the due row is visible as due.
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0) + 0.002)))
    }

    /// A schedule was created or changed here: look at once.
    pub fn schedules_changed(&self) {
        self.inner.schedule_wake.notify_one();
    }

    /// Fire every schedule due now (up to a batch) that no other replica is
    /// firing at this moment.
    pub async fn fire_due_schedules(&self) -> Result<PollReport, crate::engine::Error> {
        let mut report = PollReport::default();
        while report.fired.len() < BATCH {
            match self.fire_one().await? {
                Some(fired) => report.fired.push(fired),
                None => break,
            }
        }
        Ok(report)
    }

    /// Fire the earliest due schedule nobody holds; `None` when none is due.
    async fn fire_one(&self) -> Result<Option<Fired>, crate::engine::Error> {
        let mut tx = self.pool().begin().await?;
        let due = db::firings::lock_due_schedule(&mut tx).await?;
        let Some(row) = due else {
            tx.rollback().await?;
            return Ok(None);
        };
        let now = db::now(&mut *tx).await?;
        let scheduled_at = row.next_run_at.expect("selected as due");
        let mut fired = Fired {
            schedule_id: row.id,
            schedule_name: row.name.clone(),
            workflow_id: row.workflow_id,
            scheduled_at,
            execution_id: None,
            next_run_at: None,
            error: None,
            outcome: "triggered",
        };
        if row.expires_at.is_some_and(|e| e < scheduled_at) {
            self.end_schedule(&mut tx, row.id, "expired").await?;
            tx.commit().await?;
            fired.outcome = "expired";
            return Ok(Some(fired));
        }
        if row.max_runs.is_some_and(|m| row.run_count >= m) {
            self.end_schedule(&mut tx, row.id, "completed").await?;
            tx.commit().await?;
            fired.outcome = "completed";
            return Ok(Some(fired));
        }
        let next = match spec_of(&row) {
            Ok(spec) => spec.after(scheduled_at, now),
            Err(e) => {
                // Cannot happen for a row this service stored; never loop on it.
                tracing::error!(schedule_id = %row.id, error = %e, "a stored schedule cannot be read; pausing it");
                self.fail_firing(&mut tx, &row, scheduled_at, None, &e, true)
                    .await?;
                tx.commit().await?;
                fired.outcome = "failed";
                fired.error = Some(e);
                return Ok(Some(fired));
            }
        };
        // The key of the guarantee (see the statement).
        let claimed =
            db::firings::claim_schedule_firing(&mut tx, row.id, scheduled_at, self.replica_id())
                .await?;
        if !claimed {
            tracing::warn!(schedule_id = %row.id, %scheduled_at, "due time already fired; moving on");
            let (status, next) = status_after(&row, row.run_count, next);
            db::firings::move_schedule(&mut tx, row.id, next, status).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let new = execution_for(&row, None, trigger_param(&row, Some(scheduled_at), now));
        let prepared = match self.prepare(new).await {
            Ok(p) => p,
            Err(ControlError::Engine(e)) => return Err(e),
            Err(e) => {
                // It cannot start now: record why, once for this due time,
                // and move on (or pause, if it can never start).
                let why = e.trigger_refusal(row.workflow_id);
                let permanent = matches!(e, ControlError::WorkflowNotFound);
                let next = self
                    .fail_firing(&mut tx, &row, scheduled_at, next, &why, permanent)
                    .await?;
                tx.commit().await?;
                tracing::warn!(schedule_id = %row.id, %scheduled_at, error = %why, "a scheduled run could not start");
                fired.outcome = "failed";
                fired.error = Some(why);
                fired.next_run_at = next;
                return Ok(Some(fired));
            }
        };
        let (mut tx, started, launch) = self.record_triggered(tx, prepared).await?;
        let runs = row.run_count + 1;
        let (status, next) = status_after(&row, runs, next);
        let run = db::firings::ScheduleRun {
            schedule_id: row.id,
            due_at: scheduled_at,
            execution_id: started.execution_id,
            next_run_at: next,
            status,
            run_count: runs,
            now,
        };
        db::firings::record_schedule_run(&mut tx, &run).await?;
        tx.commit().await?;
        launch.go(self);
        self.metrics().schedules_fired.inc();
        tracing::info!(schedule_id = %row.id, %scheduled_at, execution_id = %started.execution_id,
            next_run_at = ?next, "schedule fired");
        fired.execution_id = Some(started.execution_id);
        fired.next_run_at = next;
        Ok(Some(fired))
    }

    /// Record that the run for `due` could not start: on the firing row and
    /// the schedule, which moves to its next due time (or pauses, when the
    /// run can never start). Returns the new `next_run_at`.
    async fn fail_firing(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        row: &ScheduleRow,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        why: &str,
        permanent: bool,
    ) -> Result<Option<DateTime<Utc>>, crate::engine::Error> {
        let (status, enabled, next) = if permanent {
            ("paused", false, None)
        } else {
            let (status, next) = status_after(row, row.run_count, next);
            (status, row.enabled, next)
        };
        let failure = db::firings::ScheduleFailure {
            schedule_id: row.id,
            due_at: due,
            error: why,
            next_run_at: next,
            status,
            enabled,
        };
        db::firings::record_schedule_failure(tx, &failure).await?;
        self.metrics().schedules_failed.inc();
        Ok(next)
    }

    async fn end_schedule(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: Uuid,
        status: &str,
    ) -> Result<(), crate::engine::Error> {
        Ok(db::firings::end_schedule(tx, id, status).await?)
    }
}
