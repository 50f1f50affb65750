//! Logs and traces.
//!
//! Logs: readable lines locally, JSON in production (`LOG_FORMAT=json`).
//! `RUST_LOG` overrides the default filter (`LOG_LEVEL`, Bud's Helm chart's
//! variable, sets the level when `RUST_LOG` is unset). Readable lines are
//! coloured only when they go to a terminal (and `NO_COLOR` is unset): a log
//! redirected to a file or collected by a container runtime holds plain
//! text, not escape sequences.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is
//! not `true`), the service's spans also go to an OpenTelemetry collector
//! over OTLP/HTTP: the `tracing` spans are bridged by `tracing-opentelemetry`
//! and exported by `opentelemetry-otlp` over reqwest (the client the service
//! already uses; no gRPC stack). Export is batched on a Tokio task behind a
//! bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048): ending a span never
//! waits, and when the collector is down spans are dropped, not kept. The
//! other standard variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` /
//! `TIMEOUT`, `OTEL_BSP_*`) are read by the SDK. Unset: nothing is exported,
//! and logging is what it always was.
//!
//! One trace per execution: its trace id is the one of the `traceparent`
//! the execute request carried (else the execution id without dashes). At
//! execute time an `execution` span is exported with a span id derived from
//! the execution id ([`execution_span_id`]), so every replica can make the
//! execution's later spans (step attempts, publishes, timers) its children
//! without storing anything more ([`join_execution`]).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanContext, SpanId, SpanKind, TraceContextExt,
    TraceFlags, TraceId, TraceState, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, ShouldSample, SpanData, SpanExporter,
    span_processor_with_async_runtime::BatchSpanProcessor,
};
use opentelemetry_sdk::{Resource, runtime};
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use uuid::Uuid;

use crate::config::LogFormat;

/// The standard OpenTelemetry variables this service honours, for `--help`
/// (the SDK reads most of them itself).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "-",
        "collector base URL (OTLP/HTTP, e.g. http://bud-otel-collector:4318; spans go to /v1/traces); unset: no traces exported",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "-",
        "full traces URL, used as is (wins over the base URL)",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
        "`http/protobuf` or `http/json` (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins)",
    ),
    (
        "OTEL_SERVICE_NAME",
        "budpipeline",
        "service.name of the spans (else service.name in OTEL_RESOURCE_ATTRIBUTES)",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "-",
        "key=value,... added to every span's resource",
    ),
    (
        "OTEL_TRACES_SAMPLER",
        "parentbased_always_on",
        "sampler; OTEL_TRACES_SAMPLER_ARG is its ratio",
    ),
    (
        "OTEL_SDK_DISABLED",
        "false",
        "`true`: export nothing even when an endpoint is set",
    ),
];

/// Default `service.name`, unless the environment names the service.
pub const DEFAULT_SERVICE_NAME: &str = "budpipeline";

/// Target of request spans for `/health`, `/ready` and `/metrics`: logged
/// like every request, never exported (probes and scrapes every few seconds
/// would bury the executions' traces).
pub const PROBE_TARGET: &str = "budpipeline::probe";

/// How the spans are exported, decided from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// Where spans are posted: the traces endpoint as given, else the base
    /// endpoint + `/v1/traces`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub service_name: String,
    /// Values that were not understood, to log once logging is up.
    pub warnings: Vec<String>,
}

