//! `GET /actions`: what each action takes and gives, so a UI can build forms.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::actions::ActionSpec;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionList {
    pub actions: Vec<ActionSpec>,
}

#[utoipa::path(get, path = "/actions", tag = "actions", responses((status = 200, body = ActionList)))]
pub async fn list(State(state): State<AppState>) -> Json<ActionList> {
    Json(ActionList {
        actions: state.engine.registry().specs().cloned().collect(),
    })
}

#[utoipa::path(get, path = "/actions/{action_type}", tag = "actions",
    responses((status = 200, body = ActionSpec), (status = 404, description = "unknown action")))]
pub async fn get(
    State(state): State<AppState>,
    Path(kind): Path<String>,
) -> Result<Json<ActionSpec>, ApiError> {
    match state.engine.registry().get(&kind) {
        Some(handler) => Ok(Json(handler.spec().clone())),
        None => Err(ApiError::not_found(&format!("action '{kind}'"))),
    }
}
