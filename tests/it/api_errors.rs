//! Authentication and error handling at the HTTP boundary (API.md
//! "Conventions" and "Authentication"): every protected route is refused
//! without the token, and every error is JSON with a `detail`, never a 500.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{TOKEN, TestApp};
use uuid::Uuid;

/// A raw answer: status, Content-Type and body text.
struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body is JSON ({e}): {} {} {:?}",
                self.status, self.content_type, self.text
            )
        })
    }

    /// [`Answer::error`], of a request (`what`) that must answer `status`.
    fn error_with(&self, status: StatusCode, what: std::fmt::Arguments<'_>) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self.error()
    }

    /// The body of an error: JSON with Content-Type application/json and a
    /// non-empty `detail` string; no SQL text or panics leak out.
    fn error(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "error Content-Type is JSON: {} {:?} {:?}",
            self.status,
            self.content_type,
            self.text
        );
        let body = self.json();
        let detail = body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("error has a detail string: {} {body:#}", self.status));
        assert!(!detail.trim().is_empty(), "{body:#}");
        for leak in [
            "SELECT",
            "INSERT",
            "UPDATE ",
            "sqlx",
            "panicked",
            "error returned from database",
        ] {
            assert!(!detail.contains(leak), "detail leaks internals: {body:#}");
        }
        body
    }

    fn detail(&self) -> String {
        self.error()["detail"].as_str().unwrap().to_owned()
    }
}

#[derive(Clone, Copy)]
enum Token<'a> {
    None,
    Value(&'a str),
}

/// Send a request with full control of token, content type and body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Token<'_>,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut req = app
        .api
        .http
        .request(method.clone(), format!("{}{path}", app.api.base));
    if let Token::Value(t) = token {
        req = req.header("dapr-api-token", t);
    }
    if let Some((content_type, bytes)) = body {
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        req = req.body(bytes);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} reaches the service: {e}"));
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        content_type,
        text,
    }
}

async fn send_json(app: &TestApp, method: Method, path: &str, body: &str) -> Answer {
    send(
        app,
        method,
        path,
        Token::Value(TOKEN),
        Some(("application/json", body.as_bytes().to_vec())),
    )
    .await
}

fn valid_dag() -> Value {
    json!({"name": "wf", "steps": [{"id": "a", "action": "log"}]})
}

/// Every protected route (API.md), with a body where the route takes one.
fn protected_routes() -> Vec<(Method, String, Option<Value>)> {
    let id = Uuid::new_v4();
    vec![
        (
            Method::POST,
            "/workflows".into(),
            Some(json!({"dag": valid_dag()})),
        ),
        (Method::GET, "/workflows".into(), None),
        (
            Method::POST,
            "/workflows/validate".into(),
            Some(json!({"dag": valid_dag()})),
        ),
        (Method::GET, format!("/workflows/{id}"), None),
        (
            Method::PUT,
            format!("/workflows/{id}"),
            Some(json!({"dag": valid_dag()})),
        ),
        (Method::DELETE, format!("/workflows/{id}"), None),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            Some(json!({})),
        ),
        (Method::GET, "/executions".into(), None),
        (Method::GET, format!("/executions/{id}"), None),
        (Method::GET, format!("/executions/{id}/steps"), None),
        (Method::POST, format!("/executions/{id}/cancel"), None),
        (Method::POST, format!("/executions/{id}/retry"), None),
        (Method::GET, "/actions".into(), None),
        (Method::GET, "/actions/log".into(), None),
        (
            Method::POST,
            "/workflow-events".into(),
            Some(json!({"event_type": "x", "workflow_id": "nobody-waits", "status": "COMPLETED"})),
        ),
        (Method::GET, "/dapr/subscribe".into(), None),
        (Method::GET, "/internal/status".into(), None),
    ]
}

