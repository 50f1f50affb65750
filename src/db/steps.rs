//! Step rows (`step_executions`) as the engine writes and looks them up
//! outside a transition: inserting an execution's steps, renewing and
//! finding leases, and finding the step that waits on a correlation id.
//! What a transition reads and writes back is `crate::engine::transition`'s.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::engine::AttemptKey;
use crate::engine::model::StepRow;
use crate::engine::transition::STEP_COLUMNS;

/// The steps of a new execution, one entry per step in declaration order
/// (`position` is the index).
pub(crate) struct NewSteps<'a> {
    pub ids: &'a [&'a str],
    pub positions: &'a [i32],
    pub names: &'a [&'a str],
    pub actions: &'a [&'a str],
    pub timeouts: &'a [Option<f64>],
}

/// Insert an execution's steps inside the transaction that inserts the
/// execution, returning them as stored (in no particular order).
pub(crate) async fn insert(
    tx: &mut PgConnection,
    execution_id: Uuid,
    steps: &NewSteps<'_>,
) -> Result<Vec<StepRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO step_executions (execution_id, step_id, position, name, action, timeout_seconds)
         SELECT $1, * FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[], $6::float8[])
         RETURNING {STEP_COLUMNS}"
    ))
    .bind(execution_id)
    .bind(steps.ids)
    .bind(steps.positions)
    .bind(steps.names)
    .bind(steps.actions)
    .bind(steps.timeouts)
    .fetch_all(tx)
    .await
}

/// Extend the lease of the attempts in `held` that `replica` still runs
/// (by `lease_seconds` from now), returning every one of them that is
/// still this replica's.
///
/// Never waits for a row lock: a transition holding a step's row (one
/// recording results of several executions, say) would otherwise be
/// able to wait on this statement while it waits on that transition,
/// a deadlock that fails the renewal. A row locked at this moment is
/// being finished or was just claimed; it is still ours (the snapshot
/// says so) and its lease is extended at the next round.
pub(crate) async fn renew_leases(
    db: impl PgExecutor<'_>,
    replica: Uuid,
    lease_seconds: f64,
    held: &[AttemptKey],
) -> Result<Vec<AttemptKey>, sqlx::Error> {
    let executions: Vec<Uuid> = held.iter().map(|k| k.0).collect();
    let steps: Vec<String> = held.iter().map(|k| k.1.clone()).collect();
    let attempts: Vec<i32> = held.iter().map(|k| k.2).collect();
    sqlx::query_as(
        "WITH mine AS (
             SELECT s.execution_id, s.step_id, s.attempt FROM step_executions s
             JOIN UNNEST($3::uuid[], $4::text[], $5::int[]) AS h(execution_id, step_id, attempt)
               ON s.execution_id = h.execution_id AND s.step_id = h.step_id AND s.attempt = h.attempt
             WHERE s.status = 'RUNNING' AND NOT s.awaiting_event AND s.lease_owner = $1
         ), free AS (
             SELECT s.execution_id, s.step_id FROM step_executions s
             JOIN mine m ON s.execution_id = m.execution_id AND s.step_id = m.step_id
             WHERE s.attempt = m.attempt AND s.status = 'RUNNING' AND NOT s.awaiting_event
               AND s.lease_owner = $1
             FOR NO KEY UPDATE OF s SKIP LOCKED
         ), renewed AS (
             UPDATE step_executions s SET lease_expires_at = now() + make_interval(secs => $2)
             FROM free f WHERE s.execution_id = f.execution_id AND s.step_id = f.step_id
             RETURNING 1
         )
         SELECT execution_id, step_id, attempt FROM mine",
    )
    .bind(replica)
    .bind(lease_seconds)
    .bind(&executions)
    .bind(&steps)
    .bind(&attempts)
    .fetch_all(db)
    .await
}

/// The executions with a step in a handler under `replica`'s lease.
pub(crate) async fn leased_executions(
    db: impl PgExecutor<'_>,
    replica: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT execution_id FROM step_executions
         WHERE lease_owner = $1 AND status = 'RUNNING' AND NOT awaiting_event",
    )
    .bind(replica)
    .fetch_all(db)
    .await
}

/// The step waiting on `correlation_id` (execution id, step id), if one is.
pub(crate) async fn waiting_on(
    db: impl PgExecutor<'_>,
    correlation_id: &str,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT execution_id, step_id FROM step_executions
         WHERE external_workflow_id = $1 AND awaiting_event",
    )
    .bind(correlation_id)
    .fetch_optional(db)
    .await
}

/// Whether a step waits on `correlation_id`, and whether any step ever
/// recorded it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Correlation {
    pub waiting: bool,
    pub known: bool,
}

pub(crate) async fn correlation(
    db: impl PgExecutor<'_>,
    correlation_id: &str,
) -> Result<Correlation, sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(bool_or(awaiting_event), false) AS waiting, count(*) > 0 AS known
         FROM step_executions WHERE external_workflow_id = $1",
    )
    .bind(correlation_id)
    .fetch_one(db)
    .await
}
