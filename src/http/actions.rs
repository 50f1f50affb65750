//! `GET /actions`: what each action takes and gives, so a UI can build forms.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::actions::ActionSpec;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionList {
    pub actions: Vec<ActionSpec>,
}

/// Every action a step can use, with its parameters and outputs.
#[utoipa::path(get, path = "/actions", tag = "actions", responses((status = 200, body = ActionList)))]
pub async fn list(State(state): State<AppState>) -> Json<ActionList> {
    Json(ActionList {
        actions: state.engine.registry().specs().cloned().collect(),
    })
}

/// One action, with its parameters and outputs.
#[utoipa::path(get, path = "/actions/{action_type}", tag = "actions",
    params(("action_type" = String, Path, description = "the action's type, e.g. `deploy_model`")),
    responses((status = 200, body = ActionSpec), (status = 400, description = "not a valid path segment"),
              (status = 404, description = "unknown action")))]
pub async fn get(
    State(state): State<AppState>,
    kind: Result<Path<String>, PathRejection>,
) -> Result<Json<ActionSpec>, ApiError> {
    // A segment that is not UTF-8 is a JSON 400, like every other error.
    let Path(kind) = kind.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("action_type: {}", e.body_text()),
        )
    })?;
    match state.engine.registry().get(&kind) {
        Some(handler) => Ok(Json(handler.spec().clone())),
        None => Err(ApiError::not_found(&format!("action '{kind}'"))),
    }
}
