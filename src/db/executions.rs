//! Executions as the API reads them: the execution document (one
//! statement, one snapshot, with its steps), and the filtered, paged list
//! with its count. Then the engine's statements on these rows outside a
//! transition: recording an execution, the idempotency lookups, the
//! sweeper's due timers, quarantine and retention.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::paging::Cursor;
use crate::engine::control::Started;
use crate::engine::model::ExecutionRow;

/// The columns of [`ExecutionRow`] (the engine's, not this module's view,
/// [`EXEC_COLUMNS`]), with the transaction's clock.
macro_rules! row_columns {
    () => {
        "id, workflow_id, workflow_version, status, parameters, outputs, error, callback_topics,
    subscriber_ids, payload_type, notification_workflow_id, total_steps, deadline_at, started_at, completed_at, trace_id,
    timed_out, revision, now() AS now"
    };
}

/// How a transition locks its execution's row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Locking {
    /// `FOR NO KEY UPDATE`: wait for the lock.
    Wait,
    /// `FOR NO KEY UPDATE SKIP LOCKED`: no row when another holds it.
    SkipLocked,
}

const LOCK_ROW: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM executions WHERE id = $1 FOR NO KEY UPDATE"
);

const LOCK_ROW_SKIP_LOCKED: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM executions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED"
);

const LOCK_ROWS: &str = concat!(
    "SELECT ",
    row_columns!(),
    " FROM executions WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"
);

