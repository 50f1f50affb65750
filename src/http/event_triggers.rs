//! The original's event-trigger routes (COMPAT.md "Triggers"):
//! `/event-triggers` CRUD and `/event-triggers/event-types`. Triggers fire
//! from `/workflow-events` ([`crate::engine::event_triggers`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, AppQuery};
use super::schedules::{check_name, check_pipeline, invalid, path_id, workflow_filter};
use crate::db::triggers::{self as db, EventTriggerChange, EventTriggerRow, NewEventTrigger};
use crate::engine::event_triggers::{SUPPORTED_EVENTS, is_supported};

/// The original's `EventTriggerConfig`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct EventTriggerConfig {
    pub event_type: Option<String>,
    /// Dot path into the event -> the value expected there.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Map<String, Value>>,
}

/// The original's `EventTriggerCreate` / `EventTriggerUpdate`; budadmin
/// sends `event_type` and `filters` at the top level, read as well as
/// `config.*`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct EventTriggerRequest {
    pub workflow_id: Option<String>,
    pub name: Option<String>,
    pub config: Option<EventTriggerConfig>,
    pub event_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventTriggerConfigView {
    pub event_type: String,
    #[schema(value_type = Object)]
    pub filters: Value,
}

/// The original's `EventTriggerResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventTriggerView {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    pub config: EventTriggerConfigView,
    #[schema(value_type = Object)]
    pub params: Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
}

impl From<EventTriggerRow> for EventTriggerView {
    fn from(r: EventTriggerRow) -> Self {
        Self {
            id: r.id,
            workflow_id: r.workflow_id,
            name: r.name,
            config: EventTriggerConfigView {
                event_type: r.event_type,
                filters: r.filters,
            },
            params: r.params,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_triggered_at: r.last_triggered_at,
            trigger_count: r.trigger_count,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct EventTriggerQuery {
    pub event_type: Option<String>,
    pub workflow_id: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventType {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: &'static str,
    pub description: &'static str,
}

fn not_found() -> ApiError {
    ApiError::not_found_detail("Event trigger not found")
}

/// `event_type` and `filters` from the top level or `config`.
fn type_and_filters(body: &EventTriggerRequest) -> (Option<String>, Option<Map<String, Value>>) {
    let config = body.config.as_ref();
    let kind = body
        .event_type
        .clone()
        .or_else(|| config.and_then(|c| c.event_type.clone()));
    let filters = body
        .filters
        .clone()
        .or_else(|| config.and_then(|c| c.filters.clone()));
    (kind, filters)
}

fn check_type(kind: Option<&str>, required: bool, errors: &mut Vec<String>) {
    match kind {
        None if required => errors.push("config.event_type: Field required".into()),
        Some(k) if !is_supported(k) => errors.push(format!(
            "config.event_type: Unsupported event type: {k} (supported: {})",
            SUPPORTED_EVENTS
                .iter()
                .map(|(t, _, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => {}
    }
}

#[utoipa::path(post, path = "/event-triggers", request_body = EventTriggerRequest, tag = "event_triggers",
    responses((status = 201, body = EventTriggerView), (status = 400, description = "invalid, naming the field"),
              (status = 404, description = "unknown pipeline")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<EventTriggerRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    if body.workflow_id.is_none() {
        errors.push("workflow_id: Field required".to_owned());
    }
    check_name(body.name.as_deref(), true, &mut errors);
    let (kind, filters) = type_and_filters(&body);
    check_type(kind.as_deref(), true, &mut errors);
    if !errors.is_empty() {
        return Err(invalid("Invalid event trigger", errors));
    }
    let workflow_id = check_pipeline(&state, body.workflow_id.as_deref()).await?;
    let filters = Value::Object(filters.unwrap_or_default());
    let params = Value::Object(body.params.clone().unwrap_or_default());
    let new = NewEventTrigger {
        workflow_id,
        name: body.name.as_deref().unwrap_or_default().trim(),
        event_type: kind.as_deref(),
        filters: &filters,
        params: &params,
        enabled: body.enabled.unwrap_or(true),
    };
    let row = db::insert_event_trigger(state.engine.pool(), Uuid::new_v4(), &new).await?;
    Ok((StatusCode::CREATED, Json(EventTriggerView::from(row))))
}

#[utoipa::path(get, path = "/event-triggers", params(EventTriggerQuery), tag = "event_triggers",
    responses((status = 200, body = Vec<EventTriggerView>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<EventTriggerQuery>,
) -> Result<Json<Vec<EventTriggerView>>, ApiError> {
    let Ok(workflow_id) = workflow_filter(q.workflow_id.as_deref()) else {
        return Ok(Json(Vec::new()));
    };
    let rows = db::list_event_triggers(
        state.engine.pool(),
        workflow_id,
        q.enabled,
        q.event_type.as_deref(),
    )
    .await?;
    Ok(Json(rows.into_iter().map(EventTriggerView::from).collect()))
}

#[utoipa::path(get, path = "/event-triggers/event-types", tag = "event_triggers",
    responses((status = 200, body = Vec<EventType>)))]
pub(crate) async fn event_types() -> Json<Vec<EventType>> {
    Json(
        SUPPORTED_EVENTS
            .iter()
            .map(|(kind, source, description)| EventType {
                kind,
                source,
                description,
            })
            .collect(),
    )
}

#[utoipa::path(get, path = "/event-triggers/{id}", tag = "event_triggers",
    responses((status = 200, body = EventTriggerView), (status = 404, description = "Event trigger not found")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventTriggerView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let row = db::get_event_trigger(state.engine.pool(), id).await?;
    row.map(|r| Json(r.into())).ok_or_else(not_found)
}

#[utoipa::path(put, path = "/event-triggers/{id}", request_body = EventTriggerRequest, tag = "event_triggers",
    responses((status = 200, body = EventTriggerView), (status = 400, description = "invalid, naming the field"),
              (status = 404, description = "Event trigger not found")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<EventTriggerRequest>,
) -> Result<Json<EventTriggerView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let mut errors = Vec::new();
    check_name(body.name.as_deref(), false, &mut errors);
    let (kind, filters) = type_and_filters(&body);
    check_type(kind.as_deref(), false, &mut errors);
    if !errors.is_empty() {
        return Err(invalid("Invalid event trigger", errors));
    }
    let filters = filters.map(Value::Object);
    let params = body.params.clone().map(Value::Object);
    let change = EventTriggerChange {
        name: body.name.as_deref().map(str::trim),
        event_type: kind.as_deref(),
        filters: filters.as_ref(),
        params: params.as_ref(),
        enabled: body.enabled,
    };
    let row = db::update_event_trigger(state.engine.pool(), id, &change).await?;
    row.map(|r| Json(r.into())).ok_or_else(not_found)
}

#[utoipa::path(delete, path = "/event-triggers/{id}", tag = "event_triggers",
    responses((status = 204, description = "deleted"), (status = 404, description = "Event trigger not found")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    if db::delete_event_trigger(state.engine.pool(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