/// The workflow and execution routes that take an id in the path, with
/// `id` there and a body where the route takes one.
fn routes_with_an_id(id: &impl std::fmt::Display) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/workflows/{id}"), None),
        (
            Method::PUT,
            format!("/workflows/{id}"),
            Some(json!({"dag": valid_dag()})),
        ),
        (Method::DELETE, format!("/workflows/{id}"), None),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            Some(json!({})),
        ),
        (Method::GET, format!("/executions/{id}"), None),
        (Method::GET, format!("/executions/{id}/steps"), None),
        (Method::POST, format!("/executions/{id}/cancel"), None),
        (Method::POST, format!("/executions/{id}/retry"), None),
    ]
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Option<Value>,
    token: Token<'_>,
) -> Answer {
    let body = body
        .as_ref()
        .map(|b| ("application/json", serde_json::to_vec(b).unwrap()));
    send(app, method.clone(), path, token, body).await
}

#[sqlx::test]
async fn every_protected_route_needs_the_token(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let routes = protected_routes();
    assert_eq!(routes.len(), 17);
    let wrong_same_length: String = TOKEN.chars().rev().collect();
    for (method, path, body) in &routes {
        for token in [
            Token::None,
            Token::Value("wrong"),
            Token::Value(&wrong_same_length),
            Token::Value(""),
            Token::Value(&format!("{TOKEN}x")),
            Token::Value(&TOKEN[..TOKEN.len() - 1]),
        ] {
            let answer = call(&app, method, path, body, token).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                answer.text
            );
            assert_eq!(
                answer.error(),
                json!({"detail": "Forbidden"}),
                "{method} {path}"
            );
        }
        let answer = call(&app, method, path, body, Token::Value(TOKEN)).await;
        assert_ne!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            answer.text
        );
        assert!(
            !answer.status.is_server_error(),
            "{method} {path}: {} {}",
            answer.status,
            answer.text
        );
        answer.json();
    }
    // Nothing was created by the refused requests; the one accepted POST did.
    let (_, listed) = app.api.get("/workflows").await;
    assert_eq!(listed["total"], 1, "{listed:#}");
    app.stop().await;
}

