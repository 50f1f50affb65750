//! The HTTP API (API.md): routes, the token middleware, request metrics.

pub(crate) mod actions;
pub(crate) mod cache;
pub(crate) mod coalesce;
pub(crate) mod docs;
pub(crate) mod error;
pub(crate) mod event_triggers;
pub(crate) mod events;
pub(crate) mod executions;
pub(crate) mod extract;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod paging;
pub(crate) mod pipelines;
pub(crate) mod runs;
pub(crate) mod schedules;
pub(crate) mod server;
pub(crate) mod webhooks;
pub(crate) mod workflows;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::dapr::DaprClient;
use crate::engine::Engine;
use crate::metrics::{HttpLabels, RouteLabels};
use error::ApiError;

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub dapr: DaprClient,
    /// Set once migrations are applied; `/ready` waits for it.
    pub migrated: Arc<AtomicBool>,
    pub started: Instant,
    /// Execution documents kept for `GET /executions/{id}`.
    pub reads: Arc<cache::ReadCache>,
    /// Concurrent `GET /executions/{id}` of one execution share a query.
    pub read_flights: Arc<coalesce::Coalescer<uuid::Uuid, Option<axum::body::Bytes>>>,
    /// `GET /executions`' large totals, kept a few seconds per filter.
    pub totals: Arc<paging::TotalCache>,
    /// `POST /trigger/{id}` calls per webhook on this replica.
    pub webhook_limiter: Arc<webhooks::RateLimiter>,
}

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/workflows", post(workflows::create).get(workflows::list))
        .route("/workflows/validate", post(workflows::check))
        .route(
            "/workflows/{id}",
            get(workflows::get)
                .put(workflows::update)
                .delete(workflows::delete),
        )
        .route("/workflows/{id}/execute", post(executions::execute))
        .route("/executions", get(executions::list).post(runs::create))
        .route("/executions/run", post(runs::run))
        .route("/executions/{id}", get(executions::get))
        .route("/executions/{id}/progress", get(runs::progress))
        .route("/executions/{id}/steps", get(executions::steps))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/retry", post(executions::retry))
        .route("/actions", get(actions::list))
        .route("/actions/validate", post(actions::validate))
        .route("/actions/{action_type}", get(actions::get))
        // The original's routes, as budapp calls them (COMPAT.md).
        .route("/validate", post(pipelines::validate_dag))
        .route("/pipelines", post(pipelines::create).get(pipelines::list))
        .route(
            "/pipelines/{id}",
            get(pipelines::get)
                .put(pipelines::update)
                .delete(pipelines::delete),
        )
        .route("/schedules", post(schedules::create).get(schedules::list))
        .route(
            "/schedules/{id}",
            get(schedules::get)
                .put(schedules::update)
                .delete(schedules::delete),
        )
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route("/schedules/{id}/trigger", post(schedules::trigger))
        .route("/schedules/{id}/next-runs", get(schedules::next_runs))
        .route("/internal/schedule-poll", post(schedules::poll))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/event-triggers",
            post(event_triggers::create).get(event_triggers::list),
        )
        .route(
            "/event-triggers/event-types",
            get(event_triggers::event_types),
        )
        .route(
            "/event-triggers/{id}",
            get(event_triggers::get)
                .put(event_triggers::update)
                .delete(event_triggers::delete),
        )
        .route("/workflow-events", post(events::receive))
        .route("/dapr/subscribe", get(events::subscribe))
        .route("/internal/status", get(ops::status))
        // Applied to matched routes only, so an unknown path is a 404 whatever the token.
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Open: probes, metrics, and the API's own description (it carries no
    // data; the same document is in the repository as docs/openapi.json).
    let open = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(docs::page))
        // Callers outside the mesh: the webhook's own secret protects it.
        .route("/trigger/{id}", post(webhooks::trigger));
    let limit = state.engine.settings().max_body_bytes;
    Router::new()
        .merge(protected)
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found_detail("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("Method Not Allowed".into())
}

/// Every error answer is JSON `{"detail": ...}` (API.md "Conventions"), even
/// one that did not come from [`ApiError`]: the rejection of a plain axum
/// extractor (such as the body limit of `Bytes`), or a layer's own answer.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "request body is too large".to_owned()
    } else if text.is_empty() || status.is_server_error() {
        // A server error's own text is not for the client.
        reason.to_owned()
    } else {
        text
    };
    let mut out = (status, Json(json!({ "detail": detail }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// `dapr-api-token` must equal `APP_API_TOKEN`, compared in constant time.
/// With no token configured every protected route is refused (fail closed).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let expected = state.engine.settings().app_token();
    let given = request
        .headers()
        .get("dapr-api-token")
        .map(|v| v.as_bytes());
    let allowed = match (expected, given) {
        (Some(expected), Some(given)) => bool::from(expected.as_bytes().ct_eq(given)),
        _ => false,
    };
    if !allowed {
        return ApiError::forbidden().into_response();
    }
    next.run(request).await
}

/// Routes polled by kubelet and Prometheus: their spans are logged but
/// never exported (see [`crate::telemetry::PROBE_TARGET`]).
const PROBES: [&str; 3] = ["/health", "/ready", "/metrics"];

/// A span per request (continuing the caller's `traceparent`) and the
/// request metrics, labelled by route template, not raw path.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Probes and scrapes get their own target when exporting, so they are
    // logged as before but never sent to the collector.
    let empty = tracing::field::Empty;
    let span = if crate::telemetry::exporting() && PROBES.contains(&route.as_str()) {
        tracing::info_span!(target: crate::telemetry::PROBE_TARGET, "request", %method, %route,
            traceparent = %traceparent)
    } else {
        tracing::info_span!("request", %method, %route, traceparent = %traceparent,
            status = empty, otel.name = empty, otel.kind = empty, otel.status_code = empty)
    };
    crate::telemetry::name_span(&span, || format!("{method} {route}"), "server");
    crate::telemetry::continue_remote(&span, request.headers());
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    span.record("status", status);
    if status >= 500 {
        crate::telemetry::mark_error(&span);
    }
    // The cause of a 5xx, which the client never sees, is logged here, once,
    // with the request's method and route.
    if let Some(cause) = response.extensions().get::<error::Cause>() {
        span.in_scope(|| {
            if cause.internal {
                tracing::error!(status, error = %cause.chain, "request failed");
            } else {
                tracing::warn!(status, error = %cause.chain, "request failed: a dependency is unavailable");
            }
        });
    }
    let metrics = state.engine.metrics();
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed);
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1e3, "request finished"));
    response
}
