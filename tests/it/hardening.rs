//! Inputs and failures that must not crash the service, stop its timers or
//! poison other executions: a step that keeps killing its replica, numbers
//! at the edge of what Postgres gives back, a row that cannot be read back,
//! unbounded callback topics, and a database that does not exist.

use crate::support;

use std::time::{Duration, Instant};

use budpipeline::config::Settings;
use budpipeline::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, TOKEN, TestApp, database_url, env_for, step};
use support::budcluster::{FakeBudcluster, Reply, Route};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn one_step(name: &str, step: Value) -> Value {
    json!({"name": name, "steps": [step]})
}

/// Wait until the execution's step `id` runs in a handler with `attempt`.
async fn wait_in_handler(api: &Api, exec: Uuid, id: &str, attempt: i64) -> Value {
    api.wait_until(exec, WAIT, |e| {
        let s = step(e, id);
        s["status"] == "RUNNING" && s["awaiting_event"] == false && s["attempt"] == attempt
    })
    .await
}

#[sqlx::test]
async fn a_step_whose_process_dies_every_time_fails_instead_of_taking_the_fleet_down(pool: PgPool) {
    // budcluster never answers in time: every attempt is in its handler
    // when the process is killed.
    let budcluster = FakeBudcluster::start().await;
    budcluster.set_default(
        Route::Deploy,
        Reply::json(200, json!({"status": "accepted", "workflow_id": "w"}))
            .after(Duration::from_secs(120)),
    );
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    let db = database_url(&pool);
    let mut service = ServiceProcess::start(
        &db,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar.url()),
            ("LEASE_SECONDS", "1"),
            ("STEP_CRASH_LIMIT", "2"),
        ],
    )
    .await;
    let wf = service
        .api
        .create_workflow(one_step(
            "killer",
            json!({"id": "deploy", "name": "Deploy", "action": "deploy_model",
                   "params": {"cluster_id": "c", "model_id": "m"}}),
        ))
        .await;
    let exec = service.api.execute(wf, json!({})).await;

    wait_in_handler(&service.api, exec, "deploy", 1).await;
    service.kill9().await;
    service.restart().await;
    // The lease runs out, the step runs again: the first death is counted.
    let again = wait_in_handler(&service.api, exec, "deploy", 2).await;
    assert_eq!(step(&again, "deploy")["crashes"], 1, "{again:#}");

    service.kill9().await;
    service.restart().await;
    let done = service.api.wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "FAILED");
    assert_eq!(
        deploy["error"],
        "the step's process died 2 times while running it"
    );
    assert_eq!(deploy["attempt"], 2, "not claimed a third time");
    // The replica that failed it is alive and serving.
    let (status, _) = service.api.get("/ready").await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test]
async fn a_result_resets_the_crash_count(pool: PgPool) {
    // One death, then the attempt finishes: the count starts over.
    let app = TestApp::spawn_with(&pool, &[("STEP_CRASH_LIMIT", "2")]).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "reset", "steps": [
            {"id": "wait", "name": "Wait", "action": "wait_until",
             "params": {"duration_seconds": 1}}]}))
        .await;
    let exec = app.api.execute(wf, json!({})).await;
    app.api
        .wait_until(exec, WAIT, |e| step(e, "wait")["awaiting_event"] == true)
        .await;
    // As if an earlier attempt had died once.
    sqlx::query("UPDATE step_executions SET crashes = 1 WHERE execution_id = $1")
        .bind(exec)
        .execute(&pool)
        .await
        .unwrap();
    let done = app.api.wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let crashes: i32 =
        sqlx::query_scalar("SELECT crashes FROM step_executions WHERE execution_id = $1")
            .bind(exec)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(crashes, 0);
}

/// The largest and smallest doubles, which Postgres stores exactly and
/// gives back as hundreds of digits.
const EDGES: &str = r#"{"max": 1.7976931348623157e308, "min": -1.7976931348623157e308,
    "tiny": 5e-324, "normal_min": 2.2250738585072014e-308, "u64": 18446744073709551615,
    "i64": -9223372036854775808, "third": 0.3333333333333333}"#;

#[sqlx::test]
async fn numbers_at_the_edge_round_trip_through_postgres(pool: PgPool) {
    let edges: Value = serde_json::from_str(EDGES).unwrap();
    let back: Value = sqlx::query_scalar("SELECT $1::jsonb")
        .bind(&edges)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(back, edges);
}

