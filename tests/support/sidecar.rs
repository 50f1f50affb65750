//! [`FakeSidecar`]: a stand-in for the Dapr sidecar's HTTP API, a real
//! HTTP server on `127.0.0.1:<random port>`; point `DAPR_HTTP_ENDPOINT` at
//! [`FakeSidecar::url`].
//!
//! It speaks the parts of the API the service uses (dapr-contract.md):
//! - `/v1.0/invoke/{app_id}/method/{path}` (any method): forwards to the app
//!   registered under `app_id` (`budcluster` from [`FakeSidecar::start`],
//!   more with [`FakeSidecar::add_app`]) and relays its answer as is. An
//!   unknown app, or one that cannot be reached, answers like daprd:
//!   `500 {"errorCode": "ERR_DIRECT_INVOKE", "message": ...}`.
//! - `POST /v1.0/publish/{pubsub}/{topic}`: records the event
//!   ([`FakeSidecar::published`]) and answers `204`, or `500` for the next
//!   publishes after [`FakeSidecar::fail_next_publishes`].
//! - `GET /v1.0/healthz/outbound` and `GET /v1.0/healthz`: `204`, or `500`
//!   after `set_healthy(false)`.
//!
//! With [`FakeSidecar::require_token`] set, invoke and publish demand that
//! `dapr-api-token` equals it (`401` otherwise); health checks do not, as
//! with daprd.
//!
//! The other direction, sidecar → app, is [`FakeSidecar::deliver`]: it posts
//! a CloudEvent to the app's `/workflow-events` the way daprd delivers a
//! pub/sub message. The server stops when the value is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::events::stage_of;
use super::{percent_decode, recorded_body};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// One event published through the sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub pubsub: String,
    pub topic: String,
    /// The `metadata.cloudevent.id` query parameter.
    pub cloudevent_id: Option<String>,
    pub content_type: Option<String>,
    /// The `traceparent` header (Dapr puts it in the CloudEvent).
    pub traceparent: Option<String>,
    /// The JSON body (a string when it was not JSON).
    pub body: Value,
}

/// One service invocation the sidecar received.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub app_id: String,
    pub method: String,
    /// The method path as forwarded, with its query.
    pub path: String,
    pub headers: HeaderMap,
    /// The status the caller got.
    pub status: u16,
}

struct Shared {
    apps: Mutex<HashMap<String, String>>,
    token: Mutex<Option<String>>,
    published: Mutex<Vec<Published>>,
    invocations: Mutex<Vec<Invocation>>,
    publish_failures: AtomicUsize,
    healthy: AtomicBool,
    /// Bumped on every publish so waiters wake without polling.
    publishes: watch::Sender<usize>,
    http: reqwest::Client,
}

