//! The sidecar client: service invocation with retries and a circuit breaker
//! per app id, pub/sub publish, and the wait for the sidecar at start-up.
//!
//! Contract: API.md "Outbound calls"; Dapr HTTP API: dapr-contract.md D.2,
//! D.4, D.5. This layer owns the *short* retries of one call (seconds); the
//! engine owns step retries (minutes, durable) and asks
//! [`InvokeError::is_retryable`] which failures deserve one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::time::Instant;

use super::breaker::{BreakerState, CircuitBreaker};
use super::encode_segment;
use crate::causes::chain;
use crate::config::{PublishFormat, Settings};
use crate::metrics::Metrics;

/// Longest callee body kept in an error message (errors end up in the
/// database and in API responses).
const MAX_ERROR_BODY: usize = 512;

/// Per-call context forwarded to the callee.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallHints {
    /// Sent as `idempotency-key`; the same on every retry of one call so the
    /// callee can drop duplicates. Steps use `{execution_id}:{step_id}:{attempt}`.
    pub idempotency_key: Option<String>,
    /// W3C trace context, sent as `traceparent`.
    pub traceparent: Option<String>,
    /// Sent as `x-app-api-token`: budapp accepts an internal call (one with
    /// `?user_id=` and no user JWT) only when this header, or the
    /// `dapr-api-token` its own sidecar adds, equals its `APP_API_TOKEN`.
    pub app_token: Option<String>,
    /// The callee is known to take this long: the attempt may last at least
    /// this much even when `SERVICE_INVOKE_TIMEOUT` is shorter (budsim's
    /// synchronous simulation, budapp starting a workflow).
    pub min_timeout: Option<Duration>,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The callee itself answered with this status.
    #[error("{app_id} answered {status}: {body}")]
    Status {
        app_id: String,
        status: StatusCode,
        body: String,
    },
    /// The sidecar could not be reached, or it could not reach the callee
    /// (a 5xx whose body carries Dapr's `errorCode`).
    #[error("{app_id} is unreachable: {reason}")]
    Unreachable { app_id: String, reason: String },
    /// No answer within the per-attempt timeout.
    #[error("{app_id} did not answer within {}s", after.as_secs_f64())]
    Timeout { app_id: String, after: Duration },
    /// Refused without a request: the callee failed too often lately.
    #[error("{app_id} is unavailable: circuit breaker open (retry after {}s)", retry_after.as_secs_f64().ceil())]
    CircuitOpen {
        app_id: String,
        retry_after: Duration,
    },
    /// The callee answered 2xx with a body that is not JSON.
    #[error("{app_id} sent an unreadable response: {reason}")]
    BadResponse { app_id: String, reason: String },
    /// The request could not be built (a path escaping the invoke API, a
    /// header value with control characters); retrying cannot help.
    #[error("invalid request to {app_id}: {reason}")]
    InvalidRequest { app_id: String, reason: String },
}

impl InvokeError {
    /// Whether trying again later may succeed: connection problems, timeouts,
    /// an open breaker, `408`, `429` and `5xx`. Other `4xx`, a 2xx that is
    /// not JSON (the callee did act on it) and invalid requests are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => retryable_status(*status),
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::CircuitOpen { .. } => true,
            Self::BadResponse { .. } | Self::InvalidRequest { .. } => false,
        }
    }

    /// The callee's status, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::BadResponse { .. } => "bad_response",
            Self::InvalidRequest { .. } => "invalid_request",
        }
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("publishing to {topic}: the sidecar answered {status}: {body}")]
    Status {
        topic: String,
        status: StatusCode,
        body: String,
    },
    #[error("publishing to {topic}: {reason}")]
    Unreachable { topic: String, reason: String },
}

impl PublishError {
    /// A `4xx` other than `408`/`429` (no such component, ACL) will not go
    /// away by itself; everything else may.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => retryable_status(*status),
            Self::Unreachable { .. } => true,
        }
    }
}

fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Delays between the attempts of one call: `min`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    min: Duration,
    max: Duration,
}

