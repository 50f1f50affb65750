//! Execution semantics (DAG.md "Semantics" and "Templating", API.md
//! "Executions"): parallelism, conditions, failures, retries, timeouts,
//! outputs, and the execution read API, against the real service and a real
//! Postgres database of each test's own.

use crate::support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::TestApp;
use support::cluster::SlowSidecar;
use support::views::{Execution, ExecutionStatus, SkipReason, StepStatus};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// One row of `step_attempts`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Attempt {
    step_id: String,
    attempt: i32,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
}

async fn attempts(pool: &PgPool, execution: Uuid) -> Vec<Attempt> {
    sqlx::query_as(
        "SELECT step_id, attempt, started_at, ended_at, outcome FROM step_attempts
         WHERE execution_id = $1 ORDER BY step_id, attempt",
    )
    .bind(execution)
    .fetch_all(pool)
    .await
    .expect("read step_attempts")
}

fn attempts_of<'a>(all: &'a [Attempt], step_id: &str) -> Vec<&'a Attempt> {
    all.iter().filter(|a| a.step_id == step_id).collect()
}

/// The closed interval of an attempt (it must have ended).
fn interval(a: &Attempt) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        a.started_at,
        a.ended_at
            .unwrap_or_else(|| panic!("attempt {a:?} has not ended")),
    )
}

/// The most intervals open at one instant. Intervals are half-open
/// `[start, end)`: one that ends in the same transaction as another starts
/// (same `now()`) does not overlap it.
fn max_overlap(intervals: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for &(s, e) in intervals {
        assert!(s <= e, "interval ends before it starts: {s} .. {e}");
        edges.push((s, 1));
        edges.push((e, -1));
    }
    // At equal times, ends (-1) come before starts (+1).
    edges.sort();
    let (mut open, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        max = max.max(open);
    }
    max as usize
}

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("bad timestamp {v}: {e}"))
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap() as f64 / 1e6
}

async fn run(app: &TestApp, dag: Value, body: Value) -> (Uuid, Execution) {
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, body).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    (ex, done)
}

fn wait_step(id: &str, seconds: f64, deps: &[&str]) -> Value {
    json!({"id": id, "action": "wait_until", "depends_on": deps,
           "params": {"duration_seconds": seconds}})
}

// ---------------------------------------------------------------- parallelism

#[sqlx::test]
async fn wide_dag_runs_independent_steps_at_the_same_time(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let steps: Vec<Value> = (1..=4)
        .map(|i| wait_step(&format!("w{i}"), 1.0, &[]))
        .collect();
    let (ex, done) = run(&app, json!({"name": "wide", "steps": steps}), json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");

    let elapsed = secs(done.duration());
    assert!(elapsed >= 1.0, "a 1 s wait finished in {elapsed} s");
    assert!(elapsed < 2.5, "4 parallel 1 s waits took {elapsed} s");

    let all = attempts(&pool, ex).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let intervals: Vec<_> = all.iter().map(interval).collect();
    assert_eq!(max_overlap(&intervals), 4, "all four ran at once: {all:?}");
    let latest_start = intervals.iter().map(|i| i.0).max().unwrap();
    let earliest_end = intervals.iter().map(|i| i.1).min().unwrap();
    assert!(
        secs(earliest_end - latest_start) > 0.5,
        "the four waits overlap for most of their second: {all:?}"
    );
    for a in &all {
        assert_eq!(a.outcome.as_deref(), Some("COMPLETED"), "{a:?}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn diamond_runs_its_middle_branches_in_parallel(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "diamond", "steps": [
        {"id": "top", "action": "set_output", "params": {"outputs": {"v": 1}}},
        wait_step("left", 1.0, &["top"]),
        wait_step("right", 1.0, &["top"]),
        {"id": "bottom", "action": "log", "depends_on": ["left", "right"],
         "params": {"message": "v={{ steps.top.outputs.v }}"}}
    ]});
    let (ex, done) = run(&app, dag, json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.step("bottom").outputs["message"], "v=1");

    let all = attempts(&pool, ex).await;
    let top = interval(attempts_of(&all, "top")[0]);
    let left = interval(attempts_of(&all, "left")[0]);
    let right = interval(attempts_of(&all, "right")[0]);
    let bottom = interval(attempts_of(&all, "bottom")[0]);
    assert_eq!(
        max_overlap(&[left, right]),
        2,
        "left and right overlap: {all:?}"
    );
    // Dependencies are respected: nothing starts before what it depends on ended.
    assert!(left.0 >= top.1 && right.0 >= top.1, "{all:?}");
    assert!(bottom.0 >= left.1 && bottom.0 >= right.1, "{all:?}");
    let together = secs(left.1.min(right.1) - left.0.max(right.0));
    assert!(
        together > 0.5,
        "left and right ran together for only {together} s: {all:?}"
    );
    let elapsed = secs(done.duration());
    assert!(elapsed < 2.0, "two parallel 1 s waits took {elapsed} s");
    app.stop().await;
}

