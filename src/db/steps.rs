//! Step rows (`step_executions`) as the engine writes and looks them up
//! outside a transition: inserting an execution's steps, and finding the
//! step that waits on a correlation id.
//! What a transition reads and writes back is `crate::engine::transition`'s.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

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