/// The one client for the sidecar. Cheap to clone: clones share the HTTP
/// connection pool and the circuit breakers.
#[derive(Debug, Clone)]
pub struct DaprClient {
    inner: Arc<Inner>,
    backoff: Backoff,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
    pubsub_name: String,
    publish_format: PublishFormat,
    attempt_timeout: Duration,
    max_attempts: u32,
    breaker_threshold: u32,
    breaker_recovery: Duration,
    /// One breaker per app id, created on first use. BTreeMaps so that
    /// the accessors return sorted lists without extra work.
    breakers: Mutex<BTreeMap<String, Arc<CircuitBreaker>>>,
    /// Finished calls by (app id, outcome), for metrics.
    calls: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl DaprClient {
    pub fn new(settings: &Settings) -> Self {
        let http = reqwest::Client::builder()
            // The sidecar never redirects; following one would leak the token.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            inner: Arc::new(Inner {
                http,
                endpoint: settings.dapr_http_endpoint.trim_end_matches('/').to_owned(),
                token: settings
                    .dapr_api_token
                    .clone()
                    .filter(|token| !token.is_empty()),
                pubsub_name: settings.pubsub_name.clone(),
                publish_format: settings.publish_format,
                attempt_timeout: settings.service_invoke_timeout,
                max_attempts: settings.service_invoke_max_retries.max(1),
                breaker_threshold: settings.circuit_breaker_failure_threshold,
                breaker_recovery: settings.circuit_breaker_recovery_timeout,
                breakers: Mutex::new(BTreeMap::new()),
                calls: Mutex::new(BTreeMap::new()),
            }),
            backoff: Backoff {
                min: Duration::from_secs(2),
                max: Duration::from_secs(10),
            },
            metrics: None,
        }
    }

    /// Export call outcomes and latencies to Prometheus.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Change the delays between attempts (the contract's 2 s..10 s is the
    /// default); tests use milliseconds.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = Backoff {
            min,
            max: max.max(min),
        };
        self
    }

    /// Call `method_path` on `app_id` through the sidecar and return the
    /// JSON answer (`{}` for an empty 2xx body).
    pub async fn invoke(
        &self,
        app_id: &str,
        method: Method,
        method_path: &str,
        body: Option<&Value>,
        hints: &CallHints,
    ) -> Result<Value, InvokeError> {
        // `status` is the callee's last answer, `retries` the attempts after
        // the first; a client span for the collector (budcluster's own
        // spans continue it).
        let empty = tracing::field::Empty;
        let span = tracing::info_span!("dapr.invoke", app_id = %app_id, method = %method, path = %method_path,
            status = empty, retries = empty, outcome = empty, otel.kind = empty, otel.status_code = empty);
        let started = std::time::Instant::now();
        let call = self.invoke_guarded(app_id, method, method_path, body, hints);
        let result = traced(&span, "client", call).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.kind(),
        };
        span.record("outcome", outcome);
        if let Some(metrics) = &self.metrics {
            metrics.dapr_call(app_id, outcome, started.elapsed().as_secs_f64());
        }
        *lock(&self.inner.calls)
            .entry((app_id.to_owned(), outcome))
            .or_default() += 1;
        result
    }

    /// `invoke` behind the app's circuit breaker.
    async fn invoke_guarded(
        &self,
        app_id: &str,
        method: Method,
        method_path: &str,
        body: Option<&Value>,
        hints: &CallHints,
    ) -> Result<Value, InvokeError> {
        let url = self.invoke_url(app_id, method_path)?;
        let breaker = self.breaker(app_id);
        let permit = breaker
            .try_acquire()
            .map_err(|retry_after| InvokeError::CircuitOpen {
                app_id: app_id.to_owned(),
                retry_after,
            })?;

        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.backoff.min)
            .with_max_delay(self.backoff.max)
            .with_factor(2.0)
            .with_max_times(self.inner.max_attempts as usize - 1);
        let mut retries = 0u32;
        let result = (|| self.attempt(app_id, &method, &url, body, hints))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(InvokeError::is_retryable)
            .notify(|error, delay| {
                retries += 1;
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "invocation failed; retrying");
            })
            .await;
        tracing::Span::current().record("retries", retries);

        // A permanent 4xx means the callee is up and answering: only
        // failures that say it is unwell count against the breaker.
        let healthy = !matches!(&result, Err(error) if error.is_retryable());
        match permit.record(healthy) {
            Some(BreakerState::Open) => tracing::warn!("circuit breaker opened"),
            Some(BreakerState::Closed) => tracing::info!("circuit breaker closed"),
            _ => {}
        }
        if let Err(error) = &result {
            tracing::warn!(error = %error, retryable = error.is_retryable(), "invocation failed");
        }
        result
    }

    /// One HTTP attempt.
    async fn attempt(
        &self,
        app_id: &str,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        hints: &CallHints,
    ) -> Result<Value, InvokeError> {
        let timeout = hints.min_timeout.map_or(self.inner.attempt_timeout, |t| {
            t.max(self.inner.attempt_timeout)
        });
        let mut request = self
            .authorized(self.inner.http.request(method.clone(), url.clone()))
            .timeout(timeout);
        // Hints are best effort: one that is not a valid header value (an
        // odd step id) is left out rather than failing the call.
        // When exporting, this call's own span is the callee's parent.
        let traceparent = crate::telemetry::outbound_traceparent(hints.traceparent.as_deref());
        let hinted = [
            ("idempotency-key", &hints.idempotency_key),
            ("traceparent", &traceparent),
            ("x-app-api-token", &hints.app_token),
        ];
        for (name, value) in hinted {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |error: reqwest::Error| {
            if error.is_timeout() {
                InvokeError::Timeout {
                    app_id: app_id.to_owned(),
                    after: timeout,
                }
            } else if error.is_builder() {
                InvokeError::InvalidRequest {
                    app_id: app_id.to_owned(),
                    reason: chain(&error),
                }
            } else {
                InvokeError::Unreachable {
                    app_id: app_id.to_owned(),
                    reason: chain(&error),
                }
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        let bytes = response.bytes().await.map_err(transport)?;
        classify(app_id, status, &bytes)
    }

    /// `{endpoint}/v1.0/invoke/{app_id}/method{method_path}`, refusing paths
    /// that would leave the invoke API once `..` segments are resolved.
    fn invoke_url(&self, app_id: &str, method_path: &str) -> Result<Url, InvokeError> {
        let invalid = |reason: String| InvokeError::InvalidRequest {
            app_id: app_id.to_owned(),
            reason,
        };
        if app_id.is_empty() || app_id == "." || app_id == ".." {
            return Err(invalid(format!("`{app_id}` is not an app id")));
        }
        let prefix = format!(
            "{}/v1.0/invoke/{}/method",
            self.inner.endpoint,
            encode_segment(app_id)
        );
        let slash = if method_path.starts_with('/') {
            ""
        } else {
            "/"
        };
        let url = Url::parse(&format!("{prefix}{slash}{method_path}"))
            .map_err(|e| invalid(format!("bad URL: {e}")))?;
        let base = Url::parse(&format!("{prefix}/")).map_err(|e| invalid(e.to_string()))?;
        if !url.path().starts_with(base.path()) {
            return Err(invalid(format!(
                "method path `{method_path}` leaves the invoke API"
            )));
        }
        Ok(url)
    }

    /// Publish `body` as JSON to `topic` on the configured pub/sub component,
    /// with `event_id` as the CloudEvent id so consumers can drop re-sends.
    /// No retries here: the outbox that calls this retries durably.
    pub async fn publish(
        &self,
        topic: &str,
        event_id: &str,
        body: &Value,
        traceparent: Option<&str>,
    ) -> Result<(), PublishError> {
        let empty = tracing::field::Empty;
        let span = tracing::info_span!("dapr.publish", topic = %topic, event_id = %event_id,
            status = empty, otel.kind = empty, otel.status_code = empty);
        let call = self.publish_once(topic, event_id, body, traceparent);
        traced(&span, "producer", call).await
    }

    async fn publish_once(
        &self,
        topic: &str,
        event_id: &str,
        body: &Value,
        traceparent: Option<&str>,
    ) -> Result<(), PublishError> {
        let url = format!(
            "{}/v1.0/publish/{}/{}",
            self.inner.endpoint,
            encode_segment(&self.inner.pubsub_name),
            encode_segment(topic)
        );
        let failed = |reason: String| PublishError::Unreachable {
            topic: topic.to_owned(),
            reason,
        };
        let mut request = self.authorized(self.inner.http.post(url));
        if let Some(traceparent) = crate::telemetry::outbound_traceparent(traceparent) {
            // Dapr puts it in the CloudEvent it builds, so subscribers
            // continue the execution's trace (from this span when exporting).
            request = request.header("traceparent", traceparent);
        }
        let request = request
            .query(&[("metadata.cloudevent.id", event_id)])
            .timeout(self.inner.attempt_timeout);
        let request = match self.inner.publish_format {
            PublishFormat::Json => request.json(body),
            PublishFormat::CloudEvent => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/cloudevents+json",
                )
                .body(serde_json::to_vec(body).unwrap_or_default()),
        };
        let response = request.send().await.map_err(|e| failed(chain(&e)))?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(PublishError::Status {
            topic: topic.to_owned(),
            status,
            body: truncate(&body),
        })
    }

    /// Poll `/v1.0/healthz/outbound` until it answers 2xx or `timeout`
    /// passes. Returns whether the sidecar answered. Outbound work should
    /// start either way (dapr-contract D.5: the sidecar may come up late,
    /// and every call retries anyway).
    pub async fn wait_for_sidecar(&self, timeout: Duration) -> bool {
        let url = format!("{}/v1.0/healthz/outbound", self.inner.endpoint);
        let started = Instant::now();
        let deadline = started + timeout;
        let mut delay = Duration::from_millis(250);
        let mut last_report = started;
        // Said once when nothing listens at the endpoint (a local run without
        // `dapr run`); the probes then go on quietly.
        let mut said_absent = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let probe = self
                .inner
                .http
                .get(&url)
                .timeout(remaining.clamp(Duration::from_millis(100), Duration::from_secs(1)))
                .send()
                .await;
            let (problem, absent) = match probe {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "Dapr sidecar is ready"
                    );
                    return true;
                }
                Ok(response) => (format!("answered {}", response.status()), false),
                Err(error) => (chain(&error), error.is_connect()),
            };
            if absent && !said_absent {
                said_absent = true;
                tracing::info!(
                    endpoint = %self.inner.endpoint,
                    "no Dapr sidecar answers (expected when running locally without `dapr run`): \
                     until one does, events for callback topics and NOTIFY_TOPIC wait in the outbox, \
                     and actions that call other services through Dapr (deploy_model, cluster_health, \
                     invoke_service, notification, ...) fail after their retries; \
                     built-in actions (log, transform, wait_until, ...) run normally"
                );
            }
            let now = Instant::now();
            if now >= deadline {
                if said_absent {
                    tracing::debug!(%problem, "Dapr sidecar still absent; publishing will keep trying");
                } else {
                    tracing::warn!(%problem, waited_s = timeout.as_secs_f64(), "Dapr sidecar is not ready; going on without it");
                }
                return false;
            }
            if said_absent {
                tracing::debug!(%problem, waited_s = started.elapsed().as_secs(), "waiting for the Dapr sidecar");
            } else if now.duration_since(last_report) >= Duration::from_secs(5) {
                tracing::info!(%problem, waited_s = started.elapsed().as_secs(), "waiting for the Dapr sidecar");
                last_report = now;
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Each app id's breaker state, sorted by app id.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        lock(&self.inner.breakers)
            .iter()
            .map(|(app_id, breaker)| (app_id.clone(), breaker.state()))
            .collect()
    }

    /// How many calls ended how, per app id: `(app_id, outcome, count)`
    /// where outcome is `ok` or [`InvokeError::kind`]; sorted.
    pub fn call_counts(&self) -> Vec<(String, &'static str, u64)> {
        lock(&self.inner.calls)
            .iter()
            .map(|((app_id, outcome), count)| (app_id.clone(), *outcome, *count))
            .collect()
    }

    fn breaker(&self, app_id: &str) -> Arc<CircuitBreaker> {
        let mut breakers = lock(&self.inner.breakers);
        if let Some(breaker) = breakers.get(app_id) {
            return Arc::clone(breaker);
        }
        let breaker = Arc::new(CircuitBreaker::new(
            self.inner.breaker_threshold,
            self.inner.breaker_recovery,
        ));
        breakers.insert(app_id.to_owned(), Arc::clone(&breaker));
        breaker
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.inner.token {
            Some(token) => request.header("dapr-api-token", token),
            None => request,
        }
    }
}

