//! Workflow definitions as `/workflows` keeps them (API.md): a workflow row
//! with its latest DAG, and a `workflow_versions` row per version, so that
//! an execution reads the exact version it started with. Every statement of
//! `/workflows` lives here; the pipelines on the same rows are
//! [`super::pipelines`]. The engine's two lookups (a pipeline's runnable
//! version, a version's DAG) are here too.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgExecutor, Postgres};
use uuid::Uuid;

use super::paging::Cursor;

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub status: String,
    pub created_by: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub step_count: i32,
    #[schema(value_type = Object)]
    pub dag: Value,
}

/// The unique index on a live workflow's (name, owner): an insert or an
/// update that takes a name its owner already uses violates it.
pub(crate) const LIVE_NAME: &str = "workflows_live_name";

/// Columns of [`Workflow`] over `workflows`.
macro_rules! columns {
    () => {
        "id, name, version, status, created_by, description, created_at, updated_at, step_count, dag"
    };
}

/// What a create or an update writes.
pub(crate) struct Fields<'a> {
    pub name: &'a str,
    pub created_by: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The validated DAG, as stored.
    pub dag: &'a Value,
    pub step_count: i32,
}

const INSERT: &str = concat!(
    "INSERT INTO workflows (id, name, created_by, description, dag, step_count, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
    columns!()
);

/// Insert a workflow (version 1). Its `workflow_versions` row is
/// [`super::pipelines::insert_version`], in the same transaction.
///
/// A name its owner already uses violates [`LIVE_NAME`].
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    f: &Fields<'_>,
) -> Result<Workflow, sqlx::Error> {
    with_fields(sqlx::query_as(INSERT).bind(id), f, 1)
        .fetch_one(db)
        .await
}

/// Binds `f`, then `version`, as `$2`…`$7` of [`INSERT`] and [`UPDATE`].
fn with_fields<'q>(
    query: QueryAs<'q, Postgres, Workflow, PgArguments>,
    f: &Fields<'q>,
    version: i32,
) -> QueryAs<'q, Postgres, Workflow, PgArguments> {
    query
        .bind(f.name)
        .bind(f.created_by)
        .bind(f.description)
        .bind(f.dag)
        .bind(f.step_count)
        .bind(version)
}

/// The filters of `GET /workflows`. Each statement holds only the
/// conditions asked for (as `executions::ListFilter`), along the
/// `workflows_page*` indexes.
#[derive(Debug, Default)]
pub(crate) struct ListFilter<'a> {
    pub created_by: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl ListFilter<'_> {
    /// The WHERE clause over live workflows, and how many placeholders
    /// (`$1`…) it takes, bound in field order.
    fn clause(&self) -> (String, usize) {
        let mut clauses = vec!["deleted_at IS NULL AND NOT ephemeral".to_owned()];
        let mut binds = 0;
        if self.created_by.is_some() {
            binds += 1;
            clauses.push(format!("created_by = ${binds}"));
        }
        if self.name.is_some() {
            binds += 1;
            clauses.push(format!("name = ${binds}"));
        }
        (clauses.join(" AND "), binds)
    }
}

/// The page statement for `filter`, after a cursor or not.
fn list_sql(filter: &ListFilter<'_>, after: bool) -> String {
    let (clause, mut binds) = filter.clause();
    let mut next = || {
        binds += 1;
        format!("${binds}")
    };
    let keyset = match after {
        true => format!(" AND (created_at, id) < ({}, {})", next(), next()),
        false => String::new(),
    };
    format!(
        "SELECT {} FROM workflows WHERE {clause}{keyset}
         ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {}",
        columns!(),
        next(),
        next()
    )
}

fn count_sql(filter: &ListFilter<'_>) -> String {
    format!("SELECT count(*) FROM workflows WHERE {}", filter.clause().0)
}

/// Every shape of the statements built per filter (no filter; every
/// filter with a cursor).
pub(crate) fn built() -> Vec<super::check::Statement> {
    let every = ListFilter {
        created_by: Some("x"),
        name: Some("x"),
    };
    let mut built = Vec::new();
    for (shape, filter, after) in [
        ("no filter", &ListFilter::default(), false),
        ("every filter, a cursor", &every, true),
    ] {
        built.push(super::check::Statement {
            name: format!("workflows::list_sql({shape})").into(),
            sql: list_sql(filter, after).into(),
            reads: Some(|row| <Workflow as sqlx::FromRow<_>>::from_row(row).map(drop)),
        });
        built.push(super::check::Statement {
            name: format!("workflows::count_sql({shape})").into(),
            sql: count_sql(filter).into(),
            reads: None,
        });
    }
    built
}

