//! The original's schedule routes, as budapp calls them (COMPAT.md
//! "Triggers"): `/schedules` CRUD, `pause`, `resume`, `trigger`,
//! `next-runs`, and `POST /internal/schedule-poll` (the Dapr cron binding of
//! Bud's chart). Schedules are fired by the engine ([`crate::engine::schedule`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Detail};
use super::extract::{AppJson, AppQuery, OptionalJson};
use crate::db::triggers::{self as store, ScheduleFields, ScheduleRow};
use crate::engine::control::{ControlError, StartOutcome};
use crate::engine::cron::{Kind, Raw, Spec, parse_instant};
use crate::engine::schedule::{execution_for, spec_of, trigger_param};

/// The original's `ScheduleConfig`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleConfig {
    /// `cron`, `interval`, `one_time` or `manual`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Cron (`0 9 * * 1-5`, `@daily`) or interval (`@every 1h30m`).
    pub expression: Option<String>,
    /// IANA time zone the cron expression (and a `run_at` without offset)
    /// is read in; default `UTC`.
    pub timezone: Option<String>,
    /// When a `one_time` schedule runs (RFC 3339, or local in `timezone`).
    pub run_at: Option<String>,
}

/// The original's `ScheduleCreate` (and `ScheduleUpdate`: every field optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct ScheduleRequest {
    pub workflow_id: Option<String>,
    pub name: Option<String>,
    pub schedule: Option<ScheduleConfig>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub max_runs: Option<i64>,
    /// After this instant the schedule stops (status `expired`).
    pub expires_at: Option<String>,
    /// Who created it (kept, not shown).
    pub user_id: Option<String>,
}

/// The original's `ScheduleResponse`, plus why the last due time could not
/// start, if it could not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleView {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    pub schedule: ScheduleConfigView,
    #[schema(value_type = Object)]
    pub params: Value,
    pub enabled: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_execution_id: Option<Uuid>,
    /// The last execution's status now (uppercase, as on every route).
    pub last_execution_status: Option<String>,
    pub run_count: i32,
    pub max_runs: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `active`, `paused`, `expired` or `completed`.
    pub status: String,
    /// Due times whose execution could not start.
    pub failure_count: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleConfigView {
    #[serde(rename = "type")]
    pub kind: String,
    pub expression: Option<String>,
    pub timezone: String,
    pub run_at: Option<DateTime<Utc>>,
}

