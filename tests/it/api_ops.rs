//! Operations (API.md "Operations", "Running it", "Configuration"): health,
//! readiness (also with the database down), metrics, the OpenAPI document,
//! the status page, the action catalogue, and the command line.

use crate::support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use budpipeline::config::{Settings, VARIABLES};
use budpipeline::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{Api, TestApp, env_for, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_budpipeline");

#[sqlx::test]
async fn health_is_ok(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let resp = app
        .api
        .http
        .get(format!("{}/health", app.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    app.stop().await;
}

#[sqlx::test]
async fn ready_names_its_checks(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app.api.get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["checks"]["database"], "ok", "{body:#}");
    assert_eq!(body["checks"]["migrations"], "ok", "{body:#}");
    app.stop().await;
}

/// The service in-process against a database URL where nothing listens;
/// unlike `TestApp::spawn` it does not wait for `/ready` (it never comes).
#[tokio::test]
async fn ready_is_503_while_the_database_is_unreachable() {
    let dead = format!("postgres://postgres@127.0.0.1:{}/nothing", free_port());
    let vars = env_for(&dead, &[]);
    let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("settings");
    let app = Application::build(settings)
        .await
        .expect("builds without a database");
    let port = app.port();
    let task = tokio::spawn(app.run(std::future::pending()));
    let api = Api::new(format!("http://127.0.0.1:{port}"));

    // /health answers as soon as the server listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(resp) = api.http.get(format!("{}/health", api.base)).send().await {
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
            break;
        }
        assert!(Instant::now() < deadline, "/health never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let (status, body) = api.get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "/ready answers promptly"
    );
    assert_eq!(body["checks"]["database"], "unreachable", "{body:#}");
    assert_ne!(body["checks"]["migrations"], "ok", "{body:#}");

    // /health stays up; API calls that need the database are 503, not 500.
    let (status, body) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, body) = api.get("/workflows").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert!(body["detail"].is_string(), "{body:#}");
    // An event that cannot be recorded asks Dapr to redeliver.
    let (status, body) = api
        .post(
            "/workflow-events",
            json!({"workflow_id": "wf-1", "status": "COMPLETED"}),
        )
        .await;
    assert!(
        status.is_server_error() || body["status"] == "RETRY",
        "{status} {body:#}"
    );
    assert_eq!(body["status"], "RETRY", "{body:#}");
    // Still open without a token, and still not ready.
    let resp = api
        .http
        .get(format!("{}/ready", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    task.abort();
}

/// Every route of API.md, with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/workflows", &["post", "get"]),
    ("/workflows/validate", &["post"]),
    ("/workflows/{id}", &["get", "put", "delete"]),
    ("/workflows/{id}/execute", &["post"]),
    ("/executions", &["get"]),
    ("/executions/{id}", &["get"]),
    ("/executions/{id}/steps", &["get"]),
    ("/executions/{id}/cancel", &["post"]),
    ("/executions/{id}/retry", &["post"]),
    ("/actions", &["get"]),
    ("/actions/{action_type}", &["get"]),
    ("/workflow-events", &["post"]),
    ("/dapr/subscribe", &["get"]),
    ("/internal/status", &["get"]),
    ("/openapi.json", &["get"]),
    ("/docs", &["get"]),
    ("/health", &["get"]),
    ("/ready", &["get"]),
    ("/metrics", &["get"]),
    // COMPAT.md "Triggers".
    ("/schedules", &["post", "get"]),
    ("/schedules/{id}", &["get", "put", "delete"]),
    ("/schedules/{id}/pause", &["post"]),
    ("/schedules/{id}/resume", &["post"]),
    ("/schedules/{id}/trigger", &["post"]),
    ("/schedules/{id}/next-runs", &["get"]),
    ("/internal/schedule-poll", &["post"]),
    ("/webhooks", &["post", "get"]),
    ("/webhooks/{id}", &["get", "put", "delete"]),
    ("/webhooks/{id}/rotate-secret", &["post"]),
    ("/trigger/{id}", &["post"]),
    ("/event-triggers", &["post", "get"]),
    ("/event-triggers/event-types", &["get"]),
    ("/event-triggers/{id}", &["get", "put", "delete"]),
];

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[sqlx::test]
async fn openapi_documents_every_route(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, doc) = app.api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc:#}");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is documented; have {:?}", paths.keys()));
        for method in *methods {
            let op = &item[*method];
            assert!(op.is_object(), "{method} {path} is documented: {item:#}");
            assert!(op["responses"].is_object(), "{method} {path}");
            // Every `{param}` of the path is declared as a path parameter.
            let mut rest = *path;
            while let Some(start) = rest.find('{') {
                let end = rest[start..].find('}').unwrap() + start;
                let name = &rest[start + 1..end];
                rest = &rest[end + 1..];
                let declared = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(item["parameters"].as_array().into_iter().flatten())
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                assert!(
                    declared,
                    "{method} {path} declares path parameter {name}: {op:#}"
                );
            }
        }
    }
    // Operation ids are unique (code generators rely on it).
    let mut ids = std::collections::HashSet::new();
    for item in paths.values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                assert!(ids.insert(id.to_owned()), "operationId {id} is unique");
            }
        }
    }
    assert!(ids.len() >= 21, "{ids:?}");
    // The token is documented as the header the sidecar sends.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "apiKey" && s["in"] == "header" && s["name"] == "dapr-api-token"),
        "{schemes:#?}"
    );
    // The open routes say so.
    assert_eq!(
        paths["/trigger/{id}"]["post"]["security"],
        json!([]),
        "a webhook's own secret protects it, not the token"
    );
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(
            paths[path]["get"]["security"],
            json!([]),
            "{path} is documented as open"
        );
    }
    // Every schema reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    let schemas = &doc["components"]["schemas"];
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas[name].is_object(), "{r} resolves");
    }
    app.stop().await;
}

