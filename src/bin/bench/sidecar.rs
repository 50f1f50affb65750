//! A stand-in for the Dapr sidecar: the outbound health check, service
//! invocation of budcluster (every deployment is accepted under a fresh
//! workflow id) and publish (accepted and dropped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::Result;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub deployments: AtomicU64,
    pub publishes: AtomicU64,
    pub unexpected: AtomicU64,
}

pub(crate) struct Sidecar {
    pub url: String,
    pub counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn start() -> Result<Sidecar> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route("/v1.0/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/v1.0/healthz/outbound",
            get(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/v1.0/invoke/{app_id}/method/{*path}", any(invoke))
        .route("/v1.0/publish/{pubsub}/{topic}", post(publish))
        .fallback(unexpected)
        .with_state(counters.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("bench: the stand-in sidecar stopped: {e}");
        }
    });
    Ok(Sidecar {
        url: format!("http://{addr}"),
        counters,
        task,
    })
}

async fn invoke(
    State(counters): State<Arc<Counters>>,
    method: Method,
    Path((app_id, path)): Path<(String, String)>,
) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["api", "v1", "clusters", _, "deployments"]) => {
            let n = counters.deployments.fetch_add(1, Ordering::Relaxed) + 1;
            Json(json!({
                "status": "accepted",
                "workflow_id": format!("bench-wf-{n}"),
                "deployment_id": format!("bench-dep-{n}"),
            }))
            .into_response()
        }
        (&Method::GET, ["api", "v1", "clusters", _, "health"] | ["api", "v1", "health"]) => {
            Json(json!({"healthy": true, "status": "ok"})).into_response()
        }
        _ => {
            counters.unexpected.fetch_add(1, Ordering::Relaxed);
            let detail = format!("stand-in sidecar: no {method} {app_id}/{path}");
            (StatusCode::NOT_FOUND, Json(json!({ "detail": detail }))).into_response()
        }
    }
}

async fn publish(State(counters): State<Arc<Counters>>) -> StatusCode {
    counters.publishes.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn unexpected(State(counters): State<Arc<Counters>>) -> StatusCode {
    counters.unexpected.fetch_add(1, Ordering::Relaxed);
    StatusCode::NOT_FOUND
}