impl From<ScheduleRow> for ScheduleView {
    fn from(r: ScheduleRow) -> Self {
        Self {
            id: r.id,
            workflow_id: r.workflow_id,
            name: r.name,
            schedule: ScheduleConfigView {
                kind: r.schedule_type,
                expression: r.expression,
                timezone: r.timezone,
                run_at: r.run_at,
            },
            params: r.params,
            enabled: r.enabled,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
            next_run_at: r.next_run_at,
            last_run_at: r.last_run_at,
            last_execution_id: r.last_execution_id,
            last_execution_status: r.last_execution_status,
            run_count: r.run_count,
            max_runs: r.max_runs,
            expires_at: r.expires_at,
            status: r.status,
            failure_count: r.failure_count,
            last_error: r.last_error,
            last_error_at: r.last_error_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
    pub total: usize,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ScheduleQuery {
    pub workflow_id: Option<String>,
    pub enabled: Option<bool>,
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct NextRunsQuery {
    /// 1 to 100 (default 10).
    pub count: Option<i64>,
    /// Preview from this instant (RFC 3339) instead of now: how a schedule
    /// behaves across a daylight-saving change ahead.
    pub from: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NextRuns {
    pub schedule_id: Uuid,
    pub next_runs: Vec<DateTime<Utc>>,
}

/// The answer of a trigger (schedule or webhook): the original's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TriggerResponse {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub status: String,
}

pub(crate) const MAX_NAME_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 1000;

pub(crate) fn invalid(summary: &str, errors: Vec<String>) -> ApiError {
    ApiError::BadRequest(Detail::Object(
        json!({ "error": summary, "errors": errors }),
    ))
}

fn not_found() -> ApiError {
    ApiError::not_found_detail("Schedule not found")
}

pub(crate) fn pipeline_not_found(id: &str) -> ApiError {
    ApiError::not_found_detail(format!("Pipeline not found: {id}"))
}

/// A path id; anything that is not a UUID names no schedule.
pub(crate) fn path_id(raw: &str) -> Option<Uuid> {
    raw.trim().parse().ok()
}

/// A trigger list's `workflow_id` filter: none when absent or blank, an
/// error when it is not a UUID (no trigger can name it: the list is empty).
pub(crate) fn workflow_filter(raw: Option<&str>) -> Result<Option<Uuid>, uuid::Error> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => raw.parse().map(Some),
    }
}

/// `name`: 1 to 255 characters.
pub(crate) fn check_name(name: Option<&str>, required: bool, errors: &mut Vec<String>) {
    match name.map(str::trim) {
        None if required => errors.push("name: Field required".into()),
        Some(n) if n.is_empty() || n.chars().count() > MAX_NAME_CHARS => {
            errors.push(format!("name: must be 1 to {MAX_NAME_CHARS} characters"))
        }
        _ => {}
    }
}

/// The pipeline a trigger starts: it must exist (404 otherwise).
pub(crate) async fn check_pipeline(state: &AppState, raw: Option<&str>) -> Result<Uuid, ApiError> {
    let Some(raw) = raw.map(str::trim) else {
        return Err(invalid(
            "Validation failed",
            vec!["workflow_id: Field required".into()],
        ));
    };
    let id: Uuid = raw.parse().map_err(|_| pipeline_not_found(raw))?;
    if !store::pipeline_exists(state.engine.pool(), id).await? {
        return Err(pipeline_not_found(raw));
    }
    Ok(id)
}

/// Apply a create or an update to `fields` (the current ones on update) and
/// check the result; every problem names its field.
fn apply(
    fields: &mut ScheduleFields,
    body: &ScheduleRequest,
    creating: bool,
    now: DateTime<Utc>,
) -> Result<Option<Spec>, ApiError> {
    let mut errors = Vec::new();
    check_name(body.name.as_deref(), creating, &mut errors);
    if let Some(name) = &body.name {
        fields.name = name.trim().to_owned();
    }
    if let Some(d) = &body.description {
        if d.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(format!(
                "description: at most {MAX_DESCRIPTION_CHARS} characters"
            ));
        }
        fields.description = Some(d.clone());
    }
    if let Some(p) = &body.params {
        fields.params = Value::Object(p.clone());
    }
    match body.max_runs {
        Some(m) if !(1..=i32::MAX as i64).contains(&m) => {
            errors.push("max_runs: must be at least 1".into())
        }
        Some(m) => fields.max_runs = Some(m as i32),
        None => {}
    }
    let mut spec = None;
    match &body.schedule {
        None if creating => errors.push("schedule: Field required".into()),
        None => {}
        Some(config) => {
            let raw = Raw {
                kind: config.kind.as_deref(),
                expression: config.expression.as_deref(),
                timezone: config.timezone.as_deref(),
                run_at: config.run_at.as_deref(),
            };
            match Spec::parse(&raw, now) {
                Ok(s) => {
                    fields.schedule_type = s.kind.as_str().to_owned();
                    fields.expression = match s.kind {
                        Kind::Cron | Kind::Interval => {
                            config.expression.as_ref().map(|e| e.trim().to_owned())
                        }
                        _ => None,
                    };
                    fields.timezone = s.tz.name().to_owned();
                    fields.run_at = s.run_at;
                    spec = Some(s);
                }
                Err(e) => errors.extend(e),
            }
        }
    }
    if let Some(text) = &body.expires_at {
        let tz = spec
            .as_ref()
            .map(|s| s.tz)
            .or_else(|| fields.timezone.parse().ok())
            .unwrap_or(chrono_tz::Tz::UTC);
        match parse_instant(text, tz) {
            Ok(at) => fields.expires_at = Some(at),
            Err(why) => errors.push(format!("expires_at: {why}")),
        }
    }
    if !errors.is_empty() {
        return Err(invalid("Invalid schedule", errors));
    }
    Ok(spec)
}

/// `status` and `next_run_at` from `enabled` and the timing, as the
/// original computes them on create, update and resume.
fn schedule_state(fields: &mut ScheduleFields, spec: &Spec, now: DateTime<Utc>) {
    fields.next_run_at = spec.first(now);
    if !fields.enabled {
        fields.status = "paused".into();
    } else if fields.expires_at.is_some_and(|e| e <= now) {
        fields.status = "expired".into();
        fields.next_run_at = None;
    } else {
        fields.status = "active".into();
    }
}

#[utoipa::path(post, path = "/schedules", request_body = ScheduleRequest, tag = "schedules",
    responses((status = 201, body = ScheduleView), (status = 400, description = "invalid schedule, naming the field"),
              (status = 404, description = "unknown pipeline")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<ScheduleRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let now = Utc::now();
    let mut fields = ScheduleFields {
        name: String::new(),
        description: None,
        schedule_type: "manual".into(),
        expression: None,
        timezone: "UTC".into(),
        run_at: None,
        params: json!({}),
        enabled: body.enabled.unwrap_or(true),
        status: "active".into(),
        next_run_at: None,
        max_runs: None,
        expires_at: None,
    };
    let mut errors = Vec::new();
    if body.workflow_id.is_none() {
        errors.push("workflow_id: Field required".to_owned());
    }
    let spec = match apply(&mut fields, &body, true, now) {
        Ok(spec) => spec,
        Err(ApiError::BadRequest(Detail::Object(detail))) => {
            errors.extend(
                detail["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_owned)),
            );
            None
        }
        Err(e) => return Err(e),
    };
    let Some(spec) = spec.filter(|_| errors.is_empty()) else {
        return Err(invalid("Invalid schedule", errors));
    };
    let workflow_id = check_pipeline(&state, body.workflow_id.as_deref()).await?;
    schedule_state(&mut fields, &spec, now);
    let id = Uuid::new_v4();
    store::insert_schedule(
        state.engine.pool(),
        id,
        workflow_id,
        body.user_id.as_deref(),
        &fields,
    )
    .await?;
    state.engine.schedules_changed();
    Ok((StatusCode::CREATED, show(&state, id).await?))
}

#[utoipa::path(get, path = "/schedules", params(ScheduleQuery), tag = "schedules",
    responses((status = 200, body = ScheduleList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<ScheduleQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    let Ok(workflow_id) = workflow_filter(q.workflow_id.as_deref()) else {
        return Ok(Json(ScheduleList {
            schedules: Vec::new(),
            total: 0,
        }));
    };
    let rows = store::list_schedules(
        state.engine.pool(),
        workflow_id,
        q.enabled,
        q.status.as_deref(),
    )
    .await?;
    let schedules: Vec<ScheduleView> = rows.into_iter().map(ScheduleView::from).collect();
    Ok(Json(ScheduleList {
        total: schedules.len(),
        schedules,
    }))
}

#[utoipa::path(get, path = "/schedules/{id}", tag = "schedules",
    responses((status = 200, body = ScheduleView), (status = 404, description = "Schedule not found")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    show(&state, id).await
}

/// Schedule `id`, or a 404.
async fn load(state: &AppState, id: Uuid) -> Result<ScheduleRow, ApiError> {
    store::get_schedule(state.engine.pool(), id, store::Read::Plain)
        .await?
        .ok_or_else(not_found)
}

/// Schedule `id` as stored now, or a 404.
async fn show(state: &AppState, id: Uuid) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(load(state, id).await?.into()))
}

/// Schedule `id` locked in a new transaction, or a 404. A firing of it in
/// progress finishes first: its counters and next due time are then the
/// ones a change starts from.
async fn lock(
    state: &AppState,
    id: Uuid,
) -> Result<(Transaction<'static, Postgres>, ScheduleRow), ApiError> {
    let mut tx = state.engine.pool().begin().await?;
    let row = store::get_schedule(&mut *tx, id, store::Read::ForUpdate)
        .await?
        .ok_or_else(not_found)?;
    Ok((tx, row))
}

/// Store `fields` as the locked schedule `id`'s, and commit.
async fn save(
    mut tx: Transaction<'static, Postgres>,
    id: Uuid,
    fields: &ScheduleFields,
) -> Result<(), ApiError> {
    store::update_schedule(&mut *tx, id, fields).await?;
    tx.commit().await?;
    Ok(())
}

/// The stored timing of `row`: checked when it was stored, so a failure is ours.
fn stored_spec(row: &ScheduleRow) -> Result<Spec, ApiError> {
    spec_of(row).map_err(|e| ApiError::Internal(e.into()))
}

#[utoipa::path(put, path = "/schedules/{id}", request_body = ScheduleRequest, tag = "schedules",
    responses((status = 200, body = ScheduleView), (status = 400, description = "invalid schedule, naming the field"),
              (status = 404, description = "Schedule not found")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<ScheduleRequest>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let now = Utc::now();
    let (tx, row) = lock(&state, id).await?;
    let mut body = body;
    if body.schedule.as_ref().is_some_and(|c| unchanged(c, &row)) {
        // budadmin sends the whole schedule back with any change: the same
        // timing is no change (a one-time `run_at` that has passed included).
        body.schedule = None;
    }
    let mut fields = ScheduleFields::of(&row);
    let spec = apply(&mut fields, &body, false, now)?;
    if let Some(enabled) = body.enabled {
        fields.enabled = enabled;
        if !enabled {
            fields.status = "paused".into();
        } else if fields.status == "paused" {
            fields.status = "active".into();
            if spec.is_none() {
                // Resuming through an update: due from now on.
                fields.next_run_at = stored_spec(&row)?.first(now);
            }
        }
    }
    if let Some(spec) = &spec {
        // A new timing: the next due time is computed again from now.
        fields.next_run_at = spec.first(now);
        if fields.status == "active" && fields.next_run_at.is_none() {
            fields.status = if spec.kind == Kind::Manual {
                "active".into()
            } else {
                "completed".into()
            };
        }
    }
    save(tx, id, &fields).await?;
    state.engine.schedules_changed();
    show(&state, id).await
}

/// Whether `config` is the stored timing of `row`.
fn unchanged(config: &ScheduleConfig, row: &ScheduleRow) -> bool {
    let tz_name = config
        .timezone
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("UTC");
    let Ok(tz) = tz_name.parse::<chrono_tz::Tz>() else {
        return false;
    };
    let run_at = match config.run_at.as_deref() {
        None => None,
        Some(text) => match parse_instant(text, tz) {
            Ok(at) => Some(at),
            Err(_) => return false,
        },
    };
    config.kind.as_deref() == Some(row.schedule_type.as_str())
        && config.expression.as_deref().map(str::trim) == row.expression.as_deref()
        && tz.name() == row.timezone
        && run_at == row.run_at
}

#[utoipa::path(delete, path = "/schedules/{id}", tag = "schedules",
    responses((status = 204, description = "deleted"), (status = 404, description = "Schedule not found")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    if store::delete_schedule(state.engine.pool(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(post, path = "/schedules/{id}/pause", tag = "schedules",
    responses((status = 200, body = ScheduleView), (status = 404, description = "Schedule not found")))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let (tx, row) = lock(&state, id).await?;
    let mut fields = ScheduleFields::of(&row);
    fields.enabled = false;
    if fields.status == "active" {
        fields.status = "paused".into();
    }
    save(tx, id, &fields).await?;
    show(&state, id).await
}

#[utoipa::path(post, path = "/schedules/{id}/resume", tag = "schedules",
    responses((status = 200, body = ScheduleView), (status = 400, description = "an expired or completed schedule"),
              (status = 404, description = "Schedule not found")))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let now = Utc::now();
    let (tx, row) = lock(&state, id).await?;
    if matches!(row.status.as_str(), "expired" | "completed") {
        return Err(ApiError::bad_request(format!(
            "Cannot resume {} schedule",
            row.status
        )));
    }
    let spec = stored_spec(&row)?;
    let mut fields = ScheduleFields::of(&row);
    fields.enabled = true;
    schedule_state(&mut fields, &spec, now);
    save(tx, id, &fields).await?;
    state.engine.schedules_changed();
    show(&state, id).await
}

/// Run the schedule's pipeline now, once (the original's manual trigger:
/// `params` overridden by the body, `_trigger.manual: true`; the run count
/// and the next due time are left alone).
#[utoipa::path(post, path = "/schedules/{id}/trigger", tag = "schedules",
    request_body(content = Object, description = "optional parameter overrides"),
    responses((status = 200, body = TriggerResponse), (status = 404, description = "Schedule or pipeline not found"),
              (status = 400, description = "the pipeline is a draft or refuses the parameters")))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(overrides): OptionalJson<Map<String, Value>>,
) -> Result<Json<TriggerResponse>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let row = load(&state, id).await?;
    let new = execution_for(
        &row,
        Some(&overrides),
        trigger_param(&row, None, Utc::now()),
    );
    let started = match state.engine.start(new).await {
        Ok(StartOutcome::Created(s) | StartOutcome::Repeated(s)) => s,
        Err(e) => return Err(start_error(e, &row.workflow_id.to_string())),
    };
    Ok(Json(TriggerResponse {
        execution_id: started.execution_id,
        workflow_id: started.workflow_id,
        status: started.status,
    }))
}