#[sqlx::test]
async fn max_parallel_steps_bounds_the_steps_running_at_once(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let steps: Vec<Value> = (1..=6)
        .map(|i| wait_step(&format!("w{i}"), 1.0, &[]))
        .collect();
    let dag = json!({"name": "bounded", "settings": {"max_parallel_steps": 2}, "steps": steps});
    let (ex, done) = run(&app, dag, json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");

    let all = attempts(&pool, ex).await;
    assert_eq!(all.len(), 6, "one attempt each: {all:?}");
    let intervals: Vec<_> = all.iter().map(interval).collect();
    assert_eq!(
        max_overlap(&intervals),
        2,
        "at most (and, with 6 ready steps, exactly) 2 at once: {all:?}"
    );
    // Three rounds of two 1 s waits.
    let elapsed = secs(done.duration());
    assert!(
        elapsed >= 3.0,
        "6 waits of 1 s two at a time took only {elapsed} s"
    );
    app.stop().await;
}

/// With every slot busy, the steps a result makes ready are still claimed
/// in that result's own transaction, to wait here for a slot (up to as many
/// as there are slots), instead of being left for a claim round. Their
/// leases are renewed while they wait: two of them wait longer than the
/// lease, and nothing runs twice.
#[sqlx::test]
async fn a_fan_out_wider_than_the_free_slots_waits_here_for_them(pool: PgPool) {
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let app = TestApp::spawn_with(
        &pool,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
            ("MAX_CONCURRENT_STEPS", "2"),
            ("LEASE_SECONDS", "1"),
            ("SWEEP_INTERVAL_MS", "100"),
            ("INLINE_STEPS", "false"),
        ],
    )
    .await;
    let calls = ["c1", "c2", "c3", "c4"];
    let mut steps = vec![json!({"id": "start", "action": "log"})];
    steps.extend(calls.iter().map(|id| {
        json!({"id": id, "action": "invoke_service", "depends_on": ["start"],
               "params": {"app_id": "slowapp", "method_path": "/sleep/1500", "http_method": "POST"}})
    }));
    steps.push(json!({"id": "end", "action": "log", "depends_on": calls}));
    let (ex, done) = run(&app, json!({"name": "queued", "steps": steps}), json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");

    let all = attempts(&pool, ex).await;
    assert_eq!(all.len(), 6, "one attempt per step: {all:?}");
    for a in &all {
        assert_eq!(a.outcome.as_deref(), Some("COMPLETED"), "{a:?}");
    }
    // All four claimed by start's transition: two for the free slots, two
    // to wait for them. A claim round would have taken the last two only
    // once a slot was free, 1.5 s later.
    let claimed: Vec<DateTime<Utc>> = calls
        .iter()
        .map(|id| attempts_of(&all, id)[0].started_at)
        .collect();
    assert!(
        claimed.iter().all(|t| *t == claimed[0]),
        "claimed at {claimed:?}"
    );
    // Two calls at a time: the waiting two went out after the first two
    // returned, more than a lease after their claim.
    let mut sent: Vec<DateTime<Utc>> = sidecar.timed_calls().iter().map(|c| c.3).collect();
    sent.sort();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(
        secs(sent[2] - sent[1]) >= 1.4,
        "the last two calls did not wait for a slot: {sent:?}"
    );
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    app.stop().await;
}

// ---------------------------------------------------------------- conditions

#[sqlx::test]
async fn false_condition_skips_the_step_and_dependents_see_undefined_outputs(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "cond", "parameters": [{"name": "go", "type": "boolean"}],
    "steps": [
        {"id": "gate", "action": "set_output", "condition": "{{ params.go }}",
         "params": {"outputs": {"v": 7}}},
        {"id": "after", "action": "set_output", "depends_on": ["gate"],
         "params": {"outputs": {
             "pure": "{{ steps.gate.outputs.v }}",
             "text": "v=[{{ steps.gate.outputs.v }}]",
             "was_skipped": "{{ steps.gate.outputs.v is undefined }}"}}},
        {"id": "guarded", "action": "log", "depends_on": ["gate"],
         "condition": "{{ steps.gate.outputs.v }}"}
    ]});
    let (_, done) = run(&app, dag, json!({"parameters": {"go": false}})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    let gate = done.step("gate");
    assert_eq!(gate.status, StepStatus::Skipped, "{gate:#}");
    assert_eq!(gate.skip_reason, Some(SkipReason::Condition));
    assert_eq!(gate.attempt, 0, "a skipped step never ran");
    let after = done.step("after");
    assert_eq!(after.status, StepStatus::Completed, "{after:#}");
    assert_eq!(
        after.outputs,
        json!({"pure": null, "text": "v=[]", "was_skipped": true})
    );
    // An undefined value is false in a condition.
    let guarded = done.step("guarded");
    assert_eq!(guarded.status, StepStatus::Skipped);
    assert_eq!(guarded.skip_reason, Some(SkipReason::Condition));

    // The same DAG with the condition true runs the gate.
    let wf2 = app
        .api
        .create_workflow(json!({"name": "cond-true", "steps": [
            {"id": "gate", "action": "set_output", "condition": "TRUE",
             "params": {"outputs": {"v": 7}}},
            {"id": "after", "action": "set_output", "depends_on": ["gate"],
             "params": {"outputs": {"pure": "{{ steps.gate.outputs.v }}"}}}
        ]}))
        .await;
    let ex2 = app.api.execute(wf2, json!({})).await;
    let done2 = app.api.wait_terminal_view(ex2, WAIT).await;
    assert_eq!(done2.status, ExecutionStatus::Completed, "{done2:#}");
    assert_eq!(
        done2.step("gate").status,
        StepStatus::Completed,
        "{done2:#}"
    );
    assert_eq!(done2.step("after").outputs, json!({"pure": 7}), "{done2:#}");
    app.stop().await;
}