#[sqlx::test]
async fn metrics_are_prometheus_text(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, _) = app.api.get("/workflows").await;
    assert_eq!(status, StatusCode::OK);
    let resp = app
        .api
        .http
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("# TYPE budpipeline_http_requests counter")
            || text.contains("# TYPE budpipeline_http_requests_total counter"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("budpipeline_http_requests_total{")
                && l.contains("route=\"/workflows\"")
                && l.contains("method=\"GET\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("a counter for GET /workflows: {text}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 1.0, "{line}");
    // Labelled by route template, not raw path.
    let id = uuid::Uuid::new_v4();
    let _ = app.api.get(&format!("/workflows/{id}")).await;
    let (_, text) = app.api.get("/metrics").await;
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains("route=\"/workflows/{id}\""), "{text}");
    assert!(!text.contains(&id.to_string()), "raw ids are not labels");
    for family in [
        "budpipeline_outbox_backlog",
        "budpipeline_http_request_duration_seconds",
    ] {
        assert!(text.contains(family), "{family} in {text}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn internal_status_shows_engine_state(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app.api.get("/internal/status").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(
        !body["replica_id"].as_str().expect("replica_id").is_empty(),
        "{body:#}"
    );
    assert!(body["queues"].is_object(), "{body:#}");
    assert!(body["queues"]["claimable_steps"].is_number(), "{body:#}");
    assert!(body["outbox"].is_object(), "{body:#}");
    assert_eq!(body["outbox"]["backlog"], 0, "{body:#}");
    assert!(body["circuit_breakers"].is_object(), "{body:#}");
    app.stop().await;
}

