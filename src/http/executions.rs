//! Executions: start, read, cancel, retry.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppQuery, Id, OptionalJson, page_bounds};
use super::paging::{Cursor, cursor_alone, split_page};
use crate::db::executions::{self as db, ListFilter};
pub(crate) use crate::db::executions::{ExecutionView, StepView};
use crate::engine::control::{ControlError, NewExecution, StartOutcome, Started};
use crate::engine::model::ExecutionStatus;
use crate::engine::outbox::{MAX_TOPIC_CHARS, valid_topic};

/// Every field is optional; unknown fields are ignored so that callers can
/// send more than this version reads.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct ExecuteRequest {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub callback_topics: Vec<String>,
    pub initiator: Option<String>,
    pub subscriber_ids: Option<String>,
    /// `payload.type` of every event published for this execution (budapp's
    /// guardrail flows dispatch on it); default `pipeline_execution`.
    pub payload_type: Option<String>,
    /// `payload.workflow_id` of every event published for this execution
    /// (the caller's own workflow); default the execution id.
    pub notification_workflow_id: Option<String>,
}

/// Longest `payload_type` / `notification_workflow_id` accepted.
const MAX_ROUTE_CHARS: usize = 255;

/// `payload_type` and `notification_workflow_id` end up in every published
/// event and in Postgres text: bounded, and without control characters.
fn route_problems(body: &ExecuteRequest) -> Vec<String> {
    [
        ("payload_type", &body.payload_type),
        ("notification_workflow_id", &body.notification_workflow_id),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let value = value.as_deref()?;
        if value.chars().count() > MAX_ROUTE_CHARS {
            Some(format!("{name}: at most {MAX_ROUTE_CHARS} characters"))
        } else if value.chars().any(char::is_control) {
            Some(format!("{name}: must not contain control characters"))
        } else {
            None
        }
    })
    .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ExecuteResponse {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<Started> for ExecuteResponse {
    fn from(s: Started) -> Self {
        Self {
            execution_id: s.execution_id,
            workflow_id: s.workflow_id,
            workflow_version: s.workflow_version,
            status: s.status,
            created_at: s.created_at,
        }
    }
}

/// Most callback topics one execution may name (API.md).
pub(crate) const MAX_TOPICS: usize = 32;
/// Start an execution of a workflow.
///
/// Answers as soon as the execution is stored; the steps run in the
/// background. Read its progress with `GET /executions/{id}`.
#[utoipa::path(post, path = "/workflows/{id}/execute", request_body = ExecuteRequest, tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 202, body = ExecuteResponse), (status = 200, body = ExecuteResponse, description = "repeated Idempotency-Key"),
              (status = 404, description = "unknown or deleted workflow"), (status = 409, description = "key reused with another body"),
              (status = 422, description = "invalid parameters or topics")))]
pub(crate) async fn execute(
    State(state): State<AppState>,
    Id(workflow_id): Id,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<ExecuteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let new = new_execution(workflow_id, body, &headers)?;
    match start_traced(&state, new).await? {
        StartOutcome::Created(s) => Ok((StatusCode::ACCEPTED, Json(ExecuteResponse::from(s)))),
        StartOutcome::Repeated(s) => Ok((StatusCode::OK, Json(ExecuteResponse::from(s)))),
    }
}

/// Start an execution and, when it is new, export its `execution` span
/// (the parent of every later span of the execution, on any replica).
pub(super) async fn start_traced(
    state: &AppState,
    new: NewExecution,
) -> Result<StartOutcome, ControlError> {
    let received = std::time::SystemTime::now();
    let trace_id = new.trace_id.clone();
    let outcome = state.engine.start(new).await?;
    if let StartOutcome::Created(s) = &outcome {
        // Stored as `trace_id` when no traceparent came (control.rs).
        let trace = trace_id.unwrap_or_else(|| s.execution_id.simple().to_string());
        crate::telemetry::record_execution(s.execution_id, s.workflow_id, &trace, received);
    }
    Ok(outcome)
}