/// The sidecar stand-in. See the module docs.
pub(crate) struct FakeSidecar {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeSidecar {
    /// A sidecar that routes app id `budcluster` to `budcluster_url`.
    pub(crate) async fn start(budcluster_url: &str) -> Self {
        let shared = Arc::new(Shared {
            apps: Mutex::new(HashMap::from([(
                "budcluster".to_owned(),
                budcluster_url.trim_end_matches('/').to_owned(),
            )])),
            token: Mutex::new(None),
            published: Mutex::new(Vec::new()),
            invocations: Mutex::new(Vec::new()),
            publish_failures: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            publishes: watch::channel(0).0,
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (url, task) = super::serve(app, "sidecar stand-in").await;
        Self { url, shared, task }
    }

    /// `http://127.0.0.1:<port>`, the value for `DAPR_HTTP_ENDPOINT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Route invocations of `app_id` to `url` (e.g. a second stand-in).
    pub(crate) fn add_app(&self, app_id: &str, url: &str) {
        let url = url.trim_end_matches('/').to_owned();
        self.shared
            .apps
            .lock()
            .unwrap()
            .insert(app_id.to_owned(), url);
    }

    /// Demand this `dapr-api-token` on invoke and publish (`None`: accept any).
    pub(crate) fn require_token(&self, token: Option<&str>) {
        *self.shared.token.lock().unwrap() = token.map(str::to_owned);
    }

    /// Answer the next `n` publishes with `500` (and record nothing).
    pub(crate) fn fail_next_publishes(&self, n: usize) {
        self.shared.publish_failures.store(n, Ordering::SeqCst);
    }

    /// `false`: the health endpoints answer `500`.
    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Every event published so far, oldest first.
    pub(crate) fn published(&self) -> Vec<Published> {
        self.shared.published.lock().unwrap().clone()
    }

    pub(crate) fn published_to(&self, topic: &str) -> Vec<Published> {
        self.published()
            .into_iter()
            .filter(|p| p.topic == topic)
            .collect()
    }

    /// The first published event matching `predicate`, waiting up to
    /// `timeout` for it to arrive; `None` if none did.
    pub(crate) async fn wait_for_published(
        &self,
        predicate: impl Fn(&Published) -> bool,
        timeout: Duration,
    ) -> Option<Published> {
        let find = || self.published().into_iter().find(|p| predicate(p));
        let mut changes = self.shared.publishes.subscribe();
        let waited = tokio::time::timeout(timeout, changes.wait_for(|_| find().is_some())).await;
        match waited {
            Ok(Ok(_)) => find(),
            _ => None,
        }
    }

    /// Every invocation so far, oldest first.
    pub(crate) fn invocations(&self) -> Vec<Invocation> {
        self.shared.invocations.lock().unwrap().clone()
    }

    /// Deliver `event_data` to the app at `app_url` as daprd delivers a
    /// pub/sub message: `POST {app_url}/workflow-events` with a CloudEvent
    /// 1.0 envelope (`Content-Type: application/cloudevents+json`, a fresh
    /// uuid `id`, `source: "budcluster"`, topic `workflow-events` on
    /// `budpubsub`) and header `dapr-api-token: app_token` (omitted when
    /// `app_token` is empty). Returns the app's status and JSON answer
    /// (`Null` when empty, a string when not JSON).
    pub(crate) async fn deliver(
        &self,
        app_url: &str,
        app_token: &str,
        event_data: Value,
    ) -> (StatusCode, Value) {
        let id = Uuid::new_v4().to_string();
        self.deliver_with_id(app_url, app_token, &id, event_data)
            .await
    }

    /// [`deliver`](Self::deliver) with a given CloudEvent `id`, to replay a
    /// delivery (the broker's at-least-once redelivery).
    pub(crate) async fn deliver_with_id(
        &self,
        app_url: &str,
        app_token: &str,
        id: &str,
        event_data: Value,
    ) -> (StatusCode, Value) {
        let envelope = json!({
            "specversion": "1.0",
            "id": id,
            "source": "budcluster",
            "type": "com.dapr.event.sent",
            "datacontenttype": "application/json",
            "topic": "workflow-events",
            "pubsubname": "budpubsub",
            "time": chrono::Utc::now().to_rfc3339(),
            "data": event_data,
        });
        self.deliver_raw(app_url, app_token, &envelope).await
    }

    /// Post `event` to the app's `/workflow-events` exactly as given: how
    /// daprd delivers an event whose publisher sent it as its own CloudEvent
    /// (`application/cloudevents+json`), as every Bud service does. daprd
    /// adds its attributes beside the publisher's fields; there is no `data`.
    pub(crate) async fn deliver_raw(
        &self,
        app_url: &str,
        app_token: &str,
        event: &Value,
    ) -> (StatusCode, Value) {
        let url = format!("{}/workflow-events", app_url.trim_end_matches('/'));
        let mut request = self
            .shared
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/cloudevents+json")
            .body(event.to_string());
        if !app_token.is_empty() {
            request = request.header("dapr-api-token", app_token);
        }
        let response = request.send().await.expect("deliver to the app");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, recorded_body(text.as_bytes()))
    }

    /// [`FakeSidecar::deliver_raw`] of an event the app must accept (200,
    /// `SUCCESS`); the answer's `outcome` (applied, ignored, duplicate,
    /// stale, kept).
    pub(crate) async fn deliver_accepted(
        &self,
        app_url: &str,
        app_token: &str,
        event: &Value,
    ) -> String {
        let (status, body) = self.deliver_raw(app_url, app_token, event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "SUCCESS", "{} -> {body}", stage_of(event));
        body["outcome"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn dapr_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"errorCode": code, "message": message})),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path == "/v1.0/healthz/outbound" || path == "/v1.0/healthz" {
        return if shared.healthy.load(Ordering::SeqCst) {
            StatusCode::NO_CONTENT.into_response()
        } else {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        };
    }
    let expected = shared.token.lock().unwrap().clone();
    if let Some(expected) = expected {
        let given = headers.get("dapr-api-token").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return dapr_error(
                StatusCode::UNAUTHORIZED,
                "ERR_API_UNAUTHORIZED",
                "invalid api token".into(),
            );
        }
    }
    if let Some(rest) = path.strip_prefix("/v1.0/invoke/") {
        return invoke(&shared, method, rest, uri.query(), headers, body).await;
    }
    if let Some(rest) = path.strip_prefix("/v1.0/publish/") {
        if method == Method::POST {
            return publish(&shared, rest, uri.query(), &headers, &body);
        }
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"errorCode": "ERR_NOT_FOUND"})),
    )
        .into_response()
}

