//! `http_request`: call any HTTP(S) URL, as the original did, without
//! letting a DAG reach what only the cluster can reach.
//!
//! Before every hop (the first request and each redirect, up to
//! [`MAX_REDIRECTS`]) the host is resolved here and every address it
//! resolves to is checked ([`super::address`]): loopback, link-local
//! (metadata), private and other non-public addresses are refused unless
//! `HTTP_REQUEST_ALLOWED_CIDRS` allows them, and nothing is sent. The
//! connection then goes to the checked addresses only (the client is told
//! to use them for that host), so a DNS answer that changes between the
//! check and the connection cannot redirect it. No proxy is used.
//!
//! The response body is read up to [`MAX_RESPONSE_BYTES`]; a larger one
//! fails the step. A non-2xx answer fails it with `HTTP <code>` and the
//! response in the outputs (retryable for 408, 429 and 5xx).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::address::{AddressRange, check_address};
use super::outputs;
use crate::actions::params::{self, Bool, Number, Object, OptText};
use crate::actions::seed::{Attempt, INTEGRATION};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dag::template::is_template;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Redirects followed, each checked like the first request.
pub(super) const MAX_REDIRECTS: usize = 5;
/// The largest response body kept in the step's outputs.
pub(super) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const DEFAULT_TIMEOUT_SECONDS: f64 = 30.0;
/// Headers that must not follow a redirect to another origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "http_request",
    name: "HTTP Request",
    category: INTEGRATION,
    description: "Makes HTTP requests to external APIs with optional workflow metadata. \
                  Loopback, link-local (metadata) and private addresses are refused, after DNS \
                  resolution and on every redirect, unless HTTP_REQUEST_ALLOWED_CIDRS allows them.",
    params: vec![
        ParamSpec::new(
            "url",
            "string",
            "The URL to send the request to (http or https).",
        )
        .required(),
        ParamSpec::new("method", "string", "HTTP method to use.")
            .default(json!("GET"))
            .options(METHODS),
        ParamSpec::new("headers", "object", "Request headers as key-value pairs."),
        ParamSpec::new(
            "body",
            "json",
            "Request body (sent as JSON for POST, PUT, PATCH).",
        ),
        ParamSpec::new("timeout_seconds", "number", "Request timeout in seconds.")
            .default(json!(30))
            .range(Some(1.0), Some(300.0)),
        ParamSpec::new(
            "include_metadata",
            "boolean",
            "Include workflow execution metadata in request body (`_workflow_metadata`).",
        )
        .default(json!(false)),
    ],
    outputs: vec![
        OutputSpec::new("status_code", "number", "HTTP response status code."),
        OutputSpec::new(
            "body",
            "json",
            "Response body (parsed as JSON if possible, else text).",
        ),
        OutputSpec::new("headers", "object", "Response headers."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

/// Name resolution, replaceable in tests.
pub(crate) trait Resolve: Send + Sync + 'static {
    fn lookup<'a>(&'a self, host: &'a str, port: u16)
    -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

#[derive(Deserialize)]
struct Params {
    url: OptText,
    method: OptText,
    headers: Option<Object>,
    timeout_seconds: Option<Number>,
    body: Option<Value>,
    include_metadata: Option<Bool>,
}

pub(crate) struct HttpRequest {
    allowed: Arc<Vec<AddressRange>>,
    resolver: Arc<dyn Resolve>,
}

/// What one run sends.
struct Plan {
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<Value>,
    timeout: Duration,
}

impl HttpRequest {
    pub(crate) fn new(allowed: Vec<AddressRange>) -> Self {
        Self::with_resolver(allowed, Arc::new(SystemResolver))
    }

    pub(crate) fn with_resolver(allowed: Vec<AddressRange>, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            allowed: Arc::new(allowed),
            resolver,
        }
    }

    fn plan(ctx: &StepContext) -> Attempt<Plan> {
        let p: Params = params::read(&ctx.params)?;
        let url = parse_url(&p.url.or_default()).map_err(StepOutcome::permanent)?;
        let method_name = p.method.or("GET").to_ascii_uppercase();
        if !METHODS.contains(&method_name.as_str()) {
            return Err(StepOutcome::permanent(format!(
                "method must be one of {}, not `{method_name}`",
                METHODS.join(", ")
            )));
        }
        let method = Method::from_bytes(method_name.as_bytes())
            .map_err(|_| StepOutcome::permanent("method is not valid"))?;
        let headers = header_map(p.headers.unwrap_or_default().0)?;
        let seconds = p
            .timeout_seconds
            .and_then(|n| n.0.as_f64())
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .clamp(1.0, 300.0);
        let mut body = p.body;
        if p.include_metadata == Some(Bool(true)) {
            let metadata = json!({"execution_id": ctx.execution_id.to_string(),
                                  "step_id": ctx.step_id});
            match &mut body {
                None => body = Some(json!({ "_workflow_metadata": metadata })),
                Some(Value::Object(map)) => {
                    map.insert("_workflow_metadata".into(), metadata);
                }
                Some(_) => {
                    return Err(StepOutcome::permanent(
                        "include_metadata needs a body that is an object",
                    ));
                }
            }
        }
        // As the original: a JSON body only for methods that carry one, and
        // only when there is something to send.
        let carries = matches!(method_name.as_str(), "POST" | "PUT" | "PATCH");
        let empty = matches!(&body, Some(Value::Object(m)) if m.is_empty());
        let body = body.filter(|_| carries && !empty);
        Ok(Plan {
            url,
            method,
            headers,
            body,
            timeout: Duration::from_secs_f64(seconds),
        })
    }

    async fn send(&self, plan: Plan) -> StepOutcome {
        let seconds = plan.timeout.as_secs_f64();
        let deadline = Instant::now() + plan.timeout;
        match tokio::time::timeout_at(deadline, self.follow(plan, deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => failure(format!("Request timed out after {seconds}s"), true),
        }
    }

    /// The request and its redirects, each hop checked before it is sent.
    async fn follow(&self, plan: Plan, deadline: Instant) -> StepOutcome {
        let Plan {
            mut url,
            mut method,
            mut headers,
            mut body,
            ..
        } = plan;
        for hop in 0..=MAX_REDIRECTS {
            let client = match self.client_for(&url, deadline).await {
                Ok(client) => client,
                Err(outcome) => return outcome,
            };
            let mut request = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if error.is_timeout() => {
                    return failure("Request timed out".to_owned(), true);
                }
                Err(error) => {
                    return failure(
                        format!("Request failed: {}", crate::causes::chain(&error)),
                        true,
                    );
                }
            };
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            match (status.is_redirection(), location) {
                (true, Some(location)) if hop < MAX_REDIRECTS => {
                    let next = match url.join(&location) {
                        Ok(next) if matches!(next.scheme(), "http" | "https") => next,
                        _ => {
                            return StepOutcome::permanent(format!(
                                "Request failed: redirect to an invalid URL `{location}`"
                            ));
                        }
                    };
                    if origin(&next) != origin(&url) {
                        for name in CREDENTIAL_HEADERS {
                            headers.remove(*name);
                        }
                    }
                    // 303, and 301/302 after anything but GET, become a GET
                    // without a body (as browsers and httpx do).
                    let keeps_method = matches!(
                        status,
                        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                    );
                    if !keeps_method && method != Method::HEAD {
                        method = Method::GET;
                        body = None;
                    }
                    url = next;
                }
                (true, Some(_)) => {
                    return StepOutcome::permanent(format!(
                        "Request failed: more than {MAX_REDIRECTS} redirects"
                    ));
                }
                _ => return read_response(response).await,
            }
        }
        StepOutcome::permanent(format!(
            "Request failed: more than {MAX_REDIRECTS} redirects"
        ))
    }

    /// A client that connects to `url`'s host only at addresses checked
    /// here, or the refusal.
    async fn client_for(
        &self,
        url: &Url,
        deadline: Instant,
    ) -> Result<reqwest::Client, StepOutcome> {
        let port = url.port_or_known_default().unwrap_or(80);
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(deadline.saturating_duration_since(Instant::now()));
        let builder = match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                self.check(&ip.to_string(), &[IpAddr::V4(ip)])?;
                builder
            }
            Some(url::Host::Ipv6(ip)) => {
                self.check(&ip.to_string(), &[IpAddr::V6(ip)])?;
                builder
            }
            Some(url::Host::Domain(host)) => {
                let addrs = tokio::time::timeout_at(deadline, self.resolver.lookup(host, port))
                    .await
                    .map_err(|_| failure(format!("Request timed out resolving {host}"), true))?
                    .map_err(|e| {
                        failure(format!("Request failed: cannot resolve {host}: {e}"), true)
                    })?;
                if addrs.is_empty() {
                    return Err(failure(
                        format!("Request failed: {host} has no address"),
                        true,
                    ));
                }
                let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
                self.check(host, &ips)?;
                builder.resolve_to_addrs(host, &addrs)
            }
            None => return Err(StepOutcome::permanent("url has no host")),
        };
        builder.build().map_err(|e| {
            failure(
                format!("Request failed: {}", crate::causes::chain(&e)),
                false,
            )
        })
    }

    /// Refuse the host when any of its addresses is forbidden.
    fn check(&self, host: &str, ips: &[IpAddr]) -> Result<(), StepOutcome> {
        for ip in ips {
            if let Err(problem) = check_address(*ip, &self.allowed) {
                let subject = if host == ip.to_string() {
                    problem
                } else {
                    format!("{host} resolves to {problem}")
                };
                return Err(failure_with(
                    format!("Request blocked (SSRF protection): {subject}"),
                    false,
                    empty_response(),
                ));
            }
        }
        Ok(())
    }
}