#[sqlx::test]
async fn conditional_skips_unmatched_branch_targets_and_runs_the_matched_one(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "branches",
    "parameters": [{"name": "n", "type": "integer"}],
    "steps": [
        {"id": "choose", "action": "conditional", "params": {"branches": [
            {"id": "big", "condition": "{{ params.n > 5 }}", "target_step": "big_path"},
            {"id": "small", "condition": "{{ params.n <= 5 }}", "target_step": "small_path"}
        ]}},
        {"id": "big_path", "action": "set_output", "depends_on": ["choose"],
         "params": {"outputs": {"took": "big"}}},
        {"id": "small_path", "action": "set_output", "depends_on": ["choose"],
         "params": {"outputs": {"took": "small"}}},
        {"id": "join", "action": "set_output", "depends_on": ["big_path", "small_path"],
         "params": {"outputs": {"big": "{{ steps.big_path.outputs.took }}",
                                "small": "{{ steps.small_path.outputs.took }}"}}}
    ]});
    let (_, done) = run(&app, dag, json!({"parameters": {"n": 3}})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    let choose = done.step("choose");
    assert_eq!(choose.outputs["matched_branch"], "small", "{choose:#}");
    assert_eq!(choose.outputs["skipped_targets"], json!(["big_path"]));
    let big = done.step("big_path");
    assert_eq!(big.status, StepStatus::Skipped, "{big:#}");
    assert_eq!(big.skip_reason, Some(SkipReason::Branch));
    assert_eq!(big.attempt, 0);
    let small = done.step("small_path");
    assert_eq!(small.status, StepStatus::Completed, "{small:#}");
    assert_eq!(small.outputs, json!({"took": "small"}));
    // A branch-skipped step satisfies its dependents.
    assert_eq!(
        done.step("join").outputs,
        json!({"big": null, "small": "small"})
    );
    app.stop().await;
}

// ---------------------------------------------------------------- failures

#[sqlx::test]
async fn on_failure_continue_lets_dependents_run_and_the_execution_complete(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "continue", "steps": [
        {"id": "broken", "action": "fail", "on_failure": "continue",
         "params": {"message": "boom", "error_code": "E1"}},
        {"id": "after", "action": "set_output", "depends_on": ["broken"],
         "params": {"outputs": {"code": "{{ steps.broken.outputs.error_code }}"}}}
    ]});
    let (_, done) = run(&app, dag, json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.error, None, "{done:#}");
    let broken = done.step("broken");
    assert_eq!(broken.status, StepStatus::Failed);
    assert_eq!(broken.error.as_deref(), Some("boom"), "{broken:#}");
    let after = done.step("after");
    assert_eq!(after.status, StepStatus::Completed, "{after:#}");
    assert_eq!(after.outputs, json!({"code": "E1"}));
    assert_eq!(done.progress_percentage, 100.0);
    app.stop().await;
}

#[sqlx::test]
async fn fail_fast_skips_pending_steps_and_fails_the_execution_naming_the_step(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "fail-fast", "steps": [
        {"id": "broken", "action": "fail", "params": {"message": "no luck"}},
        {"id": "after_broken", "action": "log", "depends_on": ["broken"]},
        wait_step("slow", 5.0, &[]),
        {"id": "after_slow", "action": "log", "depends_on": ["slow"]}
    ]});
    let started = Instant::now();
    let (ex, done) = run(&app, dag, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fail-fast did not wait for the 5 s step"
    );
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    let error = done.error.as_deref().expect("an error");
    assert!(error.contains("'broken'"), "error names the step: {error}");
    assert!(
        error.contains("no luck"),
        "error carries the cause: {error}"
    );
    assert_eq!(done.step("broken").status, StepStatus::Failed);
    for id in ["after_broken", "after_slow"] {
        let s = done.step(id);
        assert_eq!(s.status, StepStatus::Skipped, "{s:#}");
        assert_eq!(s.skip_reason, Some(SkipReason::UpstreamFailed), "{s:#}");
    }
    // The waiting step is cancelled, not left waiting. (It may still have
    // been inside its handler when the execution failed: then it becomes
    // CANCELLED when that handler's result arrives, a moment later.)
    let settled = app
        .api
        .wait_until_view(ex, WAIT, |e| e.step("slow").status != StepStatus::Running)
        .await;
    assert_eq!(settled.status, ExecutionStatus::Failed);
    assert_eq!(settled.completed_at, done.completed_at, "{settled:#}");
    let slow = settled.step("slow");
    assert_eq!(slow.status, StepStatus::Cancelled, "{slow:#}");
    assert!(!slow.awaiting_event, "{slow:#}");
    assert_eq!(slow.timeout_at, None, "no timer left: {slow:#}");
    assert_eq!(settled.progress_percentage, 100.0);
    let open: Vec<_> = attempts(&pool, ex)
        .await
        .into_iter()
        .filter(|a| a.ended_at.is_none())
        .collect();
    assert!(open.is_empty(), "every attempt ended: {open:?}");
    app.stop().await;
}

