//! Step rows (`step_executions`) as the engine looks them up outside a
//! transition: finding the step that waits on a correlation id. What a
//! transition reads and writes back is `crate::engine::transition`'s.

use sqlx::PgExecutor;
use uuid::Uuid;

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