#[sqlx::test]
async fn edge_numbers_in_parameters_params_outputs_and_events_run_normally(pool: PgPool) {
    let edges: Value = serde_json::from_str(EDGES).unwrap();
    let budcluster = FakeBudcluster::start().await;
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    budcluster.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": "edge-wf", "deployment_id": "d"}),
    );
    let app = TestApp::spawn_with(&pool, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "edges",
            "parameters": [{"name": "edges", "type": "object", "required": true}],
            "steps": [
            {"id": "out", "name": "Out", "action": "set_output",
             "params": {"outputs": {"literal": edges.clone(), "from_params": "{{ params.edges }}"}}},
            {"id": "deploy", "name": "Deploy", "action": "deploy_model", "depends_on": ["out"],
             "params": {"cluster_id": "c", "model_id": "m"}}
        ]}))
        .await;
    let exec = app
        .api
        .execute(wf, json!({"parameters": {"edges": edges.clone()}}))
        .await;
    app.api
        .wait_until(exec, WAIT, |e| step(e, "deploy")["awaiting_event"] == true)
        .await;
    let (status, answer) = sidecar
        .deliver(
            &app.api.base,
            TOKEN,
            json!({"workflow_id": "edge-wf", "status": "COMPLETED", "content": {"edges": edges}}),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("SUCCESS"))
    );
    let done = app.api.wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(done["parameters"]["edges"], edges);
    assert_eq!(step(&done, "out")["outputs"]["literal"], edges);
    assert_eq!(step(&done, "deploy")["outputs"]["edges"], edges);
    let (status, _) = app.api.get(&format!("/executions/{exec}/steps")).await;
    assert_eq!(status, StatusCode::OK);
}

/// `deploy_model` waiting for its event, timing out after the given seconds.
fn waiting_dag(name: &str, correlation_timeout: u64) -> Value {
    json!({"name": name, "steps": [
        {"id": "deploy", "name": "Deploy", "action": "deploy_model",
         "timeout_seconds": correlation_timeout,
         "params": {"cluster_id": "c", "model_id": "m"}},
        {"id": "after", "name": "After", "action": "log", "depends_on": ["deploy"],
         "params": {"message": "x"}}
    ]})
}

#[sqlx::test]
async fn an_unreadable_execution_fails_alone_and_other_timers_still_fire(pool: PgPool) {
    let budcluster = FakeBudcluster::start().await;
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    let app = TestApp::spawn_with(&pool, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let wf = app.api.create_workflow(waiting_dag("timers", 2)).await;
    let poisoned = app.api.execute(wf, json!({})).await;
    let healthy = app.api.execute(wf, json!({})).await;
    for exec in [poisoned, healthy] {
        app.api
            .wait_until(exec, WAIT, |e| step(e, "deploy")["awaiting_event"] == true)
            .await;
    }
    // A row this version of the engine cannot read, as a future version's
    // could be: that version widens the schema's list of statuses first.
    sqlx::query("ALTER TABLE step_executions DROP CONSTRAINT step_executions_status")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE step_executions SET status = 'NOT_A_STATUS' WHERE execution_id = $1 AND step_id = 'after'",
    )
    .bind(poisoned)
    .execute(&pool)
    .await
    .unwrap();
    let started = Instant::now();
    let healthy_done = app.api.wait_terminal(healthy, WAIT).await;
    assert_eq!(healthy_done["status"], "FAILED");
    assert_eq!(step(&healthy_done, "deploy")["status"], "TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the healthy execution's timeout fired late: {:?}",
        started.elapsed()
    );
    let poisoned_done = app.api.wait_terminal(poisoned, WAIT).await;
    assert_eq!(poisoned_done["status"], "FAILED", "{poisoned_done:#}");
    assert!(
        poisoned_done["error"]
            .as_str()
            .unwrap()
            .contains("cannot be read"),
        "{poisoned_done:#}"
    );
    // The sweeper carries on: a third execution's timer fires too.
    let third = app.api.execute(wf, json!({})).await;
    let third_done = app.api.wait_terminal(third, WAIT).await;
    assert_eq!(step(&third_done, "deploy")["status"], "TIMEOUT");
}