/// A trigger's execution could not start: what budapp shows.
pub(crate) fn start_error(e: ControlError, workflow_id: &str) -> ApiError {
    match e {
        ControlError::WorkflowNotFound => pipeline_not_found(workflow_id),
        ControlError::NotRunnable(status) => ApiError::BadRequest(Detail::Object(json!({
            "error": format!("Pipeline is {status}"),
            "message": super::error::not_runnable(&status),
        }))),
        ControlError::Invalid(errors) => invalid("Invalid parameters", errors),
        other => ApiError::from(other).for_budapp(),
    }
}

#[utoipa::path(get, path = "/schedules/{id}/next-runs", params(NextRunsQuery), tag = "schedules",
    responses((status = 200, body = NextRuns), (status = 400, description = "count outside 1-100"),
              (status = 404, description = "Schedule not found")))]
pub(crate) async fn next_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<NextRunsQuery>,
) -> Result<Json<NextRuns>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let count = q.count.unwrap_or(10);
    if !(1..=100).contains(&count) {
        return Err(invalid(
            "Validation failed",
            vec!["count: must be between 1 and 100".into()],
        ));
    }
    let row = load(&state, id).await?;
    let spec = stored_spec(&row)?;
    let from = match q.from.as_deref() {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        "Validation failed",
                        vec![format!("from: '{text}' is not an RFC 3339 date and time")],
                    )
                })?,
        ),
    };
    let next_runs = match (from, row.status.as_str()) {
        // What the timing gives from that instant on.
        (Some(from), _) => spec.upcoming(None, from, count as usize),
        (None, "active") => spec.upcoming(row.next_run_at, Utc::now(), count as usize),
        (None, "paused") => spec.upcoming(None, Utc::now(), count as usize),
        (None, _) => Vec::new(),
    };
    Ok(Json(NextRuns {
        schedule_id: id,
        next_runs,
    }))
}

