//! Firing triggers (`crate::engine::schedule`, `crate::engine::event_triggers`):
//! the firing rows that make a schedule fire once per due time and an event
//! trigger once per event, and what a firing records on its schedule or
//! trigger. Their CRUD is [`super::triggers`].

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::triggers::{EventTriggerRow, ScheduleRow, event_trigger_columns, schedule_columns};

const NEXT_DUE_IN: &str = "SELECT extract(epoch FROM min(next_run_at) - now())::float8
    FROM schedules WHERE status = 'active' AND next_run_at IS NOT NULL";

/// How many seconds until the earliest active schedule is due (by the
/// database's clock, the one that decides); negative when one is overdue,
/// `None` when none is active.
pub(crate) async fn next_due_in(db: impl PgExecutor<'_>) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(NEXT_DUE_IN).fetch_one(db).await
}

const LOCK_DUE_SCHEDULE: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s
         WHERE s.status = 'active' AND s.next_run_at <= now()
         ORDER BY s.next_run_at LIMIT 1
         FOR UPDATE OF s SKIP LOCKED"
);

/// The earliest due schedule nobody holds, locked (`FOR UPDATE SKIP
/// LOCKED`: a replica never waits for another, it takes the next due
/// schedule instead).
pub(crate) async fn lock_due_schedule(
    tx: &mut PgConnection,
) -> Result<Option<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(LOCK_DUE_SCHEDULE).fetch_optional(tx).await
}

const CLAIM_SCHEDULE_FIRING: &str =
    "INSERT INTO schedule_firings (schedule_id, due_at, replica_id) VALUES ($1, $2, $3)
         ON CONFLICT (schedule_id, due_at) DO NOTHING";

/// Insert the firing row of (schedule, due time): `false` when that due
/// time already fired.
///
/// The key of the guarantee. The row lock already keeps other replicas
/// out; this makes "once per due time" hold even if `next_run_at` were
/// ever moved back to a due time that fired.
pub(crate) async fn claim_schedule_firing(
    tx: &mut PgConnection,
    schedule_id: Uuid,
    due_at: DateTime<Utc>,
    replica_id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(CLAIM_SCHEDULE_FIRING)
        .bind(schedule_id)
        .bind(due_at)
        .bind(replica_id)
        .execute(tx)
        .await?
        .rows_affected()
        == 1)
}

const MOVE_SCHEDULE: &str = "UPDATE schedules SET next_run_at = $2, status = $3 WHERE id = $1";

/// Move a schedule to its next due time and status without a run.
pub(crate) async fn move_schedule(
    tx: &mut PgConnection,
    id: Uuid,
    next_run_at: Option<DateTime<Utc>>,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(MOVE_SCHEDULE)
        .bind(id)
        .bind(next_run_at)
        .bind(status)
        .execute(tx)
        .await
        .map(|_| ())
}

/// What a schedule's run records on its firing row and the schedule.
pub(crate) struct ScheduleRun {
    pub schedule_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub execution_id: Uuid,
    pub next_run_at: Option<DateTime<Utc>>,
    pub status: &'static str,
    pub run_count: i32,
    /// The transaction's clock.
    pub now: DateTime<Utc>,
}

const RECORD_SCHEDULE_RUN: &str = "WITH f AS (
        UPDATE schedule_firings SET execution_id = $2 WHERE schedule_id = $1 AND due_at = $3
    )
    UPDATE schedules SET next_run_at = $4, status = $5, run_count = $6, last_run_at = $7,
           last_execution_id = $2, updated_at = $7
    WHERE id = $1";

pub(crate) async fn record_schedule_run(
    tx: &mut PgConnection,
    run: &ScheduleRun,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_SCHEDULE_RUN)
        .bind(run.schedule_id)
        .bind(run.execution_id)
        .bind(run.due_at)
        .bind(run.next_run_at)
        .bind(run.status)
        .bind(run.run_count)
        .bind(run.now)
        .execute(tx)
        .await
        .map(|_| ())
}

/// What a run that could not start records on its firing row and the
/// schedule (which counts the failure).
pub(crate) struct ScheduleFailure<'a> {
    pub schedule_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub error: &'a str,
    pub next_run_at: Option<DateTime<Utc>>,
    pub status: &'a str,
    pub enabled: bool,
}

const RECORD_SCHEDULE_FAILURE: &str = "WITH f AS (
        UPDATE schedule_firings SET error = $3 WHERE schedule_id = $1 AND due_at = $2
    )
    UPDATE schedules SET next_run_at = $4, status = $5, enabled = $6,
           failure_count = failure_count + 1, last_error = $3, last_error_at = now(), updated_at = now()
    WHERE id = $1";

