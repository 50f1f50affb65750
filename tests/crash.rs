//! Crash safety of the real binary: `kill -9` in the middle of a load, then a
//! restart, loses nothing and runs no step twice at the same time.
//!
//! Every check reads Postgres directly: `step_executions` for the final
//! state and `step_attempts` for the history of claims (who ran which attempt
//! of which step, from when until when, and how it ended).

#![allow(dead_code, clippy::type_complexity)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, database_url};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers (kept inside this file: tests/support belongs to someone else).
// ---------------------------------------------------------------------------

/// A stand-in for the Dapr sidecar whose service invocations take a while:
/// `POST /v1.0/invoke/{app}/method/sleep/{ms}` answers `200 {"slept_ms": ms}`
/// after `ms` milliseconds. It records, per `(execution_id, step_id)` (from
/// the `idempotency-key` header `{execution_id}:{step_id}:{attempt}`), how
/// many calls are in flight at once, so two executors of one step at the
/// same time show up as `max_concurrent > 1`. Health checks answer 204,
/// publishes 204.
#[derive(Clone, Default)]
struct SlowSidecar {
    state: Arc<Mutex<SidecarState>>,
}

#[derive(Default)]
struct SidecarState {
    inflight: HashMap<String, usize>,
    /// Keys (`execution:step`) seen with two calls in flight at once.
    overlaps: Vec<String>,
    /// Every call's idempotency key, in arrival order.
    calls: Vec<String>,
    /// When each call arrived (same order as `calls`).
    call_times: Vec<DateTime<Utc>>,
}

struct InflightGuard {
    state: Arc<Mutex<SidecarState>>,
    key: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        if let Some(n) = s.inflight.get_mut(&self.key) {
            *n -= 1;
        }
    }
}

