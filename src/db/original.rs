//! Reading the original Python budpipeline's tables, as its last migration
//! (`009`) leaves them, for `budpipeline import-legacy`. Nothing here
//! writes: the connection is read-only. These statements are checked
//! against that schema (tests/fixtures/legacy_schema.sql), not this
//! service's: `crate::db::check::original`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// A `pipeline_definition` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Pipeline {
    pub id: Uuid,
    pub version: i32,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub dag_definition: Value,
    /// The enum member name (`DRAFT`, `ACTIVE`, `ARCHIVED`); the server
    /// default wrote `draft`.
    pub status: String,
    pub user_id: Option<Uuid>,
    pub system_owned: bool,
    pub step_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A `pipeline_execution` row with its steps and callback topics.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Execution {
    pub id: Uuid,
    pub pipeline_id: Option<Uuid>,
    /// The snapshot `{workflow_id, workflow_name, dag, params}`.
    pub pipeline_definition: Value,
    pub initiator: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub status: String,
    pub final_outputs: Option<Value>,
    pub error_info: Option<Value>,
    pub subscriber_ids: Option<String>,
    pub payload_type: Option<String>,
    pub notification_workflow_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub steps: Vec<Step>,
    /// `execution_subscription.callback_topic`, in the order subscribed.
    #[sqlx(skip)]
    pub topics: Vec<String>,
}

/// A `step_execution` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Step {
    pub execution_id: Uuid,
    pub step_id: String,
    pub step_name: String,
    pub status: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub progress: f64,
    pub outputs: Option<Value>,
    pub error_message: Option<String>,
    pub retry_count: i32,
    pub sequence_number: i32,
    pub external_workflow_id: Option<String>,
    pub handler_type: Option<String>,
    pub timeout_at: Option<DateTime<Utc>>,
}

/// The columns this import reads that only later migrations added: their
/// absence means the original's database is not at its last migration.
const NEEDED: &[(&str, &str)] = &[
    ("pipeline_definition", "user_id"),
    ("pipeline_definition", "system_owned"),
    ("pipeline_definition", "icon"),
    ("pipeline_execution", "pipeline_id"),
    ("pipeline_execution", "subscriber_ids"),
    ("pipeline_execution", "payload_type"),
    ("pipeline_execution", "notification_workflow_id"),
    ("step_execution", "external_workflow_id"),
    ("step_execution", "handler_type"),
    ("step_execution", "timeout_at"),
    ("execution_subscription", "callback_topic"),
];

const MISSING_COLUMNS: &str =
    "SELECT n.t || '.' || n.c FROM UNNEST($1::text[], $2::text[]) AS n(t, c)
         WHERE NOT EXISTS (
             SELECT 1 FROM information_schema.columns ic
             WHERE ic.table_name = n.t AND ic.column_name = n.c
               AND ic.table_schema = ANY(current_schemas(false)))";

const TABLES: &str = "SELECT to_regclass('pipeline_definition') IS NOT NULL
    AND to_regclass('pipeline_execution') IS NOT NULL
    AND to_regclass('step_execution') IS NOT NULL
    AND to_regclass('execution_subscription') IS NOT NULL";

/// Refuse a database that is not the original's (or not migrated to its
/// last revision) with a sentence saying so.
pub(crate) async fn check(pool: &PgPool) -> Result<(), String> {
    let unreadable = |e: sqlx::Error| format!("cannot read the original's schema: {e}");
    let tables: bool = sqlx::query_scalar(TABLES)
        .fetch_one(pool)
        .await
        .map_err(unreadable)?;
    if !tables {
        return Err(
            "the database named by --from lacks the original budpipeline's tables \
                    (pipeline_definition, pipeline_execution, step_execution, \
                    execution_subscription)"
                .to_owned(),
        );
    }
    let tables: Vec<&str> = NEEDED.iter().map(|(t, _)| *t).collect();
    let columns: Vec<&str> = NEEDED.iter().map(|(_, c)| *c).collect();
    let missing: Vec<String> = sqlx::query_scalar(MISSING_COLUMNS)
        .bind(&tables)
        .bind(&columns)
        .fetch_all(pool)
        .await
        .map_err(unreadable)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the original's database lacks {}: run its migrations to the last one \
             (`alembic upgrade head`, revision 009) first",
            missing.join(", ")
        ))
    }
}

const PIPELINES: &str =
    "SELECT id, version, name, description, icon, dag_definition, status, user_id,
                system_owned, step_count, created_at, updated_at
         FROM pipeline_definition ORDER BY created_at, id";

/// Every pipeline definition, oldest first.
pub(crate) async fn pipelines(pool: &PgPool) -> Result<Vec<Pipeline>, sqlx::Error> {
    sqlx::query_as(PIPELINES).fetch_all(pool).await
}

const TOPICS: &str = "SELECT execution_id, callback_topic FROM execution_subscription
    WHERE execution_id = ANY($1)
    ORDER BY execution_id, subscription_time, created_at, callback_topic";

const STEPS: &str = "SELECT execution_id, step_id, step_name, status, start_time, end_time,
           progress_percentage::float8 AS progress, outputs, error_message, retry_count,
           sequence_number, external_workflow_id, handler_type, timeout_at
    FROM step_execution WHERE execution_id = ANY($1)
    ORDER BY execution_id, sequence_number, step_id";

const EXECUTIONS: &str =
    "SELECT id, pipeline_id, pipeline_definition, initiator, start_time, end_time, status,
                final_outputs, error_info, subscriber_ids, payload_type, notification_workflow_id,
                created_at, updated_at
         FROM pipeline_execution
         WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid)
         ORDER BY created_at, id LIMIT $3";

/// The next `limit` executions after `after` (oldest first), with their
/// steps and topics.
pub(crate) async fn executions(
    pool: &PgPool,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Execution>, sqlx::Error> {
    let (at, id) = after.unzip();
    let mut page: Vec<Execution> = sqlx::query_as(EXECUTIONS)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    if page.is_empty() {
        return Ok(page);
    }
    let ids: Vec<Uuid> = page.iter().map(|e| e.id).collect();
    let steps: Vec<Step> = sqlx::query_as(STEPS).bind(&ids).fetch_all(pool).await?;
    let topics: Vec<(Uuid, String)> = sqlx::query_as(TOPICS).bind(&ids).fetch_all(pool).await?;
    for exec in page.iter_mut() {
        exec.steps = steps
            .iter()
            .filter(|s| s.execution_id == exec.id)
            .cloned()
            .collect();
        exec.topics = topics
            .iter()
            .filter(|(e, _)| *e == exec.id)
            .map(|(_, t)| t.clone())
            .collect();
    }
    Ok(page)
}

super::check::statements!(
    TABLES,
    MISSING_COLUMNS,
    PIPELINES => Pipeline,
    EXECUTIONS => Execution,
    STEPS => Step,
    TOPICS => (Uuid, String),
);
