//! `/workflows`: stored, versioned workflow definitions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppQuery, Id, page_bounds};
use super::paging::{Cursor, cursor_alone, split_page};
use crate::dag::Dag;
use crate::dag::validate::{MAX_NAME_LEN, validate};
use crate::db::pipelines::insert_version;
pub(crate) use crate::db::workflows::Workflow;
use crate::db::workflows::{self as db, Fields, ListFilter};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct WorkflowRequest {
    /// The workflow document (DAG.md).
    #[schema(value_type = Object)]
    pub dag: Value,
    /// Defaults to `dag.name`.
    pub name: Option<String>,
    pub created_by: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ValidateRequest {
    #[schema(value_type = Object)]
    pub dag: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ValidateResponse {
    pub valid: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowList {
    pub workflows: Vec<Workflow>,
    /// How many live workflows the filter matches. Not on a page read with
    /// `cursor` (nothing is counted then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    pub limit: i64,
    /// Not on a page read with `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many, 1 to 1000 (default 20).
    pub limit: Option<i64>,
    /// How many to pass over first (default 0).
    pub offset: Option<i64>,
    /// Only the workflows of this owner.
    pub created_by: Option<String>,
    /// Only the workflows with exactly this name.
    pub name: Option<String>,
    /// The page after this one: the `next_cursor` of the previous page, as
    /// it came (keyset paging, stable while workflows are added). Not with
    /// `offset`.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// An earlier version: its DAG and `version` instead of the latest
    /// (executions keep the version they started with).
    pub version: Option<i32>,
}

/// Validate a document into a DAG or a 422 listing every problem.
fn checked(state: &AppState, doc: &Value) -> Result<Dag, ApiError> {
    let report = validate(doc, state.engine.registry());
    match report.dag {
        Some(dag) if report.errors.is_empty() => Ok(dag),
        _ => Err(ApiError::invalid_with(
            "DAG validation failed",
            report.errors,
        )),
    }
}

/// The stored name (`name`, else `dag.name`), after checking it and
/// `created_by`: both are at most 255 characters (they are indexed together).
fn name_of(body: &WorkflowRequest, dag: &Dag) -> Result<String, ApiError> {
    let name = body.name.clone().unwrap_or_else(|| dag.name.clone());
    let mut errors = Vec::new();
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        errors.push(format!("name: must be 1 to {MAX_NAME_LEN} characters"));
    }
    if body
        .created_by
        .as_ref()
        .is_some_and(|owner| owner.chars().count() > MAX_NAME_LEN)
    {
        errors.push(format!(
            "created_by: must be at most {MAX_NAME_LEN} characters"
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_with("invalid workflow", errors));
    }
    Ok(name)
}

fn conflict_on_name(e: sqlx::Error, name: &str) -> ApiError {
    if crate::db::violates(&e, db::LIVE_NAME) {
        ApiError::conflict(format!(
            "a workflow named '{name}' already exists for this owner"
        ))
    } else {
        e.into()
    }
}

/// Store a new workflow definition (version 1).
///
/// The body's `dag` is the workflow document (docs/workflows.md); every problem
/// is reported at once in `errors`.
#[utoipa::path(post, path = "/workflows", request_body = WorkflowRequest, tag = "workflows",
    responses((status = 201, body = Workflow), (status = 409, description = "name taken"),
              (status = 422, description = "DAG validation failed")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<WorkflowRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let dag = checked(&state, &body.dag)?;
    let name = name_of(&body, &dag)?;
    let stored = serde_json::to_value(&dag).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let id = Uuid::now_v7();
    let fields = Fields {
        name: &name,
        created_by: body.created_by.as_deref(),
        description: dag.description.as_deref(),
        dag: &stored,
        step_count: dag.steps.len() as i32,
    };
    let mut tx = state.engine.pool().begin().await?;
    let workflow = db::insert(&mut *tx, id, &fields)
        .await
        .map_err(|e| conflict_on_name(e, &name))?;
    insert_version(&mut tx, id, 1, &stored).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(workflow)))
}

/// List the live workflows, newest first (`name` and `created_by` filter).
///
/// Pages by `limit` / `offset`, or by `cursor` (each answer's `next_cursor`).
#[utoipa::path(get, path = "/workflows", params(ListQuery), tag = "workflows",
    responses((status = 200, body = WorkflowList), (status = 400, description = "bad paging or cursor")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<WorkflowList>, ApiError> {
    let cursor = Cursor::from_query(q.cursor.as_deref())?;
    cursor_alone(cursor.as_ref(), q.offset, None)?;
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let filter = ListFilter {
        created_by: q.created_by.as_deref(),
        name: q.name.as_deref(),
    };
    // One row more than the page: whether a next page exists.
    let rows = db::list(
        state.engine.pool(),
        &filter,
        cursor.as_ref(),
        limit + 1,
        offset,
    )
    .await?;
    let (workflows, next_cursor) = split_page(rows, limit, |w| Cursor {
        created_at: w.created_at,
        id: w.id,
    });
    if cursor.is_some() {
        return Ok(Json(WorkflowList {
            workflows,
            total: None,
            limit,
            offset: None,
            next_cursor,
        }));
    }
    let shown = offset + workflows.len() as i64;
    let total = if next_cursor.is_none() && (shown > offset || offset == 0) {
        // The page reached the end: it says how many there are.
        shown
    } else {
        db::count(state.engine.pool(), &filter).await?
    };
    Ok(Json(WorkflowList {
        workflows,
        total: Some(total),
        limit,
        offset: Some(offset),
        next_cursor,
    }))
}

/// Read a workflow: its latest version, or `?version=N`.
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows", params(GetQuery),
    responses((status = 200, body = Workflow), (status = 404, description = "unknown or deleted, or no such version")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Id(id): Id,
    AppQuery(q): AppQuery<GetQuery>,
) -> Result<Json<Workflow>, ApiError> {
    let workflow = match q.version {
        None => db::get(state.engine.pool(), id).await?,
        Some(version) => db::get_version(state.engine.pool(), id, version).await?,
    };
    match (workflow, q.version) {
        (Some(w), _) => Ok(Json(w)),
        (None, Some(v)) => Err(ApiError::not_found(&format!("workflow version {v}"))),
        (None, None) => Err(ApiError::not_found("workflow")),
    }
}

/// Store a new version of a workflow.
///
/// Executions already started keep the version they started with.
#[utoipa::path(put, path = "/workflows/{id}", request_body = WorkflowRequest, tag = "workflows",
    responses((status = 200, body = Workflow), (status = 404, description = "unknown or deleted"),
              (status = 409, description = "name taken"), (status = 422, description = "DAG validation failed")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    AppJson(body): AppJson<WorkflowRequest>,
) -> Result<Json<Workflow>, ApiError> {
    let dag = checked(&state, &body.dag)?;
    let name = name_of(&body, &dag)?;
    let stored = serde_json::to_value(&dag).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut tx = state.engine.pool().begin().await?;
    let Some(current) = db::lock_for_update(&mut *tx, id).await? else {
        return Err(ApiError::not_found("workflow"));
    };
    let next = current.version + 1;
    let created_by = body.created_by.clone().or(current.created_by);
    let fields = Fields {
        name: &name,
        created_by: created_by.as_deref(),
        description: dag.description.as_deref(),
        dag: &stored,
        step_count: dag.steps.len() as i32,
    };
    let workflow = db::update(&mut *tx, id, next, &fields)
        .await
        .map_err(|e| conflict_on_name(e, &name))?;
    insert_version(&mut tx, id, next, &stored).await?;
    tx.commit().await?;
    Ok(Json(workflow))
}

/// Delete a workflow; its executions stay readable.
#[utoipa::path(delete, path = "/workflows/{id}", tag = "workflows",
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown or deleted")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    if !db::delete(state.engine.pool(), id).await? {
        return Err(ApiError::not_found("workflow"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Check a workflow document without storing it.
#[utoipa::path(post, path = "/workflows/validate", request_body = ValidateRequest, tag = "workflows",
    responses((status = 200, body = ValidateResponse)))]
pub(crate) async fn check(
    State(state): State<AppState>,
    AppJson(body): AppJson<ValidateRequest>,
) -> Json<ValidateResponse> {
    let report = validate(&body.dag, state.engine.registry());
    Json(ValidateResponse {
        valid: report.errors.is_empty() && report.dag.is_some(),
        errors: report.errors,
        warnings: report.warnings,
    })
}