#[sqlx::test]
async fn actions_are_listed_with_their_params(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app.api.get("/actions").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let actions = body["actions"].as_array().expect("actions");
    let find = |kind: &str| {
        actions
            .iter()
            .find(|a| a["type"] == kind)
            .unwrap_or_else(|| panic!("action {kind} listed: {body:#}"))
    };
    let param_names = |action: &Value| -> Vec<String> {
        action["params"]
            .as_array()
            .expect("params")
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(param_names(find("log")).contains(&"message".to_owned()));
    let wait = param_names(find("wait_until"));
    assert!(wait.contains(&"duration_seconds".to_owned()), "{wait:?}");
    let deploy = find("deploy_model");
    let names = param_names(deploy);
    for p in ["cluster_id", "model_id", "config"] {
        assert!(names.contains(&p.to_owned()), "{names:?}");
    }
    assert_eq!(deploy["waits_for_event"], true);
    for p in deploy["params"].as_array().unwrap() {
        assert!(p["type"].is_string() && p["required"].is_boolean(), "{p}");
    }

    let (status, one) = app.api.get("/actions/deploy_model").await;
    assert_eq!(status, StatusCode::OK, "{one:#}");
    assert_eq!(&one, deploy);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// The command line

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run budpipeline")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_variable_without_configuration() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag], &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{flag}: {:?} {stderr}", out.status);
        assert!(
            stdout.contains("serve") && stdout.contains("migrate") && stdout.contains("validate"),
            "{stdout}"
        );
        for (name, default, _) in VARIABLES {
            assert!(stdout.contains(name), "{flag} mentions {name}: {stdout}");
            assert!(
                stdout.contains(default),
                "{flag} mentions the default of {name}"
            );
        }
    }
    // Even with a broken configuration, help is help.
    let out = run(&["--help"], &[("SERVICE_INVOKE_TIMEOUT", "soon")]);
    assert!(out.status.success());
}