/// The original's poll answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PollAnswer {
    pub polled_at: DateTime<Utc>,
    pub due_count: usize,
    pub triggered_count: usize,
    pub error_count: usize,
    #[schema(value_type = Vec<Object>)]
    pub triggered: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
}

/// What Bud's chart's Dapr cron binding (`@every 1m`) calls on every
/// replica. Schedules do not depend on it (each replica fires them on
/// time); it fires whatever is due now, through the same once-per-due-time
/// transaction, so calls on several replicas fire nothing twice.
#[utoipa::path(post, path = "/internal/schedule-poll", tag = "schedules",
    responses((status = 200, body = PollAnswer)))]
pub(crate) async fn poll(State(state): State<AppState>) -> Result<Json<PollAnswer>, ApiError> {
    let polled_at = Utc::now();
    let report = state.engine.fire_due_schedules().await?;
    let triggered: Vec<Value> = report
        .triggered()
        .map(|f| {
            json!({
                "schedule_id": f.schedule_id, "schedule_name": f.schedule_name,
                "workflow_id": f.workflow_id, "execution_id": f.execution_id,
                "scheduled_at": f.scheduled_at, "next_run_at": f.next_run_at,
            })
        })
        .collect();
    let errors: Vec<Value> = report
        .errors()
        .map(|f| json!({"schedule_id": f.schedule_id, "schedule_name": f.schedule_name, "error": f.error}))
        .collect();
    Ok(Json(PollAnswer {
        polled_at,
        due_count: report.fired.len(),
        triggered_count: triggered.len(),
        error_count: errors.len(),
        triggered,
        errors,
    }))
}
