//! [`FakeBud`]: a stand-in for any Bud service (budapp, budsim,
//! budcluster, ...), a real HTTP server on `127.0.0.1:<random port>` that
//! answers scripted replies per route and records every request.
//!
//! ```ignore
//! let budapp = FakeBud::start().await;
//! budapp.on("POST", "/models/local-model-workflow", Reply::json(200, json!({...})));
//! sidecar.add_app("budapp", budapp.url());
//! // ... run a step ...
//! let sent = budapp.requests_to("POST", "/models/local-model-workflow");
//! assert_eq!(sent[0].query.as_deref(), Some("user_id=..."));
//! ```
//!
//! A route is a method and a path pattern whose `*` segments match any one
//! segment. A route's replies are used in order; its last one keeps
//! answering. An unscripted request answers FastAPI's
//! `404 {"detail": "Not Found"}`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;
use tokio::task::JoinHandle;

pub(crate) use super::budcluster::Reply;

/// A request as the stand-in received it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The JSON body; `Null` when empty, a string when not JSON.
    pub body: Value,
    pub status: u16,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of query parameter `name`, percent-decoded.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| super::percent_decode(v, true))
        })
    }
}

struct Route {
    method: String,
    pattern: Vec<String>,
    replies: Vec<Reply>,
    used: usize,
}

impl Route {
    fn matches(&self, method: &str, path: &str) -> bool {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.method == method
            && self.pattern.len() == segments.len()
            && self
                .pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == "*" || p == s)
    }
}

#[derive(Default)]
struct Script {
    routes: Vec<Route>,
    requests: Vec<Request>,
}

/// The stand-in. See the module docs.
pub(crate) struct FakeBud {
    url: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl FakeBud {
    pub(crate) async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&script));
        let (url, task) = super::serve(app, "Bud stand-in").await;
        Self { url, script, task }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Add `reply` to the route `method pattern` (created on first use).
    pub(crate) fn on(&self, method: &str, pattern: &str, reply: Reply) {
        let mut script = self.script.lock().unwrap();
        let pattern: Vec<String> = pattern
            .trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        match script
            .routes
            .iter_mut()
            .find(|r| r.method == method && r.pattern == pattern)
        {
            Some(route) => route.replies.push(reply),
            None => script.routes.push(Route {
                method: method.to_owned(),
                pattern,
                replies: vec![reply],
                used: 0,
            }),
        }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.script.lock().unwrap().requests.clone()
    }

    /// The requests whose method and path match `method pattern`.
    pub(crate) fn requests_to(&self, method: &str, pattern: &str) -> Vec<Request> {
        let probe = Route {
            method: method.to_owned(),
            pattern: pattern
                .trim_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect(),
            replies: Vec::new(),
            used: 0,
        };
        self.requests()
            .into_iter()
            .filter(|r| probe.matches(&r.method, &r.path))
            .collect()
    }
}

impl Drop for FakeBud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let reply = {
        let mut script = script.lock().unwrap();
        match script
            .routes
            .iter_mut()
            .find(|r| r.matches(method.as_str(), &path))
        {
            Some(route) => {
                let reply = route.replies[route.used.min(route.replies.len() - 1)].clone();
                route.used += 1;
                reply
            }
            None => Reply::json(404, serde_json::json!({"detail": "Not Found"})),
        }
    };
    script.lock().unwrap().requests.push(Request {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers,
        body: super::recorded_body(&body),
        status: reply.status,
    });
    reply.send().await
}