/// Whether and how to export, from `lookup` (the process environment in
/// production). `Ok(None)`: export nothing; `Err`: export was asked for
/// with an endpoint that cannot be used (why, to log; nothing is exported).
pub fn plan(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<ExportPlan>, String> {
    let get = |name: &str| {
        lookup(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint = match (
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => traces,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    let mut warnings = Vec::new();
    if let Some(exporters) = get("OTEL_TRACES_EXPORTER") {
        let names: Vec<&str> = exporters.split(',').map(str::trim).collect();
        if names.iter().all(|n| n.eq_ignore_ascii_case("none")) {
            return Ok(None);
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case("otlp")) {
            warnings.push(format!(
                "OTEL_TRACES_EXPORTER={exporters}: only `otlp` is supported; exporting over OTLP"
            ));
        }
    }
    let protocol = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("http/protobuf") => Protocol::HttpBinary,
        Some("http/json") => Protocol::HttpJson,
        Some(other) => {
            warnings.push(format!(
                "OTLP protocol `{other}` is not supported (only http/protobuf and http/json); using http/protobuf"
            ));
            Protocol::HttpBinary
        }
    };
    // OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES
    // (the specification's order; the SDK's detectors merge them the other
    // way round, so the name is set here, last).
    let service_name = get("OTEL_SERVICE_NAME")
        .or_else(|| {
            get("OTEL_RESOURCE_ATTRIBUTES")?
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| key.trim() == "service.name")
                .map(|(_, value)| value.trim().to_owned())
                .rfind(|value| !value.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    // Checked here: the exporter would quietly fall back to localhost:4318.
    let url = reqwest::Url::parse(&endpoint).map_err(|e| {
        format!("OTLP endpoint `{endpoint}` is not a URL ({e}); traces are not exported")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => warnings.push(format!(
            "OTLP endpoint `{endpoint}`: this build has no TLS; use the collector's http:// address"
        )),
        other => {
            return Err(format!(
                "OTLP endpoint `{endpoint}`: scheme `{other}` is not http; traces are not exported"
            ));
        }
    }
    Ok(Some(ExportPlan {
        endpoint,
        protocol,
        service_name,
        warnings,
    }))
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the last spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The tracer of the `execution` spans, when exporting.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
/// The sampler's decision for a trace seen from its root, when exporting.
static ROOT_SAMPLER: OnceLock<Box<dyn ShouldSample>> = OnceLock::new();

/// Install logging, and trace export when the environment asks for it.
/// Must run inside the Tokio runtime (the exporter's batch task lives on it).
pub fn init(format: LogFormat) -> Telemetry {
    let filter = log_filter();
    let plan = match plan(|name| std::env::var(name).ok()) {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            init_logs_only(format, filter);
            return Telemetry { provider: None };
        }
        Err(problem) => {
            init_logs_only(format, filter);
            tracing::warn!("{problem}");
            return Telemetry { provider: None };
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(plan.endpoint.clone())
        .with_protocol(plan.protocol)
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            init_logs_only(format, filter);
            tracing::warn!(error = %e, "OpenTelemetry exporter not built; traces are not exported");
            return Telemetry { provider: None };
        }
    };
    let processor = BatchSpanProcessor::builder(
        Reporting {
            inner: exporter,
            failing: AtomicBool::new(false),
        },
        runtime::Tokio,
    )
    .build();
    let mut resource = Resource::builder().with_service_name(plan.service_name.clone());
    let declared = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    if !declared.contains("service.version") {
        resource =
            resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("budpipeline");
    let _ = TRACER.set(tracer.clone());
    let _ = ROOT_SAMPLER.set(opentelemetry_sdk::trace::Config::default().sampler);

    // Only this crate's spans and events go to the collector (not sqlx's,
    // hyper's or the exporter's own), whatever RUST_LOG says for the logs.
    let exported = Targets::new()
        .with_target("budpipeline", LevelFilter::INFO)
        .with_target(PROBE_TARGET, LevelFilter::OFF);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false) // a task hops threads; the attribute would mislead
        .with_filter(exported);
    let _ = tracing_subscriber::registry()
        .with(fmt_layer(format).with_filter(filter))
        .with(otel)
        .try_init();
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(endpoint = %plan.endpoint, service_name = %plan.service_name,
        protocol = ?plan.protocol, "exporting traces over OTLP/HTTP");
    Telemetry {
        provider: Some(provider),
    }
}

/// `RUST_LOG`, else `LOG_LEVEL` (`INFO`, `debug`, …) for this service with
/// sqlx at `warn`, else `info,sqlx=warn`.
fn log_filter() -> EnvFilter {
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        return filter;
    }
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| matches!(l.as_str(), "trace" | "debug" | "info" | "warn" | "error"))
        .unwrap_or_else(|| "info".into());
    EnvFilter::new(format!("{level},sqlx=warn"))
}

/// Colour only on a terminal, and never with `NO_COLOR` set (no-color.org).
pub fn colours_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn colours() -> bool {
    use std::io::IsTerminal;
    colours_wanted(std::io::stdout().is_terminal())
}

/// Logging as it always was (no trace export).
fn init_logs_only(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours());
    // A second init (tests start several apps in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The same lines as [`init_logs_only`], as a layer beside the exporter.
fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(colours());
    match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => layer.boxed(),
    }
}

impl Telemetry {
    /// Export what is still queued, waiting at most `limit` (a collector
    /// that does not answer must not hold up the exit). Call it outside
    /// async code, while the runtime still runs.
    pub fn shutdown(self, limit: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let flushing = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = done_tx.send(provider.shutdown());
            });
        if flushing.is_ok() && done_rx.recv_timeout(limit).is_err() {
            tracing::warn!("trace export did not finish before exit; the last spans are lost");
        }
    }
}

