//! What `budpipeline import-legacy` writes into this service's tables: the
//! original's pipelines, versions, executions and steps, with their own
//! ids and timestamps (which no other write sets). What it reads from the
//! original's database is `crate::legacy::source`'s: another schema.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::model::StepStatus;

const WORKFLOW_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1)";

const EXECUTION_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM executions WHERE id = $1)";

/// Whether a workflow (live, deleted or ephemeral) has this id.
pub(crate) async fn workflow_exists(tx: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(WORKFLOW_EXISTS)
        .bind(id)
        .fetch_one(tx)
        .await
}

/// Whether an execution has this id.
pub(crate) async fn execution_exists(tx: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(EXECUTION_EXISTS)
        .bind(id)
        .fetch_one(tx)
        .await
}

const NAME_HOLDER: &str = "SELECT id FROM workflows
    WHERE name = $1 AND coalesce(created_by, '') = coalesce($2, '')
      AND deleted_at IS NULL AND NOT ephemeral
    LIMIT 1";

/// The live pipeline of `owner` named `name`, if any.
pub(crate) async fn name_holder(
    tx: &mut PgConnection,
    name: &str,
    owner: Option<&str>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(NAME_HOLDER)
        .bind(name)
        .bind(owner)
        .fetch_optional(tx)
        .await
}

/// A workflow row as the import writes it.
pub(crate) struct Workflow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub created_by: Option<&'a str>,
    pub version: i32,
    pub description: Option<&'a str>,
    pub dag: &'a Value,
    pub step_count: i32,
    pub system_owned: bool,
    pub icon: Option<&'a str>,
    pub status: &'a str,
    /// The definition of one run, not a pipeline (as `POST /executions/run` keeps).
    pub ephemeral: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const INSERT_WORKFLOW: &str =
    "INSERT INTO workflows (id, name, created_by, version, description, dag,
        step_count, system_owned, icon, status, ephemeral, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub(crate) async fn insert_workflow(
    tx: &mut PgConnection,
    w: &Workflow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_WORKFLOW)
        .bind(w.id)
        .bind(w.name)
        .bind(w.created_by)
        .bind(w.version)
        .bind(w.description)
        .bind(w.dag)
        .bind(w.step_count)
        .bind(w.system_owned)
        .bind(w.icon)
        .bind(w.status)
        .bind(w.ephemeral)
        .bind(w.created_at)
        .bind(w.updated_at)
        .execute(tx)
        .await
        .map(drop)
}

const ADD_VERSION: &str = "INSERT INTO workflow_versions (workflow_id, version, dag, created_at)
    VALUES ($1, $2, $3, $4)";

pub(crate) async fn add_version(
    tx: &mut PgConnection,
    workflow_id: Uuid,
    version: i32,
    dag: &Value,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(ADD_VERSION)
        .bind(workflow_id)
        .bind(version)
        .bind(dag)
        .bind(at)
        .execute(tx)
        .await
        .map(drop)
}

const VERSION_WITH_DAG: &str = "SELECT version FROM workflow_versions
    WHERE workflow_id = $1 AND dag = $2
    ORDER BY version DESC LIMIT 1";

/// The latest version of `workflow_id` whose DAG is `dag`.
pub(crate) async fn version_with_dag(
    tx: &mut PgConnection,
    workflow_id: Uuid,
    dag: &Value,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(VERSION_WITH_DAG)
        .bind(workflow_id)
        .bind(dag)
        .fetch_optional(tx)
        .await
}

const FREE_VERSION: &str =
    "SELECT v FROM generate_series(1, (SELECT max(version) FROM workflow_versions
                                  WHERE workflow_id = $1)) AS v
    WHERE NOT EXISTS (SELECT 1 FROM workflow_versions w WHERE w.workflow_id = $1 AND w.version = v)
    ORDER BY v LIMIT 1";

/// The lowest version number of `workflow_id`, below its highest, that no
/// version row holds.
pub(crate) async fn free_version(
    tx: &mut PgConnection,
    workflow_id: Uuid,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(FREE_VERSION)
        .bind(workflow_id)
        .fetch_optional(tx)
        .await
}

/// An execution row as the import writes it (its trace id is its own id).
pub(crate) struct Execution<'a> {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub status: &'a str,
    pub parameters: &'a Value,
    pub outputs: &'a Value,
    pub error: Option<&'a str>,
    pub callback_topics: &'a [String],
    pub initiator: &'a str,
    pub subscriber_ids: Option<&'a str>,
    pub payload_type: Option<&'a str>,
    pub notification_workflow_id: Option<&'a str>,
    pub total_steps: i32,
    /// How many of its steps finished.
    pub finished_steps: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
}

const INSERT_EXECUTION: &str = "INSERT INTO executions (id, workflow_id, workflow_version, status,
        parameters, outputs, error, callback_topics, initiator, subscriber_ids, payload_type,
        notification_workflow_id, total_steps, created_at, started_at, completed_at, finished_steps,
        trace_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            replace($1::uuid::text, '-', ''))";

pub(crate) async fn insert_execution(
    tx: &mut PgConnection,
    e: &Execution<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_EXECUTION)
        .bind(e.id)
        .bind(e.workflow_id)
        .bind(e.workflow_version)
        .bind(e.status)
        .bind(e.parameters)
        .bind(e.outputs)
        .bind(e.error)
        .bind(e.callback_topics)
        .bind(e.initiator)
        .bind(e.subscriber_ids)
        .bind(e.payload_type)
        .bind(e.notification_workflow_id)
        .bind(e.total_steps)
        .bind(e.created_at)
        .bind(e.started_at)
        .bind(e.completed_at)
        .bind(e.finished_steps)
        .execute(tx)
        .await
        .map(drop)
}

/// A `step_executions` row to insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewStep {
    pub step_id: String,
    pub position: i32,
    pub name: String,
    pub action: String,
    pub status: StepStatus,
    pub attempt: i32,
    pub failures: i32,
    pub external_workflow_id: Option<String>,
    pub timeout_at: Option<DateTime<Utc>>,
    pub timeout_seconds: Option<f64>,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub skip_reason: Option<&'static str>,
    pub progress: Option<f64>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

const INSERT_STEP: &str = "INSERT INTO step_executions (execution_id, step_id, position, name, action,
        status, attempt, failures, external_workflow_id, timeout_at, timeout_seconds, outputs, error,
        skip_reason, progress, started_at, completed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

pub(crate) async fn insert_step(
    tx: &mut PgConnection,
    execution_id: Uuid,
    s: &NewStep,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_STEP)
        .bind(execution_id)
        .bind(&s.step_id)
        .bind(s.position)
        .bind(&s.name)
        .bind(&s.action)
        .bind(s.status.as_str())
        .bind(s.attempt)
        .bind(s.failures)
        .bind(&s.external_workflow_id)
        .bind(s.timeout_at)
        .bind(s.timeout_seconds)
        .bind(&s.outputs)
        .bind(&s.error)
        .bind(s.skip_reason)
        .bind(s.progress)
        .bind(s.started_at)
        .bind(s.completed_at)
        .execute(tx)
        .await
        .map(drop)
}

super::check::statements!(
    WORKFLOW_EXISTS,
    EXECUTION_EXISTS,
    NAME_HOLDER,
    INSERT_WORKFLOW,
    ADD_VERSION,
    VERSION_WITH_DAG,
    FREE_VERSION,
    INSERT_EXECUTION,
    INSERT_STEP,
);