/// `url` parsed, with the original's rule that it is http or https.
fn parse_url(raw: &str) -> Result<Url, String> {
    if raw.trim().is_empty() {
        return Err("url is required".into());
    }
    let url = Url::parse(raw.trim()).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must start with http:// or https://".into());
    }
    if url.host().is_none() {
        return Err("URL has no hostname".into());
    }
    Ok(url)
}

fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_owned),
        url.port_or_known_default(),
    )
}

/// The `headers` param as request headers: an object of names to text.
fn header_map(map: Map<String, Value>) -> Attempt<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in &map {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            Value::Null => continue,
            _ => {
                return Err(StepOutcome::permanent(format!(
                    "headers.{name} must be text"
                )));
            }
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            StepOutcome::permanent(format!("headers: `{name}` is not a header name"))
        })?;
        let value = HeaderValue::from_str(&text).map_err(|_| {
            StepOutcome::permanent(format!("headers.{name}: not a valid header value"))
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The final answer as the step's outcome, its body bounded.
async fn read_response(mut response: reqwest::Response) -> StepOutcome {
    let status = response.status();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), json!(value));
            }
        }
    }
    let too_large = || {
        failure_with(
            format!("Request failed: the response body is larger than {MAX_RESPONSE_BYTES} bytes"),
            false,
            outputs([
                ("status_code", json!(status.as_u16())),
                ("body", Value::Null),
                ("headers", Value::Object(headers.clone())),
            ]),
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return too_large();
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return too_large();
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return failure(
                    format!("Request failed: {}", crate::causes::chain(&error)),
                    true,
                );
            }
        }
    }
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let out = outputs([
        ("status_code", json!(status.as_u16())),
        ("body", body),
        ("headers", Value::Object(headers)),
    ]);
    if status.is_success() {
        return StepOutcome::completed(out);
    }
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    failure_with(format!("HTTP {}", status.as_u16()), retryable, out)
}