/// The exporter, logging when export starts failing and when it recovers
/// (once each, not per batch).
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                error = %e, spans,
                "trace export failed; spans are dropped until the collector answers"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("trace export works again")
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Whether spans are exported (the environment asked for it and the
/// exporter was built).
pub fn exporting() -> bool {
    TRACER.get().is_some()
}

/// Name a span (not yet entered) and give it an OpenTelemetry kind
/// (`server`, `client`, `producer`, ...), through the `otel.name` and
/// `otel.kind` fields it declares empty. Only when exporting: the logs
/// keep their fields.
pub fn name_span(span: &tracing::Span, name: impl FnOnce() -> String, kind: &'static str) {
    if exporting() {
        span.record("otel.name", name());
        span.record("otel.kind", kind);
    }
}

/// Give a span (not yet entered) an OpenTelemetry kind; see [`name_span`].
pub fn set_kind(span: &tracing::Span, kind: &'static str) {
    if exporting() {
        span.record("otel.kind", kind);
    }
}

/// Mark a span failed (`otel.status_code`, declared empty), when exporting.
pub fn mark_error(span: &tracing::Span) {
    if exporting() {
        span.record("otel.status_code", "error");
    }
}

/// The span id of an execution's `execution` span: a digest of its id, so
/// that any replica, at any later time, can parent the execution's spans on
/// it without storing it.
pub fn execution_span_id(execution_id: Uuid) -> SpanId {
    let digest = Sha256::new()
        .chain_update(b"budpipeline execution ")
        .chain_update(execution_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

fn trace_id(hex: &str) -> Option<TraceId> {
    TraceId::from_hex(hex)
        .ok()
        .filter(|id| *id != TraceId::INVALID)
}

/// Whether an execution's spans are sampled: as the root span of its trace
/// would be, so the same for all of them, on every replica, at any time.
fn execution_decision(trace: TraceId) -> Option<SamplingDecision> {
    let sampler = ROOT_SAMPLER.get()?;
    let result = sampler.should_sample(None, trace, "execution", &SpanKind::Internal, &[], &[]);
    Some(result.decision)
}

/// Make `span` (not yet entered) a child of the execution's span, in the
/// execution's trace (`execution_id` unknown: in the trace, under a parent
/// the store will not find). Without exporting, or without a trace id,
/// nothing.
pub fn join_execution(span: &tracing::Span, execution_id: Option<Uuid>, trace: Option<&str>) {
    if !exporting() {
        return;
    }
    let Some(trace) = trace.and_then(trace_id) else {
        return;
    };
    let Some(decision) = execution_decision(trace) else {
        return;
    };
    let flags = if decision == SamplingDecision::RecordAndSample {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let parent_id = match execution_id {
        Some(id) => execution_span_id(id),
        None => execution_span_id(Uuid::new_v4()),
    };
    let parent = SpanContext::new(trace, parent_id, flags, true, TraceState::NONE);
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// Export the `execution` span of a new execution: a child of the current
/// (request) span when that is in the execution's trace, else the root of
/// the execution's trace, linked to the request. `started` is when the
/// request began.
pub fn record_execution(execution_id: Uuid, workflow_id: Uuid, trace: &str, started: SystemTime) {
    let (Some(tracer), Some(trace)) = (TRACER.get(), trace_id(trace)) else {
        return;
    };
    let request = tracing::Span::current().context();
    let request_span = request.span().span_context().clone();
    let mut builder = tracer
        .span_builder("execution")
        .with_kind(SpanKind::Internal)
        .with_trace_id(trace)
        .with_span_id(execution_span_id(execution_id))
        .with_start_time(started)
        .with_attributes([
            KeyValue::new("execution_id", execution_id.to_string()),
            KeyValue::new("workflow_id", workflow_id.to_string()),
        ]);
    let parent = if request_span.is_valid() && request_span.trace_id() == trace {
        request
    } else {
        if request_span.is_valid() {
            builder = builder.with_links(vec![Link::with_context(request_span)]);
        }
        Context::new()
    };
    // The decision its later spans get (see `join_execution`), whatever the
    // request's.
    if let Some(decision) = execution_decision(trace) {
        builder = builder.with_sampling_result(SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        });
    }
    let span = builder.start_with_context(tracer, &parent);
    drop(span); // ends it now
}

/// The W3C `traceparent` (and `tracestate`) a request carries, as the
/// parent context of the span that serves it.
pub fn remote_context(headers: &axum::http::HeaderMap) -> Context {
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Continue `span`'s trace from the request's `traceparent`, when exporting
/// and the header is well formed.
pub fn continue_remote(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = remote_context(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` for an outbound call made in the current span: the
/// span's own context when it is exported in the `fallback`'s trace (so the
/// callee's spans become its children), else `fallback` as is.
pub fn outbound_traceparent(fallback: Option<&str>) -> Option<String> {
    if !exporting() {
        return fallback.map(str::to_owned);
    }
    let current = tracing::Span::current().context();
    let span_context = current.span().span_context().clone();
    let same_trace = match fallback.and_then(crate::engine::model::trace_id_of) {
        Some(trace) => trace_id(&trace) == Some(span_context.trace_id()),
        None => true,
    };
    if !span_context.is_valid() || !same_trace {
        return fallback.map(str::to_owned);
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&current, &mut carrier);
    carrier
        .remove("traceparent")
        .or(fallback.map(str::to_owned))
}

/// A `traceparent` for the calls of a step attempt of the execution's
/// `trace`: the current span's (see [`outbound_traceparent`]), else the
/// execution's trace with a fresh span id.
pub fn step_traceparent(trace: Option<&str>) -> Option<String> {
    let fallback = trace.map(crate::engine::model::traceparent);
    outbound_traceparent(fallback.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");

    /// The plan, for settings that must be usable.
    fn chosen(vars: &[(&str, &str)]) -> ExportPlan {
        plan(env(vars)).unwrap().unwrap()
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint_or_when_disabled() {
        let off = |vars: &[(&str, &str)]| plan(env(vars)) == Ok(None);
        assert!(off(&[]));
        assert!(off(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(off(&[("OTEL_SERVICE_NAME", "x")]));
        assert!(off(&[ENDPOINT, ("OTEL_SDK_DISABLED", "TRUE")]));
        assert!(off(&[ENDPOINT, ("OTEL_TRACES_EXPORTER", "none")]));
        assert!(!off(&[ENDPOINT, ("OTEL_SDK_DISABLED", "false")]));
        assert!(!off(&[ENDPOINT, ("OTEL_SDK_DISABLED", "yes")]));
    }

    #[test]
    fn spans_go_to_the_traces_endpoint_or_the_base_endpoint_plus_v1_traces() {
        assert_eq!(
            chosen(&[ENDPOINT]).endpoint,
            "http://collector:4318/v1/traces"
        );
        let slash = chosen(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]);
        assert_eq!(slash.endpoint, "http://c:4318/v1/traces");
        let traces = chosen(&[
            ENDPOINT,
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:9/custom",
            ),
        ]);
        assert_eq!(traces.endpoint, "http://other:9/custom");
        // Not a URL, or not HTTP: nothing exported, and the reason is given
        // (the exporter itself would fall back to localhost:4318).
        for bad in ["bud-otel-collector:4318", "grpc://c:4317", "no url"] {
            let refused = plan(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]));
            assert!(refused.is_err(), "{bad}: {refused:?}");
        }
        let tls = chosen(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]);
        assert!(tls.warnings[0].contains("TLS"), "{:?}", tls.warnings);
    }

    #[test]
    fn protobuf_is_the_default_protocol_and_json_can_be_chosen() {
        assert_eq!(chosen(&[ENDPOINT]).protocol, Protocol::HttpBinary);
        let json = chosen(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        assert_eq!(json.protocol, Protocol::HttpJson);
        assert!(json.warnings.is_empty());
        let traces_wins = chosen(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(traces_wins.protocol, Protocol::HttpBinary);
        let grpc = chosen(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(grpc.protocol, Protocol::HttpBinary);
        assert!(grpc.warnings[0].contains("grpc"), "{:?}", grpc.warnings);
    }

    #[test]
    fn the_service_name_follows_the_specification_order() {
        let name = |vars: &[(&str, &str)]| chosen(vars).service_name;
        assert_eq!(name(&[ENDPOINT]), "budpipeline");
        assert_eq!(
            name(&[
                ENDPOINT,
                ("OTEL_RESOURCE_ATTRIBUTES", "a=b, service.name = from-attrs")
            ]),
            "from-attrs"
        );
        assert_eq!(
            name(&[
                ENDPOINT,
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
                ("OTEL_SERVICE_NAME", "from-name"),
            ]),
            "from-name"
        );
    }

    #[test]
    fn an_execution_span_id_is_stable_and_per_execution() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_eq!(execution_span_id(a), execution_span_id(a));
        assert_ne!(execution_span_id(a), execution_span_id(b));
        assert_ne!(execution_span_id(a), SpanId::INVALID);
    }

    #[test]
    fn without_export_outbound_calls_keep_the_given_traceparent() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(outbound_traceparent(Some(given)).as_deref(), Some(given));
        assert_eq!(outbound_traceparent(None), None);
        let step = step_traceparent(Some("4bf92f3577b34da6a3ce929d0e0e4736")).unwrap();
        assert!(
            step.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{step}"
        );
    }
}
