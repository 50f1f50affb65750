//! The original's webhook routes (COMPAT.md "Triggers"): `/webhooks` CRUD,
//! `rotate-secret`, and `POST /trigger/{id}`, which callers outside the mesh
//! use: it is exempt from the app token and protected by the webhook's own
//! secret, its `allowed_ips` and a per-webhook rate limit.
//!
//! The secret is 32 random bytes (URL-safe base64, as the original's
//! `token_urlsafe(32)`), shown once (on create and rotate), stored as its
//! SHA-256, and compared in constant time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::executions::{hex, trace_id};
use super::extract::{AppJson, AppQuery, OptionalJson};
use super::schedules::{
    TriggerResponse, check_name, check_pipeline, invalid, path_id, start_error, workflow_filter,
};
use crate::db::triggers::{self as db, WebhookFields, WebhookRow};
use crate::engine::control::{ControlError, NewExecution, Recorded};

/// The header that carries a webhook's secret (the original's).
pub(crate) const SECRET_HEADER: &str = "x-webhook-secret";
const MAX_LIST: usize = 100;

/// The original's `WebhookConfig`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookConfig {
    /// Default true: a secret is generated and must be sent as `X-Webhook-Secret`.
    pub require_secret: Option<bool>,
    /// Addresses or CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`) allowed to
    /// trigger; empty or absent: any.
    pub allowed_ips: Option<Vec<String>>,
    /// Request headers passed to the run as `header_<name>` parameters.
    pub headers_to_include: Option<Vec<String>>,
}

/// The original's `WebhookCreate` / `WebhookUpdate`; budadmin sends
/// `require_secret` at the top level, read as well as `config.require_secret`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct WebhookRequest {
    pub workflow_id: Option<String>,
    pub name: Option<String>,
    pub config: Option<WebhookConfig>,
    pub require_secret: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookConfigView {
    pub require_secret: bool,
    pub allowed_ips: Option<Vec<String>>,
    pub headers_to_include: Vec<String>,
}

/// The original's `WebhookResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookView {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    /// `<this service>/trigger/<id>`, from the request's Host.
    pub endpoint_url: String,
    pub config: WebhookConfigView,
    #[schema(value_type = Object)]
    pub params: Value,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
    /// Only in the answer of create and rotate-secret: it is not kept.
    pub secret: Option<String>,
}

