//! The original's execution routes, as budapp calls them (COMPAT.md
//! "Executions"): `POST /executions` (a stored pipeline), `POST
//! /executions/run` (a whole definition, not stored as a pipeline) and
//! `GET /executions/{id}/progress`. They start and read the same executions
//! as the API.md routes: nothing runs inside the request.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Detail};
use super::executions::{ExecuteRequest, StepView, load, new_execution, start_traced};
use super::extract::{AppJson, Id};
use crate::dag::validate::validate;
use crate::db::pipelines::{self, Definition};
use crate::engine::control::{ControlError, StartOutcome, Started};

/// The original's `ExecutionCreateRequest` (and `EphemeralExecutionRequest`
/// with `pipeline_definition` instead of `workflow_id`).
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct RunRequest {
    /// The pipeline to run (`POST /executions`).
    pub workflow_id: Option<String>,
    /// The whole definition to run (`POST /executions/run`).
    #[schema(value_type = Option<Object>)]
    pub pipeline_definition: Option<Value>,
    /// What the steps see as `params` (`parameters` on the API.md route).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub callback_topics: Option<Vec<String>>,
    /// Added to the parameters as `user_id`, as the original does.
    pub user_id: Option<String>,
    pub initiator: Option<String>,
    pub subscriber_ids: Option<String>,
    pub payload_type: Option<String>,
    pub notification_workflow_id: Option<String>,
}

/// The original's `ExecutionResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunResponse {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_name: String,
    pub workflow_version: i32,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    #[schema(value_type = Object)]
    pub outputs: Map<String, Value>,
    pub error: Option<String>,
}

impl RunRequest {
    fn into_execute(self) -> (ExecuteRequest, Map<String, Value>) {
        let mut params = self.params;
        if let Some(user) = self.user_id.as_ref().filter(|u| !u.is_empty()) {
            params.insert("user_id".into(), Value::String(user.clone()));
        }
        let request = ExecuteRequest {
            parameters: params.clone(),
            callback_topics: self.callback_topics.unwrap_or_default(),
            initiator: self.initiator.or(self.user_id),
            subscriber_ids: self.subscriber_ids,
            payload_type: self.payload_type,
            notification_workflow_id: self.notification_workflow_id,
        };
        (request, params)
    }
}

async fn start(
    state: &AppState,
    workflow_id: Uuid,
    name: String,
    body: RunRequest,
    headers: &HeaderMap,
) -> Result<(StatusCode, Json<RunResponse>), ApiError> {
    let (request, params) = body.into_execute();
    let new = new_execution(workflow_id, request, headers).map_err(ApiError::for_budapp)?;
    let (status, started): (StatusCode, Started) = match start_traced(state, new).await {
        Ok(StartOutcome::Created(s)) => (StatusCode::CREATED, s),
        Ok(StartOutcome::Repeated(s)) => (StatusCode::OK, s),
        Err(ControlError::WorkflowNotFound) => {
            return Err(ApiError::not_found_detail(format!(
                "Pipeline not found: {workflow_id}"
            )));
        }
        Err(ControlError::NotRunnable(status)) => {
            return Err(ApiError::BadRequest(Detail::Object(json!({
                "error": format!("Pipeline is {status}"),
                "message": super::error::not_runnable(&status),
            }))));
        }
        Err(e) => return Err(ApiError::from(e).for_budapp()),
    };
    Ok((
        status,
        Json(RunResponse {
            execution_id: started.execution_id,
            workflow_id: started.workflow_id,
            workflow_name: name,
            workflow_version: started.workflow_version,
            status: started.status,
            started_at: started.created_at,
            created_at: started.created_at,
            completed_at: None,
            params,
            outputs: Map::new(),
            error: None,
        }),
    ))
}

#[utoipa::path(post, path = "/executions", request_body = RunRequest, tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 201, body = RunResponse), (status = 200, body = RunResponse, description = "repeated Idempotency-Key"),
              (status = 400, description = "a draft, or invalid parameters"), (status = 404, description = "unknown pipeline")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(body): AppJson<RunRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(raw) = body.workflow_id.clone() else {
        return Err(ApiError::BadRequest(Detail::Object(
            json!({"error": "Validation failed", "errors": ["workflow_id: Field required"]}),
        )));
    };
    let not_found = || ApiError::not_found_detail(format!("Pipeline not found: {raw}"));
    let workflow_id: Uuid = raw.trim().parse().map_err(|_| not_found())?;
    let name = pipelines::name_of(state.engine.pool(), workflow_id)
        .await?
        .ok_or_else(not_found)?;
    start(&state, workflow_id, name, body, &headers).await
}

#[utoipa::path(post, path = "/executions/run", request_body = RunRequest, tag = "executions",
    responses((status = 201, body = RunResponse), (status = 400, description = "invalid pipeline definition")))]