impl SlowSidecar {
    async fn start() -> (Self, String) {
        let sidecar = SlowSidecar::default();
        let app = axum::Router::new()
            .fallback(sidecar_handle)
            .with_state(sidecar.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        (sidecar, url)
    }

    fn overlaps(&self) -> Vec<String> {
        self.state.lock().unwrap().overlaps.clone()
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// (execution_id, step_id, attempt, arrived) of every call.
    fn timed_calls(&self) -> Vec<(Uuid, String, i32, DateTime<Utc>)> {
        let s = self.state.lock().unwrap();
        s.calls
            .iter()
            .zip(&s.call_times)
            .filter_map(|(hint, at)| {
                let (rest, attempt) = hint.rsplit_once(':')?;
                let (execution, step) = rest.split_once(':')?;
                Some((
                    execution.parse().ok()?,
                    step.to_owned(),
                    attempt.parse().ok()?,
                    *at,
                ))
            })
            .collect()
    }
}

async fn sidecar_handle(
    axum::extract::State(sidecar): axum::extract::State<SlowSidecar>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_owned();
    if path.starts_with("/v1.0/healthz") || path.starts_with("/v1.0/publish/") {
        return axum::http::StatusCode::NO_CONTENT.into_response();
    }
    let Some(ms) = path
        .rsplit_once("/sleep/")
        .and_then(|(_, ms)| ms.parse::<u64>().ok())
    else {
        return (axum::http::StatusCode::NOT_FOUND, "unknown").into_response();
    };
    let hint = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // `{execution_id}:{step_id}:{attempt}` -> `{execution_id}:{step_id}`
    let key = hint
        .rsplit_once(':')
        .map(|(k, _)| k.to_owned())
        .unwrap_or_default();
    let guard = {
        let mut s = sidecar.state.lock().unwrap();
        s.calls.push(hint.clone());
        s.call_times.push(Utc::now());
        let n = s.inflight.entry(key.clone()).or_default();
        *n += 1;
        if *n > 1 {
            s.overlaps.push(hint.clone());
        }
        InflightGuard {
            state: sidecar.state.clone(),
            key,
        }
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    drop(guard);
    axum::Json(json!({ "slept_ms": ms })).into_response()
}

#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(dead_code)]
struct AttemptRow {
    execution_id: Uuid,
    step_id: String,
    attempt: i32,
    replica_id: Uuid,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(dead_code)]
struct StepState {
    execution_id: Uuid,
    step_id: String,
    status: String,
    attempt: i32,
    failures: i32,
    lease_owner: Option<Uuid>,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// What the database says about a finished load.
#[derive(Debug, Default)]
#[allow(dead_code)]
struct History {
    /// Attempts that did not end COMPLETED (RELEASED by a drain or by the
    /// sweeper after a dead replica's lease expired, FAILED, ...).
    not_completed_attempts: usize,
    /// Steps that needed more than one attempt.
    retried_steps: usize,
    /// Distinct replicas that ran attempts.
    replicas: Vec<Uuid>,
    /// Attempts per replica.
    per_replica: HashMap<Uuid, usize>,
    outcomes: HashMap<String, usize>,
}

/// Check the guarantees on the rows of `executions` (all of them must be
/// COMPLETED with `steps_per_execution` COMPLETED steps each):
/// - every step row COMPLETED, its `attempt` the last one recorded;
/// - `step_attempts` numbers each step's attempts 1..=n without gaps;
/// - attempts of one step never overlap: attempt k ended (`ended_at` set)
///   no later than attempt k+1 started; only the last may be open, and it
///   is not (the step is COMPLETED);
/// - exactly one attempt per step ended COMPLETED, and it is the last.
///
/// Panics with every violation found.
async fn check_history(pool: &PgPool, executions: &[Uuid], steps_per_execution: usize) -> History {
    let statuses: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM executions WHERE id = ANY($1)")
            .bind(executions)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(statuses.len(), executions.len(), "every execution exists");
    let not_completed: Vec<_> = statuses.iter().filter(|(_, s)| s != "COMPLETED").collect();
    assert!(
        not_completed.is_empty(),
        "executions not COMPLETED: {not_completed:?}"
    );

    let steps: Vec<StepState> = sqlx::query_as(
        "SELECT execution_id, step_id, status, attempt, failures, lease_owner, error, started_at,
                completed_at
         FROM step_executions WHERE execution_id = ANY($1)",
    )
    .bind(executions)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(steps.len(), executions.len() * steps_per_execution);

    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT execution_id, step_id, attempt, replica_id, started_at, ended_at, outcome
         FROM step_attempts WHERE execution_id = ANY($1)
         ORDER BY execution_id, step_id, attempt",
    )
    .bind(executions)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut by_step: HashMap<(Uuid, String), Vec<AttemptRow>> = HashMap::new();
    for a in attempts {
        by_step
            .entry((a.execution_id, a.step_id.clone()))
            .or_default()
            .push(a);
    }

    let mut problems: Vec<String> = Vec::new();
    let mut history = History::default();
    let mut bad: Vec<String> = Vec::new();
    for step in &steps {
        let key = (step.execution_id, step.step_id.clone());
        let label = format!("{}/{}", step.execution_id, step.step_id);
        let problems_before = problems.len();
        if step.status != "COMPLETED" {
            problems.push(format!("{label}: step status {}", step.status));
        }
        let Some(rows) = by_step.get(&key) else {
            problems.push(format!("{label}: no step_attempts rows"));
            continue;
        };
        if rows.len() > 1 {
            history.retried_steps += 1;
        }
        let numbers: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
        let expected: Vec<i32> = (1..=rows.len() as i32).collect();
        if numbers != expected {
            problems.push(format!("{label}: attempt numbers {numbers:?}"));
        }
        if step.attempt != rows.len() as i32 {
            problems.push(format!(
                "{label}: step row attempt {} but {} attempts recorded",
                step.attempt,
                rows.len()
            ));
        }
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            match a.ended_at {
                None => problems.push(format!(
                    "{label}: attempt {} (replica {}) never ended but attempt {} started at {}",
                    a.attempt, a.replica_id, b.attempt, b.started_at
                )),
                Some(end) if end > b.started_at => problems.push(format!(
                    "{label}: attempt {} (replica {}, {} .. {end}, {:?}) overlaps attempt {} (replica {}, from {})",
                    a.attempt, a.replica_id, a.started_at, a.outcome, b.attempt, b.replica_id, b.started_at
                )),
                Some(_) => {}
            }
        }
        let completed: Vec<i32> = rows
            .iter()
            .filter(|r| r.outcome.as_deref() == Some("COMPLETED"))
            .map(|r| r.attempt)
            .collect();
        let last = rows.last().unwrap();
        if completed.len() != 1 || last.outcome.as_deref() != Some("COMPLETED") {
            problems.push(format!(
                "{label}: attempts ending COMPLETED {completed:?}, last attempt {} ended {:?}",
                last.attempt, last.outcome
            ));
        }
        if last.ended_at.is_none() {
            problems.push(format!("{label}: the last attempt is still open"));
        }
        for r in rows {
            if let Some(start_end) = r.ended_at {
                if start_end < r.started_at {
                    problems.push(format!(
                        "{label}: attempt {} ends before it starts",
                        r.attempt
                    ));
                }
            }
            if r.outcome.as_deref() != Some("COMPLETED") {
                history.not_completed_attempts += 1;
            }
            *history
                .outcomes
                .entry(r.outcome.clone().unwrap_or_else(|| "<open>".into()))
                .or_default() += 1;
            *history.per_replica.entry(r.replica_id).or_default() += 1;
        }
        if problems.len() > problems_before && bad.len() < 5 {
            bad.push(format!("step row {step:?}\n  attempts {rows:#?}"));
        }
    }
    history.replicas = history.per_replica.keys().copied().collect();
    history.replicas.sort();
    if !problems.is_empty() {
        let shown = problems.len().min(40);
        panic!(
            "{} violation(s) of the step guarantees, first {shown}:\n{}\nthe rows of the first steps concerned:\n{}",
            problems.len(),
            problems[..shown].join("\n"),
            bad.join("\n")
        );
    }
    history
}

/// Wait until every execution is terminal; panics with the stragglers.
async fn wait_all_terminal(pool: &PgPool, executions: &[Uuid], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let open: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, status FROM executions
             WHERE id = ANY($1) AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
        )
        .bind(executions)
        .fetch_all(pool)
        .await
        .unwrap();
        if open.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let ids: Vec<Uuid> = open.iter().map(|(id, _)| *id).take(5).collect();
            let steps: Vec<(Uuid, String, String, i32, bool, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> =
                sqlx::query_as(
                    "SELECT execution_id, step_id, status, attempt, awaiting_event, available_at,
                            lease_expires_at, timeout_at
                     FROM step_executions WHERE execution_id = ANY($1) ORDER BY execution_id, position",
                )
                .bind(&ids)
                .fetch_all(pool)
                .await
                .unwrap();
            panic!(
                "{} execution(s) not terminal after {timeout:?}; steps of the first ones:\n{:#?}",
                open.len(),
                steps
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, Default, Clone, Copy)]
#[allow(dead_code)]
struct Snapshot {
    executions_open: i64,
    executions_completed: i64,
    steps_completed: i64,
    steps_in_handler: i64,
    steps_waiting: i64,
    steps_pending: i64,
}

async fn snapshot(pool: &PgPool) -> Snapshot {
    let (
        executions_open,
        executions_completed,
        steps_completed,
        steps_in_handler,
        steps_waiting,
        steps_pending,
    ): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM executions WHERE status = 'RUNNING'),
           (SELECT count(*) FROM executions WHERE status = 'COMPLETED'),
           (SELECT count(*) FROM step_executions WHERE status = 'COMPLETED'),
           (SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND NOT awaiting_event),
           (SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND awaiting_event),
           (SELECT count(*) FROM step_executions WHERE status = 'PENDING')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    Snapshot {
        executions_open,
        executions_completed,
        steps_completed,
        steps_in_handler,
        steps_waiting,
        steps_pending,
    }
}

/// Submit `n` executions of `workflow` concurrently (8 at a time).
async fn submit(api: &Api, workflow: Uuid, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for _ in 0..n {
        let api = api.clone();
        batch.push(tokio::spawn(async move {
            api.execute(workflow, json!({})).await
        }));
        if batch.len() == 8 {
            for h in batch.drain(..) {
                ids.push(h.await.unwrap());
            }
        }
    }
    for h in batch {
        ids.push(h.await.unwrap());
    }
    ids
}

/// The replica id a running service reports on `/internal/status`.
async fn replica_id(api: &Api) -> Uuid {
    let (status, body) = api.get("/internal/status").await;
    assert!(status.is_success(), "status: {body}");
    body["replica_id"].as_str().unwrap().parse().unwrap()
}

fn log_tail(port: u16, lines: usize) -> String {
    let path = std::env::temp_dir().join(format!("budpipeline-test-{port}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn log_lines_matching(port: u16, needle: &str) -> usize {
    let path = std::env::temp_dir().join(format!("budpipeline-test-{port}.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// log -> wait_until 1 s -> log -> log, and a parallel branch with a slow
/// service call (400 ms, a handler that holds its lease while it runs) then
/// a log, joined at the end.
fn crash_dag(name: &str) -> Value {
    json!({"name": name, "steps": [
        {"id": "start", "action": "log", "params": {"message": "start"}},
        {"id": "wait", "action": "wait_until", "params": {"duration_seconds": 1}, "depends_on": ["start"]},
        {"id": "after_wait", "action": "log", "params": {"message": "woke"}, "depends_on": ["wait"]},
        {"id": "tail", "action": "log", "params": {"message": "tail"}, "depends_on": ["after_wait"]},
        {"id": "slow", "action": "invoke_service",
         "params": {"app_id": "slowapp", "method_path": "/sleep/400", "http_method": "POST"},
         "depends_on": ["start"]},
        {"id": "after_slow", "action": "log", "params": {"message": "after slow"}, "depends_on": ["slow"]},
        {"id": "join", "action": "log", "params": {"message": "join"}, "depends_on": ["tail", "after_slow"]}
    ]})
}
const CRASH_DAG_STEPS: usize = 7;

#[sqlx::test]
async fn kill9_mid_flight_then_restart_completes_everything_once(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let mut service = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", &sidecar_url)]).await;
    let port = service.port;
    let wf = service
        .api
        .create_workflow(crash_dag("crash-mid-flight"))
        .await;

    let executions = submit(&service.api, wf, 50).await;
    let submitted_in = t0.elapsed();

    // Mid-way: some steps done, some handlers running, executions open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before_kill = loop {
        let s = snapshot(&pool).await;
        // Some executions finished, others open, and handlers running with
        // a lease held (the slow call), plus waits parked on their timer.
        if s.executions_completed > 0 && s.executions_open > 0 && s.steps_in_handler > 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "never saw the load mid-flight: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Which steps had a handler running (a held lease) at the kill.
    service.kill9().await;
    let killed_at = t0.elapsed();
    let at_kill = snapshot(&pool).await;
    let in_handler_at_kill: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT execution_id, step_id, attempt FROM step_executions
         WHERE status = 'RUNNING' AND NOT awaiting_event",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let open_attempts_at_kill: i64 =
        sqlx::query_scalar("SELECT count(*) FROM step_attempts WHERE ended_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    eprintln!(
        "submitted 50 in {submitted_in:?}; killed at {killed_at:?}; just before: {before_kill:?}; \
         at kill: {at_kill:?}; open attempts {open_attempts_at_kill}"
    );
    assert!(
        at_kill.executions_open > 0,
        "the kill must hit executions in flight"
    );

    service.restart().await;
    let restarted_at = t0.elapsed();
    wait_all_terminal(&pool, &executions, Duration::from_secs(40)).await;
    let done_at = t0.elapsed();

    let history = check_history(&pool, &executions, CRASH_DAG_STEPS).await;
    eprintln!(
        "restarted at {restarted_at:?}, all terminal at {done_at:?}; history: {history:?}; \
         sidecar calls {}",
        sidecar.calls().len()
    );
    // The kill really cut work in half: some attempts were cut off (and
    // reclaimed by the sweeper) or some executions were open at the kill.
    assert!(
        history.not_completed_attempts > 0
            || history.retried_steps > 0
            || at_kill.executions_open > 0
    );
    // Every handler cut off by the kill was run again by the new process,
    // as a new attempt, after the sweeper took back the dead lease.
    for (execution_id, step_id, attempt) in &in_handler_at_kill {
        let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
            "SELECT attempt, outcome FROM step_attempts
             WHERE execution_id = $1 AND step_id = $2 ORDER BY attempt",
        )
        .bind(execution_id)
        .bind(step_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        let cut = rows.iter().find(|(a, _)| a == attempt);
        assert!(
            matches!(cut, Some((_, Some(o))) if o != "COMPLETED"),
            "{execution_id}/{step_id}: attempt {attempt} was in a handler at the kill, \
             yet its history is {rows:?}"
        );
        assert!(
            rows.len() as i32 > *attempt,
            "{execution_id}/{step_id}: no new attempt after the kill: {rows:?}"
        );
    }
    let overlaps = sidecar.overlaps();
    // A killed process's call may still be "in flight" at the stand-in for
    // a moment; a new attempt only starts after the lease (2 s) runs out,
    // long after its 400 ms sleep ended, so any overlap is a real one.
    assert!(
        overlaps.is_empty(),
        "two calls of one step in flight at once: {overlaps:?}"
    );
    let reclaimed = log_lines_matching(port, "reclaiming a step whose lease expired");
    eprintln!(
        "reclaimed after the kill (log lines): {reclaimed}; in a handler at the kill: {}",
        in_handler_at_kill.len()
    );
    service.terminate().await;
    eprintln!("total {:?}", t0.elapsed());
}

/// 20 executions parked on a 3 s `wait_until` when the process dies; it
/// stays down past their wake time. After the restart the overdue timers
/// fire promptly, exactly once each, and the executions finish.
#[sqlx::test]
async fn kill9_while_waiting_timers_fire_once_after_restart(pool: PgPool) {
    let t0 = Instant::now();
    let db = database_url(&pool);
    let mut service = ServiceProcess::start(&db, &[]).await;
    let port = service.port;
    let wf = service
        .api
        .create_workflow(json!({"name": "crash-waits", "steps": [
            {"id": "before", "action": "log", "params": {"message": "before"}},
            {"id": "wait", "action": "wait_until", "params": {"duration_seconds": 3}, "depends_on": ["before"]},
            {"id": "after", "action": "log", "params": {"message": "after"}, "depends_on": ["wait"]}
        ]}))
        .await;
    let executions = submit(&service.api, wf, 20).await;

    // All 20 parked on their timer.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM step_executions
             WHERE step_id = 'wait' AND status = 'RUNNING' AND awaiting_event",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "only {waiting}/20 waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latest_due: DateTime<Utc> =
        sqlx::query_scalar("SELECT max(timeout_at) FROM step_executions WHERE step_id = 'wait'")
            .fetch_one(&pool)
            .await
            .unwrap();
    service.kill9().await;
    let killed_at = t0.elapsed();

    // Stay down until every timer is overdue.
    loop {
        let overdue: bool = sqlx::query_scalar("SELECT now() > $1 + interval '300 milliseconds'")
            .bind(latest_due)
            .fetch_one(&pool)
            .await
            .unwrap();
        if overdue {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE id = ANY($1) AND status = 'RUNNING'",
    )
    .bind(&executions)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 20, "nothing moves while no replica runs");

    let restart = Instant::now();
    service.restart().await;
    wait_all_terminal(&pool, &executions, Duration::from_secs(20)).await;
    let recovered_in = restart.elapsed();
    eprintln!(
        "killed at {killed_at:?}; restarted, all 20 finished {recovered_in:?} after the restart began"
    );
    assert!(
        recovered_in < Duration::from_secs(10),
        "overdue timers fire promptly after a restart, took {recovered_in:?}"
    );

    let history = check_history(&pool, &executions, 3).await;
    eprintln!("history: {history:?}");
    // The wait fired once: one attempt, never re-run, woke after its time.
    let waits: Vec<(Uuid, i32, Value, i64)> = sqlx::query_as(
        "SELECT s.execution_id, s.attempt, s.outputs,
                (SELECT count(*) FROM step_attempts a
                  WHERE a.execution_id = s.execution_id AND a.step_id = s.step_id)
         FROM step_executions s WHERE s.execution_id = ANY($1) AND s.step_id = 'wait'",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(waits.len(), 20);
    for (execution_id, attempt, outputs, attempts) in waits {
        assert_eq!(attempt, 1, "{execution_id}: wait re-run: {outputs}");
        assert_eq!(
            attempts, 1,
            "{execution_id}: {attempts} attempts of the wait"
        );
        assert_eq!(outputs["waited"], json!(true), "{execution_id}: {outputs}");
        let scheduled: DateTime<Utc> = outputs["scheduled_wake_time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let actual: DateTime<Utc> = outputs["actual_wake_time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            actual >= scheduled,
            "{execution_id}: woke at {actual}, before {scheduled}"
        );
    }
    let _ = log_tail(port, 0);
    service.terminate().await;
    eprintln!("total {:?}", t0.elapsed());
}

/// POST execute without panicking: `Some(id)` on 202, `None` when the
/// request failed (connection refused or reset by the kill) or got
/// another status.
async fn try_execute(api: &Api, workflow: Uuid) -> Option<Uuid> {
    let resp = api
        .http
        .post(format!("{}/workflows/{workflow}/execute", api.base))
        .header("dapr-api-token", support::app::TOKEN)
        .json(&json!({}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if resp.status() != reqwest::StatusCode::ACCEPTED {
        return None;
    }
    let body: Value = resp.json().await.ok()?;
    body["execution_id"].as_str()?.parse().ok()
}

/// Durable acceptance: clients keep submitting while the process is killed.
/// Every execution that got a 202 exists and completes after the restart;
/// requests cut off by the kill may or may not have been recorded, and if
/// recorded they complete too (no execution stays RUNNING forever).
#[sqlx::test]
async fn kill9_during_submissions_every_acknowledged_execution_completes(pool: PgPool) {
    let t0 = Instant::now();
    let (_sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let mut service = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", &sidecar_url)]).await;
    let wf = service.api.create_workflow(crash_dag("crash-submit")).await;

    // 6 clients submitting in a loop until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let api = service.api.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match try_execute(&api, wf).await {
                    Some(id) => acked.push(id),
                    None => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, failed)
        }));
    }
    // Kill once a good number is in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        if n >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} executions recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    service.kill9().await;
    let at_kill = snapshot(&pool).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.restart().await;
    // A little more load on the new process, then stop the clients.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (a, f) = c.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    eprintln!(
        "acknowledged {}, failed requests {failed}; at kill: {at_kill:?}",
        acked.len()
    );
    assert!(failed > 0, "the kill should have cut some requests off");

    // Every acknowledged execution was recorded...
    let recorded: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM executions")
        .fetch_all(&pool)
        .await
        .unwrap();
    let missing: Vec<&Uuid> = acked.iter().filter(|id| !recorded.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not recorded: {missing:?}"
    );
    // ...and every recorded one (acknowledged or not) completes, once.
    wait_all_terminal(&pool, &recorded, Duration::from_secs(40)).await;
    let history = check_history(&pool, &recorded, CRASH_DAG_STEPS).await;
    eprintln!(
        "{} recorded ({} not acknowledged); history {history:?}; total {:?}",
        recorded.len(),
        recorded.len() - acked.len(),
        t0.elapsed()
    );
    service.terminate().await;
}

/// Two replicas; one is killed mid-load and never comes back. The
/// survivor's sweeper takes back the dead replica's leases once they
/// expire and finishes every execution, each step once.
#[sqlx::test]
async fn kill9_one_of_two_replicas_the_survivor_finishes_everything(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let overrides = [("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())];
    let mut doomed = ServiceProcess::start(&db, &overrides).await;
    let mut survivor = ServiceProcess::start(&db, &overrides).await;
    let doomed_id = replica_id(&doomed.api).await;
    let survivor_id = replica_id(&survivor.api).await;
    let wf = doomed
        .api
        .create_workflow(crash_dag("crash-survivor"))
        .await;
    let to_doomed = {
        let api = doomed.api.clone();
        tokio::spawn(async move { submit(&api, wf, 30).await })
    };
    let mut executions = submit(&survivor.api, wf, 30).await;
    executions.extend(to_doomed.await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM step_executions
             WHERE status = 'RUNNING' AND NOT awaiting_event AND lease_owner = $1",
        )
        .bind(doomed_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if held > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed replica never held a lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill9().await;
    let held_at_kill: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT execution_id, step_id, attempt FROM step_executions
         WHERE status = 'RUNNING' AND NOT awaiting_event AND lease_owner = $1",
    )
    .bind(doomed_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let killed_at = t0.elapsed();

    wait_all_terminal(&pool, &executions, Duration::from_secs(40)).await;
    let history = check_history(&pool, &executions, CRASH_DAG_STEPS).await;
    eprintln!(
        "killed at {killed_at:?} holding {} leases; all finished at {:?}; history {history:?}",
        held_at_kill.len(),
        t0.elapsed()
    );
    for (e, s, attempt) in &held_at_kill {
        let rows: Vec<(i32, Uuid, Option<String>)> = sqlx::query_as(
            "SELECT attempt, replica_id, outcome FROM step_attempts
             WHERE execution_id = $1 AND step_id = $2 ORDER BY attempt",
        )
        .bind(e)
        .bind(s)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            rows.iter()
                .any(|r| r.0 == *attempt && r.1 == doomed_id && r.2.as_deref() == Some("RELEASED")),
            "{e}/{s}: the dead replica's attempt {attempt} is not recorded as taken back: {rows:?}"
        );
        assert!(
            rows.last()
                .is_some_and(|r| r.1 == survivor_id && r.2.as_deref() == Some("COMPLETED")),
            "{e}/{s}: {rows:?}"
        );
    }
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    survivor.terminate().await;
}