/// The rows of many executions, locked in id order (the order every
/// transaction that holds more than one takes them in, so two never wait
/// on each other in a cycle). Executions that do not exist are left out.
pub(crate) async fn lock_rows(
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<ExecutionRow>, sqlx::Error> {
    sqlx::query_as(LOCK_ROWS).bind(ids).fetch_all(tx).await
}

/// The execution's row, locked as `locking` says: a transition starts here.
pub(crate) async fn lock_row(
    tx: &mut PgConnection,
    execution_id: Uuid,
    locking: Locking,
) -> Result<Option<ExecutionRow>, sqlx::Error> {
    let query = match locking {
        Locking::Wait => sqlx::query_as(LOCK_ROW),
        Locking::SkipLocked => sqlx::query_as(LOCK_ROW_SKIP_LOCKED),
    };
    query.bind(execution_id).fetch_optional(tx).await
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct StepView {
    pub step_id: String,
    pub name: String,
    pub action: String,
    pub status: String,
    pub awaiting_event: bool,
    pub external_workflow_id: Option<String>,
    pub attempt: i32,
    #[schema(value_type = Object)]
    pub outputs: Value,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Attempts in a row that ended with their replica dying (shown when
    /// not 0; at `STEP_CRASH_LIMIT` the step fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crashes: Option<i32>,
    /// The latest stage a long operation reported while the step waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub stage: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub timeout_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub(crate) struct ExecutionView {
    #[sqlx(rename = "id")]
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub status: String,
    #[schema(value_type = Object)]
    pub parameters: Value,
    #[schema(value_type = Object)]
    pub outputs: Value,
    pub error: Option<String>,
    pub progress_percentage: f64,
    pub callback_topics: Vec<String>,
    pub initiator: String,
    pub subscriber_ids: Option<String>,
    pub payload_type: Option<String>,
    pub notification_workflow_id: Option<String>,
    /// The pipeline's name (what budadmin shows).
    pub workflow_name: Option<String>,
    /// `parameters` under the original's name (what budadmin reads).
    #[schema(value_type = Object)]
    pub params: Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
}

/// An execution's columns, its progress computed by `$progress`.
macro_rules! exec_columns {
    ($progress:expr) => {
        concat!(
            "id, workflow_id, workflow_version, status, parameters, outputs, error, ",
            $progress,
            " AS progress_percentage,
    callback_topics, initiator, subscriber_ids, payload_type, notification_workflow_id,
    (SELECT w.name FROM workflows w WHERE w.id = workflow_id) AS workflow_name, parameters AS params,
    created_at, started_at, completed_at"
        )
    };
}

/// Progress counted from the steps: for one execution, whose steps are read anyway.
macro_rules! counted_progress {
    () => {
        "(SELECT CASE WHEN count(*) = 0 THEN 100.0::float8
                 ELSE 100.0::float8 * count(*) FILTER (WHERE st.status NOT IN ('PENDING', 'RUNNING')) / count(*) END
     FROM step_executions st WHERE st.execution_id = id)"
    };
}

/// Progress from the count kept on the execution row: for lists, where
/// counting every listed execution's steps grows with the DAGs' size.
macro_rules! kept_progress {
    () => {
        "(CASE WHEN total_steps = 0 THEN 100.0::float8
               ELSE 100.0::float8 * LEAST(finished_steps, total_steps) / total_steps END)"
    };
}

macro_rules! step_view {
    () => {
        "step_id, name, action, status, awaiting_event, external_workflow_id, attempt,
    COALESCE(outputs, '{}'::jsonb) AS outputs, error, skip_reason,
    CASE WHEN status = 'PENDING' AND error IS NOT NULL THEN available_at END AS next_attempt_at,
    progress, NULLIF(crashes, 0) AS crashes, stage, started_at, completed_at, timeout_at"
    };
}

const VIEW: &str = concat!(
    "SELECT ",
    exec_columns!(counted_progress!()),
    ", (SELECT COALESCE(json_agg(s ORDER BY s.position), '[]')
        FROM (SELECT position, ",
    step_view!(),
    " FROM step_executions WHERE execution_id = e.id) s) AS steps
     FROM executions e WHERE id = $1"
);

/// The execution with its steps (in the DAG's declaration order), if there
/// is one.
pub(crate) async fn view(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ExecutionView>, sqlx::Error> {
    // ONE statement, so the execution and its steps are one snapshot (two
    // queries could show a COMPLETED execution with steps still running, or
    // a progress that disagrees with the steps).
    let Some(row) = sqlx::query(VIEW).bind(id).fetch_optional(db).await? else {
        return Ok(None);
    };
    let mut exec = ExecutionView::from_row(&row)?;
    let steps: sqlx::types::Json<Vec<StepView>> = row.try_get("steps")?;
    exec.steps = Some(steps.0);
    Ok(Some(exec))
}

/// What [`document`] reads.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Document {
    pub status: String,
    /// The fingerprint of the execution's rows.
    pub fingerprint: String,
    /// [`ExecutionView`] with its steps, as JSON text; `None` when the
    /// fingerprint was the one the caller gave.
    pub document: Option<String>,
}

/// The execution's document (`EXECUTION_JSON`), left out when its
/// fingerprint equals `known`, the one of the copy the caller holds;
/// `None` when there is no such execution.
pub(crate) async fn document(
    db: impl PgExecutor<'_>,
    id: Uuid,
    known: Option<&str>,
) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as(EXECUTION_JSON.as_str())
        .bind(id)
        .bind(known)
        .fetch_optional(db)
        .await
}

/// The execution's status, the fingerprint of its rows (each row's `xmin`:
/// an update always writes a new one), and `ExecutionView` with its steps as
/// JSON text, left out (NULL) when the fingerprint equals `$2`, the one of
/// the copy the caller holds. One statement, so all three agree.
///
/// The document must read exactly like the ones serde writes on the other
/// routes: `TS(x)` renders a timestamp as chrono serializes a
/// `DateTime<Utc>` (see [`timestamp_sql`]), `FLOAT(x)` a float8 as serde
/// writes an `f64` (`100.0`, not Postgres' `100`).
static EXECUTION_JSON: LazyLock<String> = LazyLock::new(|| {
    expand_sql(
        r#"
WITH e AS (
    SELECT e.*, e.xmin::text || ':' || COALESCE((
        SELECT string_agg(s.xmin::text, ',' ORDER BY s.position)
        FROM step_executions s WHERE s.execution_id = e.id), '') AS fingerprint
    FROM executions e WHERE e.id = $1
)
SELECT e.status, e.fingerprint, CASE WHEN e.fingerprint IS DISTINCT FROM $2 THEN json_build_object(
    'execution_id', e.id, 'workflow_id', e.workflow_id, 'workflow_version', e.workflow_version,
    'status', e.status, 'parameters', e.parameters, 'outputs', e.outputs, 'error', e.error,
    'progress_percentage', FLOAT((SELECT CASE WHEN count(*) = 0 THEN 100.0::float8
                 ELSE 100.0::float8 * count(*) FILTER (WHERE st.status NOT IN ('PENDING', 'RUNNING')) / count(*) END
     FROM step_executions st WHERE st.execution_id = e.id)),
    'callback_topics', e.callback_topics, 'initiator', e.initiator, 'subscriber_ids', e.subscriber_ids,
    'payload_type', e.payload_type, 'notification_workflow_id', e.notification_workflow_id,
    'workflow_name', (SELECT w.name FROM workflows w WHERE w.id = e.workflow_id), 'params', e.parameters,
    'created_at', TS(e.created_at), 'started_at', TS(e.started_at), 'completed_at', TS(e.completed_at),
    'steps', COALESCE((
        SELECT json_agg(
            jsonb_build_object(
                'step_id', s.step_id, 'name', s.name, 'action', s.action, 'status', s.status,
                'awaiting_event', s.awaiting_event, 'external_workflow_id', s.external_workflow_id,
                'attempt', s.attempt, 'outputs', COALESCE(s.outputs, '{}'::jsonb), 'error', s.error,
                'started_at', TS(s.started_at), 'completed_at', TS(s.completed_at), 'timeout_at', TS(s.timeout_at))
            || jsonb_strip_nulls(jsonb_build_object(
                'skip_reason', s.skip_reason,
                'progress', FLOAT(s.progress),
                'stage', s.stage,
                'crashes', NULLIF(s.crashes, 0),
                'next_attempt_at', TS(CASE WHEN s.status = 'PENDING' AND s.error IS NOT NULL
                                        THEN s.available_at END)))
            ORDER BY s.position)
        FROM step_executions s WHERE s.execution_id = e.id), '[]'::json)
)::text END AS document
FROM e"#,
    )
});

/// Replaces each `TS(expr)` with [`timestamp_sql`] and each `FLOAT(expr)`
/// with [`float_sql`] (`expr` may hold balanced parentheses).
fn expand_sql(template: &str) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    loop {
        let next = [
            ("TS(", timestamp_sql as fn(&str) -> String),
            ("FLOAT(", float_sql),
        ]
        .into_iter()
        .filter_map(|(tag, f)| rest.find(tag).map(|at| (at, tag, f)))
        .min_by_key(|(at, _, _)| *at);
        let Some((at, tag, render)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let inner_start = at + tag.len();
        let mut depth = 1;
        let mut end = inner_start;
        for (i, c) in rest[inner_start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = inner_start + i;
                break;
            }
        }
        out.push_str(&render(&rest[inner_start..end]));
        rest = &rest[end + 1..];
    }
}

