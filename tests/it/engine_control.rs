//! Controlling executions (API.md "Executions"): cancel, retry,
//! `Idempotency-Key`, and the answers to bad input on every execution route.

use crate::support;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, TestApp};
use support::views::{Execution, ExecutionStatus, SkipReason, StepStatus};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// `v` with every number as a float and every timestamp in one spelling, to
/// compare documents by value (routes may spell a number `100` or `100.0`,
/// a time `.620Z` or `.620000Z`).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::String(t) => match t.parse::<DateTime<Utc>>() {
            Ok(at) => json!(at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            Err(_) => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// `(attempt, outcome)` of every recorded attempt of one step.
async fn attempts(pool: &PgPool, execution: Uuid, step_id: &str) -> Vec<(i32, Option<String>)> {
    sqlx::query_as(
        "SELECT attempt, outcome FROM step_attempts
         WHERE execution_id = $1 AND step_id = $2 ORDER BY attempt",
    )
    .bind(execution)
    .bind(step_id)
    .fetch_all(pool)
    .await
    .expect("read step_attempts")
}

/// POST `/workflows/{wf}/execute` with an optional `Idempotency-Key`.
async fn execute_raw(api: &Api, wf: Uuid, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut req = api
        .http
        .post(format!("{}/workflows/{wf}/execute", api.base))
        .header("dapr-api-token", support::app::TOKEN)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.expect("request reaches the service");
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON body");
    (status, body)
}

async fn list_total(api: &Api, wf: Uuid) -> i64 {
    let (status, body) = api.get(&format!("/executions?workflow_id={wf}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total"].as_i64().expect("total")
}

/// POST `/executions/{ex}/{action}` (`cancel`, `retry`) with an empty body.
async fn control(api: &Api, ex: Uuid, action: &str) -> (StatusCode, Value) {
    api.post(&format!("/executions/{ex}/{action}"), json!({}))
        .await
}

/// [`control`] that must succeed: the execution it answers with.
async fn control_ok(api: &Api, ex: Uuid, action: &str) -> Execution {
    let (status, body) = control(api, ex, action).await;
    assert_eq!(status, StatusCode::OK, "{action}: {body}");
    Execution::from_value(&body)
}

/// Wait until step `id` of `ex` waits for its event; returns the execution.
async fn wait_awaiting(api: &Api, ex: Uuid, id: &str) -> Execution {
    api.wait_until_view(ex, WAIT, |e| e.step(id).awaiting_event)
        .await
}

fn wait_step(id: &str, seconds: f64, deps: &[&str]) -> Value {
    json!({"id": id, "action": "wait_until", "depends_on": deps,
           "params": {"duration_seconds": seconds}})
}

// ---------------------------------------------------------------- cancel

#[sqlx::test]
async fn cancel_during_a_run_cancels_waiting_and_pending_steps(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "cancel-me", "steps": [
            {"id": "first", "action": "set_output", "params": {"outputs": {"v": 1}}},
            wait_step("long", 30.0, &["first"]),
            {"id": "next", "action": "log", "depends_on": ["long"]},
            {"id": "last", "action": "log", "depends_on": ["next"]}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    wait_awaiting(&app.api, ex, "long").await;

    let body = control_ok(&app.api, ex, "cancel").await;
    assert_eq!(body.execution_id, ex);
    assert_eq!(body.status, ExecutionStatus::Cancelled, "{body:#}");
    assert!(body.completed_at.is_some(), "{body:#}");
    let first = body.step("first");
    assert_eq!(
        first.status,
        StepStatus::Completed,
        "finished work stays finished"
    );
    assert_eq!(first.outputs, json!({"v": 1}));
    let long = body.step("long");
    assert_eq!(long.status, StepStatus::Cancelled, "{long:#}");
    assert!(!long.awaiting_event, "{long:#}");
    assert_eq!(long.timeout_at, None, "no timer left behind: {long:#}");
    for id in ["next", "last"] {
        let s = body.step(id);
        assert_eq!(s.status, StepStatus::Cancelled, "{s:#}");
        assert_eq!(s.attempt, 0, "{s:#}");
    }
    assert_eq!(body.progress_percentage, 100.0);

    // The state sticks: nothing is running behind the cancellation.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = app.api.execution_view(ex).await;
    assert_eq!(later.status, ExecutionStatus::Cancelled);
    // (Compared by value: the two routes may spell a time .620Z or .620000Z.)
    let summary = |e: &Execution| {
        e.steps
            .iter()
            .map(|s| {
                (
                    s.step_id.clone(),
                    s.status,
                    s.attempt,
                    s.outputs.clone(),
                    s.completed_at,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        summary(&later),
        summary(&body),
        "nothing changed after the cancel"
    );
    assert_eq!(
        attempts(&pool, ex, "long").await,
        [(1, Some("CANCELLED".to_owned()))]
    );
    assert!(attempts(&pool, ex, "next").await.is_empty());

    // Cancelling again is a conflict.
    let (status, body) = control(&app.api, ex, "cancel").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].is_string());
    app.stop().await;
}

#[sqlx::test]
async fn cancelling_a_finished_execution_is_a_conflict(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let ok = app
        .api
        .create_workflow(json!({"name": "done", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let bad = app
        .api
        .create_workflow(json!({"name": "broken", "steps": [{"id": "a", "action": "fail"}]}))
        .await;
    for (wf, final_status) in [
        (ok, ExecutionStatus::Completed),
        (bad, ExecutionStatus::Failed),
    ] {
        let ex = app.api.execute(wf, json!({})).await;
        let done = app.api.wait_terminal_view(ex, WAIT).await;
        assert_eq!(done.status, final_status, "{done:#}");
        let (status, body) = control(&app.api, ex, "cancel").await;
        assert_eq!(status, StatusCode::CONFLICT, "{final_status:?}: {body}");
        assert!(body["detail"].is_string(), "{body}");
        let after = app.api.execution_view(ex).await;
        assert_eq!(
            after.status, final_status,
            "a refused cancel changes nothing"
        );
        assert_eq!(after.completed_at, done.completed_at, "{after:#}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------- retry

/// An execution timeout fails a wait for a fixed instant; retried before
/// that instant (with the deadline reset), the same wait now fits and the
/// execution completes. Deterministic: the instant is in the definition.
#[sqlx::test]
async fn retrying_a_failed_execution_reruns_what_failed_and_keeps_what_completed(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wake = (Utc::now() + chrono::TimeDelta::milliseconds(4500))
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let wf = app
        .api
        .create_workflow(
            json!({"name": "retry-me", "settings": {"timeout_seconds": 3}, "steps": [
                {"id": "first", "action": "set_output", "params": {"outputs": {"x": 1}}},
                {"id": "skipped", "action": "log", "condition": "false"},
                {"id": "wait", "action": "wait_until", "depends_on": ["first"],
                 "params": {"until_time": wake}},
                {"id": "after", "action": "set_output", "depends_on": ["wait"],
                 "params": {"outputs": {"x": "{{ steps.first.outputs.x }}",
                                        "waited": "{{ steps.wait.outputs.waited }}"}}}
            ]}),
        )
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let failed = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:#}");
    assert_eq!(
        failed.step("wait").status,
        StepStatus::Timeout,
        "{failed:#}"
    );
    assert_eq!(failed.step("after").status, StepStatus::Skipped);
    assert_eq!(
        failed.step("after").skip_reason,
        Some(SkipReason::UpstreamFailed)
    );
    // The step's JSON, to compare all of it.
    let first_before = failed.step("first").raw.clone();
    assert_eq!(failed.step("first").status, StepStatus::Completed);

    let body = control_ok(&app.api, ex, "retry").await;
    assert_eq!(body.status, ExecutionStatus::Running, "{body:#}");
    assert_eq!(body.error, None, "{body:#}");
    assert_eq!(body.completed_at, None, "{body:#}");
    let wait = body.step("wait");
    assert!(
        matches!(wait.status, StepStatus::Pending | StepStatus::Running),
        "the timed-out step runs again: {wait:#}"
    );
    assert_eq!(wait.error, None, "{wait:#}");
    let after = body.step("after");
    assert_eq!(after.status, StepStatus::Pending, "{after:#}");
    // Absent, not null (JSON shape).
    assert!(after.raw.get("skip_reason").is_none(), "{after:#}");
    assert_eq!(
        canonical(&body.step("first").raw),
        canonical(&first_before),
        "completed steps are untouched"
    );
    assert_eq!(body.step("skipped").status, StepStatus::Skipped);

    // Retrying a running execution is a conflict.
    let (status, conflict) = control(&app.api, ex, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");

    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.error, None, "{done:#}");
    assert_eq!(
        canonical(&done.step("first").raw),
        canonical(&first_before),
        "not run again, outputs kept"
    );
    let skipped = done.step("skipped");
    assert_eq!(skipped.status, StepStatus::Skipped);
    assert_eq!(
        skipped.skip_reason,
        Some(SkipReason::Condition),
        "a condition skip is not rerun"
    );
    let wait = done.step("wait");
    assert_eq!(wait.status, StepStatus::Completed, "{wait:#}");
    assert_eq!(wait.attempt, 2, "{wait:#}");
    assert_eq!(wait.outputs["waited"], true);
    let after = done.step("after");
    assert_eq!(after.status, StepStatus::Completed, "{after:#}");
    assert_eq!(after.attempt, 1);
    assert_eq!(after.outputs, json!({"x": 1, "waited": true}));
    assert_eq!(done.outputs["after"], json!({"x": 1, "waited": true}));
    assert_eq!(done.progress_percentage, 100.0);

    assert_eq!(
        attempts(&pool, ex, "first").await,
        [(1, Some("COMPLETED".to_owned()))]
    );
    assert_eq!(
        attempts(&pool, ex, "wait").await,
        [
            (1, Some("TIMEOUT".to_owned())),
            (2, Some("COMPLETED".to_owned()))
        ]
    );

    // A COMPLETED execution cannot be retried.
    let (status, body) = control(&app.api, ex, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].is_string());
    app.stop().await;
}

#[sqlx::test]
async fn retrying_reruns_a_failed_step_even_if_it_fails_again(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "fails-twice", "steps": [
            {"id": "ok", "action": "log"},
            {"id": "broken", "action": "fail", "depends_on": ["ok"]},
            {"id": "after", "action": "log", "depends_on": ["broken"]}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let first = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(first.status, ExecutionStatus::Failed, "{first:#}");
    control_ok(&app.api, ex, "retry").await;
    let second = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(second.status, ExecutionStatus::Failed, "{second:#}");
    assert!(
        second.completed_at.expect("completed_at") > first.completed_at.expect("completed_at"),
        "finished again: {second:#}"
    );
    assert_eq!(second.step("ok").attempt, 1);
    assert_eq!(second.step("broken").attempt, 2, "run again");
    assert_eq!(second.step("broken").status, StepStatus::Failed);
    assert_eq!(second.step("after").status, StepStatus::Skipped);
    assert_eq!(
        second.step("after").skip_reason,
        Some(SkipReason::UpstreamFailed)
    );
    app.stop().await;
}

#[sqlx::test]
async fn retrying_a_cancelled_execution_runs_it_to_completion(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "cancel-retry", "steps": [
            wait_step("nap", 1.0, &[]),
            {"id": "after", "action": "log", "depends_on": ["nap"]}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    wait_awaiting(&app.api, ex, "nap").await;
    let body = control_ok(&app.api, ex, "cancel").await;
    assert_eq!(body.status, ExecutionStatus::Cancelled, "{body:#}");

    let body = control_ok(&app.api, ex, "retry").await;
    assert_eq!(body.status, ExecutionStatus::Running, "{body:#}");
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.step("nap").attempt, 2);
    assert_eq!(done.step("nap").outputs["waited"], true);
    assert_eq!(done.step("after").status, StepStatus::Completed);
    app.stop().await;
}

#[sqlx::test]
async fn retrying_a_running_execution_is_a_conflict(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "busy", "steps": [wait_step("long", 30.0, &[])]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let running = wait_awaiting(&app.api, ex, "long").await;
    let (status, body) = control(&app.api, ex, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let after = app.api.execution_view(ex).await;
    assert_eq!(after.status, ExecutionStatus::Running, "{after:#}");
    assert_eq!(after.step("long").attempt, 1, "nothing restarted");
    assert_eq!(
        after.step("long").external_workflow_id,
        running.step("long").external_workflow_id
    );
    control(&app.api, ex, "cancel").await;
    app.stop().await;
}

// ---------------------------------------------------------------- idempotency

#[sqlx::test]
async fn idempotency_key_repeats_the_answer_and_starts_nothing_new(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "idem", "parameters": [{"name": "n", "type": "integer"}],
        "steps": [{"id": "a", "action": "log"}]});
    let wf = app.api.create_workflow(dag).await;
    let body = json!({"parameters": {"n": 1}, "initiator": "tester"});

    let (status, first) = execute_raw(&app.api, wf, Some("key-1"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    app.api
        .wait_terminal_view(
            first["execution_id"].as_str().unwrap().parse().unwrap(),
            WAIT,
        )
        .await;

    // Same key, same body (even with its keys in another order): the original answer.
    let reordered = json!({"initiator": "tester", "parameters": {"n": 1}});
    let (status, again) = execute_raw(&app.api, wf, Some("key-1"), &reordered).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    for field in [
        "execution_id",
        "workflow_id",
        "workflow_version",
        "created_at",
    ] {
        assert_eq!(again[field], first[field], "{field}: {again} vs {first}");
    }
    assert_eq!(list_total(&app.api, wf).await, 1, "no second execution");

    // Same key, different body: conflict, nothing started.
    let other = json!({"parameters": {"n": 2}, "initiator": "tester"});
    let (status, conflict) = execute_raw(&app.api, wf, Some("key-1"), &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(conflict["detail"].is_string(), "{conflict}");
    assert_eq!(list_total(&app.api, wf).await, 1);

    // Another key, or no key: a new execution each time.
    let (status, second) = execute_raw(&app.api, wf, Some("key-2"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_ne!(second["execution_id"], first["execution_id"]);
    let (status, _) = execute_raw(&app.api, wf, None, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = execute_raw(&app.api, wf, None, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(list_total(&app.api, wf).await, 4);
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_requests_with_one_idempotency_key_start_one_execution(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "idem-race", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let body = json!({});
    let answers = futures_join(
        (0..8)
            .map(|_| {
                let api = app.api.clone();
                let body = body.clone();
                tokio::spawn(async move { execute_raw(&api, wf, Some("same"), &body).await })
            })
            .collect(),
    )
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(created, 1, "exactly one 202: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, _)| *s == StatusCode::ACCEPTED || *s == StatusCode::OK),
        "{answers:?}"
    );
    let id = &answers[0].1["execution_id"];
    assert!(
        answers.iter().all(|(_, b)| &b["execution_id"] == id),
        "{answers:?}"
    );
    assert_eq!(list_total(&app.api, wf).await, 1);
    app.stop().await;
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<(StatusCode, Value)>>,
) -> Vec<(StatusCode, Value)> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}

// ---------------------------------------------------------------- bad input

#[sqlx::test]
async fn an_empty_body_is_a_valid_execute_request(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "empty-body", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let (status, body) = app
        .api
        .post(&format!("/workflows/{wf}/execute"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for field in [
        "execution_id",
        "workflow_id",
        "workflow_version",
        "status",
        "created_at",
    ] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
    assert_eq!(body["workflow_id"], wf.to_string());
    assert_eq!(body["workflow_version"], 1);
    let ex: Uuid = body["execution_id"].as_str().unwrap().parse().unwrap();
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.parameters, json!({}));
    assert!(done.callback_topics.is_empty(), "{done:#}");
    assert_eq!(done.initiator, "api");
    app.stop().await;
}

#[sqlx::test]
async fn unknown_and_deleted_workflows_are_not_found(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app
        .api
        .post(&format!("/workflows/{}/execute", Uuid::new_v4()), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].is_string());

    let wf = app
        .api
        .create_workflow(json!({"name": "doomed", "steps": [wait_step("nap", 1.0, &[])]}))
        .await;
    // An execution already running when its workflow is deleted carries on.
    let ex = app.api.execute(wf, json!({})).await;
    let (status, body) = app
        .api
        .call(reqwest::Method::DELETE, &format!("/workflows/{wf}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app
        .api
        .post(&format!("/workflows/{wf}/execute"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].is_string());
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(list_total(&app.api, wf).await, 1, "history stays readable");
    app.stop().await;
}

#[sqlx::test]
async fn bad_parameters_are_rejected_naming_them(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "typed-params",
            "parameters": [
                {"name": "model", "type": "string", "required": true},
                {"name": "replicas", "type": "integer", "required": false, "default": 1},
                {"name": "ratio", "type": "number", "required": false},
                {"name": "flags", "type": "array", "required": false}
            ],
            "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let path = format!("/workflows/{wf}/execute");
    let errors_of = |body: &Value| -> String {
        body["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .map(|e| e.as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };

    let (status, body) = app.api.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        errors_of(&body).contains("model"),
        "names the missing parameter: {body}"
    );
    assert!(body["detail"].is_string());

    let (status, body) = app
        .api
        .post(
            &path,
            json!({"parameters": {"model": "m", "replicas": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let errors = errors_of(&body);
    assert!(
        errors.contains("replicas"),
        "names the wrong parameter: {body}"
    );
    assert!(!errors.contains("model"), "model is fine: {body}");

    // No coercion: "2" is not an integer, 2.5 is not an integer; all problems at once.
    let (status, body) = app
        .api
        .post(
            &path,
            json!({"parameters": {"replicas": 2.5, "flags": "a,b"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let errors = errors_of(&body);
    for name in ["model", "replicas", "flags"] {
        assert!(errors.contains(name), "{name} reported: {body}");
    }

    // An integer is a number; an undeclared parameter passes through.
    let (status, body) = app
        .api
        .post(
            &path,
            json!({"parameters": {"model": "m", "ratio": 2, "other": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        list_total(&app.api, wf).await,
        1,
        "only the valid request started"
    );
    app.stop().await;
}

#[sqlx::test]
async fn callback_topics_are_checked_and_deduplicated(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "topics", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let path = format!("/workflows/{wf}/execute");
    for bad in [
        json!(["9starts-with-digit"]),
        json!(["has space"]),
        json!([""]),
        json!(["ok", "bad/slash"]),
    ] {
        let (status, body) = app.api.post(&path, json!({"callback_topics": bad})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    assert_eq!(list_total(&app.api, wf).await, 0);
    let (status, body) = app
        .api
        .post(
            &path,
            json!({"callback_topics": ["a.b_c-1", "Z", "a.b_c-1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ex: Uuid = body["execution_id"].as_str().unwrap().parse().unwrap();
    let exec = app.api.execution_view(ex).await;
    assert_eq!(exec.callback_topics, ["a.b_c-1", "Z"]);
    app.stop().await;
}

#[sqlx::test]
async fn malformed_execute_bodies_are_client_errors(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "bodies", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let path = format!("/workflows/{wf}/execute");
    for (body, field) in [
        (json!({"parameters": "x"}), "parameters"),
        (json!({"callback_topics": "topic"}), "callback_topics"),
        (json!([]), ""),
    ] {
        let (status, resp) = app.api.post(&path, body.clone()).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {status} {resp}"
        );
        let detail = resp["detail"].as_str().unwrap_or_else(|| panic!("{resp}"));
        assert!(detail.contains(field), "{body}: names {field}: {resp}");
    }
    assert_eq!(list_total(&app.api, wf).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn ids_that_are_not_uuids_are_bad_requests_and_unknown_ids_not_found(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    for bad in ["nope", "123", "01a21c9b-57e9-7611-b8a7"] {
        let routes = [
            (reqwest::Method::GET, format!("/executions/{bad}")),
            (reqwest::Method::GET, format!("/executions/{bad}/steps")),
            (reqwest::Method::POST, format!("/executions/{bad}/cancel")),
            (reqwest::Method::POST, format!("/executions/{bad}/retry")),
            (reqwest::Method::POST, format!("/workflows/{bad}/execute")),
        ];
        for (method, path) in routes {
            let body = (method == reqwest::Method::POST).then(|| json!({}));
            let (status, resp) = app.api.call(method.clone(), &path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {resp}");
            assert!(resp["detail"].is_string(), "{method} {path}: {resp}");
        }
    }
    let unknown = Uuid::new_v4();
    for (method, path) in [
        (reqwest::Method::GET, format!("/executions/{unknown}")),
        (reqwest::Method::GET, format!("/executions/{unknown}/steps")),
        (
            reqwest::Method::POST,
            format!("/executions/{unknown}/cancel"),
        ),
        (
            reqwest::Method::POST,
            format!("/executions/{unknown}/retry"),
        ),
    ] {
        let body = (method == reqwest::Method::POST).then(|| json!({}));
        let (status, resp) = app.api.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {resp}");
        assert!(resp["detail"].is_string(), "{method} {path}: {resp}");
    }
    app.stop().await;
}

// ------------------------------------------------- rows kept between moves

/// A replica reuses the step rows it wrote last only while nobody else has
/// changed them since: here the other replica cancels the execution, and
/// the first one's next look at it sees the cancellation, not its own copy.
#[sqlx::test]
async fn a_replica_never_moves_an_execution_from_a_stale_copy_of_its_steps(pool: PgPool) {
    let first = TestApp::spawn(&pool).await;
    let second = TestApp::spawn(&pool).await;
    let wf = first
        .api
        .create_workflow(json!({"name": "kept-rows", "steps": [
            {"id": "a", "action": "log", "params": {"message": "a"}},
            wait_step("long", 30.0, &["a"]),
            {"id": "next", "action": "log", "depends_on": ["long"]}
        ]}))
        .await;
    let ex = first.api.execute(wf, json!({})).await;
    wait_awaiting(&first.api, ex, "long").await;
    let revision = || async {
        sqlx::query_scalar::<_, i64>("SELECT revision FROM executions WHERE id = $1")
            .bind(ex)
            .fetch_one(&pool)
            .await
            .expect("revision")
    };
    let waiting = revision().await;
    assert_ne!(waiting, 0, "every transition sets a revision of its own");

    let (status, body) = control(&second.api, ex, "cancel").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(revision().await, waiting, "the cancel changed it too");
    for app in [&first, &second] {
        let locked = app
            .engine
            .lock_cached(ex)
            .await
            .expect("lock")
            .expect("the execution");
        assert_eq!(locked.exec.status.as_str(), "CANCELLED");
        let long = locked.rows.iter().find(|r| r.step_id == "long").unwrap();
        assert_eq!(long.status.as_str(), "CANCELLED", "{long:?}");
        assert!(!long.awaiting_event, "{long:?}");
    }
}
