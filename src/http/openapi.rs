//! `GET /openapi.json`, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::OpenApi;

use super::{
    actions, docs, event_triggers, events, executions, ops, pipelines, runs, schedules, webhooks,
    workflows,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "budpipeline", description = "Durable DAG workflow engine for Bud Runtime"),
    paths(
        workflows::create, workflows::list, workflows::get, workflows::update, workflows::delete, workflows::check,
        executions::execute, executions::get, executions::list, executions::steps, executions::cancel,
        executions::retry, actions::list, actions::get, actions::validate, events::receive, events::subscribe,
        pipelines::validate_dag, pipelines::create, pipelines::list, pipelines::get, pipelines::update,
        pipelines::delete, runs::create, runs::run, runs::progress,
        schedules::create, schedules::list, schedules::get, schedules::update, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger, schedules::next_runs, schedules::poll,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::trigger, event_triggers::create, event_triggers::list,
        event_triggers::event_types, event_triggers::get, event_triggers::update, event_triggers::delete,
        ops::health, ops::ready, ops::metrics, ops::status, document, docs::page,
    ),
    modifiers(&TokenSecurity, &PathParameters, &OpenRoutes, &OperationIds),
    security(("dapr_api_token" = [])),
)]
pub(crate) struct ApiDoc;

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

/// Every operation of a path with `{name}` segments declares each of them as
/// a required path parameter (OpenAPI requires it; the handlers' custom
/// extractors are invisible to utoipa). `{id}` is a UUID.
struct PathParameters;

impl utoipa::Modify for PathParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names: Vec<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            if names.is_empty() {
                continue;
            }
            for op in operations(item) {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    let declared = params
                        .iter()
                        .any(|p| &p.name == name && p.parameter_in == ParameterIn::Path);
                    if declared {
                        continue;
                    }
                    let mut schema = ObjectBuilder::new().schema_type(Type::String);
                    if name == "id" {
                        schema = schema.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
                    }
                    params.push(
                        ParameterBuilder::new()
                            .name(name)
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .schema(Some(schema))
                            .build(),
                    );
                }
            }
        }
    }
}

/// Operation ids must be unique in a document; the handlers' names are not
/// (`get`, `list` in several modules), so each id is prefixed with its tag:
/// `workflows_get`, `executions_get`, `actions_get`.
struct OperationIds;

impl utoipa::Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                    if !id.starts_with(&format!("{tag}_")) {
                        *id = format!("{tag}_{id}");
                    }
                }
            }
        }
    }
}

/// The routes that need no token: the probes and metrics (API.md
/// "Authentication"), the API's own description, and `POST /trigger/{id}`
/// (the webhook's secret protects it).
struct OpenRoutes;

/// Every route served without the token (all `GET`).
pub(crate) const OPEN_ROUTES: [&str; 5] =
    ["/health", "/ready", "/metrics", "/openapi.json", "/docs"];

impl utoipa::Modify for OpenRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(op) = openapi
            .paths
            .paths
            .get_mut("/trigger/{id}")
            .and_then(|item| item.post.as_mut())
        {
            op.security = Some(Vec::new());
        }
        for path in OPEN_ROUTES {
            if let Some(op) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
            {
                op.security = Some(Vec::new());
            }
        }
    }
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document (no token needed)")))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The operations of a path item that the API uses.
fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}