/// SQL text for a `timestamptz` rendered as chrono serializes a
/// `DateTime<Utc>` (RFC 3339 in UTC with `Z`; fractional seconds left out
/// when zero, else 3 digits when whole milliseconds, else 6), so every route
/// shows one format. NULL stays NULL.
pub(crate) fn timestamp_sql(expr: &str) -> String {
    let micros = format!("(extract(microseconds FROM ({expr}))::bigint % 1000000)");
    format!(
        "(to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || \
         CASE WHEN {micros} = 0 THEN '' \
              WHEN {micros} % 1000 = 0 THEN '.' || lpad(({micros} / 1000)::text, 3, '0') \
              ELSE '.' || lpad({micros}::text, 6, '0') END || 'Z')"
    )
}

/// SQL JSON for a float8 written as serde writes an `f64`: a whole number
/// keeps its `.0`. (Both print the shortest digits that read back exactly;
/// the values here, percentages, never need an exponent.)
pub(crate) fn float_sql(expr: &str) -> String {
    format!(
        "(SELECT CASE WHEN v = trunc(v) AND abs(v) < 1e15 THEN (trunc(v)::bigint::text || '.0')::json \
                     ELSE to_json(v) END FROM (SELECT ({expr})::float8 AS v) f)"
    )
}

/// Add `value` to `args` and answer its placeholder (`$n`).
fn arg<'q, T>(args: &mut PgArguments, value: T) -> Result<String, sqlx::Error>
where
    T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    args.add(value).map_err(sqlx::Error::Encode)?;
    Ok(format!("${}", args.len()))
}

