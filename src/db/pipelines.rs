//! Pipelines as budapp and budadmin keep them (COMPAT.md "Pipelines"): a
//! pipeline is a workflow row, with its owner (`created_by`, the original's
//! `user_id`), `system_owned`, `icon`, `status` (`draft` / `active`) and the
//! executions it has had. Every statement on these rows lives here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

/// A pipeline as the original's `PipelineResponse` has it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct Pipeline {
    pub id: Uuid,
    pub name: String,
    /// The version as text (`"1"`, `"2"`, …), as the original sends it.
    pub version: String,
    /// `draft` (no steps) or `active`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub step_count: i32,
    /// The owner; `null` for pipelines nobody owns.
    pub user_id: Option<String>,
    pub created_by: Option<String>,
    pub system_owned: bool,
    pub description: Option<String>,
    pub icon: Option<String>,
    #[schema(value_type = Object)]
    pub dag: Value,
    pub execution_count: i64,
    pub last_execution_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "w.id, w.name, w.version::text AS version, w.status, w.created_at, w.updated_at,
    w.step_count, w.created_by AS user_id, w.created_by, w.system_owned, w.description, w.icon, w.dag,
    (SELECT COALESCE(sum(c.executions), 0)::bigint FROM workflow_execution_counts c
     WHERE c.workflow_id = w.id) AS execution_count,
    (SELECT max(c.last_execution_at) FROM workflow_execution_counts c
     WHERE c.workflow_id = w.id) AS last_execution_at"
    };
}

/// Who is asking: with a user, only that user's pipelines and the
/// system-owned ones are visible; without one (budapp itself), all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer {
    pub user_id: Option<String>,
}

/// What to store for a new or changed pipeline.
pub(crate) struct Definition<'a> {
    pub name: &'a str,
    pub owner: Option<&'a str>,
    pub system_owned: bool,
    pub icon: Option<&'a str>,
    pub description: Option<&'a str>,
    pub dag: &'a Value,
    pub step_count: i32,
    pub draft: bool,
}

impl Definition<'_> {
    fn status(&self) -> &'static str {
        if self.draft { "draft" } else { "active" }
    }
}

const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM workflows w
         WHERE w.deleted_at IS NULL AND NOT w.ephemeral
           AND ($1::text IS NULL OR w.created_by = $1 OR ($2 AND w.system_owned))
           AND ($3::timestamptz IS NULL OR (w.created_at, w.id) < ($3, $4::uuid))
         ORDER BY w.created_at DESC, w.id DESC
         LIMIT $5"
);

/// The pipelines `viewer` sees, newest first: after `after` when given
/// (keyset paging), at most `limit` when given.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    viewer: &Viewer,
    include_system: bool,
    after: Option<&super::paging::Cursor>,
    limit: Option<i64>,
) -> Result<Vec<Pipeline>, sqlx::Error> {
    sqlx::query_as(LIST)
        .bind(&viewer.user_id)
        .bind(include_system)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.id))
        .bind(limit)
        .fetch_all(db)
        .await
}

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM workflows w
         WHERE w.id = $1 AND w.deleted_at IS NULL AND NOT w.ephemeral
           AND ($2::text IS NULL OR w.created_by = $2 OR w.system_owned)"
);

/// The pipeline if it exists and `viewer` may see it.
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    id: Uuid,
    viewer: &Viewer,
) -> Result<Option<Pipeline>, sqlx::Error> {
    sqlx::query_as(GET)
        .bind(id)
        .bind(&viewer.user_id)
        .fetch_optional(db)
        .await
}

const INSERT: &str =
    "INSERT INTO workflows (id, name, created_by, version, description, dag, step_count,
                                system_owned, icon, status, ephemeral)
         VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10)";

