//! Pure steps run inside the transition that makes them ready
//! (`INLINE_STEPS`, src/engine/inline.rs): what a caller reads is the same
//! as when they are claimed one by one, and they cost no commit of their own.

use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::TestApp;
use support::sidecar::FakeSidecar;
use support::views::{ExecutionStatus, StepStatus};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// a (log) -> b (set_output from a) -> c (transform of b) -> d (log of c).
fn pure_chain() -> Value {
    json!({"name": "pure-chain", "steps": [
        {"id": "a", "action": "log", "params": {"message": "start"}},
        {"id": "b", "action": "set_output", "depends_on": ["a"],
         "params": {"outputs": {"said": "{{ steps.a.outputs.message }}", "n": [3, 1, 2]}}},
        {"id": "c", "action": "transform", "depends_on": ["b"],
         "params": {"input": "{{ steps.b.outputs.n }}", "operation": "sort"}},
        {"id": "d", "action": "log", "depends_on": ["c"],
         "params": {"message": "sorted {{ steps.c.outputs.result }}"}}
    ]})
}

/// (step_id, attempt, replica, started_at, ended_at, outcome) of every attempt.
type AttemptRow = (
    String,
    i32,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
);

async fn attempts(pool: &PgPool, execution: Uuid) -> Vec<AttemptRow> {
    sqlx::query_as(
        "SELECT step_id, attempt, replica_id, started_at, ended_at, outcome FROM step_attempts
         WHERE execution_id = $1 ORDER BY step_id, attempt",
    )
    .bind(execution)
    .fetch_all(pool)
    .await
    .expect("read step_attempts")
}

/// (started_at, completed_at) of a step of a finished execution view.
fn times(view: &support::views::Execution, id: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let step = view.step(id);
    (
        step.started_at.expect("started"),
        step.completed_at.expect("completed"),
    )
}