/// `GET /executions`' filter. Its SQL holds only the conditions asked for,
/// so that each combination is its own statement, planned for its own
/// index (migrations/20261216000001): one statement with `$1 IS NULL OR …`
/// for every filter may be given a generic plan that serves all of them
/// with a scan of history.
#[derive(Debug)]
pub(crate) struct ListFilter<'a> {
    pub workflow_id: Option<Uuid>,
    pub status: Option<&'static str>,
    pub initiator: Option<&'a str>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl ListFilter<'_> {
    /// The WHERE clause and its values; with `after`, only the rows that
    /// come after that cursor (older, in the list's order).
    fn to_sql(&self, after: Option<&Cursor>) -> Result<(String, PgArguments), sqlx::Error> {
        let mut args = PgArguments::default();
        let mut clauses = vec!["TRUE".to_owned()];
        if let Some(id) = self.workflow_id {
            clauses.push(format!("workflow_id = {}", arg(&mut args, id)?));
        }
        if let Some(status) = self.status {
            clauses.push(format!("status = {}", arg(&mut args, status)?));
        }
        if let Some(initiator) = self.initiator {
            clauses.push(format!(
                "initiator = {}",
                arg(&mut args, initiator.to_owned())?
            ));
        }
        if let Some(start) = self.start {
            clauses.push(format!("created_at >= {}", arg(&mut args, start)?));
        }
        if let Some(end) = self.end {
            clauses.push(format!("created_at <= {}", arg(&mut args, end)?));
        }
        if let Some(c) = after {
            let at = arg(&mut args, c.created_at)?;
            let id = arg(&mut args, c.id)?;
            clauses.push(format!("(created_at, id) < ({at}, {id})"));
        }
        Ok((clauses.join(" AND "), args))
    }
}

/// A page of the executions a WHERE clause matches: `take` and `skip` are
/// its LIMIT and OFFSET.
fn list_sql(clause: &str, take: &str, skip: &str) -> String {
    format!(
        "SELECT {} FROM executions
         WHERE id = ANY(ARRAY(SELECT id FROM executions WHERE {clause}
                              ORDER BY created_at DESC, id DESC LIMIT {take} OFFSET {skip}))
         ORDER BY created_at DESC, id DESC",
        exec_columns!(kept_progress!())
    )
}

fn count_sql(clause: &str, cap: i64) -> String {
    format!("SELECT count(*) FROM (SELECT 1 FROM executions WHERE {clause} LIMIT {cap}) capped")
}

fn estimate_sql(clause: &str) -> String {
    format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM executions WHERE {clause}")
}

/// Every shape of the statements built per filter (no filter; every
/// filter with a cursor), and the execution document.
pub(crate) fn built() -> Vec<super::check::Statement> {
    let none = ListFilter {
        workflow_id: None,
        status: None,
        initiator: None,
        start: None,
        end: None,
    };
    let every = ListFilter {
        workflow_id: Some(Uuid::nil()),
        status: Some("RUNNING"),
        initiator: Some("x"),
        start: Some(DateTime::UNIX_EPOCH),
        end: Some(DateTime::UNIX_EPOCH),
    };
    let cursor = Cursor {
        created_at: DateTime::UNIX_EPOCH,
        id: Uuid::nil(),
    };
    let mut built = vec![super::check::Statement {
        name: "executions::EXECUTION_JSON".into(),
        sql: EXECUTION_JSON.as_str().into(),
        reads: Some(|row| Document::from_row(row).map(drop)),
    }];
    for (shape, filter, after) in [
        ("no filter", &none, None),
        ("every filter, a cursor", &every, Some(&cursor)),
    ] {
        let (clause, args) = filter.to_sql(after).expect("sample values encode");
        let n = args.len();
        let (take, skip) = (format!("${}", n + 1), format!("${}", n + 2));
        for (name, sql) in [
            ("list_sql", list_sql(&clause, &take, &skip)),
            ("count_sql", count_sql(&clause, 1000)),
            ("estimate_sql", estimate_sql(&clause)),
        ] {
            built.push(super::check::Statement {
                name: format!("executions::{name}({shape})").into(),
                sql: sql.into(),
                reads: (name == "list_sql").then_some(|row| ExecutionView::from_row(row).map(drop)),
            });
        }
    }
    built
}