/// Insert a pipeline (version 1) and its first version row.
pub(crate) async fn insert(
    tx: &mut Transaction<'static, Postgres>,
    def: &Definition<'_>,
    ephemeral: bool,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(INSERT)
        .bind(id)
        .bind(def.name)
        .bind(def.owner)
        .bind(def.description)
        .bind(def.dag)
        .bind(def.step_count)
        .bind(def.system_owned)
        .bind(def.icon)
        .bind(def.status())
        .bind(ephemeral)
        .execute(&mut **tx)
        .await?;
    insert_version(tx, id, 1, def.dag).await?;
    Ok(id)
}

const LOCK_FOR_UPDATE: &str = "SELECT version, name, icon, dag FROM workflows
    WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral
      AND ($2::text IS NULL OR created_by = $2 OR system_owned)
    FOR UPDATE";

/// The row to change, locked, if `viewer` may see it: (version, name, icon).
pub(crate) async fn lock_for_update(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    viewer: &Viewer,
) -> Result<Option<(i32, String, Option<String>, Value)>, sqlx::Error> {
    sqlx::query_as(LOCK_FOR_UPDATE)
        .bind(id)
        .bind(&viewer.user_id)
        .fetch_optional(&mut **tx)
        .await
}

const UPDATE: &str =
    "UPDATE workflows SET name = $2, version = $3, description = $4, dag = $5, step_count = $6,
                icon = $7, status = $8, updated_at = now()
         WHERE id = $1";

/// A new version of a pipeline (owner and system flag unchanged).
pub(crate) async fn update(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    version: i32,
    def: &Definition<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE)
        .bind(id)
        .bind(def.name)
        .bind(version)
        .bind(def.description)
        .bind(def.dag)
        .bind(def.step_count)
        .bind(def.icon)
        .bind(def.status())
        .execute(&mut **tx)
        .await?;
    insert_version(tx, id, version, def.dag).await
}

const DELETE: &str = "UPDATE workflows SET deleted_at = now()
    WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral
      AND ($2::text IS NULL OR created_by = $2 OR system_owned)";

/// Soft-delete: executions keep their definition (the original deleted
/// them with it; COMPAT.md keeps them).
pub(crate) async fn delete(
    db: impl PgExecutor<'_>,
    id: Uuid,
    viewer: &Viewer,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(DELETE)
        .bind(id)
        .bind(&viewer.user_id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(done == 1)
}

const INSERT_VERSION: &str =
    "INSERT INTO workflow_versions (workflow_id, version, dag) VALUES ($1, $2, $3)";

/// Keep this version's DAG: executions point at the exact version they ran.
pub(crate) async fn insert_version(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    version: i32,
    dag: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_VERSION)
        .bind(id)
        .bind(version)
        .bind(dag)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const NAME_OF: &str = "SELECT name FROM workflows WHERE id = $1";

/// The name of a pipeline (or of an ephemeral run's definition).
pub(crate) async fn name_of(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(NAME_OF)
        .bind(id)
        .fetch_optional(db)
        .await
}

const DELETE_ORPHANED_EPHEMERAL: &str = "WITH gone AS (
        SELECT id FROM workflows w
        WHERE w.ephemeral AND w.created_at < now() - make_interval(days => $1)
          AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.workflow_id = w.id)
        LIMIT 1000
    ), versions AS (
        DELETE FROM workflow_versions WHERE workflow_id IN (SELECT id FROM gone)
    )
    DELETE FROM workflows WHERE id IN (SELECT id FROM gone)";

/// Delete the definitions of ephemeral runs whose executions retention
/// removed (their version rows go in the same statement).
pub(crate) async fn delete_orphaned_ephemeral(
    db: impl PgExecutor<'_>,
    older_than_days: i32,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(DELETE_ORPHANED_EPHEMERAL)
        .bind(older_than_days)
        .execute(db)
        .await?
        .rows_affected())
}

super::check::statements!(
    LIST => Pipeline,
    GET => Pipeline,
    INSERT,
    LOCK_FOR_UPDATE => (i32, String, Option<String>, Value),
    UPDATE,
    DELETE,
    INSERT_VERSION,
    NAME_OF,
    DELETE_ORPHANED_EPHEMERAL,
);