#[sqlx::test]
async fn without_fail_fast_independent_branches_finish_first(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "no-fail-fast", "settings": {"fail_fast": false}, "steps": [
        {"id": "broken", "action": "fail"},
        {"id": "after_broken", "action": "log", "depends_on": ["broken"]},
        {"id": "after_after", "action": "log", "depends_on": ["after_broken"]},
        wait_step("slow", 1.5, &[]),
        {"id": "after_slow", "action": "log", "depends_on": ["slow"]}
    ]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;
    // While the independent branch waits, the failure is known but the
    // execution is still running.
    let mid = app
        .api
        .wait_until_view(ex, WAIT, |e| e.step("broken").status == StepStatus::Failed)
        .await;
    assert_eq!(mid.status, ExecutionStatus::Running, "{mid:#}");
    assert_eq!(mid.step("slow").status, StepStatus::Running, "{mid:#}");

    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    assert!(
        done.error.as_deref().unwrap_or("").contains("'broken'"),
        "{done:#}"
    );
    assert_eq!(done.step("slow").status, StepStatus::Completed);
    assert_eq!(done.step("slow").outputs["waited"], true);
    let after_slow = done.step("after_slow");
    assert_eq!(after_slow.status, StepStatus::Completed, "{after_slow:#}");
    for id in ["after_broken", "after_after"] {
        let s = done.step(id);
        assert_eq!(s.status, StepStatus::Skipped, "{s:#}");
        assert_eq!(s.skip_reason, Some(SkipReason::UpstreamFailed), "{s:#}");
    }
    assert!(
        done.completed_at.expect("completed_at") >= after_slow.completed_at.expect("completed_at"),
        "the execution ends after the independent branch: {done:#}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn the_fail_action_is_permanent_even_with_a_retry_block(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "permanent", "steps": [
        {"id": "broken", "action": "fail", "on_failure": "retry",
         "retry": {"max_attempts": 3, "backoff_seconds": 1}}
    ]});
    let (ex, done) = run(&app, dag, json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    let broken = done.step("broken");
    assert_eq!(broken.status, StepStatus::Failed);
    assert_eq!(broken.attempt, 1, "not retried: {broken:#}");
    // Absent, not null (JSON shape).
    assert!(broken.raw.get("next_attempt_at").is_none(), "{broken:#}");
    assert_eq!(attempts(&pool, ex).await.len(), 1);
    app.stop().await;
}

// ---------------------------------------------------------------- retries and timeouts

#[sqlx::test]
async fn a_timed_out_step_is_retried_after_its_backoff_until_attempts_run_out(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "retry-timeout", "steps": [
        {"id": "slow", "action": "wait_until", "params": {"duration_seconds": 3},
         "timeout_seconds": 1, "retry": {"max_attempts": 2, "backoff_seconds": 1}},
        {"id": "after", "action": "log", "depends_on": ["slow"]}
    ]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;

    // Between attempts: PENDING with the last error and next_attempt_at.
    let between = app
        .api
        .wait_until_view(ex, WAIT, |e| {
            let s = e.step("slow");
            s.status == StepStatus::Pending && s.attempt == 1
                || e.status != ExecutionStatus::Running
        })
        .await;
    let slow = between.step("slow");
    assert_eq!(slow.status, StepStatus::Pending, "{between:#}");
    assert_eq!(between.status, ExecutionStatus::Running);
    assert!(slow.error.is_some(), "the last error is shown: {slow:#}");
    let next = slow.next_attempt_at.expect("next_attempt_at");

    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    let slow = done.step("slow");
    assert_eq!(slow.status, StepStatus::Timeout, "{slow:#}");
    assert_eq!(slow.attempt, 2, "{slow:#}");
    // Absent, not null (JSON shape).
    assert!(slow.raw.get("next_attempt_at").is_none(), "{slow:#}");
    assert_eq!(done.step("after").status, StepStatus::Skipped);
    assert_eq!(
        done.step("after").skip_reason,
        Some(SkipReason::UpstreamFailed)
    );
    assert!(
        done.error.as_deref().unwrap_or("").contains("'slow'"),
        "{done:#}"
    );

    let all = attempts(&pool, ex).await;
    let tries = attempts_of(&all, "slow");
    assert_eq!(tries.len(), 2, "{all:?}");
    assert_eq!((tries[0].attempt, tries[1].attempt), (1, 2), "{all:?}");
    let (s1, e1) = interval(tries[0]);
    let (s2, e2) = interval(tries[1]);
    assert_eq!(tries[0].outcome.as_deref(), Some("PENDING"), "{all:?}");
    assert_eq!(tries[1].outcome.as_deref(), Some("TIMEOUT"), "{all:?}");
    for (s, e) in [(s1, e1), (s2, e2)] {
        let d = secs(e - s);
        assert!(
            (1.0..2.0).contains(&d),
            "each attempt is cut at its 1 s timeout: {d} s ({all:?})"
        );
    }
    let gap = secs(s2 - e1);
    assert!(gap >= 1.0, "the backoff of 1 s was respected: gap {gap} s");
    assert!(
        gap < 3.0,
        "the retry came reasonably soon after its due time: gap {gap} s"
    );
    let due = secs(next - e1);
    assert!(
        (0.99..1.01).contains(&due),
        "next_attempt_at is the failure + 1 s: {due} s"
    );
    assert!(s2 >= next, "the retry did not start before next_attempt_at");
    app.stop().await;
}