pub(crate) async fn record_schedule_failure(
    tx: &mut PgConnection,
    failure: &ScheduleFailure<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_SCHEDULE_FAILURE)
        .bind(failure.schedule_id)
        .bind(failure.due_at)
        .bind(failure.error)
        .bind(failure.next_run_at)
        .bind(failure.status)
        .bind(failure.enabled)
        .execute(tx)
        .await
        .map(|_| ())
}

const END_SCHEDULE: &str =
    "UPDATE schedules SET status = $2, next_run_at = NULL, updated_at = now() WHERE id = $1";

/// End a schedule (`expired`, `completed`): nothing is due any more.
pub(crate) async fn end_schedule(
    tx: &mut PgConnection,
    id: Uuid,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(END_SCHEDULE)
        .bind(id)
        .bind(status)
        .execute(tx)
        .await
        .map(|_| ())
}

const EVENT_TRIGGERS_FOR: &str = concat!(
    "SELECT ",
    event_trigger_columns!(),
    " FROM event_triggers
         WHERE event_type = $1 AND enabled ORDER BY created_at, id"
);

/// The enabled event triggers listening for `event_type`, oldest first.
pub(crate) async fn event_triggers_for(
    db: impl PgExecutor<'_>,
    event_type: &str,
) -> Result<Vec<EventTriggerRow>, sqlx::Error> {
    sqlx::query_as(EVENT_TRIGGERS_FOR)
        .bind(event_type)
        .fetch_all(db)
        .await
}

const CLAIM_EVENT_FIRING: &str =
    "INSERT INTO event_trigger_firings (trigger_id, event_source, event_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING";

/// Insert the firing row of (trigger, event source, event id): `false`
/// when this event already fired the trigger. A concurrent delivery of the
/// same event waits here for the first one's transaction, then finds the
/// row.
pub(crate) async fn claim_event_firing(
    tx: &mut PgConnection,
    trigger_id: Uuid,
    event_source: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(CLAIM_EVENT_FIRING)
        .bind(trigger_id)
        .bind(event_source)
        .bind(event_id)
        .execute(tx)
        .await?
        .rows_affected()
        == 1)
}

const FAIL_EVENT_FIRING: &str = "UPDATE event_trigger_firings SET error = $4
    WHERE trigger_id = $1 AND event_source = $2 AND event_id = $3";

/// Record on its firing row why an event's run could not start.
pub(crate) async fn fail_event_firing(
    tx: &mut PgConnection,
    trigger_id: Uuid,
    event_source: &str,
    event_id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(FAIL_EVENT_FIRING)
        .bind(trigger_id)
        .bind(event_source)
        .bind(event_id)
        .bind(error)
        .execute(tx)
        .await
        .map(|_| ())
}

const RECORD_EVENT_RUN: &str = "WITH f AS (
        UPDATE event_trigger_firings SET execution_id = $4
        WHERE trigger_id = $1 AND event_source = $2 AND event_id = $3
    )
    UPDATE event_triggers SET trigger_count = trigger_count + 1, last_triggered_at = now()
    WHERE id = $1";

/// Record an event's run on its firing row and count it on the trigger.
pub(crate) async fn record_event_run(
    tx: &mut PgConnection,
    trigger_id: Uuid,
    event_source: &str,
    event_id: &str,
    execution_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_EVENT_RUN)
        .bind(trigger_id)
        .bind(event_source)
        .bind(event_id)
        .bind(execution_id)
        .execute(tx)
        .await
        .map(|_| ())
}

const DELETE_OLD: &str = "WITH s AS (
        DELETE FROM schedule_firings WHERE fired_at < now() - make_interval(days => $1::int)
    )
    DELETE FROM event_trigger_firings WHERE fired_at < now() - make_interval(days => $1::int)";

/// Delete firing rows (of schedules and event triggers) older than `days`:
/// their due times and events are long gone (a schedule's next due time
/// only moves forward).
pub(crate) async fn delete_old(db: impl PgExecutor<'_>, days: i32) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_OLD)
        .bind(days)
        .execute(db)
        .await
        .map(|_| ())
}

super::check::statements!(
    LOCK_DUE_SCHEDULE => ScheduleRow,
    EVENT_TRIGGERS_FOR => EventTriggerRow,
    NEXT_DUE_IN,
    CLAIM_SCHEDULE_FIRING,
    MOVE_SCHEDULE,
    RECORD_SCHEDULE_RUN,
    RECORD_SCHEDULE_FAILURE,
    END_SCHEDULE,
    CLAIM_EVENT_FIRING,
    FAIL_EVENT_FIRING,
    RECORD_EVENT_RUN,
    DELETE_OLD,
);