/// The executions `filter` matches (without their steps), newest first:
/// after `after` when given (keyset paging), at most `limit`, past the
/// first `offset`.
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    filter: &ListFilter<'_>,
    after: Option<&Cursor>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ExecutionView>, sqlx::Error> {
    let (clause, mut args) = filter.to_sql(after)?;
    let take = arg(&mut args, limit)?;
    let skip = arg(&mut args, offset)?;
    // The page's ids first, from the index alone, then their columns: an
    // OFFSET passes over index entries, not over rows whose progress and
    // workflow name would be computed only to be thrown away.
    sqlx::query_as_with::<_, ExecutionView, _>(&list_sql(&clause, &take, &skip), args)
        .fetch_all(db)
        .await
}

/// How many executions `filter` matches, counting no further than
/// `cap` (an index-only scan that stops there).
pub(crate) async fn count_capped(
    db: impl PgExecutor<'_>,
    filter: &ListFilter<'_>,
    cap: i64,
) -> Result<i64, sqlx::Error> {
    let (clause, args) = filter.to_sql(None)?;
    sqlx::query_scalar_with(&count_sql(&clause, cap), args)
        .fetch_one(db)
        .await
}

/// Postgres' estimate of how many executions `filter` matches (the
/// planner's row count; 0 if the plan does not say).
pub(crate) async fn estimate(
    db: impl PgExecutor<'_>,
    filter: &ListFilter<'_>,
) -> Result<i64, sqlx::Error> {
    let (clause, args) = filter.to_sql(None)?;
    let plan: Value = sqlx::query_scalar_with(&estimate_sql(&clause), args)
        .fetch_one(db)
        .await?;
    Ok(plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(Value::as_f64)
        .unwrap_or(0.0) as i64)
}

// The engine's statements on executions outside a transition (what a
// transition reads and writes back is `crate::engine::transition`'s).

/// An execution row as its INSERT returned it.
#[derive(sqlx::FromRow)]
pub(crate) struct Inserted {
    #[sqlx(flatten)]
    pub exec: ExecutionRow,
    pub created_at: DateTime<Utc>,
}

/// What [`insert`] writes (its steps are [`super::steps::insert`]).
pub(crate) struct NewRow<'a> {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub parameters: Value,
    pub callback_topics: &'a [String],
    pub initiator: &'a str,
    pub subscriber_ids: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub total_steps: i32,
    /// Seconds from now to the execution's deadline.
    pub timeout_seconds: f64,
    /// The caller's trace; the execution id (without dashes) when `None`.
    pub trace_id: Option<&'a str>,
    pub payload_type: Option<&'a str>,
    pub notification_workflow_id: Option<&'a str>,
}

const INSERT: &str = concat!("INSERT INTO executions (id, workflow_id, workflow_version, status, parameters, callback_topics,
                                 initiator, subscriber_ids, idempotency_key, request_hash, total_steps,
                                 started_at, deadline_at, trace_id, payload_type, notification_workflow_id)
         VALUES ($1, $2, $3, 'RUNNING', $4, $5, $6, $7, $8, $9, $10, now(), now() + make_interval(secs => $11),
                 COALESCE($12, replace($1::uuid::text, '-', '')), $13, $14)
         ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ", row_columns!(), ", created_at");

/// Insert a RUNNING execution; `None` when its idempotency key is taken
/// (nothing was written). The new row comes back from the INSERT itself:
/// nobody else can see it before the commit, so there is nothing to lock
/// or re-read.
pub(crate) async fn insert(
    tx: &mut PgConnection,
    row: &NewRow<'_>,
) -> Result<Option<Inserted>, sqlx::Error> {
    sqlx::query_as(INSERT)
        .bind(row.id)
        .bind(row.workflow_id)
        .bind(row.workflow_version)
        .bind(&row.parameters)
        .bind(row.callback_topics)
        .bind(row.initiator)
        .bind(row.subscriber_ids)
        .bind(row.idempotency_key)
        .bind(row.request_hash)
        .bind(row.total_steps)
        .bind(row.timeout_seconds)
        .bind(row.trace_id)
        .bind(row.payload_type)
        .bind(row.notification_workflow_id)
        .fetch_optional(tx)
        .await
}

const FIND_BY_KEY: &str =
    "SELECT id, request_hash FROM executions WHERE workflow_id = $1 AND idempotency_key = $2";

