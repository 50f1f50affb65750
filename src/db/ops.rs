//! What the operator endpoints read (`/ready`, `/metrics`,
//! `/internal/status`): whether the database answers, and the depth of each
//! queue across the tables.

use sqlx::PgExecutor;

const PING: &str = "SELECT 1";

/// One round trip: `Ok` when the database answers.
pub(crate) async fn ping(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>(PING)
        .fetch_one(db)
        .await
        .map(|_| ())
}

/// The queues, over all replicas.
#[derive(Debug, sqlx::FromRow, Default)]
pub(crate) struct Depths {
    pub claimable: i64,
    pub scheduled: i64,
    pub running: i64,
    pub waiting: i64,
    pub outbox: i64,
    pub outbox_oldest_seconds: Option<f64>,
    pub outbox_failed: i64,
    pub early_events: i64,
    pub schedules_active: i64,
    pub schedules_due: i64,
    pub schedules_paused: i64,
    pub schedule_runs_last_hour: i64,
    pub schedule_failures_last_hour: i64,
}

const DEPTHS: &str = "SELECT
    (SELECT count(*) FROM step_executions WHERE status = 'PENDING' AND available_at <= now()) AS claimable,
    (SELECT count(*) FROM step_executions WHERE status = 'PENDING' AND available_at > now()) AS scheduled,
    (SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND NOT awaiting_event) AS running,
    (SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND awaiting_event) AS waiting,
    (SELECT count(*) FROM outbox WHERE failed_at IS NULL) AS outbox,
    (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM outbox WHERE failed_at IS NULL)
        AS outbox_oldest_seconds,
    (SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL) AS outbox_failed,
    (SELECT count(*) FROM inbound_events WHERE status = 'EARLY') AS early_events,
    (SELECT count(*) FROM schedules WHERE status = 'active') AS schedules_active,
    (SELECT count(*) FROM schedules WHERE status = 'active' AND next_run_at <= now()) AS schedules_due,
    (SELECT count(*) FROM schedules WHERE status = 'paused') AS schedules_paused,
    (SELECT count(*) FROM schedule_firings
      WHERE fired_at > now() - interval '1 hour' AND execution_id IS NOT NULL) AS schedule_runs_last_hour,
    (SELECT count(*) FROM schedule_firings
      WHERE fired_at > now() - interval '1 hour' AND error IS NOT NULL) AS schedule_failures_last_hour";

pub(crate) async fn depths(db: impl PgExecutor<'_>) -> Result<Depths, sqlx::Error> {
    sqlx::query_as::<_, Depths>(DEPTHS).fetch_one(db).await
}

super::check::statements!(
    PING,
    DEPTHS => Depths,
);