#[sqlx::test]
async fn a_step_past_its_timeout_is_timeout(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "step-timeout", "steps": [
        {"id": "slow", "action": "wait_until", "params": {"duration_seconds": 5},
         "timeout_seconds": 1}
    ]});
    let started = Instant::now();
    let (_, done) = run(&app, dag, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at 1 s, not 5"
    );
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    let slow = done.step("slow");
    assert_eq!(slow.status, StepStatus::Timeout, "{slow:#}");
    assert_eq!(slow.attempt, 1);
    assert_ne!(slow.outputs["waited"], true, "{slow:#}");
    let took = secs(slow.duration());
    assert!((1.0..2.5).contains(&took), "timed out after {took} s");
    app.stop().await;
}

#[sqlx::test]
async fn the_execution_timeout_fails_the_execution(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "exec-timeout", "settings": {"timeout_seconds": 1}, "steps": [
        {"id": "quick", "action": "log"},
        wait_step("slow", 5.0, &["quick"]),
        {"id": "after", "action": "log", "depends_on": ["slow"]}
    ]});
    let started = Instant::now();
    let (ex, done) = run(&app, dag, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at 1 s, not 5"
    );
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:#}");
    // A step still inside its handler at the deadline ends when its result
    // arrives, a moment later.
    let done = app
        .api
        .wait_until_view(ex, WAIT, |e| e.step("slow").status != StepStatus::Running)
        .await;
    assert!(
        done.error.as_deref().unwrap_or("").contains("timed out"),
        "{done:#}"
    );
    let took = secs(done.duration());
    assert!(
        (1.0..2.5).contains(&took),
        "the execution ended after {took} s"
    );
    assert_eq!(done.step("quick").status, StepStatus::Completed);
    let slow = done.step("slow");
    assert_eq!(slow.status, StepStatus::Timeout, "{slow:#}");
    assert!(!slow.awaiting_event, "{slow:#}");
    let after = done.step("after");
    assert_eq!(after.status, StepStatus::Skipped, "{after:#}");
    assert_eq!(after.skip_reason, Some(SkipReason::UpstreamFailed));
    app.stop().await;
}

#[sqlx::test]
async fn wait_until_completes_with_waited_after_its_duration(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "timer", "steps": [wait_step("nap", 1.0, &[])]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;
    let waiting = app
        .api
        .wait_until_view(ex, WAIT, |e| {
            e.step("nap").awaiting_event || e.status != ExecutionStatus::Running
        })
        .await;
    let nap = waiting.step("nap");
    assert_eq!(nap.status, StepStatus::Running, "{nap:#}");
    assert_eq!(nap.outputs["waited"], false);

    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    let nap = done.step("nap");
    assert_eq!(nap.status, StepStatus::Completed);
    assert_eq!(nap.outputs["waited"], true, "{nap:#}");
    assert_eq!(nap.outputs["wait_duration_seconds"].as_f64(), Some(1.0));
    let took = secs(nap.duration());
    assert!((1.0..2.0).contains(&took), "a 1 s wait took {took} s");
    let woke = ts(&nap.outputs["actual_wake_time"]);
    let scheduled = ts(&nap.outputs["scheduled_wake_time"]);
    assert!(woke >= scheduled, "woke before its time: {nap:#}");
    app.stop().await;
}

/// Reads of a running execution are served from memory only while Postgres
/// confirms the copy: a change another replica writes (here, straight SQL)
/// shows on the next read, and so does the execution finishing.
#[sqlx::test]
async fn a_running_execution_read_never_serves_a_stale_copy(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "polled", "steps": [wait_step("nap", 2.0, &[])]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;
    let waiting = app
        .api
        .wait_until_view(ex, WAIT, |e| e.step("nap").awaiting_event)
        .await;
    // Repeated reads of an unchanged execution: the same document.
    // (Compared as JSON: the same bytes, not just the same values.)
    assert_eq!(app.api.execution(ex).await, waiting.raw);
    assert_eq!(app.api.execution(ex).await, waiting.raw);

    // Another replica reports progress on the step, then on the execution.
    sqlx::query("UPDATE step_executions SET progress = 42.5 WHERE execution_id = $1")
        .bind(ex)
        .execute(&pool)
        .await
        .unwrap();
    let moved = app.api.execution_view(ex).await;
    assert_eq!(moved.step("nap").progress, Some(42.5), "{moved:#}");
    sqlx::query("UPDATE executions SET initiator = 'someone-else' WHERE id = $1")
        .bind(ex)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.api.execution_view(ex).await.initiator, "someone-else");

    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.step("nap").status, StepStatus::Completed);
    // Finished: served from memory from now on, and still the same.
    assert_eq!(app.api.execution(ex).await, done.raw);
    app.stop().await;
}

/// Fifty parallel steps finish together: their results share transactions
/// (one leader per execution records what the others hand it), and each is
/// still recorded exactly once, by its own attempt.
#[sqlx::test]
async fn results_of_a_wide_fan_out_are_recorded_together_and_once(pool: PgPool) {
    // Claimed one by one: inline, the fifty would finish in the root's
    // transition, with no results to combine (`inline::` tests that).
    let app = TestApp::spawn_with(&pool, &[("INLINE_STEPS", "false")]).await;
    let mut steps = vec![json!({"id": "root", "action": "log"})];
    let wide: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    for id in &wide {
        steps.push(
            json!({"id": id, "action": "set_output", "depends_on": ["root"],
                          "params": {"outputs": {"me": id}}}),
        );
    }
    steps.push(json!({"id": "join", "action": "log", "depends_on": wide}));
    let dag = json!({"name": "wide", "settings": {"max_parallel_steps": 50}, "steps": steps});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    for id in &wide {
        let s = done.step(id);
        assert_eq!(s.outputs["me"], id.as_str(), "{s:#}");
        assert_eq!(s.attempt, 1);
    }
    let attempts: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT step_id, attempt, outcome FROM step_attempts WHERE execution_id = $1",
    )
    .bind(ex)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 52, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|(_, n, o)| *n == 1 && o.as_deref() == Some("COMPLETED")),
        "{attempts:?}"
    );
    let combined = combined_results(&app).await;
    assert!(combined > 0.0, "fifty results, none combined");
    app.stop().await;
}

