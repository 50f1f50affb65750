//! [`FakeBudcluster`]: a stand-in for budcluster, a real HTTP server on
//! `127.0.0.1:<random port>` with scripted answers that records every
//! request it gets.
//!
//! ```ignore
//! let budcluster = FakeBudcluster::start().await;
//! budcluster.push_deploy_response(503, json!({"detail": "busy"}));   // next deploy answer
//! // ... run something that calls it through a FakeSidecar ...
//! assert_eq!(budcluster.requests_to(Route::Deploy).len(), 2);
//! let workflow_id = budcluster.deploy_workflow_ids()[0].clone();    // to deliver its event
//! ```
//!
//! Routes (anything else answers `404 {"detail": "Not Found"}` unless
//! scripted under [`Route::Other`]):
//! - `POST /api/v1/clusters/{cluster_id}/deployments` ([`Route::Deploy`]),
//!   default `200 {"status": "accepted", "workflow_id": "bc-wf-<uuid>", "deployment_id": "dep-<uuid>"}`
//! - `GET /api/v1/clusters/{cluster_id}/health` and `GET /api/v1/health`
//!   ([`Route::Health`]), default `200 {"healthy": true, "status": "healthy"}`;
//!   `GET /cluster/{cluster_id}/health` (the route budcluster serves, also
//!   [`Route::Health`]), default a `ClusterHealthResponse` with `nodes` and
//!   `api` healthy
//! - `DELETE /api/v1/clusters/{cluster_id}/deployments/{deployment_id}`
//!   ([`Route::Delete`]), default `200 {"status": "accepted", "workflow_id": "bc-wf-<uuid>", "deployment_id": <from the path>}`
//!
//! Scripted answers are used first, in order ([`FakeBudcluster::push`]);
//! then the route's default ([`FakeBudcluster::set_default`] replaces it).
//! The server stops when the value is dropped.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The budcluster operations the stand-in knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    Deploy,
    Health,
    Delete,
    /// Any other method and path.
    Other,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Duration,
    /// Extra response headers (a redirect's `Location`).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            content_type: "application/json",
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A body that is not JSON (or an empty one, with `""`).
    pub(crate) fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            content_type: "text/plain",
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A redirect with this status to `location`.
    pub(crate) fn redirect(status: u16, location: &str) -> Self {
        Self::text(status, "").header("location", location)
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answer with it, after its delay.
    pub(crate) async fn send(self) -> Response {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let status = StatusCode::from_u16(self.status).expect("a valid scripted status");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response();
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, value.parse().expect("a valid scripted header"));
        }
        response
    }
}

/// A request as the stand-in received it, with the answer it gave.
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    pub route: Route,
    pub method: String,
    /// The path without the query, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The JSON body; `Null` when empty, a string when not JSON.
    pub body: Value,
    /// The status and body it answered.
    pub status: u16,
    pub response: Value,
    pub at: Instant,
}

impl RecordedRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    queued: HashMap<Route, VecDeque<Reply>>,
    defaults: HashMap<Route, Reply>,
    requests: Vec<RecordedRequest>,
}

/// The budcluster stand-in. See the module docs.
pub(crate) struct FakeBudcluster {
    url: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl FakeBudcluster {
    pub(crate) async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&script));
        let (url, task) = super::serve(app, "budcluster stand-in").await;
        Self { url, script, task }
    }

    /// `http://127.0.0.1:<port>`, what a [`super::sidecar::FakeSidecar`] forwards to.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Queue the next answer for `route`.
    pub(crate) fn push(&self, route: Route, reply: Reply) {
        let mut script = self.script.lock().unwrap();
        script.queued.entry(route).or_default().push_back(reply);
    }

    pub(crate) fn push_deploy_response(&self, status: u16, body: Value) {
        self.push(Route::Deploy, Reply::json(status, body));
    }

    pub(crate) fn push_health_response(&self, status: u16, body: Value) {
        self.push(Route::Health, Reply::json(status, body));
    }

    pub(crate) fn push_delete_response(&self, status: u16, body: Value) {
        self.push(Route::Delete, Reply::json(status, body));
    }

    /// Answer `route` with `reply` whenever nothing is queued.
    pub(crate) fn set_default(&self, route: Route, reply: Reply) {
        self.script.lock().unwrap().defaults.insert(route, reply);
    }

    /// Every request so far, oldest first.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.script.lock().unwrap().requests.clone()
    }

    pub(crate) fn requests_to(&self, route: Route) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.route == route)
            .collect()
    }

    pub(crate) fn request_count(&self) -> usize {
        self.script.lock().unwrap().requests.len()
    }

    /// The `workflow_id`s handed out by answered deploy requests (2xx), in
    /// order: the correlation ids of the events a test delivers.
    pub(crate) fn deploy_workflow_ids(&self) -> Vec<String> {
        self.requests_to(Route::Deploy)
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .filter_map(|r| r.response["workflow_id"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for FakeBudcluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The event budcluster publishes when its workflow ends (the design note's
/// example): `{"event_type", "event", "workflow_id", "status", "content"}`.
pub(crate) fn deployment_event(workflow_id: &str, status: &str, content: Value) -> Value {
    json!({
        "event_type": "deployment_status",
        "event": "verify_deployment_status",
        "workflow_id": workflow_id,
        "status": status,
        "content": content,
    })
}

fn route_of(method: &Method, path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "v1", "clusters", _, "deployments"]) => Route::Deploy,
        (
            "GET",
            ["api", "v1", "clusters", _, "health"]
            | ["api", "v1", "health"]
            | ["cluster", _, "health"],
        ) => Route::Health,
        ("DELETE", ["api", "v1", "clusters", _, "deployments", _]) => Route::Delete,
        _ => Route::Other,
    }
}

fn default_reply(route: Route, path: &str) -> Reply {
    let workflow_id = format!("bc-wf-{}", Uuid::new_v4());
    match route {
        Route::Deploy => Reply::json(
            200,
            json!({"status": "accepted", "workflow_id": workflow_id,
                   "deployment_id": format!("dep-{}", Uuid::new_v4())}),
        ),
        // budcluster's ClusterHealthResponse for the route it serves.
        Route::Health if path.starts_with("/cluster/") => Reply::json(
            200,
            json!({"object": "info", "message": "Cluster health check completed",
                   "data": {"nodes": {"healthy": true, "message": "All nodes ready", "count": 3},
                            "api": {"healthy": true, "message": "API server responding"}}}),
        ),
        Route::Health => Reply::json(200, json!({"healthy": true, "status": "healthy"})),
        Route::Delete => Reply::json(
            200,
            json!({"status": "accepted", "workflow_id": workflow_id,
                   "deployment_id": path.rsplit('/').next().unwrap_or_default()}),
        ),
        Route::Other => Reply::json(404, json!({"detail": "Not Found"})),
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_owned();
    let route = route_of(&method, &path);
    let reply = {
        let mut script = script.lock().unwrap();
        let queued = script.queued.get_mut(&route).and_then(VecDeque::pop_front);
        queued
            .or_else(|| script.defaults.get(&route).cloned())
            .unwrap_or_else(|| default_reply(route, &path))
    };
    script.lock().unwrap().requests.push(RecordedRequest {
        route,
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers,
        body: super::recorded_body(&body),
        status: reply.status,
        response: serde_json::from_str(&reply.body)
            .unwrap_or_else(|_| Value::String(reply.body.clone())),
        at,
    });
    reply.send().await
}