/// The execution of `workflow_id` recorded under idempotency key `key`:
/// its id and the digest of the request that created it.
pub(crate) async fn find_by_key(
    db: impl PgExecutor<'_>,
    workflow_id: Uuid,
    key: &str,
) -> Result<Option<(Uuid, Option<String>)>, sqlx::Error> {
    sqlx::query_as(FIND_BY_KEY)
        .bind(workflow_id)
        .bind(key)
        .fetch_optional(db)
        .await
}

const STARTED: &str =
    "SELECT id AS execution_id, workflow_id, workflow_version, 'RUNNING' AS status, created_at
         FROM executions WHERE id = $1";

/// The acceptance answer. Its status is the one the execution was
/// accepted with, so a repeated request gets the original answer even
/// when the execution has moved on since.
pub(crate) async fn started(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Started>, sqlx::Error> {
    sqlx::query_as(STARTED).bind(id).fetch_optional(db).await
}

const DUE: &str = "SELECT execution_id FROM step_executions
     WHERE status = 'RUNNING' AND NOT awaiting_event AND lease_expires_at < now()
    UNION
    SELECT execution_id FROM step_executions
     WHERE status = 'RUNNING' AND awaiting_event AND timeout_at < now()
    UNION
    SELECT id FROM executions WHERE status = 'RUNNING' AND deadline_at < now()
    LIMIT 500";

/// Executions with a timer due (at most 500): a step whose lease expired,
/// a waiting step past its timeout, an execution past its deadline.
pub(crate) async fn due(db: impl PgExecutor<'_>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(DUE).fetch_all(db).await
}

const FAIL_UNREAD: &str = "WITH steps AS (
        UPDATE step_executions SET status = 'FAILED', error = COALESCE(error, $2),
               awaiting_event = false, lease_owner = NULL, lease_expires_at = NULL,
               available_at = NULL, timeout_at = NULL, completed_at = now()
        WHERE execution_id = $1
          AND status NOT IN ('COMPLETED', 'FAILED', 'SKIPPED', 'TIMEOUT', 'CANCELLED')
        RETURNING 1
    )
    UPDATE executions SET status = 'FAILED', error = $2, completed_at = now(), deadline_at = NULL,
           revision = revision + 1, finished_steps = total_steps
    WHERE id = $1 AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')";

/// Fail an execution and its unfinished steps with `error`, without
/// reading them (they cannot be read back).
pub(crate) async fn fail_unread(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(FAIL_UNREAD)
        .bind(id)
        .bind(error)
        .execute(db)
        .await
        .map(|_| ())
}

const DELETE_FINISHED: &str = "WITH gone AS (
        SELECT id FROM executions
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
          AND completed_at < now() - make_interval(days => $1::int)
        ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED
    ), steps AS (
        DELETE FROM step_executions WHERE execution_id IN (SELECT id FROM gone)
    ), attempts AS (
        DELETE FROM step_attempts WHERE execution_id IN (SELECT id FROM gone)
    )
    DELETE FROM executions WHERE id IN (SELECT id FROM gone)";

/// Delete up to `limit` executions finished more than `days` ago (their
/// steps and attempts with them, in the same statement). Returns how many.
///
/// Oldest first, along the `executions_finished` index; rows another
/// transaction holds are left for the next batch.
pub(crate) async fn delete_finished(
    db: impl PgExecutor<'_>,
    days: i32,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(DELETE_FINISHED)
        .bind(days)
        .bind(limit)
        .execute(db)
        .await?
        .rows_affected())
}

const CLAIM_INFOS: &str = "SELECT id, workflow_id, workflow_version, parameters, callback_topics, subscriber_ids, trace_id,
           payload_type, notification_workflow_id
    FROM executions WHERE id = ANY($1)";

/// What a batch claim needs of the executions it claimed from, as raw
/// rows: the caller decodes them one by one, so an unreadable row fails only
/// its own execution.
pub(crate) async fn claim_infos(
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    sqlx::query(CLAIM_INFOS).bind(ids).fetch_all(tx).await
}

super::check::statements!(
    VIEW,
    LOCK_ROW => ExecutionRow,
    LOCK_ROW_SKIP_LOCKED => ExecutionRow,
    LOCK_ROWS => ExecutionRow,
    INSERT => Inserted,
    FIND_BY_KEY => (Uuid, Option<String>),
    STARTED => Started,
    DUE,
    FAIL_UNREAD,
    DELETE_FINISHED,
    CLAIM_INFOS,
);