pub(crate) async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(body): AppJson<RunRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |errors: Vec<String>| {
        ApiError::BadRequest(Detail::Object(
            json!({ "error": "Invalid pipeline definition", "errors": errors }),
        ))
    };
    let Some(doc) = &body.pipeline_definition else {
        return Err(invalid(vec!["pipeline_definition: Field required".into()]));
    };
    let report = validate(doc, state.engine.registry());
    let dag = match report.dag {
        Some(dag) if report.errors.is_empty() => dag,
        _ => return Err(invalid(report.errors)),
    };
    let stored = serde_json::to_value(&dag).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let name = if dag.name.trim().is_empty() {
        "Ephemeral Pipeline".to_owned()
    } else {
        dag.name.clone()
    };
    let def = Definition {
        name: &name,
        owner: body.user_id.as_deref(),
        system_owned: false,
        icon: None,
        description: dag.description.as_deref(),
        dag: &stored,
        step_count: dag.steps.len() as i32,
        draft: false,
    };
    let mut tx = state.engine.pool().begin().await?;
    let workflow_id = pipelines::insert(&mut tx, &def, true).await?;
    tx.commit().await?;
    start(&state, workflow_id, name, body, &headers).await
}

/// A step as budadmin's execution view reads it: API.md's fields plus the
/// original's names (`step_name`, `start_time`, `end_time`, `error_message`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProgressStep {
    #[serde(flatten)]
    pub step: StepView,
    pub step_name: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub sequence_number: usize,
    pub progress_percentage: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AggregatedProgress {
    pub overall_progress: f64,
    pub eta_seconds: Option<f64>,
    pub completed_steps: usize,
    pub total_steps: usize,
    pub current_step: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Progress {
    /// The execution as `GET /executions/{id}` has it, without its steps.
    #[schema(value_type = Object)]
    pub execution: Value,
    pub steps: Vec<ProgressStep>,
    pub aggregated_progress: AggregatedProgress,
    /// The events other services sent for this execution's waits, newest
    /// last (at most 20).
    #[schema(value_type = Vec<Object>)]
    pub recent_events: Vec<Value>,
}

fn finished(status: &str) -> bool {
    matches!(status, "COMPLETED" | "SKIPPED")
}

fn seconds(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<f64> {
    Some((to? - from?).num_milliseconds() as f64 / 1000.0)
}

/// The original's aggregation: finished steps count 100, running ones their
/// progress; the ETA is the mean duration of finished steps times what is
/// left.
fn aggregate(steps: &[StepView]) -> AggregatedProgress {
    let total = steps.len();
    let completed = steps.iter().filter(|s| finished(&s.status)).count();
    let sum: f64 = steps
        .iter()
        .map(|s| match s.status.as_str() {
            "COMPLETED" | "SKIPPED" => 100.0,
            "RUNNING" | "FAILED" => s.progress.unwrap_or(0.0),
            _ => 0.0,
        })
        .sum();
    let overall = if total == 0 {
        100.0
    } else {
        (sum / total as f64 * 100.0).round() / 100.0
    };
    let durations: Vec<f64> = steps
        .iter()
        .filter(|s| finished(&s.status))
        .filter_map(|s| seconds(s.started_at, s.completed_at))
        .collect();
    let eta_seconds = (!durations.is_empty() && completed < total).then(|| {
        let mean = durations.iter().sum::<f64>() / durations.len() as f64;
        let left: f64 = steps
            .iter()
            .map(|s| match s.status.as_str() {
                "RUNNING" => 1.0 - s.progress.unwrap_or(0.0) / 100.0,
                "PENDING" => 1.0,
                _ => 0.0,
            })
            .sum();
        (left * mean).max(0.0)
    });
    AggregatedProgress {
        overall_progress: overall,
        eta_seconds,
        completed_steps: completed,
        total_steps: total,
        current_step: steps
            .iter()
            .rev()
            .find(|s| s.status == "RUNNING")
            .map(|s| s.name.clone()),
    }
}

#[utoipa::path(get, path = "/executions/{id}/progress", tag = "executions",
    params(("id" = Uuid, Path, description = "execution id")),
    responses((status = 200, body = Progress), (status = 404, description = "unknown execution")))]
pub(crate) async fn progress(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Progress>, ApiError> {
    let mut exec = load(&state, id).await?;
    let steps = exec.steps.take().unwrap_or_default();
    let correlation_ids: Vec<String> = steps
        .iter()
        .filter_map(|s| s.external_workflow_id.clone())
        .collect();
    let recent_events: Vec<Value> = if correlation_ids.is_empty() {
        Vec::new()
    } else {
        crate::db::events::recent(state.engine.pool(), &correlation_ids).await?
    };
    let aggregated_progress = aggregate(&steps);
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| ProgressStep {
            step_name: step.name.clone(),
            start_time: step.started_at,
            end_time: step.completed_at,
            error_message: step.error.clone(),
            sequence_number: i,
            progress_percentage: if finished(&step.status) {
                100.0
            } else {
                step.progress.unwrap_or(0.0)
            },
            step,
        })
        .collect();
    let execution = serde_json::to_value(&exec).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Json(Progress {
        execution,
        steps,
        aggregated_progress,
        recent_events,
    }))
}