/// Check an execute request and turn it into what the engine records: the
/// same rules for `POST /workflows/{id}/execute` and the original's
/// `POST /executions` / `POST /executions/run`.
pub(super) fn new_execution(
    workflow_id: Uuid,
    body: ExecuteRequest,
    headers: &HeaderMap,
) -> Result<NewExecution, ApiError> {
    let mut bad: Vec<String> = body
        .callback_topics
        .iter()
        .filter(|t| !valid_topic(t))
        .map(|t| {
            if t.len() > MAX_TOPIC_CHARS {
                let head: String = t.chars().take(40).collect();
                format!("callback_topics: '{head}…' is longer than {MAX_TOPIC_CHARS} characters")
            } else {
                format!("callback_topics: '{t}' must match ^[A-Za-z][A-Za-z0-9._-]*$")
            }
        })
        .take(10)
        .collect();
    let distinct: std::collections::HashSet<&String> = body.callback_topics.iter().collect();
    if distinct.len() > MAX_TOPICS {
        bad.insert(
            0,
            format!(
                "callback_topics: at most {MAX_TOPICS} topics, not {}",
                distinct.len()
            ),
        );
    }
    if !bad.is_empty() {
        return Err(ApiError::invalid_with("invalid callback topics", bad));
    }
    let bad = route_problems(&body);
    if !bad.is_empty() {
        return Err(ApiError::invalid_with("invalid event routing", bad));
    }
    let mut topics: Vec<String> = Vec::new();
    for t in &body.callback_topics {
        if !topics.contains(t) {
            topics.push(t.clone());
        }
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
            _ => {
                return Err(ApiError::bad_request(
                    "Idempotency-Key: must be 1 to 255 visible ASCII characters",
                ));
            }
        },
    };
    let hash = hex(&Sha256::digest(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    let new = NewExecution {
        workflow_id,
        parameters: body.parameters,
        callback_topics: topics,
        initiator: body.initiator.unwrap_or_else(|| "api".into()),
        subscriber_ids: body.subscriber_ids,
        payload_type: body.payload_type.filter(|s| !s.is_empty()),
        notification_workflow_id: body.notification_workflow_id.filter(|s| !s.is_empty()),
        idempotency_key: key,
        request_hash: hash,
        trace_id: trace_id(headers),
    };
    Ok(new)
}

/// The caller's trace: the trace id of a well-formed `traceparent` header.
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::engine::model::trace_id_of)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The execution with its steps, or a 404.
pub(super) async fn load(state: &AppState, id: Uuid) -> Result<ExecutionView, ApiError> {
    db::view(state.engine.pool(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))
}

/// Read an execution with the state of each of its steps.
#[utoipa::path(get, path = "/executions/{id}", tag = "executions",
    params(("id" = Uuid, Path, description = "execution id")),
    responses((status = 200, body = ExecutionView), (status = 404, description = "unknown execution")))]
pub(crate) async fn get(State(state): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    // The hottest read (budapp polls it); see `cache` for what is kept and
    // `coalesce` for how concurrent reads of one execution share a query.
    // The document is built by Postgres in one query (one consistent
    // snapshot) and the bytes go out untouched. Same shape as ExecutionView.
    let json = [(header::CONTENT_TYPE, "application/json")];
    if let Some(body) = state.reads.get_final(&id) {
        return Ok((json, body).into_response());
    }
    let body = state
        .read_flights
        .run(id, || document(&state, id))
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    Ok((json, body).into_response())
}

/// The execution's document, built by Postgres unless the copy in the
/// cache is still current; `None` when there is no such execution.
async fn document(state: &AppState, id: Uuid) -> Result<Option<axum::body::Bytes>, ApiError> {
    let known = state.reads.get_checked(&id);
    let row = db::document(
        state.engine.pool(),
        id,
        known.as_ref().map(|(fingerprint, _)| fingerprint.as_str()),
    )
    .await?;
    let Some(db::Document {
        status,
        fingerprint,
        document: fresh,
    }) = row
    else {
        return Ok(None);
    };
    let body = match (fresh, known) {
        (Some(text), _) => axum::body::Bytes::from(text),
        // Postgres left the document out: the fingerprint we sent matched.
        (None, Some((_, body))) => return Ok(Some(body)),
        // Unreachable: without a copy we send NULL, which never matches.
        (None, None) => {
            return Err(ApiError::Internal(
                "the execution document could not be built".into(),
            ));
        }
    };
    if status == ExecutionStatus::Completed.as_str() {
        state.reads.put_final(id, body.clone());
    } else {
        state.reads.put_checked(id, fingerprint, body.clone());
    }
    Ok(Some(body))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StepList {
    pub steps: Vec<StepView>,
}

/// The steps of an execution, in the DAG's declaration order.
#[utoipa::path(get, path = "/executions/{id}/steps", tag = "executions",
    responses((status = 200, body = StepList), (status = 404, description = "unknown execution")))]