#[sqlx::test]
async fn pure_steps_after_the_first_finish_in_its_transition(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app.api.create_workflow(pure_chain()).await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");

    // Templates read the outputs of steps run in the same transition.
    assert_eq!(done.step("b").outputs["said"], json!("start"), "{done:#}");
    assert_eq!(
        done.step("c").outputs["result"],
        json!([1, 2, 3]),
        "{done:#}"
    );
    assert_eq!(
        done.step("d").outputs["message"],
        json!("sorted [1, 2, 3]"),
        "{done:#}"
    );
    // `a` was claimed at submit and ran as a handler; b, c and d ran in
    // the transition that recorded a's result: claimed and finished at
    // its time, which is when `a` finished.
    let (_, a_done) = times(&done, "a");
    for id in ["b", "c", "d"] {
        let step = done.step(id);
        assert_eq!(step.status, StepStatus::Completed, "{id}: {done:#}");
        assert_eq!(step.attempt, 1, "{id}: {done:#}");
        assert_eq!(times(&done, id), (a_done, a_done), "{id}: {done:#}");
    }
    assert_eq!(done.completed_at, Some(a_done), "{done:#}");

    // Each still has its attempt, by this replica, ended COMPLETED.
    let rows = attempts(&pool, ex).await;
    let replica = app.engine.replica_id();
    let got: Vec<(&str, i32, Uuid, Option<&str>)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1, r.2, r.5.as_deref()))
        .collect();
    let want: Vec<(&str, i32, Uuid, Option<&str>)> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|id| (id, 1, replica, Some("COMPLETED")))
        .collect();
    assert_eq!(got, want);
    for r in rows.iter().filter(|r| r.0 != "a") {
        assert_eq!(
            Some(r.3),
            r.4,
            "an inline attempt starts and ends at once: {r:?}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn with_inline_steps_off_each_step_commits_on_its_own(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, &[("INLINE_STEPS", "false")]).await;
    let wf = app.api.create_workflow(pure_chain()).await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(
        done.step("d").outputs["message"],
        json!("sorted [1, 2, 3]"),
        "{done:#}"
    );
    // Each step is claimed by its predecessor's transition and finished
    // by a transition of its own, later.
    for (before, id) in [("a", "b"), ("b", "c"), ("c", "d")] {
        let (_, prev_done) = times(&done, before);
        let (started, finished) = times(&done, id);
        assert_eq!(started, prev_done, "{id}: {done:#}");
        assert!(finished > started, "{id} ran on its own: {done:#}");
    }
    app.stop().await;
}

/// The callers' events are the ones a step run alone publishes: each step
/// STARTED then COMPLETED, progress after each, then the results.
#[sqlx::test]
async fn inline_steps_publish_their_started_and_completed_events(pool: PgPool) {
    let sidecar = FakeSidecar::start("http://127.0.0.1:9").await;
    let app = TestApp::spawn_with(&pool, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let wf = app.api.create_workflow(pure_chain()).await;
    let ex = app
        .api
        .execute(wf, json!({"callback_topics": ["budappEvents"]}))
        .await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    app.outbox_drained().await;
    let published = sidecar.published_to("budappEvents");
    // The progress each step started from, as when each has its own
    // transition.
    let progress: Vec<f64> = published
        .iter()
        .filter(|p| p.body["payload"]["event"] == "progress")
        .filter_map(|p| p.body["payload"]["content"]["result"]["progress_percentage"].as_f64())
        .collect();
    assert_eq!(progress, [25.0, 50.0, 75.0]);
    let got: Vec<(String, String)> = published
        .iter()
        .map(|p| {
            let payload = &p.body["payload"];
            (
                payload["event"].as_str().unwrap_or("").to_owned(),
                payload["content"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    let pos = |event: &str, status: &str| {
        got.iter()
            .position(|(e, s)| e == event && s == status)
            .unwrap_or_else(|| panic!("no {event} {status} in {got:?}"))
    };
    for (prev, id) in [("a", "b"), ("b", "c"), ("c", "d")] {
        assert!(pos(id, "STARTED") < pos(id, "COMPLETED"), "{got:?}");
        assert!(pos(prev, "COMPLETED") < pos(id, "STARTED"), "{got:?}");
    }
    assert_eq!(pos("results", "COMPLETED"), got.len() - 1, "{got:?}");
    let started = got.iter().filter(|(_, s)| s == "STARTED").count();
    assert_eq!(started, 4, "one STARTED a step: {got:?}");
    app.stop().await;
}

#[sqlx::test]
async fn a_pure_step_that_fails_fails_the_execution(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "pure-fail", "steps": [
            {"id": "a", "action": "log"},
            {"id": "b", "action": "fail", "depends_on": ["a"], "params": {"message": "no"}},
            {"id": "c", "action": "log", "depends_on": ["b"]}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    assert_eq!(done.step("b").status, StepStatus::Failed, "{done:#}");
    assert_eq!(done.step("b").error.as_deref(), Some("no"), "{done:#}");
    assert_eq!(done.step("c").status, StepStatus::Skipped, "{done:#}");
    let rows = attempts(&pool, ex).await;
    let b: Vec<_> = rows.iter().filter(|r| r.0 == "b").collect();
    assert_eq!(b.len(), 1, "{rows:?}");
    assert_eq!(b[0].5.as_deref(), Some("FAILED"), "{rows:?}");
    app.stop().await;
}

/// One transition runs at most 64 pure steps; the chain goes on in the
/// next (the step after them is claimed and run as a handler), so the
/// execution's lock is never held for long.
#[sqlx::test]
async fn a_long_pure_chain_is_run_in_bounded_pieces(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(support::cluster::chain_dag(150))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    // Steps finished together, in declaration order: s0's result, then
    // s1..s64 run with it; s65 claimed by that transition, its result
    // with s66..s129; s130's with the last 19.
    let mut pieces: Vec<(DateTime<Utc>, usize)> = Vec::new();
    for step in &done.steps {
        let at = step.completed_at.expect("completed");
        match pieces.last_mut() {
            Some((last, n)) if *last == at => *n += 1,
            _ => pieces.push((at, 1)),
        }
    }
    let sizes: Vec<usize> = pieces.iter().map(|p| p.1).collect();
    assert_eq!(sizes, [65, 65, 20], "{pieces:?}");
    let rows = attempts(&pool, ex).await;
    assert_eq!(rows.len(), 150, "one attempt a step");
    app.stop().await;
}

/// A pure step that fails stops a fail-fast execution before the pure
/// steps readied with it run: they are skipped, never run.
#[sqlx::test]
async fn a_failing_pure_step_stops_the_ones_ready_with_it(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "pure-fail-fast", "steps": [
            {"id": "a", "action": "log"},
            {"id": "b", "action": "fail", "depends_on": ["a"], "params": {"message": "no"}},
            {"id": "c", "action": "log", "depends_on": ["a"]},
            {"id": "d", "action": "set_output", "depends_on": ["a"], "params": {"outputs": {"x": 1}}}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    assert_eq!(done.step("b").status, StepStatus::Failed, "{done:#}");
    for id in ["c", "d"] {
        let step = done.step(id);
        assert_eq!(step.status, StepStatus::Skipped, "{id}: {done:#}");
        assert_eq!(step.attempt, 0, "{id} never ran: {done:#}");
    }
    let rows = attempts(&pool, ex).await;
    let ran: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ran, ["a", "b"], "{rows:?}");
    app.stop().await;
}