/// The live workflows `filter` matches, newest first: after `after` when
/// given (keyset paging), at most `limit`, past the first `offset`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    filter: &ListFilter<'_>,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Workflow>, sqlx::Error> {
    let sql = list_sql(filter, after.is_some());
    let mut page = sqlx::query_as::<_, Workflow>(&sql);
    if let Some(owner) = filter.created_by {
        page = page.bind(owner);
    }
    if let Some(name) = filter.name {
        page = page.bind(name);
    }
    if let Some(c) = after {
        page = page.bind(c.created_at).bind(c.id);
    }
    page.bind(limit).bind(offset).fetch_all(db).await
}

/// How many live workflows `filter` matches.
pub(crate) async fn count(
    db: impl PgExecutor<'_>,
    filter: &ListFilter<'_>,
) -> Result<i64, sqlx::Error> {
    let sql = count_sql(filter);
    let mut count = sqlx::query_scalar::<_, i64>(&sql);
    if let Some(owner) = filter.created_by {
        count = count.bind(owner);
    }
    if let Some(name) = filter.name {
        count = count.bind(name);
    }
    count.fetch_one(db).await
}

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM workflows WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral"
);

/// The live workflow, at its latest version.
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Workflow>, sqlx::Error> {
    sqlx::query_as(GET).bind(id).fetch_optional(db).await
}

const GET_VERSION: &str = "SELECT w.id, w.name, v.version, w.status, w.created_by,
           v.dag->>'description' AS description, w.created_at, w.updated_at,
           jsonb_array_length(v.dag->'steps') AS step_count, v.dag
    FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id
    WHERE w.id = $1 AND w.deleted_at IS NULL AND NOT w.ephemeral AND v.version = $2";

/// The live workflow as it was at `version`: that version's DAG, and the
/// description and step count read from it.
pub(crate) async fn get_version(
    db: impl PgExecutor<'_>,
    id: Uuid,
    version: i32,
) -> Result<Option<Workflow>, sqlx::Error> {
    sqlx::query_as(GET_VERSION)
        .bind(id)
        .bind(version)
        .fetch_optional(db)
        .await
}

const LIVE_VERSION: &str =
    "SELECT version, status FROM workflows WHERE id = $1 AND deleted_at IS NULL";

/// The current version and status of a workflow that is not deleted (an
/// ephemeral one too: the engine runs those).
pub(crate) async fn live_version(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(i32, String)>, sqlx::Error> {
    sqlx::query_as(LIVE_VERSION)
        .bind(id)
        .fetch_optional(db)
        .await
}

const DAG: &str = "SELECT dag FROM workflow_versions WHERE workflow_id = $1 AND version = $2";

/// The DAG document of one workflow version (any workflow, deleted or
/// not: its executions still run); `RowNotFound` when there is none.
pub(crate) async fn dag(
    db: impl PgExecutor<'_>,
    id: Uuid,
    version: i32,
) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(DAG)
        .bind(id)
        .bind(version)
        .fetch_one(db)
        .await
}

/// The live workflow's row, locked for a new version.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Current {
    pub version: i32,
    pub created_by: Option<String>,
}

const LOCK_FOR_UPDATE: &str = "SELECT version, created_by FROM workflows WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral FOR UPDATE";

pub(crate) async fn lock_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Current>, sqlx::Error> {
    sqlx::query_as(LOCK_FOR_UPDATE)
        .bind(id)
        .fetch_optional(db)
        .await
}

const UPDATE: &str = concat!(
    "UPDATE workflows SET name = $2, created_by = $3, description = $4, dag = $5, step_count = $6,
                version = $7, status = 'active', updated_at = now()
         WHERE id = $1 RETURNING ",
    columns!()
);

/// Store `version` of the workflow (and make it `active`). Its
/// `workflow_versions` row is [`super::pipelines::insert_version`], in the
/// same transaction.
///
/// A name its owner already uses violates [`LIVE_NAME`].
pub(crate) async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    version: i32,
    f: &Fields<'_>,
) -> Result<Workflow, sqlx::Error> {
    with_fields(sqlx::query_as(UPDATE).bind(id), f, version)
        .fetch_one(db)
        .await
}

const DELETE: &str = "UPDATE workflows SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral";

/// Soft-delete a live workflow (its executions stay readable); whether
/// there was one.
pub(crate) async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(DELETE)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(done != 0)
}

super::check::statements!(
    INSERT => Workflow,
    GET => Workflow,
    UPDATE => Workflow,
    GET_VERSION => Workflow,
    LIVE_VERSION => (i32, String),
    DAG,
    LOCK_FOR_UPDATE => Current,
    DELETE,
);