pub(crate) async fn steps(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<StepList>, ApiError> {
    let exec = load(&state, id).await?;
    Ok(Json(StepList {
        steps: exec.steps.unwrap_or_default(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only the executions of this workflow.
    pub workflow_id: Option<Uuid>,
    /// Only those in this state: PENDING, RUNNING, COMPLETED, FAILED or CANCELLED.
    pub status: Option<String>,
    /// Exactly this initiator.
    pub initiator: Option<String>,
    /// Created at or after this instant (RFC 3339, or a date).
    pub start_date: Option<String>,
    /// Created at or before this instant (RFC 3339, or a date: its whole day).
    pub end_date: Option<String>,
    /// How many, 1 to 1000 (default 20).
    pub limit: Option<i64>,
    /// How many to pass over first (default 0).
    pub offset: Option<i64>,
    /// The original's paging (1-based); wins over `limit` / `offset`.
    pub page: Option<i64>,
    /// 1 to 100, default 20.
    pub page_size: Option<i64>,
    /// The page after this one: the `next_cursor` of the previous page, as
    /// it came. Keyset paging: each page costs the same however deep, and
    /// rows inserted meanwhile never shift a row onto two pages. Not with
    /// `offset` or `page`; every filter applies.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Pagination {
    pub page: i64,
    pub page_size: i64,
    /// Exact while the filter matches up to [`EXACT_COUNT_LIMIT`]
    /// executions; above that Postgres' estimate for the filter (README,
    /// "Paging").
    pub total_count: i64,
    pub total_pages: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ExecutionList {
    pub executions: Vec<ExecutionView>,
    /// The same figure as `pagination.total_count`. Not on a page read
    /// with `cursor` (nothing is counted then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    pub limit: i64,
    /// Not on a page read with `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Not on a page read with `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Counting more matching rows than this scans history for a figure the
/// caller only shows: past it the planner's estimate is given instead.
pub(crate) const EXACT_COUNT_LIMIT: i64 = 10_000;

/// Totals from this size on are kept for a few seconds per filter: below
/// it, counting costs less than reading the page, and is done every time.
pub(crate) const CACHED_TOTAL_FROM: i64 = 1_000;

/// `start_date` / `end_date`: an RFC 3339 instant, or a date (its start, or
/// for an end, its end).
fn instant(name: &str, raw: &str, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        let t = if end {
            d.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = t {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::bad_request(format!(
        "{name}: must be an ISO 8601 date or date-time, e.g. 2026-12-05T10:00:00Z"
    )))
}

/// List executions, newest first (without their steps).
///
/// Three ways to page, combinable with every filter: `page` / `page_size`
/// (the original's), `limit` / `offset`, or `cursor` (each answer's
/// `next_cursor`), which costs the same on every page and is stable while
/// executions are added.
#[utoipa::path(get, path = "/executions", params(ListQuery), tag = "executions",
    responses((status = 200, body = ExecutionList), (status = 400, description = "bad filter or cursor")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<ExecutionList>, ApiError> {
    let cursor = Cursor::from_query(q.cursor.as_deref())?;
    cursor_alone(cursor.as_ref(), q.offset, q.page)?;
    let (limit, offset) = if q.page.is_some() || q.page_size.is_some() {
        let page = q.page.unwrap_or(1);
        let size = q.page_size.unwrap_or(20);
        if page < 1 {
            return Err(ApiError::bad_request("page: must be at least 1"));
        }
        if !(1..=100).contains(&size) {
            return Err(ApiError::bad_request(
                "page_size: must be between 1 and 100",
            ));
        }
        (size, (page - 1).saturating_mul(size))
    } else {
        page_bounds(q.limit, q.offset)?
    };
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.to_ascii_uppercase()
                .parse::<ExecutionStatus>()
                .map_err(|_| {
                    ApiError::bad_request(
                        "status: must be one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLED",
                    )
                })?
                .as_str(),
        ),
    };
    let start = q
        .start_date
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| instant("start_date", s, false))
        .transpose()?;
    let end = q
        .end_date
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| instant("end_date", s, true))
        .transpose()?;
    let filter = ListFilter {
        workflow_id: q.workflow_id,
        status,
        initiator: q.initiator.as_deref(),
        start,
        end,
    };
    // One row more than the page: whether a next page exists.
    let page = async {
        db::list(
            state.engine.pool(),
            &filter,
            cursor.as_ref(),
            limit + 1,
            offset,
        )
        .await
        .map_err(ApiError::from)
    };
    // The total is found on another connection while the page is read (a
    // cursor page counts nothing); it is used only when the page does not
    // reach the end of the list by itself.
    let counted = async {
        match cursor {
            Some(_) => Ok(None),
            None => total(&state, &filter).await.map(Some),
        }
    };
    let (rows, counted) = tokio::try_join!(page, counted)?;
    let (executions, next_cursor) = split_page(rows, limit, |e| Cursor {
        created_at: e.created_at,
        id: e.execution_id,
    });
    let Some(counted) = counted else {
        return Ok(Json(ExecutionList {
            executions,
            total: None,
            limit,
            offset: None,
            pagination: None,
            next_cursor,
        }));
    };
    let shown = offset + executions.len() as i64;
    let total = if next_cursor.is_none() && (shown > offset || offset == 0) {
        // The page reached the end: it says how many there are.
        shown
    } else if executions.is_empty() {
        // Past the end.
        counted
    } else {
        // At least what this page shows (the count ran in its own snapshot).
        counted.max(shown + i64::from(next_cursor.is_some()))
    };
    let total_pages = if total == 0 {
        0
    } else {
        (total + limit - 1) / limit
    };
    Ok(Json(ExecutionList {
        executions,
        total: Some(total),
        limit,
        offset: Some(offset),
        pagination: Some(Pagination {
            page: offset / limit + 1,
            page_size: limit,
            total_count: total,
            total_pages,
        }),
        next_cursor,
    }))
}

/// How many executions `filter` matches: exact up to [`EXACT_COUNT_LIMIT`]
/// (an index-only scan that stops past it), else Postgres' estimate. A
/// total of [`CACHED_TOTAL_FROM`] or more is kept for
/// [`super::paging::TOTAL_TTL`] on this replica and given again for the same
/// filter meanwhile (README, "Paging"): counting it costs more than the page
/// itself, and with a long history most pages would pay it.
async fn total(state: &AppState, filter: &ListFilter<'_>) -> Result<i64, ApiError> {
    // The filter's identity for the cache.
    let key = format!("{filter:?}");
    if let Some(total) = state.totals.get(&key) {
        return Ok(total);
    }
    let counted = db::count_capped(state.engine.pool(), filter, EXACT_COUNT_LIMIT + 1).await?;
    let total = if counted <= EXACT_COUNT_LIMIT {
        counted
    } else {
        let estimate = db::estimate(state.engine.pool(), filter).await?;
        estimate.max(counted)
    };
    if total >= CACHED_TOTAL_FROM {
        state.totals.put(key, total);
    }
    Ok(total)
}

/// Cancel a pending or running execution.
#[utoipa::path(post, path = "/executions/{id}/cancel", tag = "executions",
    responses((status = 200, body = ExecutionView), (status = 404, description = "unknown execution"),
              (status = 409, description = "already finished")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<ExecutionView>, ApiError> {
    state.engine.cancel(id).await?;
    load(&state, id).await.map(Json)
}

/// Run again what failed of a FAILED or CANCELLED execution.
///
/// Completed steps keep their outputs and are not run again.
#[utoipa::path(post, path = "/executions/{id}/retry", tag = "executions",
    responses((status = 200, body = ExecutionView), (status = 404, description = "unknown execution"),
              (status = 409, description = "not FAILED or CANCELLED")))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<ExecutionView>, ApiError> {
    state.engine.retry(id).await?;
    load(&state, id).await.map(Json)
}
