//! The original's pipeline routes, as budapp calls them (COMPAT.md
//! "Pipelines"): `POST /validate` and `/pipelines` CRUD with owners,
//! system pipelines, drafts and icons. A pipeline is a workflow: its id
//! works on `/workflows/{id}` and as `workflow_id` everywhere.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, Detail};
use super::extract::{AppJson, AppQuery, Id, page_bounds};
use super::paging::{Cursor, split_page};
use crate::dag::validate::{MAX_NAME_LEN, validate};
use crate::db::pipelines::{self, Definition, Pipeline, Viewer};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PipelineRequest {
    /// The workflow document; with no `steps` the pipeline is a draft.
    #[schema(value_type = Option<Object>)]
    pub dag: Option<Value>,
    /// Overrides `dag.name`.
    pub name: Option<String>,
    pub icon: Option<String>,
    /// The owner; wins over `X-User-ID`.
    pub user_id: Option<String>,
    #[serde(default)]
    pub system_owned: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PipelineQuery {
    /// With `X-User-ID`: list system-owned pipelines too.
    #[serde(default)]
    pub include_system: bool,
    /// At most this many, 1 to 1000 (default: all). With it or `cursor`,
    /// the `X-Next-Cursor` response header carries the cursor of the next
    /// page (absent on the last page); the body stays a JSON array.
    pub limit: Option<i64>,
    /// The page after this one: the `X-Next-Cursor` of the previous page,
    /// as it came (keyset paging, newest first).
    pub cursor: Option<String>,
}

/// The response header that carries `GET /pipelines`' next cursor (its
/// body is the original's bare JSON array).
pub(crate) const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DagBody {
    #[schema(value_type = Object)]
    pub dag: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DagValidation {
    pub valid: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_count: Option<usize>,
    pub has_cycles: bool,
}

/// The caller, from `X-User-ID` (budapp sends the signed-in user).
pub(crate) fn viewer(headers: &HeaderMap) -> Viewer {
    let user_id = headers
        .get("x-user-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Viewer { user_id }
}

fn validation_failed(errors: Vec<String>) -> ApiError {
    ApiError::BadRequest(Detail::Object(
        json!({ "error": "Validation failed", "errors": errors }),
    ))
}

fn not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::not_found_detail(format!("Pipeline not found: {id}"))
}

fn duplicate(e: sqlx::Error, name: &str) -> ApiError {
    if crate::db::violates(&e, crate::db::workflows::LIVE_NAME) {
        ApiError::Conflict(Detail::Object(json!({
            "error": "Duplicate pipeline name",
            "message": format!("A pipeline with the name '{name}' already exists"),
        })))
    } else {
        e.into()
    }
}

/// A document with no steps (or an empty list) is a draft.
fn is_draft(doc: &Value) -> bool {
    match doc.get("steps") {
        None | Some(Value::Null) => true,
        Some(Value::Array(steps)) => steps.is_empty(),
        Some(_) => false,
    }
}

/// What a create or update stores: the checked document (or the draft as
/// sent), its name, description and step count.
struct Checked {
    dag: Value,
    name: String,
    description: Option<String>,
    step_count: i32,
    draft: bool,
}

fn check(
    state: &AppState,
    doc: &Value,
    name: Option<&str>,
    fallback_name: Option<&str>,
) -> Result<Checked, ApiError> {
    if !doc.is_object() {
        return Err(validation_failed(vec!["dag: must be a JSON object".into()]));
    }
    let doc_name = doc.get("name").and_then(Value::as_str);
    let (dag, mut name, description, step_count, draft) = if is_draft(doc) {
        let name = name.or(doc_name).or(fallback_name).map(str::to_owned);
        let Some(name) = name else {
            return Err(validation_failed(vec!["name: Field required".into()]));
        };
        let description = doc
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned);
        (doc.clone(), name, description, 0, true)
    } else {
        let report = validate(doc, state.engine.registry());
        let dag = match report.dag {
            Some(dag) if report.errors.is_empty() => dag,
            _ => return Err(validation_failed(report.errors)),
        };
        let stored = serde_json::to_value(&dag).map_err(|e| ApiError::Internal(Box::new(e)))?;
        let name = name.map(str::to_owned).unwrap_or_else(|| dag.name.clone());
        (
            stored,
            name,
            dag.description.clone(),
            dag.steps.len() as i32,
            false,
        )
    };
    name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(validation_failed(vec![format!(
            "name: must be 1 to {MAX_NAME_LEN} characters"
        )]));
    }
    Ok(Checked {
        dag,
        name,
        description,
        step_count,
        draft,
    })
}

fn check_owner(owner: Option<&str>) -> Result<(), ApiError> {
    if owner.is_some_and(|o| o.chars().count() > MAX_NAME_LEN) {
        return Err(validation_failed(vec![format!(
            "user_id: must be at most {MAX_NAME_LEN} characters"
        )]));
    }
    Ok(())
}

#[utoipa::path(post, path = "/validate", request_body = DagBody, tag = "pipelines",
    responses((status = 200, body = DagValidation)))]