/// Run `call` in `span`, a span of OpenTelemetry kind `kind`, marked failed
/// when the call fails.
async fn traced<T, E>(
    span: &tracing::Span,
    kind: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    crate::telemetry::set_kind(span, kind);
    let result = tracing::Instrument::instrument(call, span.clone()).await;
    if result.is_err() {
        crate::telemetry::mark_error(span);
    }
    result
}

/// These maps are only ever inserted into or counted up, so a guard
/// poisoned by a panic elsewhere still holds whole data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turn an answer into the JSON body or an error, telling the callee's own
/// 5xx apart from the sidecar's (which carries Dapr's `errorCode`).
fn classify(app_id: &str, status: StatusCode, bytes: &[u8]) -> Result<Value, InvokeError> {
    if status.is_success() {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        return serde_json::from_slice(bytes).map_err(|e| InvokeError::BadResponse {
            app_id: app_id.to_owned(),
            reason: format!("{status} with a body that is not JSON ({e})"),
        });
    }
    let text = String::from_utf8_lossy(bytes);
    if status.is_server_error() {
        let json: Option<Value> = serde_json::from_slice(bytes).ok();
        let error_code = json
            .as_ref()
            .and_then(|v| v.get("errorCode"))
            .and_then(Value::as_str);
        if let Some(code) = error_code {
            let message = json
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(InvokeError::Unreachable {
                app_id: app_id.to_owned(),
                reason: truncate(&format!("sidecar answered {status} {code}: {message}")),
            });
        }
    }
    Err(InvokeError::Status {
        app_id: app_id.to_owned(),
        status,
        body: truncate(&text),
    })
}