#[sqlx::test]
async fn the_right_token_reaches_each_handler(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let expected = [
        StatusCode::CREATED,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::OK,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
    ];
    for ((method, path, body), status) in protected_routes().iter().zip(expected) {
        let answer = call(&app, method, path, body, Token::Value(TOKEN)).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
        let value = answer.json();
        if status.is_client_error() {
            answer.error();
        } else {
            assert!(
                value.is_object() || value.is_array(),
                "{method} {path}: {value}"
            );
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn without_a_configured_token_protected_routes_fail_closed(pool: sqlx::PgPool) {
    let app = TestApp::spawn_with(&pool, &[("APP_API_TOKEN", "")]).await;
    for (method, path, body) in protected_routes() {
        for token in [Token::Value(TOKEN), Token::Value(""), Token::None] {
            let answer = call(&app, &method, &path, &body, token).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                answer.text
            );
            assert_eq!(answer.error(), json!({"detail": "Forbidden"}));
        }
    }
    // The probes, the metrics and the API's own description need no token.
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        let answer = send(&app, Method::GET, path, Token::None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    app.stop().await;
}

#[sqlx::test]
async fn health_ready_and_metrics_are_open(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    for token in [Token::None, Token::Value("wrong"), Token::Value(TOKEN)] {
        let health = send(&app, Method::GET, "/health", token, None).await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.json(), json!({"status": "ok"}));
        let ready = send(&app, Method::GET, "/ready", token, None).await;
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
        assert!(ready.json()["checks"].is_object());
        let metrics = send(&app, Method::GET, "/metrics", token, None).await;
        assert_eq!(metrics.status, StatusCode::OK);
        assert!(metrics.text.contains("# TYPE"), "{}", metrics.text);
    }
    app.stop().await;
}

#[sqlx::test]
async fn unknown_paths_are_json_404_whatever_the_token(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    for path in [
        "/nope",
        "/workflows/x/y/z",
        "/internal/nothing",
        "/executions/",
        "/",
    ] {
        for token in [Token::None, Token::Value("wrong"), Token::Value(TOKEN)] {
            for method in [Method::GET, Method::POST] {
                let answer = send(&app, method.clone(), path, token, None).await;
                answer.error_with(StatusCode::NOT_FOUND, format_args!("{method} {path}"));
            }
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn malformed_json_is_400_with_a_detail(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = app.api.create_workflow(valid_dag()).await;
    let targets = [
        (Method::POST, "/workflows".to_owned()),
        (Method::POST, "/workflows/validate".to_owned()),
        (Method::PUT, format!("/workflows/{id}")),
        (Method::POST, format!("/workflows/{id}/execute")),
    ];
    for (method, path) in &targets {
        for body in [
            "{\"dag\": ",
            "not json",
            "{\"dag\": {}} trailing",
            "",
            "{'dag': 1}",
        ] {
            let answer = send_json(&app, method.clone(), path, body).await;
            answer.error_with(
                StatusCode::BAD_REQUEST,
                format_args!("{method} {path} {body:?}"),
            );
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn wrong_types_and_missing_fields_name_the_field(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = app.api.create_workflow(valid_dag()).await;
    let dag = valid_dag().to_string();
    let cases: Vec<(Method, String, String, &str)> = vec![
        (
            Method::POST,
            "/workflows".into(),
            r#"{"dag": 5}"#.into(),
            "dag",
        ),
        (
            Method::POST,
            "/workflows".into(),
            r#"{"dag": "text"}"#.into(),
            "dag",
        ),
        (
            Method::POST,
            "/workflows".into(),
            format!(r#"{{"dag": {dag}, "name": 7}}"#),
            "name",
        ),
        (
            Method::POST,
            "/workflows".into(),
            format!(r#"{{"dag": {dag}, "created_by": [1]}}"#),
            "created_by",
        ),
        (Method::POST, "/workflows".into(), "{}".into(), "dag"),
        (
            Method::POST,
            "/workflows".into(),
            r#"{"name": "x"}"#.into(),
            "dag",
        ),
        (
            Method::POST,
            "/workflows".into(),
            "[]".into(),
            "must be a JSON object",
        ),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            "[1, 2]".into(),
            "must be a JSON object",
        ),
        (
            Method::POST,
            "/workflows/validate".into(),
            "{}".into(),
            "dag",
        ),
        (Method::PUT, format!("/workflows/{id}"), "{}".into(), "dag"),
        (
            Method::PUT,
            format!("/workflows/{id}"),
            format!(r#"{{"dag": {dag}, "name": false}}"#),
            "name",
        ),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            r#"{"parameters": []}"#.into(),
            "parameters",
        ),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            r#"{"callback_topics": "t"}"#.into(),
            "callback_topics",
        ),
        (
            Method::POST,
            format!("/workflows/{id}/execute"),
            r#"{"initiator": 3}"#.into(),
            "initiator",
        ),
    ];
    for (method, path, body, field) in cases {
        let answer = send_json(&app, method.clone(), &path, &body).await;
        assert!(
            answer.status == StatusCode::BAD_REQUEST
                || answer.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {} {}",
            answer.status,
            answer.text
        );
        let value = answer.error();
        assert!(
            value.to_string().contains(field),
            "{method} {path} {body}: the answer names {field}: {value:#}"
        );
    }
    // A blank name.
    let answer = send_json(
        &app,
        Method::POST,
        "/workflows",
        &format!(r#"{{"dag": {dag}, "name": "  "}}"#),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert!(answer.text.contains("name"), "{}", answer.text);
    let (_, listed) = app.api.get("/workflows").await;
    assert_eq!(listed["total"], 1, "nothing else stored: {listed:#}");
    app.stop().await;
}

#[sqlx::test]
async fn values_the_database_cannot_store_are_client_errors(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let long = "x".repeat(10_000);
    let cases = [
        // A NUL character is valid JSON but not storable text.
        json!({"dag": {"name": "nul\u{0}name", "steps": [{"id": "a", "action": "log"}]}}),
        json!({"dag": valid_dag(), "name": "nul\u{0}"}),
        json!({"dag": valid_dag(), "created_by": "nul\u{0}"}),
        json!({"dag": {"name": "p", "steps": [{"id": "a", "action": "log", "params": {"message": "a\u{0}b"}}]}}),
        // An owner too long to index.
        json!({"dag": valid_dag(), "created_by": long}),
    ];
    for body in cases {
        let (status, answer) = app.api.post("/workflows", body.clone()).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {answer:#} for {}",
            &body.to_string()[..body.to_string().len().min(200)]
        );
        assert!(answer["detail"].is_string(), "{answer:#}");
    }
    let (status, answer) = app.api.get("/workflows?created_by=%00").await;
    assert!(
        status == StatusCode::OK || status.is_client_error(),
        "{status} {answer:#}"
    );
    assert!(answer.is_object(), "{answer:#}");

    let id = app.api.create_workflow(valid_dag()).await;
    for body in [
        json!({"parameters": {"x": "a\u{0}b"}}),
        json!({"initiator": "a\u{0}b"}),
    ] {
        let (status, answer) = app
            .api
            .post(&format!("/workflows/{id}/execute"), body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:#}");
        assert!(
            answer["detail"].as_str().unwrap().contains("NUL"),
            "{answer:#}"
        );
    }
    let (_, listed) = app.api.get("/executions").await;
    assert_eq!(listed["total"], 0, "nothing half-started: {listed:#}");
    app.stop().await;
}

#[sqlx::test]
async fn bodies_over_the_default_limit_are_413(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let big = json!({"dag": {"name": "big", "description": "x".repeat(1_100_000),
        "steps": [{"id": "a", "action": "log"}]}})
    .to_string();
    assert!(big.len() > 1_048_576);
    for path in ["/workflows", "/workflows/validate", "/workflow-events"] {
        let answer = send_json(&app, Method::POST, path, &big).await;
        answer.error_with(StatusCode::PAYLOAD_TOO_LARGE, format_args!("{path}"));
    }
    // Just under the limit is accepted.
    let fits = json!({"dag": {"name": "fits", "description": "x".repeat(1_000_000),
        "steps": [{"id": "a", "action": "log"}]}})
    .to_string();
    assert!(fits.len() < 1_048_576);
    let answer = send_json(&app, Method::POST, "/workflows", &fits).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{}",
        &answer.text[..answer.text.len().min(300)]
    );
    app.stop().await;
}

#[sqlx::test]
async fn max_body_bytes_sets_the_limit(pool: sqlx::PgPool) {
    let app = TestApp::spawn_with(&pool, &[("MAX_BODY_BYTES", "1000")]).await;
    let two_kb = json!({"dag": {"name": "big", "description": "x".repeat(2048),
        "steps": [{"id": "a", "action": "log"}]}})
    .to_string();
    let id = app.api.create_workflow(valid_dag()).await;
    for (method, path) in [
        (Method::POST, "/workflows".to_owned()),
        (Method::POST, "/workflows/validate".to_owned()),
        (Method::PUT, format!("/workflows/{id}")),
        (Method::POST, format!("/workflows/{id}/execute")),
        (Method::POST, "/workflow-events".to_owned()),
    ] {
        let answer = send_json(&app, method.clone(), &path, &two_kb).await;
        answer.error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            format_args!("{method} {path}"),
        );
    }
    let small =
        json!({"dag": {"name": "small", "steps": [{"id": "a", "action": "log"}]}}).to_string();
    assert!(small.len() < 1000);
    let answer = send_json(&app, Method::POST, "/workflows", &small).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    app.stop().await;
}

#[sqlx::test]
async fn non_uuid_path_ids_are_400(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    for bad in [
        "not-a-uuid",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        "%20",
        "' OR 1=1 --",
    ] {
        let bad = bad.replace(' ', "%20").replace('\'', "%27");
        for (method, path, body) in routes_with_an_id(&bad) {
            let answer = call(&app, &method, &path, &body, Token::Value(TOKEN)).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {path}: {}",
                answer.text
            );
            let detail = answer.detail();
            assert!(detail.contains("id"), "{method} {path}: {detail}");
        }
    }
    // Query-string ids too.
    let answer = call(
        &app,
        &Method::GET,
        "/executions?workflow_id=nope",
        &None,
        Token::Value(TOKEN),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.detail().contains("workflow_id"), "{}", answer.text);
    let answer = call(
        &app,
        &Method::GET,
        "/executions?status=bogus",
        &None,
        Token::Value(TOKEN),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.detail().contains("status"), "{}", answer.text);

    // Action types are not UUIDs, but a path that is not UTF-8 is still a JSON error.
    for path in ["/actions/no_such_action", "/actions/%FF%FE"] {
        let answer = call(&app, &Method::GET, path, &None, Token::Value(TOKEN)).await;
        assert!(
            answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::BAD_REQUEST,
            "{path}: {} {}",
            answer.status,
            answer.text
        );
        answer.error();
    }
    app.stop().await;
}

#[sqlx::test]
async fn the_wrong_content_type_is_415(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = app.api.create_workflow(valid_dag()).await;
    let body = json!({"dag": valid_dag()}).to_string().into_bytes();
    for (method, path) in [
        (Method::POST, "/workflows".to_owned()),
        (Method::POST, "/workflows/validate".to_owned()),
        (Method::PUT, format!("/workflows/{id}")),
        (Method::POST, format!("/workflows/{id}/execute")),
    ] {
        for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
            let answer = send(
                &app,
                method.clone(),
                &path,
                Token::Value(TOKEN),
                Some((content_type, body.clone())),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} {content_type:?}: {}",
                answer.text
            );
            assert!(
                answer
                    .detail()
                    .to_ascii_lowercase()
                    .contains("content-type"),
                "{}",
                answer.text
            );
        }
    }
    // application/json with a charset is fine.
    let answer = send(
        &app,
        Method::POST,
        "/workflows/validate",
        Token::Value(TOKEN),
        Some(("application/json; charset=utf-8", body.clone())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["valid"], true);
    app.stop().await;
}

#[sqlx::test]
async fn method_not_allowed_is_json(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    for (method, path) in [
        (Method::PATCH, "/workflows"),
        (Method::DELETE, "/workflows"),
        (Method::PUT, "/executions"),
        (Method::POST, "/health"),
        (Method::DELETE, "/metrics"),
        (Method::GET, "/workflow-events"),
        (Method::POST, "/actions"),
    ] {
        let answer = send(&app, method.clone(), path, Token::Value(TOKEN), None).await;
        answer.error_with(
            StatusCode::METHOD_NOT_ALLOWED,
            format_args!("{method} {path}"),
        );
        // Without a token: refused or not allowed, but JSON either way.
        let answer = send(&app, method.clone(), path, Token::None, None).await;
        assert!(
            answer.status == StatusCode::METHOD_NOT_ALLOWED
                || answer.status == StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            answer.text
        );
        answer.error();
    }
    app.stop().await;
}

#[sqlx::test]
async fn unknown_ids_are_404_with_a_detail(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = Uuid::new_v4();
    let mut routes = routes_with_an_id(&id);
    routes.push((Method::GET, "/actions/no_such_action".to_owned(), None));
    for (method, path, body) in routes {
        let answer = call(&app, &method, &path, &body, Token::Value(TOKEN)).await;
        answer.error_with(StatusCode::NOT_FOUND, format_args!("{method} {path}"));
    }
    app.stop().await;
}

/// A `cursor` this service did not issue (or one combined with `offset` /
/// `page`, which say where a page starts too) is a 400 naming the cursor,
/// on every list that pages by cursor.
#[sqlx::test]
async fn a_malformed_cursor_is_400(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let good = budpipeline::db::paging::Cursor {
        created_at: chrono::Utc::now(),
        id: Uuid::now_v7(),
    }
    .encode();
    for list in ["/executions", "/workflows", "/pipelines"] {
        for query in [
            "cursor=nope",
            "cursor=%27%20OR%201%3D1%20--",
            "cursor=AAAA",
            &format!("cursor={good}x"),
            &format!("cursor={}", "A".repeat(500)),
        ] {
            let path = format!("{list}?{query}");
            let answer = call(&app, &Method::GET, &path, &None, Token::Value(TOKEN)).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{path}: {}",
                answer.text
            );
            let detail = answer.detail();
            assert!(detail.starts_with("cursor: "), "{path}: {detail}");
            assert!(detail.chars().count() < 200, "{path}: {detail}");
        }
        let answer = call(
            &app,
            &Method::GET,
            &format!("{list}?cursor={good}"),
            &None,
            Token::Value(TOKEN),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{list}: {}", answer.text);
    }
    for path in [
        format!("/executions?cursor={good}&offset=0"),
        format!("/executions?cursor={good}&page=2"),
        format!("/workflows?cursor={good}&offset=5"),
    ] {
        let answer = call(&app, &Method::GET, &path, &None, Token::Value(TOKEN)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.text
        );
        assert!(
            answer.detail().contains("cursor"),
            "{path}: {}",
            answer.text
        );
    }
    app.stop().await;
}
