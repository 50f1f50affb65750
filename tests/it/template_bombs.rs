//! Templates that build more than `TEMPLATE_MAX_BYTES` (API.md
//! "Configuration"): the step fails with an error naming the setting, the
//! execution fails, and the process stays up with its memory bounded. Before
//! the limit, the concat bomb below OOM-killed the service after execute
//! answered 202, and again on every restart (the step was re-claimed); in
//! the first step it hung execute itself, which renders that step's params
//! inside the request.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{TestApp, step};

const WAIT: Duration = Duration::from_secs(20);

/// 2^40 bytes in forty iterations of a handful of instructions.
const BOMB: &str = "{% set ns = namespace(x=\"a\") %}{% for i in range(40) %}\
                    {% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}";

/// The resident memory of this process (the service runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

const MAX_RSS: u64 = 300 * 1024 * 1024;

fn log_step(id: &str, message: &str, depends_on: &[&str]) -> Value {
    json!({"id": id, "action": "log", "depends_on": depends_on, "params": {"message": message}})
}

/// Execute `dag` and wait for it to end; execute must answer quickly.
async fn run_to_the_end(app: &TestApp, dag: Value) -> Value {
    let workflow = app.api.create_workflow(dag).await;
    let started = Instant::now();
    let execution = app.api.execute(workflow, json!({})).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "execute took {took:?}");
    app.api.wait_terminal(execution, WAIT).await
}

fn assert_failed_on_the_limit(done: &Value, step_id: &str, limit: &str) {
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let failed = step(done, step_id);
    assert_eq!(failed["status"], "FAILED", "{done:#}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("TEMPLATE_MAX_BYTES ({limit} bytes)")),
        "{error}"
    );
    let execution_error = done["error"].as_str().unwrap_or_default();
    assert!(execution_error.contains("TEMPLATE_MAX_BYTES"), "{done:#}");
}

/// The service still runs workflows after a bomb.
async fn assert_still_serving(app: &TestApp) {
    let (status, _) = app.api.get("/ready").await;
    assert_eq!(status, StatusCode::OK);
    let done = run_to_the_end(
        app,
        json!({"name": "after", "steps": [log_step("fine", "n={{ 20 * 2 + 2 }}", &[])]}),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(step(&done, "fine")["outputs"]["message"], "n=42");
}

#[sqlx::test]
async fn a_bomb_after_a_step_fails_that_step_and_the_service_stays_up(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, &[("TEMPLATE_MAX_BYTES", "1048576")]).await;
    let done = run_to_the_end(
        &app,
        json!({"name": "bomb-second", "steps": [
            log_step("hello", "hello", &[]),
            log_step("bomb", BOMB, &["hello"]),
        ]}),
    )
    .await;
    assert_eq!(step(&done, "hello")["status"], "COMPLETED", "{done:#}");
    assert_failed_on_the_limit(&done, "bomb", "1048576");
    let rss = rss_bytes();
    assert!(rss < MAX_RSS, "RSS {rss} bytes");
    assert_still_serving(&app).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_bomb_in_the_first_step_fails_it_without_hanging_execute(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, &[("TEMPLATE_MAX_BYTES", "1048576")]).await;
    let done = run_to_the_end(
        &app,
        json!({"name": "bomb-first", "steps": [
            log_step("bomb", BOMB, &[]),
            log_step("after", "never", &["bomb"]),
        ]}),
    )
    .await;
    assert_failed_on_the_limit(&done, "bomb", "1048576");
    assert_ne!(step(&done, "after")["status"], "COMPLETED", "{done:#}");
    let rss = rss_bytes();
    assert!(rss < MAX_RSS, "RSS {rss} bytes");
    assert_still_serving(&app).await;
    app.stop().await;
}

#[sqlx::test]
async fn the_setting_bounds_params_conditions_and_outputs(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, &[("TEMPLATE_MAX_BYTES", "100")]).await;

    // 200 bytes of params: fine under the default, not under 100.
    let done = run_to_the_end(
        &app,
        json!({"name": "params", "steps": [log_step("wide", "{{ 'x' * 200 }}", &[])]}),
    )
    .await;
    assert_failed_on_the_limit(&done, "wide", "100");

    // A condition that builds too much fails its step the same way.
    let done = run_to_the_end(
        &app,
        json!({"name": "condition", "steps": [
            {"id": "gated", "action": "log", "condition": "{{ ('x' * 200)|length > 1 }}",
             "params": {"message": "m"}},
        ]}),
    )
    .await;
    assert_failed_on_the_limit(&done, "gated", "100");

    // An output that builds too much resolves to null; the rest stay.
    let done = run_to_the_end(
        &app,
        json!({"name": "outputs", "steps": [log_step("s", "small", &[])],
               "outputs": {"big": "{{ 'x' * 200 }}", "small": "{{ steps.s.outputs.message }}"}}),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(
        done["outputs"],
        json!({"big": null, "small": "small"}),
        "{done:#}"
    );
    app.stop().await;
}