/// Results of many executions finishing at once are written together (one
/// statement for all the executions a combined transaction holds): each
/// execution's steps still read their own earlier steps' outputs, each
/// attempt is recorded once, and the rows kept for the next transition
/// match what was written (a later step renders from them or from the
/// database alike).
#[sqlx::test]
async fn results_of_many_executions_are_written_together_and_each_its_own(pool: PgPool) {
    // One commit a step: inline, a chain of pure steps has no results to
    // combine.
    let app = TestApp::spawn_with(&pool, &[("INLINE_STEPS", "false")]).await;
    let dag = json!({"name": "many", "parameters": [{"name": "n", "type": "integer"}],
    "steps": [
        {"id": "a", "action": "set_output", "params": {"outputs": {"x": "{{ params.n }}"}}},
        {"id": "b", "action": "set_output", "depends_on": ["a"],
         "params": {"outputs": {"y": "b{{ steps.a.outputs.x }}"}}},
        {"id": "c", "action": "set_output", "depends_on": ["b"],
         "params": {"outputs": {"z": "c{{ steps.b.outputs.y }}"}}},
        {"id": "d", "action": "log", "depends_on": ["c"],
         "params": {"message": "{{ steps.c.outputs.z }}"}}
    ]});
    let wf = app.api.create_workflow(dag).await;
    // Submitted at once, so that results arrive while others are recorded.
    let mut started = tokio::task::JoinSet::new();
    for n in 0..60 {
        let api = app.api.clone();
        started.spawn(async move { (n, api.execute(wf, json!({"parameters": {"n": n}})).await) });
    }
    let ids = started.join_all().await;
    for (n, ex) in &ids {
        let done = app.api.wait_terminal_view(*ex, WAIT).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
        assert_eq!(done.step("c").outputs["z"], format!("cb{n}"), "{done:#}");
        assert_eq!(
            done.step("d").outputs["message"],
            format!("cb{n}"),
            "{done:#}"
        );
    }
    let all: Vec<Uuid> = ids.iter().map(|(_, id)| *id).collect();
    let (attempts, distinct, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (execution_id, step_id)),
                count(*) FILTER (WHERE attempt = 1 AND outcome = 'COMPLETED')
         FROM step_attempts WHERE execution_id = ANY($1)",
    )
    .bind(&all)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((attempts, distinct, completed), (240, 240, 240));
    // Lists read progress from the execution row the combined write set.
    let finished: Vec<i32> =
        sqlx::query_scalar("SELECT finished_steps FROM executions WHERE id = ANY($1)")
            .bind(&all)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(finished.iter().all(|f| *f == 4), "{finished:?}");
    let combined = combined_results(&app).await;
    assert!(
        combined > 0.0,
        "240 results of 60 executions, none combined"
    );
    app.stop().await;
}

/// `budpipeline_combined_results_total`, read from `/metrics`.
async fn combined_results(app: &TestApp) -> f64 {
    let metrics = app
        .api
        .http
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("budpipeline_combined_results_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no combined_results in {metrics}"))
}

// ---------------------------------------------------------------- templating and outputs

#[sqlx::test]
async fn declared_outputs_are_resolved_when_the_execution_ends(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "outputs",
    "parameters": [{"name": "n", "type": "integer"}],
    "steps": [
        {"id": "a", "action": "set_output", "params": {"outputs": {"x": 41, "list": [1, 2]}}},
        {"id": "b", "action": "log", "depends_on": ["a"], "params": {"message": "hi"}}
    ],
    "outputs": {
        "x": "{{ steps.a.outputs.x + 1 }}",
        "list": "{{ steps.a.outputs.list }}",
        "text": "n={{ params.n }} msg={{ steps.b.outputs.message }}",
        "missing": "{{ steps.a.outputs.nope }}"
    }});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({"parameters": {"n": 2}})).await;
    let early = app.api.execution_view(ex).await;
    assert!(
        early.outputs.is_object(),
        "outputs is an object from the start: {early:#}"
    );
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(
        done.outputs,
        json!({"x": 42, "list": [1, 2], "text": "n=2 msg=hi", "missing": null})
    );

    // No declared outputs: every step's outputs by id.
    let (_, done) = run(
        &app,
        json!({"name": "no-outputs", "steps": [
            {"id": "a", "action": "set_output", "params": {"outputs": {"x": 1}}},
            {"id": "b", "action": "set_output", "depends_on": ["a"], "params": {"outputs": {"y": 2}}}
        ]}),
        json!({}),
    )
    .await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(done.outputs, json!({"a": {"x": 1}, "b": {"y": 2}}));
    app.stop().await;
}