async fn invoke(
    shared: &Shared,
    method: Method,
    rest: &str,
    query: Option<&str>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((app_id, method_path)) = rest.split_once("/method") else {
        return dapr_error(
            StatusCode::BAD_REQUEST,
            "ERR_DIRECT_INVOKE",
            "method name is missing".into(),
        );
    };
    let app_id = percent_decode(app_id, false);
    let forwarded_path = match query {
        Some(query) => format!("{method_path}?{query}"),
        None => method_path.to_owned(),
    };
    let target = shared.apps.lock().unwrap().get(&app_id).cloned();
    let response = match target {
        None => dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_DIRECT_INVOKE",
            format!("failed to invoke, id: {app_id}, err: app id {app_id} not found"),
        ),
        Some(base) => {
            forward(
                shared,
                &method,
                &app_id,
                &base,
                &forwarded_path,
                &headers,
                body,
            )
            .await
        }
    };
    shared.invocations.lock().unwrap().push(Invocation {
        app_id,
        method: method.to_string(),
        path: forwarded_path,
        headers,
        status: response.status().as_u16(),
    });
    response
}

async fn forward(
    shared: &Shared,
    method: &Method,
    app_id: &str,
    base: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = shared
        .http
        .request(method.clone(), format!("{base}{path}"))
        .header("dapr-caller-app-id", "budpipeline")
        .body(body);
    for name in [
        "content-type",
        "idempotency-key",
        "traceparent",
        "x-app-api-token",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return dapr_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_DIRECT_INVOKE",
                format!("failed to invoke, id: {app_id}, err: {error}"),
            );
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (status, bytes).into_response();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

fn publish(
    shared: &Shared,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some((pubsub, topic)) = rest.split_once('/') else {
        return dapr_error(
            StatusCode::NOT_FOUND,
            "ERR_TOPIC_NAME_EMPTY",
            "topic is empty".into(),
        );
    };
    let failing = shared
        .publish_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            "error when publishing to topic (scripted failure)".into(),
        );
    }
    let cloudevent_id = query.and_then(|query| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (percent_decode(key, true) == "metadata.cloudevent.id")
                .then(|| percent_decode(value, true))
        })
    });
    shared.published.lock().unwrap().push(Published {
        pubsub: percent_decode(pubsub, false),
        topic: percent_decode(topic, false),
        cloudevent_id,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: recorded_body(body),
    });
    shared.publishes.send_modify(|n| *n += 1);
    StatusCode::NO_CONTENT.into_response()
}
