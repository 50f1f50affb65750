//! `GET /actions`: what each action takes and gives, so a UI can build
//! forms; `POST /actions/validate`: check one action's params.
//!
//! Each action carries this service's fields (`type`, `params`, `outputs`,
//! `waits_for_event`, …) and the original's camelCase metadata that
//! budadmin's forms read (`executionMode`, `params[].label`,
//! `options[{value, label}]`, `validation`, `visibleWhen`, …).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::AppJson;
use crate::actions::{ActionSpec, ParamSpec};
use crate::dag::validate::action_params;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ActionList {
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    /// Categories sorted by name, each with the types of its actions.
    #[schema(value_type = Vec<Object>)]
    pub categories: Vec<Value>,
    pub total: usize,
}

/// `cluster_id` → `Cluster ID`: a label for forms when the action names none.
fn label(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "id" => "ID".to_owned(),
            "url" => "URL".to_owned(),
            _ => {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn param(spec: &ParamSpec) -> Value {
    let validation = (spec.min.is_some() || spec.max.is_some())
        .then(|| json!({ "min": spec.min, "max": spec.max }));
    let mut described = json!({
        "name": spec.name,
        "label": label(spec.name),
        "type": spec.kind,
        "description": spec.description,
        "required": spec.required && spec.default.is_none(),
        "placeholder": null,
        "options": spec.options.as_ref().map(|options| options
            .iter()
            .map(|o| json!({ "value": o, "label": label(o) }))
            .collect::<Vec<_>>()),
        "validation": validation,
        "visibleWhen": null,
        "min": spec.min,
        "max": spec.max,
    });
    // Only a parameter that has one shows a default (`null` could be one).
    if let Some(default) = &spec.default {
        described["default"] = default.clone();
    }
    described
}

fn category_icon(category: &str) -> &'static str {
    match category {
        "Control Flow" => "git-branch",
        "Model Operations" => "cpu",
        "Cluster Operations" => "server",
        "Deployment" => "rocket",
        "Integration" => "plug",
        "Simulation" => "beaker",
        _ => "box",
    }
}

/// One action, with both this service's and the original's field names.
pub(crate) fn describe(spec: &ActionSpec) -> Value {
    json!({
        "type": spec.kind,
        "name": spec.name,
        "category": spec.category,
        "description": spec.description,
        "version": "1.0.0",
        "icon": category_icon(spec.category),
        "color": "#8c8c8c",
        "params": spec.params.iter().map(param).collect::<Vec<_>>(),
        "outputs": spec.outputs,
        "waits_for_event": spec.waits_for_event,
        "default_timeout_seconds": spec.default_timeout_seconds,
        "executionMode": if spec.waits_for_event { "event_driven" } else { "sync" },
        "timeoutSeconds": spec.default_timeout_seconds,
        "retryPolicy": null,
        "idempotent": true,
        "requiredServices": [],
        "requiredPermissions": [],
        "examples": [],
        "docsUrl": null,
    })
}

/// Every action a step can use, with its parameters and outputs.
#[utoipa::path(get, path = "/actions", tag = "actions", responses((status = 200, body = ActionList)))]
pub(crate) async fn list(State(state): State<AppState>) -> Json<ActionList> {
    let specs: Vec<&ActionSpec> = state.engine.registry().specs().collect();
    let mut categories: Vec<&str> = specs.iter().map(|s| s.category).collect();
    categories.sort_unstable();
    categories.dedup();
    let categories = categories
        .into_iter()
        .map(|name| {
            let actions: Vec<&str> = specs
                .iter()
                .filter(|s| s.category == name)
                .map(|s| s.kind)
                .collect();
            json!({ "name": name, "icon": category_icon(name), "actions": actions })
        })
        .collect();
    Json(ActionList {
        total: specs.len(),
        actions: specs.into_iter().map(describe).collect(),
        categories,
    })
}

/// One action, with its parameters and outputs.
#[utoipa::path(get, path = "/actions/{action_type}", tag = "actions",
    params(("action_type" = String, Path, description = "the action's type, e.g. `deploy_model`")),
    responses((status = 200, body = Object), (status = 400, description = "not a valid path segment"),
              (status = 404, description = "unknown action")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    kind: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    // A segment that is not UTF-8 is a JSON 400, like every other error.
    let Path(kind) =
        kind.map_err(|e| ApiError::bad_request(format!("action_type: {}", e.body_text())))?;
    match state.engine.registry().get(&kind) {
        Some(handler) => Ok(Json(describe(handler.spec()))),
        None => Err(ApiError::not_found_detail(format!(
            "action '{kind}' not found"
        ))),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ActionValidateRequest {
    /// Also accepted as `actionType`.
    #[serde(alias = "actionType")]
    pub action_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ActionValidation {
    pub valid: bool,
    pub errors: Vec<String>,
}

#[utoipa::path(post, path = "/actions/validate", request_body = ActionValidateRequest, tag = "actions",
    responses((status = 200, body = ActionValidation), (status = 404, description = "unknown action")))]
pub(crate) async fn validate(
    State(state): State<AppState>,
    AppJson(body): AppJson<ActionValidateRequest>,
) -> Result<Json<ActionValidation>, ApiError> {
    let Some(handler) = state.engine.registry().get(&body.action_type) else {
        return Err(ApiError::not_found_detail(format!(
            "action '{}' not found",
            body.action_type
        )));
    };
    let errors = action_params(handler.as_ref(), &body.params);
    Ok(Json(ActionValidation {
        valid: errors.is_empty(),
        errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_like_a_form() {
        assert_eq!(label("cluster_id"), "Cluster ID");
        assert_eq!(label("max_wait_seconds"), "Max Wait Seconds");
        assert_eq!(label("url"), "URL");
    }
}