#[sqlx::test]
async fn templates_yield_typed_values_and_resolve_recursively(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "typed",
    "parameters": [
        {"name": "n", "type": "integer"},
        {"name": "flag", "type": "boolean"},
        {"name": "obj", "type": "object"},
        {"name": "ratio", "type": "number"}
    ],
    "steps": [{"id": "s", "action": "set_output", "params": {"outputs": {
        "n": "{{ params.n }}",
        "n_text": "n={{ params.n }}",
        "n_spaced": "  {{ params.n }}  ",
        "sum": "{{ params.n + 1 }}",
        "ratio": "{{ params.ratio }}",
        "flag": "{{ params.flag }}",
        "obj": "{{ params.obj }}",
        "inner": "{{ params.obj.inner }}",
        "nested": {"list": ["{{ params.n }}", "x{{ params.n }}", {"deep": "{{ params.flag }}"}],
                   "literal": 5}
    }}}]});
    let body =
        json!({"parameters": {"n": 3, "flag": true, "obj": {"inner": [1, "a"]}, "ratio": 0.5}});
    let (_, done) = run(&app, dag, body).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    let out = &done.step("s").outputs;
    assert_eq!(
        out["n"],
        json!(3),
        "a pure expression keeps its type: {out:#}"
    );
    assert_eq!(out["n_text"], json!("n=3"));
    assert_eq!(out["sum"], json!(4));
    assert_eq!(out["ratio"], json!(0.5));
    assert_eq!(out["flag"], json!(true));
    assert_eq!(out["obj"], json!({"inner": [1, "a"]}));
    assert_eq!(out["inner"], json!([1, "a"]));
    assert_eq!(
        out["nested"],
        json!({"list": [3, "x3", {"deep": true}], "literal": 5})
    );
    app.stop().await;
}

#[sqlx::test]
async fn parameter_defaults_are_merged_and_undeclared_ones_kept(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "defaults",
        "parameters": [
            {"name": "replicas", "type": "integer", "required": false, "default": 2},
            {"name": "model", "type": "string", "required": true},
            {"name": "optional", "type": "string", "required": false}
        ],
        "steps": [{"id": "s", "action": "set_output", "params": {"outputs": {
            "replicas": "{{ params.replicas }}", "model": "{{ params.model }}"}}}]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app
        .api
        .execute(wf, json!({"parameters": {"model": "m1", "extra": [1]}}))
        .await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    assert_eq!(
        done.parameters,
        json!({"replicas": 2, "model": "m1", "extra": [1]})
    );
    assert_eq!(
        done.step("s").outputs,
        json!({"replicas": 2, "model": "m1"})
    );
    // A given value wins over the default.
    let ex = app
        .api
        .execute(wf, json!({"parameters": {"model": "m2", "replicas": 5}}))
        .await;
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(
        done.step("s").outputs,
        json!({"replicas": 5, "model": "m2"})
    );
    app.stop().await;
}

// ---------------------------------------------------------------- read API