pub(crate) async fn validate_dag(
    State(state): State<AppState>,
    AppJson(body): AppJson<DagBody>,
) -> Json<DagValidation> {
    let report = validate(&body.dag, state.engine.registry());
    let valid = report.is_valid();
    let has_cycles = report
        .errors
        .iter()
        .any(|e| e.to_ascii_lowercase().contains("cycle"));
    Json(DagValidation {
        valid,
        step_count: report.dag.as_ref().filter(|_| valid).map(|d| d.steps.len()),
        errors: report.errors,
        warnings: report.warnings,
        has_cycles,
    })
}

#[utoipa::path(post, path = "/pipelines", request_body = PipelineRequest, tag = "pipelines",
    params(("X-User-ID" = Option<String>, Header, description = "the owner when the body names none")),
    responses((status = 201, body = Pipeline), (status = 400, description = "validation failed"),
              (status = 409, description = "name taken for this owner")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(body): AppJson<PipelineRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(doc) = &body.dag else {
        return Err(validation_failed(vec!["dag: Field required".into()]));
    };
    let owner = body
        .user_id
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or(viewer(&headers).user_id);
    check_owner(owner.as_deref())?;
    let checked = check(&state, doc, body.name.as_deref(), None)?;
    let def = Definition {
        name: &checked.name,
        owner: owner.as_deref(),
        system_owned: body.system_owned,
        icon: body.icon.as_deref(),
        description: checked.description.as_deref(),
        dag: &checked.dag,
        step_count: checked.step_count,
        draft: checked.draft,
    };
    let mut tx = state.engine.pool().begin().await?;
    let id = pipelines::insert(&mut tx, &def, false)
        .await
        .map_err(|e| duplicate(e, &checked.name))?;
    tx.commit().await?;
    let pipeline = pipelines::get(state.engine.pool(), id, &Viewer::default())
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok((StatusCode::CREATED, Json(pipeline)))
}

#[utoipa::path(get, path = "/pipelines", params(PipelineQuery,
        ("X-User-ID" = Option<String>, Header, description = "only this user's (and system) pipelines")),
    tag = "pipelines", responses((status = 200, body = Vec<Pipeline>,
        headers(("x-next-cursor" = String, description = "with `limit` or `cursor`: the `cursor` of the next page; absent on the last page"))),
        (status = 400, description = "bad limit or cursor")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppQuery(q): AppQuery<PipelineQuery>,
) -> Result<Response, ApiError> {
    let cursor = Cursor::from_query(q.cursor.as_deref())?;
    let limit = match q.limit {
        None if cursor.is_some() => Some(page_bounds(None, None)?.0),
        None => None,
        Some(_) => Some(page_bounds(q.limit, None)?.0),
    };
    let rows = pipelines::list(
        state.engine.pool(),
        &viewer(&headers),
        q.include_system,
        cursor.as_ref(),
        limit.map(|l| l + 1),
    )
    .await?;
    let (rows, next) = match limit {
        Some(limit) => split_page(rows, limit, |p| Cursor {
            created_at: p.created_at,
            id: p.id,
        }),
        None => (rows, None),
    };
    let mut response = Json(rows).into_response();
    // Only a paged list (`limit` or `cursor`) can have a next page.
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, value);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/pipelines/{id}", tag = "pipelines",
    responses((status = 200, body = Pipeline), (status = 404, description = "unknown, deleted or not visible")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> Result<Json<Pipeline>, ApiError> {
    pipelines::get(state.engine.pool(), id, &viewer(&headers))
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(put, path = "/pipelines/{id}", request_body = PipelineRequest, tag = "pipelines",
    responses((status = 200, body = Pipeline), (status = 400, description = "validation failed"),
              (status = 404, description = "unknown, deleted or not visible"), (status = 409, description = "name taken")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
    AppJson(body): AppJson<PipelineRequest>,
) -> Result<Json<Pipeline>, ApiError> {
    let viewer = viewer(&headers);
    let mut tx = state.engine.pool().begin().await?;
    let Some((version, current_name, current_icon, current_dag)) =
        pipelines::lock_for_update(&mut tx, id, &viewer).await?
    else {
        return Err(not_found(id));
    };
    // A PUT that sends only a name or an icon keeps the current document.
    let doc = body.dag.as_ref().unwrap_or(&current_dag);
    let checked = check(&state, doc, body.name.as_deref(), Some(&current_name))?;
    let icon = body.icon.clone().or(current_icon);
    let def = Definition {
        name: &checked.name,
        owner: None,
        system_owned: false,
        icon: icon.as_deref(),
        description: checked.description.as_deref(),
        dag: &checked.dag,
        step_count: checked.step_count,
        draft: checked.draft,
    };
    pipelines::update(&mut tx, id, version + 1, &def)
        .await
        .map_err(|e| duplicate(e, &checked.name))?;
    tx.commit().await?;
    pipelines::get(state.engine.pool(), id, &Viewer::default())
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(delete, path = "/pipelines/{id}", tag = "pipelines",
    responses((status = 204, description = "deleted; its executions are kept"),
              (status = 404, description = "unknown, deleted or not visible")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    if pipelines::delete(state.engine.pool(), id, &viewer(&headers)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}