#[test]
fn api_md_variables_are_all_known() {
    for name in [
        "DATABASE_URL",
        "APP_PORT",
        "DAPR_HTTP_ENDPOINT",
        "DAPR_API_TOKEN",
        "APP_API_TOKEN",
        "SERVICE_INVOKE_TIMEOUT",
        "SERVICE_INVOKE_MAX_RETRIES",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        "PUBSUB_NAME",
        "WORKFLOW_EVENTS_TOPIC",
        "NOTIFY_TOPIC",
        "BUDCLUSTER_APP_ID",
        "DAPR_HEALTH_TIMEOUT",
        "DATABASE_MAX_CONNECTIONS",
        "MAX_CONCURRENT_STEPS",
        "LEASE_SECONDS",
        "MAX_BODY_BYTES",
        "TEMPLATE_MAX_BYTES",
        "EARLY_EVENT_TTL_SECONDS",
        "RETENTION_DAYS",
        "SHUTDOWN_GRACE_SECONDS",
        "LOG_FORMAT",
    ] {
        assert!(
            VARIABLES.iter().any(|(n, _, _)| *n == name),
            "{name} in VARIABLES"
        );
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("budpipeline-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `error: ...` lines of `budpipeline validate`.
fn cli_errors(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .collect()
}

#[sqlx::test]
async fn validate_command_matches_the_api(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dir = TempDir::new();

    let valid = json!({"name": "ok", "parameters": [{"name": "who", "default": "x"}],
        "steps": [{"id": "a", "action": "log", "params": {"message": "{{ params.who }}"}},
                  {"id": "b", "action": "wait_until", "depends_on": ["a"], "params": {"duration_seconds": 5}}]});
    let file = dir.write("valid.json", &serde_json::to_string_pretty(&valid).unwrap());
    let out = run(&["validate", &file], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(cli_errors(&stdout).is_empty(), "{stdout}");

    // A request body {"dag": ...} is accepted too.
    let file = dir.write("body.json", &json!({"dag": valid}).to_string());
    let out = run(&["validate", &file], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let invalid = json!({"name": "bad", "steps": [
        {"id": "a", "action": "log", "depends_on": ["b"]},
        {"id": "b", "action": "log", "depends_on": ["a"]},
        {"id": "c", "action": "no_such_action", "depends_on": ["ghost"]},
        {"id": "d", "action": "log", "params": {"message": "{{ params.missing }}"}}
    ]});
    let file = dir.write("invalid.json", &invalid.to_string());
    let out = run(&["validate", &file], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let from_cli = cli_errors(&stdout);
    let (status, from_api) = app
        .api
        .post("/workflows/validate", json!({"dag": invalid}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_api["valid"], false);
    let from_api: Vec<String> = from_api["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(from_api.len() >= 4, "{from_api:?}");
    assert_eq!(from_cli, from_api, "same messages as the API");

    // YAML, valid and invalid.
    let yaml = "name: from-yaml\nsteps:\n  - id: a\n    action: log\n    params:\n      message: hello\n  - id: b\n    action: log\n    depends_on: [a]\n";
    let file = dir.write("flow.yaml", yaml);
    let out = run(&["validate", &file], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let bad_yaml = "name: from-yaml\nsteps: []\n";
    let file = dir.write("bad.yml", bad_yaml);
    let out = run(&["validate", &file], &[]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let (_, api) = app
        .api
        .post(
            "/workflows/validate",
            json!({"dag": {"name": "from-yaml", "steps": []}}),
        )
        .await;
    let api: Vec<String> = api["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cli_errors(&stdout), api);
    assert!(cli_errors(&stdout)[0].starts_with("steps"), "{stdout}");

    // Not a document at all, or no file: a failure that names the file.
    let file = dir.write("broken.json", "{not json");
    let out = run(&["validate", &file], &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("broken.json"), "{:?}", text(&out));
    let out = run(&["validate", "/nonexistent/flow.json"], &[]);
    assert!(!out.status.success());
    let out = run(&["validate"], &[]);
    assert!(!out.status.success());
    app.stop().await;
}

/// Run `budpipeline ARGS` expecting it to stop by itself (bounded wait).
async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("budpipeline {args:?} with {env:?} should stop by itself"))
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, all)
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_naming_the_variable() {
    let db = "postgres://postgres@127.0.0.1:1/none";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DATABASE_URL", db), ("SERVICE_INVOKE_TIMEOUT", "soon")],
            "SERVICE_INVOKE_TIMEOUT",
        ),
        (
            vec![("DATABASE_URL", db), ("DAPR_HTTP_ENDPOINT", "not a url")],
            "DAPR_HTTP_ENDPOINT",
        ),
        (
            vec![("DATABASE_URL", db), ("APP_PORT", "eighty")],
            "APP_PORT",
        ),
        (
            vec![("DATABASE_URL", db), ("MAX_BODY_BYTES", "-5")],
            "MAX_BODY_BYTES",
        ),
        (
            vec![("DATABASE_URL", db), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT",
        ),
        (
            vec![("DATABASE_URL", db), ("LEASE_SECONDS", "0")],
            "LEASE_SECONDS",
        ),
        (
            vec![("DATABASE_URL", db), ("SERVICE_INVOKE_TIMEOUT", "1e30")],
            "SERVICE_INVOKE_TIMEOUT",
        ),
        (
            vec![("DATABASE_URL", db), ("RETENTION_DAYS", "4294967295")],
            "RETENTION_DAYS",
        ),
        (
            vec![("DATABASE_URL", db), ("RETENTION_DAYS", "0")],
            "RETENTION_DAYS",
        ),
        (vec![("DATABASE_URL", "mysql://x/y")], "DATABASE_URL"),
        (vec![], "DATABASE_URL"),
    ];
    for (env, name) in cases {
        for args in [&["serve"][..], &[][..], &["migrate"][..]] {
            let (status, output) = run_to_exit(args, &env).await;
            assert!(!status.success(), "{args:?} {env:?}: {status:?} {output}");
            assert!(
                output.contains(name),
                "{args:?} {env:?}: the message names {name}: {output}"
            );
        }
    }
    // An unknown argument is a usage error.
    let (status, output) = run_to_exit(&["frobnicate"], &[]).await;
    assert!(!status.success());
    assert!(output.contains("frobnicate"), "{output}");
}