#[sqlx::test]
async fn callback_topics_are_bounded_in_count_and_length(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(one_step(
            "topics",
            json!({"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}}),
        ))
        .await;
    let path = format!("/workflows/{wf}/execute");
    let many: Vec<String> = (0..33).map(|i| format!("topic{i}")).collect();
    let (status, body) = app.api.post(&path, json!({"callback_topics": many})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("at most 32"), "{body}");
    let long = format!("t{}", "x".repeat(249));
    let (status, body) = app
        .api
        .post(&path, json!({"callback_topics": [long]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("longer than 249"), "{body}");
    // At the limits, and duplicates collapse before counting.
    let mut limit: Vec<String> = (0..32).map(|i| format!("topic{i}")).collect();
    limit.push("topic0".into());
    limit[1] = format!("t{}", "x".repeat(248));
    let (status, body) = app.api.post(&path, json!({"callback_topics": limit})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[sqlx::test]
async fn an_outbox_row_whose_topic_can_never_be_published_fails_and_blocks_nothing(pool: PgPool) {
    let budcluster = FakeBudcluster::start().await;
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    // Left by an older version that stored any topic.
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, body) VALUES ('old-1', repeat('t', 100000), '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn_with(&pool, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let wf = app
        .api
        .create_workflow(one_step(
            "after-poison",
            json!({"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}}),
        ))
        .await;
    let exec = app
        .api
        .execute(wf, json!({"callback_topics": ["goodTopic"]}))
        .await;
    app.api.wait_terminal(exec, WAIT).await;
    sidecar
        .wait_for_published(
            |p| p.topic == "goodTopic" && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("the good topic is published");
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = app.api.get("/internal/status").await;
        // The good topic's rows drain (a published row is deleted a moment
        // after the sidecar has it) and the bad one stays, failed.
        if status["outbox"]["failed"] == 1 && status["outbox"]["backlog"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never failed, or the backlog never drained: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM outbox WHERE event_id = 'old-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(error.unwrap().contains("can never be published"));
    assert!(
        sidecar.published().iter().all(|p| p.topic.len() < 1000),
        "the bad topic was never sent"
    );
}

#[sqlx::test]
async fn a_database_that_does_not_exist_is_503_and_ready_says_why(pool: PgPool) {
    let url = database_url(&pool);
    let (server, _) = url.rsplit_once('/').unwrap();
    let missing = format!("{server}/budpipeline_no_such_database");
    let vars = env_for(&missing, &[("DATABASE_MAX_CONNECTIONS", "2")]);
    let settings = Settings::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let app = Application::build(settings).await.unwrap();
    let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
    let task = tokio::spawn(app.run(std::future::pending()));
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        if let Ok(resp) = api.http.get(format!("{}/ready", api.base)).send().await {
            let status = resp.status();
            break (status, resp.json::<Value>().await.unwrap());
        }
        assert!(Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"], "unreachable");
    assert!(
        body["database_error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{body}"
    );
    let (status, body) = api.get("/workflows").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    task.abort();
}

#[sqlx::test]
async fn retention_deletes_a_long_history_in_batches_and_keeps_what_is_recent(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, &[("RETENTION_DAYS", "1")]).await;
    let wf = app
        .api
        .create_workflow(one_step(
            "kept",
            json!({"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}}),
        ))
        .await;
    let recent = app.api.execute(wf, json!({})).await;
    app.api.wait_terminal(recent, WAIT).await;
    // A history of 2,500 finished executions (with their steps and attempts) and 1,500
    // recorded events, all past retention: more than one batch of each.
    sqlx::query(
        "WITH old AS (
             INSERT INTO executions (id, workflow_id, workflow_version, status, parameters, initiator,
                                     total_steps, created_at, completed_at)
             SELECT gen_random_uuid(), $1, 1, 'COMPLETED', '{}', 'api', 1,
                    now() - interval '3 days', now() - interval '2 days'
             FROM generate_series(1, 2500)
             RETURNING id
         )
         , steps AS (
             INSERT INTO step_executions (execution_id, step_id, position, name, action, status)
             SELECT id, 'a', 0, 'A', 'log', 'COMPLETED' FROM old
         )
         INSERT INTO step_attempts (execution_id, step_id, attempt, replica_id, started_at,
                                    ended_at, outcome)
         SELECT id, 'a', 1, gen_random_uuid(), now() - interval '3 days',
                now() - interval '2 days', 'COMPLETED'
         FROM old",
    )
    .bind(wf)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO inbound_events (source, id, correlation_id, body, status, received_at)
         SELECT 's', g::text, 'c', '{}', 'APPLIED', now() - interval '2 days'
         FROM generate_series(1, 1500) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Each round is bounded; rounds go on until nothing past retention is left.
    let mut rounds = 0;
    while app.engine.housekeeping().await.unwrap() {
        rounds += 1;
        assert!(rounds < 50, "retention never caught up");
    }
    let (executions, steps, attempts, events): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM step_executions),
                (SELECT count(*) FROM step_attempts), (SELECT count(*) FROM inbound_events)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (executions, steps, attempts, events),
        (1, 1, 1, 0),
        "only the recent execution is kept, with its step and attempt"
    );
    let (status, body) = app.api.get(&format!("/executions/{recent}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The pipeline still counts every execution it has had, without
    // counting its history on each read.
    let (status, pipeline) = app.api.get(&format!("/pipelines/{wf}")).await;
    assert_eq!(status, StatusCode::OK, "{pipeline}");
    assert_eq!(pipeline["execution_count"], 2501, "{pipeline}");
}
