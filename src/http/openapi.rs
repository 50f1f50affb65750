//! `GET /openapi.json`, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::OpenApi;

use super::{actions, events, executions, ops, workflows};

#[derive(OpenApi)]
#[openapi(
    info(title = "budpipeline", description = "Durable DAG workflow engine for Bud Runtime"),
    paths(
        workflows::create, workflows::list, workflows::get, workflows::update, workflows::delete, workflows::check,
        executions::execute, executions::get, executions::list, executions::steps, executions::cancel,
        executions::retry, actions::list, actions::get, events::receive, events::subscribe,
        ops::health, ops::ready, ops::metrics, ops::status, document,
    ),
    modifiers(&TokenSecurity),
    security(("dapr_api_token" = [])),
)]
pub struct ApiDoc;

struct TokenSecurity;

impl utoipa::Modify for TokenSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "dapr_api_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("dapr-api-token"))),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
