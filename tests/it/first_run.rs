//! What a new user meets first: every route writes timestamps and numbers
//! one way (the document Postgres builds included), bad ids and unknown
//! resources get short messages, a parameter with a default is not shown as
//! required, and the logs of a local run without a sidecar are plain text
//! that says once that Dapr is absent.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{ServiceProcess, TestApp, database_url};

/// `2026-12-05T21:02:13.815842Z`, `…13.815Z` or `…13Z`: what chrono writes.
fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let head = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let tail = &text[19.min(text.len())..];
    head && match tail {
        "Z" => true,
        t => {
            t.starts_with('.')
                && t.ends_with('Z')
                && matches!(t.len() - 2, 3 | 6)
                && t[1..t.len() - 1].bytes().all(|c| c.is_ascii_digit())
        }
    }
}

/// Every `*_at` string in `value`, with its JSON path.
fn timestamps(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                match v {
                    Value::String(s) if k.ends_with("_at") => out.push((here, s.clone())),
                    _ => timestamps(v, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                timestamps(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The raw body, so that `100` and `100.0` can be told apart.
async fn raw(app: &TestApp, method: reqwest::Method, path: &str) -> (StatusCode, String) {
    let response = app
        .api
        .http
        .request(method, format!("{}{path}", app.api.base))
        .header("dapr-api-token", support::app::TOKEN)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[sqlx::test]
async fn every_route_writes_timestamps_and_percentages_one_way(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let workflow = app
        .api
        .create_workflow(json!({"name": "formats", "steps": [
            {"id": "a", "action": "log", "params": {"message": "a"}},
            {"id": "b", "action": "fail", "depends_on": ["a"]},
            {"id": "c", "action": "log", "depends_on": ["a"], "params": {"message": "c"}}]}))
        .await;
    let done = app.api.execute(workflow, json!({})).await;
    app.api.wait_terminal(done, Duration::from_secs(20)).await;
    // Exact microseconds the two renderers must agree on: none, whole
    // milliseconds, and any.
    sqlx::query(
        "UPDATE executions SET created_at = '2026-01-02 03:04:05+00',
                               started_at = '2026-01-02 03:04:05.5+00',
                               completed_at = '2026-01-02 03:04:06.123456+00' WHERE id = $1",
    )
    .bind(done)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE step_executions SET started_at = '2026-01-02 03:04:05.010+00' WHERE execution_id = $1")
        .bind(done)
        .execute(&pool)
        .await
        .unwrap();
    let retried = app.api.execute(workflow, json!({})).await;
    app.api
        .wait_terminal(retried, Duration::from_secs(20))
        .await;
    use reqwest::Method;
    let reads = [
        (Method::GET, "/workflows".to_owned()),
        (Method::GET, format!("/workflows/{workflow}")),
        (Method::GET, format!("/workflows/{workflow}?version=1")),
        (Method::GET, "/executions".to_owned()),
        (Method::GET, format!("/executions/{done}")),
        (Method::GET, format!("/executions/{done}/steps")),
        (Method::POST, format!("/executions/{retried}/retry")),
    ];
    let mut documents = Vec::new();
    for (method, path) in reads {
        let (status, text) = raw(&app, method.clone(), &path).await;
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        let mut found = Vec::new();
        timestamps(&value, "", &mut found);
        assert!(!found.is_empty(), "{path} has timestamps");
        for (at, stamp) in found {
            assert!(is_rfc3339_utc(&stamp), "{method} {path} {at}: {stamp}");
        }
        // A percentage is written as a float everywhere.
        for (key, number) in numbers(&value, "progress_percentage") {
            assert!(
                number.is_f64(),
                "{path} {key}: {number} is written as an integer"
            );
        }
        documents.push((path, value));
    }
    // The document Postgres builds (GET /executions/{id}) and the ones serde
    // writes (the list, the steps route) say the same thing the same way.
    let by_sql = &documents[4].1;
    let in_list = documents[3].1["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["execution_id"] == done.to_string())
        .unwrap();
    assert_eq!(by_sql["created_at"], "2026-01-02T03:04:05Z");
    assert_eq!(by_sql["started_at"], "2026-01-02T03:04:05.500Z");
    assert_eq!(by_sql["completed_at"], "2026-01-02T03:04:06.123456Z");
    for key in [
        "created_at",
        "started_at",
        "completed_at",
        "progress_percentage",
    ] {
        assert_eq!(by_sql[key], in_list[key], "{key}");
    }
    let steps_route = &documents[5].1["steps"];
    for (i, step) in by_sql["steps"].as_array().unwrap().iter().enumerate() {
        for key in ["started_at", "completed_at", "timeout_at"] {
            assert_eq!(step[key], steps_route[i][key], "step {i} {key}");
        }
    }
    assert_eq!(by_sql["steps"][0]["started_at"], "2026-01-02T03:04:05.010Z");
    app.stop().await;
}

/// Every number under `key` in `value`.
fn numbers(value: &Value, key: &str) -> Vec<(String, serde_json::Number)> {
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Number(n) if k == key => out.push((k.clone(), n.clone())),
                    _ => out.extend(numbers(v, key)),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| out.extend(numbers(v, key))),
        _ => {}
    }
    out
}

#[sqlx::test]
async fn bad_ids_and_unknown_resources_get_short_messages(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let unknown = uuid::Uuid::new_v4();
    let long = "x".repeat(100);
    let cases = [
        (
            "GET",
            "/executions/nope".to_owned(),
            400,
            "id: 'nope' is not a UUID".to_owned(),
        ),
        (
            "GET",
            "/workflows/123".to_owned(),
            400,
            "id: '123' is not a UUID".to_owned(),
        ),
        (
            "GET",
            format!("/workflows/{long}"),
            400,
            format!("id: '{}…' is not a UUID", "x".repeat(40)),
        ),
        (
            "GET",
            "/executions?workflow_id=nope".to_owned(),
            400,
            "workflow_id: 'nope' is not a UUID".to_owned(),
        ),
        (
            "GET",
            "/executions?limit=ten".to_owned(),
            400,
            "limit: must be an integer".to_owned(),
        ),
        (
            "GET",
            format!("/workflows/{unknown}"),
            404,
            "workflow not found".to_owned(),
        ),
        (
            "POST",
            format!("/workflows/{unknown}/execute"),
            404,
            "workflow not found".to_owned(),
        ),
        (
            "GET",
            format!("/executions/{unknown}"),
            404,
            "execution not found".to_owned(),
        ),
        (
            "POST",
            format!("/executions/{unknown}/cancel"),
            404,
            "execution not found".to_owned(),
        ),
        (
            "POST",
            format!("/executions/{unknown}/retry"),
            404,
            "execution not found".to_owned(),
        ),
        (
            "GET",
            "/actions/nope".to_owned(),
            404,
            "action 'nope' not found".to_owned(),
        ),
    ];
    for (method, path, status, detail) in cases {
        let method: reqwest::Method = method.parse().unwrap();
        let (got, body) = app.api.call(method.clone(), &path, None).await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {body}");
        assert_eq!(body, json!({"detail": detail}), "{method} {path}");
    }
    let workflow = app
        .api
        .create_workflow(json!({"name": "v", "steps": [{"id": "a", "action": "log", "params": {"message": "a"}}]}))
        .await;
    let (got, body) = app
        .api
        .get(&format!("/workflows/{workflow}?version=7"))
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "workflow version 7 not found"}));
    app.stop().await;
}

#[sqlx::test]
async fn a_parameter_with_a_default_is_not_required(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app
        .api
        .post(
            "/workflows",
            json!({"dag": {"name": "p",
            "parameters": [{"name": "n", "type": "integer", "default": 3},
                           {"name": "m", "type": "string"},
                           {"name": "o", "type": "string", "required": false}],
            "steps": [{"id": "a", "action": "log", "params": {"message": "{{ params.n }}"}}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let required: Vec<(&str, bool)> = body["dag"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(required, vec![("n", false), ("m", true), ("o", false)]);
    // No action shows a parameter with a default as required either.
    let (_, actions) = app.api.get("/actions").await;
    for action in actions["actions"].as_array().unwrap() {
        for param in action["params"].as_array().unwrap() {
            assert!(
                !(param["required"] == true && param.get("default").is_some()),
                "{}.{} has a default but says required",
                action["type"],
                param["name"]
            );
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn logs_in_a_file_are_plain_and_say_once_that_dapr_is_absent(pool: PgPool) {
    // Nothing listens at the sidecar's address; the publisher waits 2 s for it.
    let service = ServiceProcess::start(
        &database_url(&pool),
        &[
            ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:9"),
            ("DAPR_HEALTH_TIMEOUT", "2"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // ServiceProcess writes the service's output to this file (not a terminal).
    let log = std::env::temp_dir().join(format!("budpipeline-test-{}.log", service.port));
    let text = std::fs::read_to_string(&log).unwrap();
    // The file may hold an earlier process's lines on the same port: read ours.
    let ours = text.rsplit("INFO listening").next().unwrap();
    assert!(
        !ours.contains('\x1b'),
        "escape sequences in a log file:\n{ours}"
    );
    let absent = ours.matches("no Dapr sidecar answers").count();
    assert_eq!(absent, 1, "said once:\n{ours}");
    assert!(ours.contains("expected when running locally"), "{ours}");
    assert!(ours.contains("built-in actions"), "{ours}");
    assert!(!ours.contains("waiting for the Dapr sidecar"), "{ours}");
    assert!(!ours.contains("going on without it"), "{ours}");
}
