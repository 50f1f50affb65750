//! Traces to the collector: the real binary, started with the standard
//! OpenTelemetry variables, exports its spans over OTLP/HTTP to a stand-in
//! collector on loopback (a small HTTP server taking `POST /v1/traces`).
//!
//! Exporting is process-wide (a tracing subscriber), so every test runs the
//! built binary ([`ServiceProcess`]) rather than the in-process app.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, TOKEN, database_url, free_port, step};
use support::budcluster::{FakeBudcluster, Route, deployment_event};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
/// budapp's trace and its span that calls execute.
const TRACE: &str = "5a7942d244804ff52a0ebc1da76e3c91";
const CALLER_SPAN: &str = "2cfeaae32ff40053";

// ---------------------------------------------------------------------------
// The stand-in collector
// ---------------------------------------------------------------------------

/// One span as exported, whichever the encoding.
#[derive(Debug, Clone)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// OTLP `SpanKind`: 1 internal, 2 server, 3 client, 4 producer.
    kind: i32,
    attributes: HashMap<String, String>,
    /// The resource's attributes (`service.name`, ...).
    resource: HashMap<String, String>,
}

impl ExportedSpan {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One `POST /v1/traces` as received.
#[derive(Debug, Clone)]
struct Export {
    content_type: String,
    body: Bytes,
}

struct Collector {
    url: String,
    exports: Arc<Mutex<Vec<Export>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let exports: Arc<Mutex<Vec<Export>>> = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(exports.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { url, exports, task }
    }

    fn exports(&self) -> Vec<Export> {
        self.exports.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.exports().iter().flat_map(decode).collect()
    }