impl WebhookRow {
    fn view(self, base: &str, secret: Option<String>) -> WebhookView {
        WebhookView {
            endpoint_url: format!("{base}/trigger/{}", self.id),
            id: self.id,
            workflow_id: self.workflow_id,
            name: self.name,
            config: WebhookConfigView {
                require_secret: self.secret_hash.is_some(),
                allowed_ips: self.allowed_ips,
                headers_to_include: self.headers_to_include,
            },
            params: self.params,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_triggered_at: self.last_triggered_at,
            trigger_count: self.trigger_count,
            secret,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct WebhookQuery {
    pub workflow_id: Option<String>,
    pub enabled: Option<bool>,
}

/// An address (`10.1.2.3`, `::1`) or a CIDR range (`10.0.0.0/8`).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| IpNet::from(ip.to_canonical()))
}

fn not_found() -> ApiError {
    ApiError::not_found_detail("Webhook not found")
}

/// `http://<Host>`, what the original's `request.base_url` gave.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(e.to_string().into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// `allowed_ips` and `headers_to_include`, checked.
fn check_config(
    config: &WebhookConfig,
    errors: &mut Vec<String>,
) -> (Option<Vec<String>>, Vec<String>) {
    let ips = config.allowed_ips.as_ref().map(|ips| {
        if ips.len() > MAX_LIST {
            errors.push(format!("config.allowed_ips: at most {MAX_LIST} entries"));
        }
        ips.iter()
            .enumerate()
            .filter_map(|(i, ip)| match parse_net(ip) {
                Some(net) => Some(net.to_string()),
                None => {
                    errors.push(format!(
                        "config.allowed_ips[{i}]: '{ip}' is not an IP address or CIDR range"
                    ));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let headers = config.headers_to_include.clone().unwrap_or_default();
    if headers.len() > MAX_LIST {
        errors.push(format!(
            "config.headers_to_include: at most {MAX_LIST} entries"
        ));
    }
    for (i, h) in headers.iter().enumerate() {
        if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            errors.push(format!(
                "config.headers_to_include[{i}]: '{h}' is not a header name"
            ));
        }
    }
    (ips.filter(|v| !v.is_empty()), headers)
}

async fn load(state: &AppState, id: Uuid) -> Result<Option<WebhookRow>, ApiError> {
    Ok(db::get_webhook(state.engine.pool(), id, db::Read::Plain).await?)
}

#[utoipa::path(post, path = "/webhooks", request_body = WebhookRequest, tag = "webhooks",
    responses((status = 201, body = WebhookView, description = "with the secret, shown this once"),
              (status = 400, description = "invalid, naming the field"), (status = 404, description = "unknown pipeline")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(body): AppJson<WebhookRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = Vec::new();
    if body.workflow_id.is_none() {
        errors.push("workflow_id: Field required".to_owned());
    }
    check_name(body.name.as_deref(), true, &mut errors);
    let config = body.config.clone().unwrap_or_default();
    let (ips, include) = check_config(&config, &mut errors);
    if !errors.is_empty() {
        return Err(invalid("Invalid webhook", errors));
    }
    let workflow_id = check_pipeline(&state, body.workflow_id.as_deref()).await?;
    let require_secret = body
        .require_secret
        .or(config.require_secret)
        .unwrap_or(true);
    let secret = if require_secret {
        Some(new_secret()?)
    } else {
        None
    };
    let hash = secret.as_deref().map(hash_secret);
    let params = Value::Object(body.params.clone().unwrap_or_default());
    let fields = WebhookFields {
        name: body.name.as_deref().unwrap_or_default().trim(),
        secret_hash: hash.as_deref(),
        allowed_ips: ips.as_deref(),
        headers_to_include: &include,
        params: &params,
        enabled: body.enabled.unwrap_or(true),
    };
    let row = db::insert_webhook(state.engine.pool(), Uuid::new_v4(), workflow_id, &fields).await?;
    Ok((
        StatusCode::CREATED,
        Json(row.view(&base_url(&headers), secret)),
    ))
}

#[utoipa::path(get, path = "/webhooks", params(WebhookQuery), tag = "webhooks",
    responses((status = 200, body = Vec<WebhookView>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppQuery(q): AppQuery<WebhookQuery>,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let Ok(workflow_id) = workflow_filter(q.workflow_id.as_deref()) else {
        return Ok(Json(Vec::new()));
    };
    let rows = db::list_webhooks(state.engine.pool(), workflow_id, q.enabled).await?;
    let base = base_url(&headers);
    Ok(Json(
        rows.into_iter().map(|r| r.view(&base, None)).collect(),
    ))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    responses((status = 200, body = WebhookView), (status = 404, description = "Webhook not found")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let row = load(&state, id).await?.ok_or_else(not_found)?;
    Ok(Json(row.view(&base_url(&headers), None)))
}

#[utoipa::path(put, path = "/webhooks/{id}", request_body = WebhookRequest, tag = "webhooks",
    responses((status = 200, body = WebhookView, description = "with a secret only if this update created one"),
              (status = 400, description = "invalid, naming the field"), (status = 404, description = "Webhook not found")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    AppJson(body): AppJson<WebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let mut errors = Vec::new();
    check_name(body.name.as_deref(), false, &mut errors);
    let checked = body.config.as_ref().map(|c| check_config(c, &mut errors));
    if !errors.is_empty() {
        return Err(invalid("Invalid webhook", errors));
    }
    let mut tx = state.engine.pool().begin().await?;
    let row = db::get_webhook(&mut *tx, id, db::Read::ForUpdate)
        .await?
        .ok_or_else(not_found)?;
    let (ips, include) =
        checked.unwrap_or((row.allowed_ips.clone(), row.headers_to_include.clone()));
    let require = body
        .require_secret
        .or(body.config.as_ref().and_then(|c| c.require_secret));
    let (hash, secret) = match (require, &row.secret_hash) {
        (Some(false), _) => (None, None),
        (Some(true), None) => {
            let s = new_secret()?;
            (Some(hash_secret(&s)), Some(s))
        }
        (_, current) => (current.clone(), None),
    };
    let params = body
        .params
        .clone()
        .map(Value::Object)
        .unwrap_or(row.params.clone());
    let fields = WebhookFields {
        name: body.name.as_deref().map(str::trim).unwrap_or(&row.name),
        secret_hash: hash.as_deref(),
        allowed_ips: ips.as_deref(),
        headers_to_include: &include,
        params: &params,
        enabled: body.enabled.unwrap_or(row.enabled),
    };
    let row = db::update_webhook(&mut *tx, id, &fields).await?;
    tx.commit().await?;
    Ok(Json(row.view(&base_url(&headers), secret)))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    responses((status = 204, description = "deleted"), (status = 404, description = "Webhook not found")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let gone = db::delete_webhook(state.engine.pool(), id).await?;
    state.webhook_limiter.forget(id);
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    responses((status = 200, body = WebhookView, description = "with the new secret, shown this once; the old one stops working"),
              (status = 404, description = "Webhook not found")))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = path_id(&id).ok_or_else(not_found)?;
    let secret = new_secret()?;
    let row = db::set_webhook_secret(state.engine.pool(), id, &hash_secret(&secret))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(row.view(&base_url(&headers), Some(secret))))
}

/// The original's `WebhookTriggerRequest`; other fields are ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct TriggerBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

/// The caller's address: the connection's peer, or, when the peer is one of
/// `WEBHOOK_TRUSTED_PROXIES`, the right-most `X-Forwarded-For` address that
/// is not (the one the first trusted proxy saw).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

fn refuse(state: &AppState, error: ApiError, outcome: &str) -> Response {
    state.engine.metrics().webhook(outcome);
    error.into_response()
}

/// Start the webhook's pipeline. Open (no app token): the webhook's secret
/// (`X-Webhook-Secret`), its `allowed_ips` and its rate limit protect it.
/// Answers once the execution is recorded; nothing runs inside the request.
#[utoipa::path(post, path = "/trigger/{id}", tag = "webhooks", request_body = TriggerBody,
    params(("X-Webhook-Secret" = Option<String>, Header, description = "the webhook's secret")),
    responses((status = 200, body = TriggerResponse), (status = 401, description = "Invalid secret"),
              (status = 403, description = "Webhook is disabled, or IP not allowed"),
              (status = 404, description = "Webhook (or its pipeline) not found"),
              (status = 429, description = "over the webhook's rate limit; Retry-After says when to try again")))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<TriggerBody>,
) -> Result<Response, ApiError> {
    let hook = match path_id(&id) {
        Some(id) => load(&state, id).await?,
        None => None,
    };
    let Some(hook) = hook else {
        return Ok(refuse(&state, not_found(), "not_found"));
    };
    if !hook.enabled {
        return Ok(refuse(
            &state,
            ApiError::Forbidden("Webhook is disabled".into()),
            "disabled",
        ));
    }
    if let Some(expected) = &hook.secret_hash {
        let given = headers
            .get(SECRET_HEADER)
            .map(|v| hash_secret(&String::from_utf8_lossy(v.as_bytes())));
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
        if !ok {
            return Ok(refuse(
                &state,
                ApiError::Unauthorized("Invalid secret".into()),
                "unauthorized",
            ));
        }
    }
    if let Some(allowed) = hook.allowed_ips.as_ref().filter(|a| !a.is_empty()) {
        let settings = state.engine.settings();
        let ip = peer.map(|axum::Extension(ConnectInfo(addr))| {
            client_ip(addr.ip(), &headers, &settings.webhook_trusted_proxies)
        });
        let inside = ip.is_some_and(|ip| {
            allowed
                .iter()
                .filter_map(|a| parse_net(a))
                .any(|net| net.contains(&ip))
        });
        if !inside {
            return Ok(refuse(
                &state,
                ApiError::Forbidden("IP not allowed".into()),
                "ip_refused",
            ));
        }
    }
    if let Err(wait) = state.webhook_limiter.take(hook.id) {
        state.engine.metrics().webhook("rate_limited");
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response =
            ApiError::TooManyRequests("Too many triggers for this webhook; retry later".into())
                .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return Ok(response);
    }
    // The original's merge: the webhook's params, the body's params, the
    // configured headers, and `_trigger`.
    let mut extra = body.params;
    for name in &hook.headers_to_include {
        if let Some(v) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            let key = format!("header_{}", name.to_ascii_lowercase().replace('-', "_"));
            extra.insert(key, Value::String(v.to_owned()));
        }
    }
    let trigger = json!({
        "type": "webhook",
        "webhook_id": hook.id,
        "webhook_name": hook.name,
        "triggered_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let new = NewExecution {
        trace_id: trace_id(&headers),
        ..NewExecution::triggered(
            hook.workflow_id,
            &hook.params,
            extra,
            trigger,
            format!("webhook:{}", hook.id),
        )
    };
    let engine = &state.engine;
    let prepared = match engine.prepare(new).await {
        Ok(p) => p,
        Err(e) => {
            engine.metrics().webhook("failed");
            return Err(start_error(e, &hook.workflow_id.to_string()));
        }
    };
    let tx = engine.pool().begin().await?;
    let (mut tx, started, launch) = match engine.record_execution(tx, prepared).await {
        Ok(Recorded::Created {
            tx,
            started,
            launch,
        }) => (tx, started, launch),
        Ok(Recorded::KeyTaken { .. }) => {
            return Err(ApiError::from(ControlError::Conflict(
                "the execution could not be recorded; retry".into(),
            )));
        }
        Err(e) => return Err(start_error(e, &hook.workflow_id.to_string())),
    };
    // Counted with the run, in its transaction; the row lock is taken last
    // and held only to the commit.
    db::count_webhook_trigger(&mut *tx, hook.id).await?;
    tx.commit().await?;
    launch.go(engine);
    engine.metrics().webhook("triggered");
    Ok(Json(TriggerResponse {
        execution_id: started.execution_id,
        workflow_id: started.workflow_id,
        status: started.status,
    })
    .into_response())
}

/// A token bucket per webhook, on this replica: `WEBHOOK_RATE_BURST` calls
/// at once, refilled at `WEBHOOK_RATE_PER_SECOND`. With N replicas behind a
/// load balancer a webhook gets up to N times the rate.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

/// Buckets kept before full ones (idle webhooks) are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub(crate) fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_second,
            burst: burst as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token, or say how long until one is there.
    pub(crate) fn take(&self, id: Uuid) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&id) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(id).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }

    pub(crate) fn forget(&self, id: Uuid) {
        self.buckets.lock().expect("rate limiter lock").remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges() {
        let net = |s: &str| parse_net(s).unwrap();
        assert!(net("10.0.0.0/8").contains(&"10.200.1.2".parse::<IpAddr>().unwrap()));
        assert!(!net("10.0.0.0/8").contains(&"11.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(net("127.0.0.1").contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(net("2001:db8::/32").contains(&"2001:db8::7".parse::<IpAddr>().unwrap()));
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("example.com").is_none());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.9, 10.0.0.5".parse().unwrap(),
        );
        let trusted = vec![parse_net("10.0.0.0/8").unwrap()];
        let from_proxy = client_ip("10.0.0.6".parse().unwrap(), &headers, &trusted);
        assert_eq!(from_proxy, "203.0.113.9".parse::<IpAddr>().unwrap());
        let direct = client_ip("192.0.2.1".parse().unwrap(), &headers, &trusted);
        assert_eq!(direct, "192.0.2.1".parse::<IpAddr>().unwrap());
        let untrusting = client_ip("10.0.0.6".parse().unwrap(), &headers, &[]);
        assert_eq!(untrusting, "10.0.0.6".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(1000.0, 3);
        let id = Uuid::new_v4();
        assert!((0..3).all(|_| limiter.take(id).is_ok()));
        let wait = limiter.take(id).unwrap_err();
        assert!(wait <= Duration::from_millis(2), "{wait:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.take(id).is_ok());
        assert!(
            limiter.take(Uuid::new_v4()).is_ok(),
            "each webhook has its own bucket"
        );
    }

    #[test]
    fn secrets_are_random_url_safe_and_hashed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), a);
    }
}