#[sqlx::test]
async fn steps_are_listed_in_declaration_order(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    // Declared in an order that is neither alphabetical nor execution order.
    let dag = json!({"name": "order", "steps": [
        {"id": "zulu", "action": "log", "depends_on": ["mike"]},
        {"id": "alpha", "action": "log", "depends_on": ["zulu"]},
        {"id": "mike", "action": "log"},
        {"id": "bravo", "action": "log"}
    ]});
    let (ex, done) = run(&app, dag, json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{done:#}");
    let (status, body) = app.api.get(&format!("/executions/{ex}/steps")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["zulu", "alpha", "mike", "bravo"]);
    assert_eq!(done.step_ids(), ids);
    let s = &body["steps"][0];
    for field in [
        "step_id",
        "name",
        "action",
        "status",
        "awaiting_event",
        "external_workflow_id",
        "attempt",
        "outputs",
        "error",
        "started_at",
        "completed_at",
        "timeout_at",
    ] {
        assert!(s.get(field).is_some(), "step field {field} missing: {s:#}");
    }
    let (status, _) = app
        .api
        .get(&format!("/executions/{}/steps", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[sqlx::test]
async fn executions_list_filters_and_paginates(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let good = app
        .api
        .create_workflow(json!({"name": "good", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let bad = app
        .api
        .create_workflow(json!({"name": "bad", "steps": [{"id": "a", "action": "fail"}]}))
        .await;
    let mut good_ids = Vec::new();
    for _ in 0..3 {
        let ex = app.api.execute(good, json!({})).await;
        app.api.wait_terminal_view(ex, WAIT).await;
        good_ids.push(ex.to_string());
    }
    let bad_ex = app.api.execute(bad, json!({})).await;
    app.api.wait_terminal_view(bad_ex, WAIT).await;

    let list = |query: String| {
        let api = app.api.clone();
        async move {
            let (status, body) = api.get(&format!("/executions?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["execution_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = list(String::new()).await;
    assert_eq!(all["total"], 4, "{all:#}");
    assert_eq!(all["offset"], 0);
    assert!(all["limit"].as_i64().unwrap() >= 4);
    let newest_first: Vec<String> = std::iter::once(bad_ex.to_string())
        .chain(good_ids.iter().rev().cloned())
        .collect();
    assert_eq!(ids(&all), newest_first, "newest first");

    let by_wf = list(format!("workflow_id={good}")).await;
    assert_eq!(by_wf["total"], 3);
    let mut got = ids(&by_wf);
    got.sort();
    let mut want = good_ids.clone();
    want.sort();
    assert_eq!(got, want);

    let failed = list("status=FAILED".into()).await;
    assert_eq!(failed["total"], 1, "{failed:#}");
    assert_eq!(ids(&failed), [bad_ex.to_string()]);
    assert_eq!(failed["executions"][0]["status"], "FAILED");

    let completed = list(format!("status=COMPLETED&workflow_id={good}")).await;
    assert_eq!(completed["total"], 3);
    let none = list(format!("status=FAILED&workflow_id={good}")).await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["executions"], json!([]));

    let page1 = list(format!("workflow_id={good}&limit=2&offset=0")).await;
    let page2 = list(format!("workflow_id={good}&limit=2&offset=2")).await;
    assert_eq!(
        (page1["limit"].as_i64(), page1["offset"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(page1["total"], 3);
    assert_eq!(page2["total"], 3);
    assert_eq!(page2["offset"], 2);
    let (p1, p2) = (ids(&page1), ids(&page2));
    assert_eq!(p1.len(), 2);
    assert_eq!(p2.len(), 1);
    let paged: Vec<String> = p1.into_iter().chain(p2).collect();
    let newest_good: Vec<String> = good_ids.iter().rev().cloned().collect();
    assert_eq!(
        paged, newest_good,
        "pages follow the same newest-first order"
    );
    let past_end = list(format!("workflow_id={good}&offset=10")).await;
    assert_eq!(past_end["executions"], json!([]));
    assert_eq!(past_end["total"], 3);

    for query in [
        "status=BOGUS",
        "limit=0",
        "offset=-1",
        "workflow_id=not-a-uuid",
    ] {
        let (status, body) = app.api.get(&format!("/executions?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["detail"].is_string(), "{query}: {body}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn progress_percentage_counts_finished_steps(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "progress", "steps": [
        {"id": "a", "action": "log"},
        wait_step("w", 1.5, &["a"]),
        {"id": "c", "action": "log", "depends_on": ["w"]}
    ]});
    let wf = app.api.create_workflow(dag).await;
    let ex = app.api.execute(wf, json!({})).await;
    let mid = app
        .api
        .wait_until_view(ex, WAIT, |e| e.step("w").awaiting_event)
        .await;
    let pct = mid.progress_percentage;
    assert!((pct - 100.0 / 3.0).abs() < 0.01, "1 of 3 finished: {pct}");
    // A list shows the count kept on the execution row: the same figure.
    let listed = |body: serde_json::Value| {
        body["executions"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["execution_id"] == ex.to_string()))
            .and_then(|row| row["progress_percentage"].as_f64())
    };
    let (status, page) = app.api.get(&format!("/executions?workflow_id={wf}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let pct = listed(page.clone()).expect("the execution is listed");
    assert!(
        (pct - 100.0 / 3.0).abs() < 0.01,
        "listed, 1 of 3 finished: {pct} {page}"
    );
    let done = app.api.wait_terminal_view(ex, WAIT).await;
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.progress_percentage, 100.0);
    let (_, page) = app.api.get(&format!("/executions?workflow_id={wf}")).await;
    assert_eq!(listed(page.clone()), Some(100.0), "{page}");

    // Skipped steps count as finished.
    let (_, done) = run(
        &app,
        json!({"name": "progress-skip", "steps": [
            {"id": "a", "action": "log", "condition": "false"},
            {"id": "b", "action": "log"}
        ]}),
        json!({}),
    )
    .await;
    assert_eq!(done.progress_percentage, 100.0, "{done:#}");
    app.stop().await;
}

/// `GET /executions/{id}` is one snapshot: its status and progress agree
/// with its steps however fast the execution moves.
#[sqlx::test]
async fn an_execution_read_is_one_consistent_snapshot(pool: PgPool) {
    // One commit a step, so that the readers meet every intermediate state.
    let app = TestApp::spawn_with(&pool, &[("INLINE_STEPS", "false")]).await;
    let wf = app
        .api
        .create_workflow(support::cluster::chain_dag(25))
        .await;
    let mut checked = 0;
    for _ in 0..6 {
        let ex = app.api.execute(wf, json!({})).await;
        let pollers: Vec<_> = (0..3)
            .map(|_| {
                let api = app.api.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let (status, body) = api.get(&format!("/executions/{ex}")).await;
                        assert_eq!(status, StatusCode::OK, "{body}");
                        let body = Execution::from_value(&body);
                        let terminal = body.status == ExecutionStatus::Completed;
                        seen.push(body);
                        if terminal {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        for p in pollers {
            for body in p.await.expect("poller") {
                let steps = &body.steps;
                let finished = steps
                    .iter()
                    .filter(|s| !matches!(s.status, StepStatus::Pending | StepStatus::Running))
                    .count();
                let pct = body.progress_percentage;
                let expected = 100.0 * finished as f64 / steps.len() as f64;
                assert!(
                    (pct - expected).abs() < 1e-9,
                    "progress {pct} but {finished} of {} steps finished: {body:#}",
                    steps.len()
                );
                if body.status == ExecutionStatus::Completed {
                    assert_eq!(
                        finished,
                        steps.len(),
                        "COMPLETED with unfinished steps: {body:#}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "polled {checked} times");
    app.stop().await;
}