fn truncate(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_ERROR_BODY {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client() -> DaprClient {
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://x/y".into()),
            "DAPR_HTTP_ENDPOINT" => Some("http://127.0.0.1:3500/".into()),
            _ => None,
        })
        .unwrap();
        DaprClient::new(&settings)
    }

    #[test]
    fn invoke_url_adds_the_missing_slash_and_encodes_the_app_id() {
        let client = client();
        let url = client.invoke_url("budcluster", "api/v1/health").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:3500/v1.0/invoke/budcluster/method/api/v1/health"
        );
        let url = client.invoke_url("a b", "/x?y=1").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:3500/v1.0/invoke/a%20b/method/x?y=1"
        );
    }

    #[test]
    fn invoke_url_refuses_paths_that_escape_the_invoke_api() {
        let client = client();
        for path in ["/../../publish/budpubsub/x", "/%2e%2e/other/method/x"] {
            let error = client.invoke_url("budcluster", path).unwrap_err();
            assert!(
                matches!(error, InvokeError::InvalidRequest { .. }),
                "{path}: {error}"
            );
            assert!(!error.is_retryable());
        }
        assert!(client.invoke_url("..", "/x").is_err());
    }

    #[test]
    fn empty_success_is_an_empty_object_and_garbage_is_a_bad_response() {
        assert_eq!(
            classify("a", StatusCode::NO_CONTENT, b"").unwrap(),
            json!({})
        );
        assert_eq!(
            classify("a", StatusCode::OK, b"{\"x\":1}").unwrap(),
            json!({"x": 1})
        );
        let error = classify("a", StatusCode::OK, b"<html>").unwrap_err();
        assert!(matches!(error, InvokeError::BadResponse { .. }), "{error}");
        assert!(!error.is_retryable());
    }

    #[test]
    fn sidecar_errors_are_unreachable_and_callee_errors_keep_their_status() {
        let sidecar = br#"{"errorCode":"ERR_DIRECT_INVOKE","message":"app not found"}"#;
        let error = classify("budcluster", StatusCode::INTERNAL_SERVER_ERROR, sidecar).unwrap_err();
        assert!(
            matches!(error, InvokeError::Unreachable { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("ERR_DIRECT_INVOKE"), "{error}");

        let callee = classify(
            "budcluster",
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"detail":"boom"}"#,
        )
        .unwrap_err();
        assert_eq!(callee.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(callee.is_retryable());
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        let cases = [
            (400, false),
            (401, false),
            (404, false),
            (408, true),
            (409, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
        ];
        for (code, expected) in cases {
            let error = InvokeError::Status {
                app_id: "a".into(),
                status: StatusCode::from_u16(code).unwrap(),
                body: String::new(),
            };
            assert_eq!(error.is_retryable(), expected, "status {code}");
        }
        let open = InvokeError::CircuitOpen {
            app_id: "budcluster".into(),
            retry_after: Duration::from_millis(29_200),
        };
        assert!(open.is_retryable());
        assert_eq!(
            open.to_string(),
            "budcluster is unavailable: circuit breaker open (retry after 30s)"
        );
    }

    #[test]
    fn long_bodies_are_truncated_on_a_char_boundary() {
        let body = "é".repeat(600);
        let short = truncate(&body);
        assert!(short.len() <= MAX_ERROR_BODY + '…'.len_utf8());
        assert!(short.ends_with('…'));
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_fails_fast_without_a_request() {
        // Nothing listens on the endpoint: if a request were made it would
        // fail as Unreachable, not CircuitOpen.
        let client = client();
        let breaker = client.breaker("budcluster");
        for _ in 0..5 {
            breaker.try_acquire().unwrap().record(false);
        }
        let error = client
            .invoke(
                "budcluster",
                Method::GET,
                "/api/v1/health",
                None,
                &CallHints::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, InvokeError::CircuitOpen { .. }),
            "{error:?}"
        );
        assert_eq!(
            client.breaker_states(),
            vec![("budcluster".to_owned(), BreakerState::Open)]
        );
        assert_eq!(
            client.call_counts(),
            vec![("budcluster".to_owned(), "circuit_open", 1)]
        );
    }
}