fn empty_response() -> Map<String, Value> {
    outputs([
        ("status_code", json!(0)),
        ("body", Value::Null),
        ("headers", json!({})),
    ])
}

fn failure(error: String, retryable: bool) -> StepOutcome {
    failure_with(error, retryable, empty_response())
}

fn failure_with(error: String, retryable: bool, outputs: Map<String, Value>) -> StepOutcome {
    StepOutcome::Failed {
        error,
        retryable,
        outputs,
    }
}

/// What a literal URL or header says is wrong before anything is sent.
fn literal_problems(p: Params) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(url) = p.url.0.filter(|url| !is_template(url)) {
        errors.extend(parse_url(&url).err());
    }
    if let Some(Object(headers)) = p.headers {
        for (name, value) in &headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!("headers: `{name}` is not a header name"));
            }
            if matches!(value, Value::Object(_) | Value::Array(_)) {
                errors.push(format!("headers.{name} must be text"));
            }
        }
    }
    errors
}

impl StepHandler for HttpRequest {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let submitted = params::submitted::<Params>(params);
        submitted.params.map_or_else(Vec::new, literal_problems)
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move {
            match Self::plan(&ctx) {
                Ok(plan) => self.send(plan).await,
                Err(failed) => failed,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};

    /// Names that resolve to what the test says, without DNS.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Table {
        fn lookup<'a>(
            &'a self,
            host: &'a str,
            port: u16,
        ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
            let found = self
                .0
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
            Box::pin(async move {
                found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
            })
        }
    }

    fn handler(allowed: &str, table: &[(&'static str, &str)]) -> HttpRequest {
        let table = table
            .iter()
            .map(|(name, ip)| (*name, vec![ip.parse().unwrap()]))
            .collect();
        HttpRequest::with_resolver(
            super::super::address::parse_ranges(allowed).unwrap(),
            Arc::new(Table(table)),
        )
    }

    fn blocked(outcome: StepOutcome) -> String {
        match outcome {
            StepOutcome::Failed {
                error,
                retryable: false,
                outputs,
            } if error.starts_with("Request blocked (SSRF protection): ") => {
                assert_eq!(outputs["status_code"], 0);
                error
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_forbidden_address_is_refused_before_connecting() {
        let h = handler(
            "",
            &[
                ("rebind.example", "127.0.0.1"),
                ("metadata.internal", "169.254.169.254"),
                ("intranet.example", "10.20.30.40"),
                ("v6.example", "::1"),
            ],
        );
        let cases = [
            (
                "http://rebind.example/",
                "rebind.example resolves to 127.0.0.1 is a loopback address",
            ),
            (
                "http://metadata.internal/latest",
                "metadata.internal resolves to 169.254.169.254 is a link-local (metadata) address",
            ),
            (
                "https://intranet.example:8443/",
                "intranet.example resolves to 10.20.30.40 is a private address",
            ),
            (
                "http://v6.example/",
                "v6.example resolves to ::1 is a loopback address",
            ),
            ("http://192.168.1.10/", "192.168.1.10 is a private address"),
            ("http://[fd00::1]/", "fd00::1 is a private address"),
        ];
        for (url, why) in cases {
            let error = blocked(h.run(ctx(json!({"url": url}))).await);
            assert_eq!(
                error,
                format!("Request blocked (SSRF protection): {why}"),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn an_allowed_range_opens_only_itself() {
        let h = handler("127.0.0.0/8", &[("svc.example", "127.0.0.1")]);
        // Allowed: the request is made, to the checked address (nothing
        // listens on port 9, so it fails to connect).
        let outcome = h
            .run(ctx(
                json!({"url": "http://svc.example:9/", "timeout_seconds": 2}),
            ))
            .await;
        match outcome {
            StepOutcome::Failed {
                error, retryable, ..
            } => {
                assert!(error.starts_with("Request failed: "), "{error}");
                assert!(retryable);
            }
            other => panic!("expected a failed connection, got {other:?}"),
        }
        blocked(h.run(ctx(json!({"url": "http://10.21.0.1/"}))).await);
        blocked(h.run(ctx(json!({"url": "http://[::1]:9/"}))).await);
    }

    #[test]
    fn the_plan_follows_the_originals_rules() {
        let mut c = ctx(json!({"url": "https://api.example.com/x", "method": "post",
                               "headers": {"X-N": 5}, "body": {"a": 1},
                               "include_metadata": true}));
        c.step_id = "notify".into();
        let plan = HttpRequest::plan(&c).unwrap();
        assert_eq!(plan.method, Method::POST);
        assert_eq!(plan.headers["x-n"], "5");
        assert_eq!(
            plan.body,
            Some(json!({"a": 1, "_workflow_metadata": {
                "execution_id": uuid::Uuid::nil().to_string(), "step_id": "notify"}}))
        );
        assert_eq!(plan.timeout, Duration::from_secs(30));
        let get =
            HttpRequest::plan(&ctx(json!({"url": "http://a.example", "body": {"a": 1}}))).unwrap();
        assert_eq!(get.body, None, "GET sends no body");
        for (p, error) in [
            (
                json!({"url": "ftp://a.example"}),
                "url must start with http:// or https://",
            ),
            (
                json!({"url": "http://a.example", "method": "TRACE"}),
                "method must be one of GET, POST, PUT, PATCH, DELETE, not `TRACE`",
            ),
            (
                json!({"url": "http://a.example", "headers": [1]}),
                "headers must be an object",
            ),
        ] {
            assert_eq!(
                HttpRequest::plan(&ctx(p.clone())).err(),
                Some(StepOutcome::permanent(error)),
                "{p}"
            );
        }
    }

    #[test]
    fn validation_checks_literal_urls_and_headers() {
        let h = handler("", &[]);
        assert!(
            h.validate(&params(json!({"url": "{{ params.url }}"})))
                .is_empty()
        );
        assert_eq!(
            h.validate(&params(
                json!({"url": "file:///etc/passwd", "headers": {"a b": "x"}})
            )),
            [
                "url must start with http:// or https://",
                "headers: `a b` is not a header name"
            ]
        );
    }
}