    /// Wait until the spans received satisfy `done`; panics with them otherwise.
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + WAIT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never received; got {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(exports): State<Arc<Mutex<Vec<Export>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, String); 1], Vec<u8>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let json = content_type.starts_with("application/json");
    exports.lock().unwrap().push(Export {
        content_type: content_type.clone(),
        body,
    });
    // An empty ExportTraceServiceResponse: no bytes in protobuf, `{}` in JSON.
    let answer = if json { b"{}".to_vec() } else { Vec::new() };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        answer,
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(export: &Export) -> Vec<ExportedSpan> {
    if export.content_type.starts_with("application/json") {
        decode_json(&serde_json::from_slice(&export.body).expect("OTLP JSON"))
    } else {
        assert_eq!(export.content_type, "application/x-protobuf");
        decode_proto(
            &ExportTraceServiceRequest::decode(export.body.clone()).expect("OTLP protobuf"),
        )
    }
}

fn proto_attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    let text = |value: &Option<AnyValue>| match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn decode_proto(request: &ExportTraceServiceRequest) -> Vec<ExportedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| proto_attributes(&r.attributes))
            .unwrap_or_default();
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                out.push(ExportedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    attributes: proto_attributes(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

fn json_attributes(attributes: &Value) -> HashMap<String, String> {
    let text = |value: &Value| {
        let (_, inner) = value
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("an AnyValue");
        match inner {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    attributes
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| (kv["key"].as_str().unwrap().to_owned(), text(&kv["value"])))
        .collect()
}

fn decode_json(request: &Value) -> Vec<ExportedSpan> {
    let mut out = Vec::new();
    for resource_spans in request["resourceSpans"].as_array().expect("resourceSpans") {
        let resource = json_attributes(&resource_spans["resource"]["attributes"]);
        for scope in resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let id = |key: &str| span[key].as_str().unwrap_or_default().to_ascii_lowercase();
                out.push(ExportedSpan {
                    trace_id: id("traceId"),
                    span_id: id("spanId"),
                    parent_span_id: id("parentSpanId"),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    kind: span["kind"].as_i64().unwrap_or_default() as i32,
                    attributes: json_attributes(&span["attributes"]),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `deploy` (deploy_model through the sidecar) then `announce` (log).
fn deploy_dag() -> Value {
    json!({
        "name": "traced-deploy",
        "steps": [
            {"id": "deploy", "name": "Deploy", "action": "deploy_model",
             "params": {"cluster_id": "c-1", "model_id": "m-1"}},
            {"id": "announce", "name": "Announce", "action": "log", "depends_on": ["deploy"],
             "params": {"message": "deployed {{ steps.deploy.outputs.deployment_id }}"}}
        ]
    })
}

fn log_dag(name: &str) -> Value {
    json!({"name": name, "steps": [
        {"id": "a", "name": "A", "action": "log", "params": {"message": "a"}},
        {"id": "b", "name": "B", "action": "log", "params": {"message": "b"}, "depends_on": ["a"]}
    ]})
}

/// `POST /workflows/{wf}/execute` with `traceparent` when given; the execution id.
async fn execute(api: &Api, wf: Uuid, traceparent: Option<&str>, body: Value) -> Uuid {
    let mut request = api
        .http
        .post(format!("{}/workflows/{wf}/execute", api.base))
        .header("dapr-api-token", TOKEN)
        .json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    body["execution_id"].as_str().unwrap().parse().unwrap()
}

/// VmRSS of a process in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn find(spans: &[ExportedSpan], what: impl Fn(&ExportedSpan) -> bool) -> Vec<ExportedSpan> {
    spans.iter().filter(|s| what(s)).cloned().collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// budapp's trace id reaches the collector on every span of the execution,
/// and the spans form one tree: budapp's span → the execute request → the
/// execution → its steps → the Dapr call (whose `traceparent` budcluster
/// receives) and the publishes; budcluster's event is applied in the trace.
#[sqlx::test]
async fn an_executions_spans_reach_the_collector_in_the_callers_trace(pool: PgPool) {
    // Arrange
    let collector = Collector::start().await;
    let budcluster = FakeBudcluster::start().await;
    budcluster.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": "bc-wf-otel", "deployment_id": "dep-otel"}),
    );
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    let mut service = ServiceProcess::start(
        &database_url(&pool),
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar.url()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let api = &service.api;
    let wf = api.create_workflow(deploy_dag()).await;

    // Act: budapp executes with its traceparent; budcluster's event comes
    // back through Dapr with budcluster's trace context.
    let exec = execute(
        api,
        wf,
        Some(&format!("00-{TRACE}-{CALLER_SPAN}-01")),
        json!({"callback_topics": ["budappEvents"]}),
    )
    .await;
    api.wait_until(exec, WAIT, |e| step(e, "deploy")["awaiting_event"] == true)
        .await;
    let deploy_call = &budcluster.requests_to(Route::Deploy)[0];
    let sent = deploy_call.header("traceparent").unwrap().to_owned();
    let envelope = json!({
        "specversion": "1.0", "id": Uuid::new_v4().to_string(), "source": "budcluster",
        "type": "com.dapr.event.sent", "datacontenttype": "application/json",
        "topic": "workflow-events", "pubsubname": "budpubsub", "traceparent": sent,
        "data": deployment_event("bc-wf-otel", "COMPLETED", json!({"deployment_id": "dep-otel"})),
    });
    let delivered = api
        .http
        .post(format!("{}/workflow-events", api.base))
        .header("dapr-api-token", TOKEN)
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .header("traceparent", &sent)
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::OK);
    let done = api.wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");

    // Assert
    let exec_id = exec.to_string();
    let spans = collector
        .wait_for("the execution's spans", |spans| {
            let step_done = |id: &str| {
                spans
                    .iter()
                    .any(|s| s.name == "step" && s.attr("step_id") == Some(id))
            };
            step_done("deploy")
                && step_done("announce")
                && spans.iter().any(|s| s.name == "execution")
                && spans.iter().any(|s| s.name == "dapr.invoke")
                && spans.iter().any(|s| s.name == "event")
                && spans.iter().any(|s| s.name == "outbox.publish")
        })
        .await;
    let ours = find(&spans, |s| s.trace_id == TRACE);

    let request = find(&spans, |s| s.name == "POST /workflows/{id}/execute");
    assert_eq!(request.len(), 1, "{request:#?}");
    let request = request[0].clone();
    assert_eq!(request.trace_id, TRACE);
    assert_eq!(
        request.parent_span_id, CALLER_SPAN,
        "a child of budapp's span"
    );
    assert_eq!(request.kind, 2, "server");
    assert_eq!(request.attr("status"), Some("202"));
    assert_eq!(request.attr("route"), Some("/workflows/{id}/execute"));

    let execution = find(&ours, |s| s.name == "execution");
    assert_eq!(execution.len(), 1, "{execution:#?}");
    let execution = execution[0].clone();
    assert_eq!(execution.parent_span_id, request.span_id);
    assert_eq!(execution.attr("execution_id"), Some(exec_id.as_str()));

    let steps = find(&spans, |s| s.name == "step");
    for step in &steps {
        assert_eq!(step.trace_id, TRACE, "{step:#?}");
        assert_eq!(step.parent_span_id, execution.span_id, "{step:#?}");
        assert_eq!(step.attr("execution_id"), Some(exec_id.as_str()));
        assert_eq!(step.attr("attempt"), Some("1"));
    }
    let deploy = find(&steps, |s| s.attr("step_id") == Some("deploy")).remove(0);
    assert_eq!(deploy.attr("action"), Some("deploy_model"));
    assert_eq!(deploy.attr("outcome"), Some("waiting"));
    let announce = find(&steps, |s| s.attr("step_id") == Some("announce")).remove(0);
    assert_eq!(announce.attr("outcome"), Some("completed"));

    let invoke = find(&spans, |s| s.name == "dapr.invoke");
    assert_eq!(invoke.len(), 1, "{invoke:#?}");
    let invoke = invoke[0].clone();
    assert_eq!(invoke.trace_id, TRACE);
    assert_eq!(
        invoke.parent_span_id, deploy.span_id,
        "the call is the step's"
    );
    assert_eq!(invoke.kind, 3, "client");
    assert_eq!(invoke.attr("app_id"), Some("budcluster"));
    assert_eq!(invoke.attr("method"), Some("POST"));
    assert_eq!(invoke.attr("status"), Some("200"));
    assert_eq!(invoke.attr("retries"), Some("0"));
    assert_eq!(invoke.attr("outcome"), Some("ok"));
    assert_eq!(
        sent,
        format!("00-{TRACE}-{}-01", invoke.span_id),
        "budcluster's spans become children of the call"
    );

    let event = find(&spans, |s| s.name == "event");
    assert_eq!(event.len(), 1, "{event:#?}");
    assert_eq!(event[0].trace_id, TRACE);
    assert_eq!(event[0].attr("correlation_id"), Some("bc-wf-otel"));
    assert_eq!(event[0].attr("outcome"), Some("applied"));

    let publishes = find(&spans, |s| s.name == "outbox.publish");
    for publish in &publishes {
        assert_eq!(publish.trace_id, TRACE, "{publish:#?}");
        assert_eq!(publish.parent_span_id, execution.span_id);
        assert_eq!(publish.attr("topic"), Some("budappEvents"));
    }
    let dapr_publishes = find(&ours, |s| s.name == "dapr.publish");
    assert!(!dapr_publishes.is_empty());
    assert!(dapr_publishes.iter().all(|s| s.kind == 4), "producer");

    for span in &spans {
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("budpipeline")
        );
        assert_ne!(
            span.attr("route"),
            Some("/ready"),
            "probes are not exported"
        );
    }
    assert!(
        collector
            .exports()
            .iter()
            .all(|e| e.content_type == "application/x-protobuf"),
        "protobuf by default"
    );
    assert!(service.terminate().await.success(), "flushes and exits");
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`, the traces URL used as is, the
/// service name and resource attributes from the environment; without a
/// `traceparent` the trace id is the execution id without dashes.
#[sqlx::test]
async fn json_export_names_the_service_and_traces_an_execution_without_a_traceparent(pool: PgPool) {
    let collector = Collector::start().await;
    let traces_url = format!("{}/v1/traces", collector.url);
    let service = ServiceProcess::start(
        &database_url(&pool),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "budpipeline-test"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,service.name=ignored",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let api = &service.api;
    let wf = api.create_workflow(log_dag("json")).await;
    let exec = execute(api, wf, None, json!({})).await;
    let done = api.wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");

    let trace = exec.simple().to_string();
    let spans = collector
        .wait_for("both steps", |spans| {
            spans
                .iter()
                .filter(|s| s.name == "step" && s.trace_id == trace)
                .count()
                == 2
        })
        .await;
    assert!(
        collector
            .exports()
            .iter()
            .all(|e| e.content_type == "application/json")
    );
    let execution = find(&spans, |s| s.name == "execution" && s.trace_id == trace);
    assert_eq!(execution.len(), 1, "{spans:#?}");
    assert!(
        execution[0].parent_span_id.is_empty(),
        "the root of its trace"
    );
    let resource = &execution[0].resource;
    assert_eq!(resource["service.name"], "budpipeline-test");
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
}

/// The sampler variables: with `parentbased_traceidratio` an execution is
/// kept or dropped whole, decided by its trace id (the SDK keeps a trace when
/// the low 64 bits of its id, shifted right once, fall under the ratio), while
/// the execute request follows budapp's sampled flag.
#[sqlx::test]
async fn the_sampler_keeps_or_drops_an_execution_whole(pool: PgPool) {
    const KEPT: &str = "5a7942d244804ff50000000000000001";
    const DROPPED: &str = "5a7942d244804ff5f000000000000001";
    let collector = Collector::start().await;
    let service = ServiceProcess::start(
        &database_url(&pool),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let api = &service.api;
    let wf = api.create_workflow(log_dag("sampled")).await;
    for trace in [DROPPED, KEPT] {
        let traceparent = format!("00-{trace}-{CALLER_SPAN}-01");
        let exec = execute(api, wf, Some(&traceparent), json!({})).await;
        let done = api.wait_terminal(exec, WAIT).await;
        assert_eq!(done["status"], "COMPLETED");
    }
    // Spans leave in the order they end: once the later execution's are
    // in, the earlier one's would be too.
    let spans = collector
        .wait_for("the kept execution", |spans| {
            spans
                .iter()
                .filter(|s| s.trace_id == KEPT && s.name == "step")
                .count()
                == 2
        })
        .await;
    assert_eq!(
        find(&spans, |s| s.trace_id == KEPT && s.name == "execution").len(),
        1
    );
    let dropped = find(&spans, |s| s.trace_id == DROPPED);
    assert!(
        dropped
            .iter()
            .all(|s| s.name == "POST /workflows/{id}/execute"),
        "only budapp's sampled request is kept of the dropped execution: {dropped:#?}"
    );
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
}

/// A collector that is down costs nothing: requests and executions go on,
/// spans are dropped instead of kept (memory stays flat), and the failure is
/// logged once, not per batch. `extra`: more variables for the service.
async fn serves_with_flat_memory(pool: PgPool, endpoint: &str, extra: &[(&str, &str)]) {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("MAX_CONCURRENT_STEPS", "16"),
    ];
    vars.extend_from_slice(extra);
    let mut service = ServiceProcess::start(&database_url(&pool), &vars).await;
    let api = service.api.clone();
    let wf = api.create_workflow(log_dag("down")).await;

    // Runs `n` executions, 8 at a time; returns the slowest execute.
    let run = |n: usize| {
        let api = api.clone();
        async move {
            let mut slowest = Duration::ZERO;
            for _ in 0..n / 8 {
                let mut batch = tokio::task::JoinSet::new();
                for _ in 0..8 {
                    let api = api.clone();
                    batch.spawn(async move {
                        let started = Instant::now();
                        let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
                        execute(&api, wf, Some(&traceparent), json!({})).await;
                        started.elapsed()
                    });
                }
                while let Some(took) = batch.join_next().await {
                    slowest = slowest.max(took.unwrap());
                }
            }
            slowest
        }
    };
    let wait_completed = |n: i64| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let done: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM executions WHERE status = 'COMPLETED'",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                if done >= n {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{done} of {n} executions completed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Warm up (pools, caches, the allocator), then measure.
    run(200).await;
    wait_completed(200).await;
    let before = rss_kb(service.pid());
    let slowest = run(800).await;
    wait_completed(1000).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // a few more failed exports
    let after = rss_kb(service.pid());

    let (status, _) = api.get("/ready").await;
    assert_eq!(status, StatusCode::OK);
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("budpipeline-test-{}.log", service.port)),
    )
    .unwrap_or_default();
    let failures = log.matches("trace export failed").count();
    eprintln!(
        "RSS {before} kB -> {after} kB, slowest execute {slowest:?}, failure logged {failures}x"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "an execute took {slowest:?} with the collector down"
    );
    assert!(
        after < before + 10 * 1024,
        "RSS grew from {before} kB to {after} kB over 800 executions"
    );
    assert!(failures >= 1, "the failure is logged: {log}");
    assert!(
        failures <= 2,
        "logged once, not per batch ({failures} times)"
    );
    // The last flush gives up rather than holding the exit.
    let stopping = Instant::now();
    assert!(service.terminate().await.success());
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        stopping.elapsed()
    );
}

#[sqlx::test]
async fn with_the_collector_port_closed_the_service_serves_and_its_memory_stays_flat(pool: PgPool) {
    let closed = format!("http://127.0.0.1:{}", free_port());
    serves_with_flat_memory(pool, &closed, &[]).await;
}

/// The harder case: connections are accepted and never answered, so every
/// export waits for its timeout while spans keep coming; the bounded queue
/// drops them.
#[sqlx::test]
async fn with_a_collector_that_never_answers_the_service_serves_and_its_memory_stays_flat(
    pool: PgPool,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let black_hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    serves_with_flat_memory(pool, &url, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]).await;
    black_hole.abort();
}

/// Without an endpoint (a collector even listens at the SDK's default,
/// `localhost:4318`), with `OTEL_SDK_DISABLED=true` or with
/// `OTEL_TRACES_EXPORTER=none`, nothing is sent.
#[sqlx::test]
async fn nothing_is_sent_unless_the_variables_ask_for_it(pool: PgPool) {
    let db = database_url(&pool);
    let elsewhere = Collector::start().await;
    // The default endpoint: taken if free (another test run may hold it).
    let default = match tokio::net::TcpListener::bind("127.0.0.1:4318").await {
        Ok(listener) => Some(Collector::serve(listener)),
        Err(e) => {
            eprintln!("127.0.0.1:4318 is taken ({e}); not checking the default endpoint");
            None
        }
    };
    let setups: [&[(&str, &str)]; 3] = [
        &[
            ("OTEL_SERVICE_NAME", "budpipeline"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &elsewhere.url),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &elsewhere.url),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    ];
    for (i, vars) in setups.into_iter().enumerate() {
        let mut service = ServiceProcess::start(&db, vars).await;
        let wf = service
            .api
            .create_workflow(log_dag(&format!("quiet-{i}")))
            .await;
        let exec = execute(
            &service.api,
            wf,
            Some(&format!("00-{TRACE}-{CALLER_SPAN}-01")),
            json!({}),
        )
        .await;
        let done = service.api.wait_terminal(exec, WAIT).await;
        assert_eq!(done["status"], "COMPLETED");
        // Several export intervals, and the flush at exit.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(service.terminate().await.success());
    }
    assert!(elsewhere.exports().is_empty(), "disabled, yet sent");
    if let Some(default) = default {
        assert!(
            default.exports().is_empty(),
            "sent to the default endpoint while unset"
        );
    }
}
