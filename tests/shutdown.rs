//! Graceful shutdown of the real binary: SIGTERM drains (stop claiming, let
//! handlers finish within SHUTDOWN_GRACE_SECONDS, hand back what is left,
//! exit 0), so a rolling restart of every replica in the middle of a load
//! loses nothing and runs nothing twice.

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

/// log -> wait_until 1 s -> log -> log, and a parallel slow service call
/// (`slow_ms`) then a log, joined at the end.
fn load_dag(name: &str, slow_ms: u64) -> Value {
    json!({"name": name, "steps": [
        {"id": "start", "action": "log", "params": {"message": "start"}},
        {"id": "wait", "action": "wait_until", "params": {"duration_seconds": 1}, "depends_on": ["start"]},
        {"id": "after_wait", "action": "log", "params": {"message": "woke"}, "depends_on": ["wait"]},
        {"id": "tail", "action": "log", "params": {"message": "tail"}, "depends_on": ["after_wait"]},
        {"id": "slow", "action": "invoke_service",
         "params": {"app_id": "slowapp", "method_path": format!("/sleep/{slow_ms}"), "http_method": "POST"},
         "depends_on": ["start"]},
        {"id": "after_slow", "action": "log", "params": {"message": "after slow"}, "depends_on": ["slow"]},
        {"id": "join", "action": "log", "params": {"message": "join"}, "depends_on": ["tail", "after_slow"]}
    ]})
}
const LOAD_DAG_STEPS: usize = 7;
const GRACE_SECONDS: u64 = 5;
/// Exit must come within the grace period plus this.
const EXIT_MARGIN: Duration = Duration::from_secs(3);

/// POST execute without panicking: `Some(id)` on 202, `None` otherwise
/// (refused, reset, or another status).
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

/// Submit `n` executions to `api` in the background.
fn submit_in_background(api: &Api, workflow: Uuid, n: usize) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let api = api.clone();
    tokio::spawn(async move { submit(&api, workflow, n).await })
}

/// SIGTERM `service` and wait for it to exit, polling its `/ready` while it
/// drains. Returns (exit status, time to exit, /ready statuses seen).
async fn sigterm(service: &mut ServiceProcess) -> (std::process::ExitStatus, Duration, Vec<u16>) {
    let api = service.api.clone();
    let stop = tokio::sync::watch::channel(false);
    let (stop_tx, mut stop_rx) = stop;
    let poller = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            if *stop_rx.borrow() {
                return seen;
            }
            let probe = api
                .http
                .get(format!("{}/ready", api.base))
                .timeout(Duration::from_millis(500))
                .send();
            if let Ok(resp) = probe.await {
                let code = resp.status().as_u16();
                if seen.last() != Some(&code) {
                    seen.push(code);
                }
            }
            tokio::select! {
                _ = stop_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    let started = Instant::now();
    let status = service.terminate().await;
    let took = started.elapsed();
    let _ = stop_tx.send(true);
    let seen = poller.await.unwrap();
    (status, took, seen)
}

#[sqlx::test]
async fn rolling_restart_under_load_loses_nothing(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let grace = GRACE_SECONDS.to_string();
    let overrides = [
        ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
        ("SHUTDOWN_GRACE_SECONDS", grace.as_str()),
    ];
    let mut a = ServiceProcess::start(&db, &overrides).await;
    let mut b = ServiceProcess::start(&db, &overrides).await;
    let (port_a, port_b) = (a.port, b.port);
    let wf = a.api.create_workflow(load_dag("rolling", 300)).await;

    // Phase 1: 40 executions to both.
    let first_a = submit_in_background(&a.api, wf, 20);
    let first_b = submit_in_background(&b.api, wf, 20);
    let mut executions = first_a.await.unwrap();
    executions.extend(first_b.await.unwrap());

    // Phase 2: clients go to B while A restarts.
    let to_b = submit_in_background(&b.api, wf, 30);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_a = snapshot(&pool).await;
    let inflight_a: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND NOT awaiting_event",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (status_a, took_a, ready_a) = sigterm(&mut a).await;
    eprintln!(
        "A: SIGTERM at {:?} with {before_a:?} ({inflight_a} handlers in flight overall): \
         exit {status_a:?} after {took_a:?}; /ready answered {ready_a:?}",
        t0.elapsed()
    );
    a.restart().await;
    executions.extend(to_b.await.unwrap());

    // Phase 3: clients go to A while B restarts.
    let to_a = submit_in_background(&a.api, wf, 30);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_b = snapshot(&pool).await;
    let (status_b, took_b, ready_b) = sigterm(&mut b).await;
    eprintln!(
        "B: SIGTERM at {:?} with {before_b:?}: exit {status_b:?} after {took_b:?}; /ready answered {ready_b:?}",
        t0.elapsed()
    );
    b.restart().await;
    executions.extend(to_a.await.unwrap());
    assert_eq!(executions.len(), 100);

    wait_all_terminal(&pool, &executions, Duration::from_secs(40)).await;
    let finished = t0.elapsed();

    assert!(
        status_a.success(),
        "A exits 0 after SIGTERM, got {status_a:?}; log:\n{}",
        log_tail(port_a, 30)
    );
    assert!(
        status_b.success(),
        "B exits 0 after SIGTERM, got {status_b:?}; log:\n{}",
        log_tail(port_b, 30)
    );
    let limit = Duration::from_secs(GRACE_SECONDS) + EXIT_MARGIN;
    assert!(took_a < limit, "A took {took_a:?} to exit");
    assert!(took_b < limit, "B took {took_b:?} to exit");
    // Draining with nothing left to wait for should not take the grace period.
    let history = check_history(&pool, &executions, LOAD_DAG_STEPS).await;
    eprintln!("all finished at {finished:?}; history: {history:?}");
    // Handlers finish within the grace period, so a rolling restart re-runs
    // nothing: one service call per execution, each step once.
    let calls = sidecar.calls();
    let mut distinct: Vec<String> = calls
        .iter()
        .map(|hint| hint.rsplit_once(':').unwrap().0.to_owned())
        .collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        100,
        "one slow step per execution was called"
    );
    assert_eq!(
        calls.len(),
        100,
        "service calls re-run by the restarts: {:?}",
        calls
    );
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    assert_eq!(
        history.retried_steps, 0,
        "no step needed a second attempt: {:?}",
        history.outcomes
    );

    let _ = a.terminate().await;
    let _ = b.terminate().await;
    eprintln!("total {:?}", t0.elapsed());
}

/// A handler longer than the grace period: SIGTERM makes `/ready` answer
/// 503 while draining, the process exits 0 soon after the grace period,
/// and the steps it handed back (outcome RELEASED) are taken by the other
/// replica at once, not after the lease runs out.
#[sqlx::test]
async fn sigterm_past_the_grace_period_hands_steps_to_the_other_replica(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let mut a = ServiceProcess::start(
        &db,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
            ("SHUTDOWN_GRACE_SECONDS", "1"),
        ],
    )
    .await;
    let replica_a = replica_id(&a.api).await;
    let wf = a
        .api
        .create_workflow(json!({"name": "long-handlers", "steps": [
            {"id": "start", "action": "log"},
            {"id": "slow", "action": "invoke_service",
             "params": {"app_id": "slowapp", "method_path": "/sleep/4000", "http_method": "POST"},
             "depends_on": ["start"]},
            {"id": "end", "action": "log", "depends_on": ["slow"]}
        ]}))
        .await;
    let executions = submit(&a.api, wf, 10).await;
    // Every slow call is running on A.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.calls().len() < 10 {
        assert!(Instant::now() < deadline, "calls: {:?}", sidecar.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())]).await;
    let replica_b = replica_id(&b.api).await;

    // While A drains, a client still reaches it: what A acknowledges then
    // must run elsewhere (A claims nothing new) and complete.
    let late_client = {
        let api = a.api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            try_execute(&api, wf).await
        })
    };
    let (status, took, ready) = sigterm(&mut a).await;
    let late = late_client.await.unwrap();
    eprintln!(
        "A: exit {status:?} after {took:?}; /ready answered {ready:?}; execute while draining: {late:?}"
    );
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status:?}\n{}",
        log_tail(a.port, 30)
    );
    assert!(
        took < Duration::from_secs(1) + EXIT_MARGIN,
        "exit soon after the 1 s grace period, took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "the handlers ran for 4 s, yet A exited after {took:?} (no grace period?)"
    );
    assert!(
        ready.contains(&503),
        "/ready should answer 503 while draining, saw {ready:?}"
    );

    wait_all_terminal(&pool, &executions, Duration::from_secs(30)).await;
    let history = check_history(&pool, &executions, 3).await;
    if let Some(late) = late {
        wait_all_terminal(&pool, &[late], Duration::from_secs(20)).await;
        let late_history = check_history(&pool, &[late], 3).await;
        assert_eq!(
            late_history.replicas,
            vec![replica_b],
            "a draining replica must not run what it accepts: {late_history:?}"
        );
    }
    eprintln!(
        "history: {history:?}; sidecar calls {}",
        sidecar.calls().len()
    );
    let slow: Vec<(
        Uuid,
        i32,
        Uuid,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT execution_id, attempt, replica_id, started_at, ended_at, outcome
             FROM step_attempts WHERE execution_id = ANY($1) AND step_id = 'slow'
             ORDER BY execution_id, attempt",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    for execution_id in &executions {
        let rows: Vec<_> = slow.iter().filter(|r| r.0 == *execution_id).collect();
        assert_eq!(rows.len(), 2, "{execution_id}: {rows:?}");
        let (first, second) = (rows[0], rows[1]);
        assert_eq!(
            (first.2, first.5.as_deref()),
            (replica_a, Some("RELEASED")),
            "{execution_id}: {rows:?}"
        );
        assert_eq!(
            (second.2, second.5.as_deref()),
            (replica_b, Some("COMPLETED")),
            "{execution_id}: {rows:?}"
        );
        // Handed back, so taken at once (the lease is 2 s).
        let gap = second.3 - first.4.unwrap();
        assert!(
            gap < chrono::TimeDelta::milliseconds(1500),
            "{execution_id}: the released step waited {gap} to be taken again"
        );
    }
    let _ = b.terminate().await;
    eprintln!("total {:?}", t0.elapsed());
}

/// start -> six parallel `call_ms` service calls -> join.
fn wide_dag(name: &str, call_ms: u64) -> Value {
    let mut steps = vec![json!({"id": "start", "action": "log"})];
    let mut calls = Vec::new();
    for i in 0..6 {
        let id = format!("call{i}");
        steps.push(json!({"id": id, "action": "invoke_service",
            "params": {"app_id": "slowapp", "method_path": format!("/sleep/{call_ms}"), "http_method": "POST"},
            "depends_on": ["start"]}));
        calls.push(id);
    }
    steps.push(json!({"id": "join", "action": "log", "depends_on": calls}));
    json!({"name": name, "steps": steps})
}
const WIDE_DAG_STEPS: usize = 8;

/// SIGTERM while the dispatcher is claiming all the time. Both replicas
/// have one handler slot, so nearly every step comes from a dispatcher
/// (claim, spawn, run) rather than a hand-off; the work is submitted to B
/// and A keeps claiming its share. A is stopped and restarted five times at
/// arbitrary moments. Handlers take 20 ms and the grace period is 5 s, so
/// a drain must never hand back a step whose handler runs here, and no
/// service call may be made twice.
#[sqlx::test]
async fn sigterm_while_the_dispatcher_is_busy_runs_nothing_twice(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let mut a = ServiceProcess::start(
        &db,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
            ("MAX_CONCURRENT_STEPS", "1"),
        ],
    )
    .await;
    let mut b = ServiceProcess::start(
        &db,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
            ("MAX_CONCURRENT_STEPS", "1"),
        ],
    )
    .await;
    let wf = b.api.create_workflow(wide_dag("busy-dispatcher", 20)).await;
    let executions = submit(&b.api, wf, 40).await;

    let mut drains = Vec::new();
    for round in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(150 + 37 * round)).await;
        let sigterm_at = Utc::now();
        let (status, took, _) = sigterm(&mut a).await;
        assert!(status.success(), "{status:?}");
        assert!(
            took < Duration::from_secs(GRACE_SECONDS) + EXIT_MARGIN,
            "{took:?}"
        );
        drains.push((sigterm_at, took));
        a.restart().await;
    }
    eprintln!("drains of A (SIGTERM at, exit after): {drains:?}");
    wait_all_terminal(&pool, &executions, Duration::from_secs(40)).await;
    let history = check_history(&pool, &executions, WIDE_DAG_STEPS).await;
    eprintln!("history: {history:?}; total {:?}", t0.elapsed());

    // What the drains handed back, with the service calls of those steps.
    let released: Vec<(
        Uuid,
        String,
        i32,
        Uuid,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    )> = sqlx::query_as(
        "SELECT execution_id, step_id, attempt, replica_id, started_at, ended_at
             FROM step_attempts WHERE execution_id = ANY($1) AND outcome = 'RELEASED'",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    let calls = sidecar.timed_calls();
    let detail: Vec<String> = released
        .iter()
        .map(|(e, s, attempt, replica, start, end)| {
            let mine: Vec<(i32, DateTime<Utc>)> = calls
                .iter()
                .filter(|c| c.0 == *e && c.1 == *s)
                .map(|c| (c.2, c.3))
                .collect();
            format!(
                "{e}/{s} attempt {attempt} on {replica}: claimed {start}, handed back {end:?}; \
                 service calls (attempt, arrived): {mine:?}"
            )
        })
        .collect();
    eprintln!(
        "attempts handed back by the drains: {}\n{}",
        released.len(),
        detail.join("\n")
    );
    let mut per_step: HashMap<(Uuid, String), usize> = HashMap::new();
    for (e, s, _, _) in &calls {
        *per_step.entry((*e, s.clone())).or_default() += 1;
    }
    let twice: Vec<_> = per_step.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "steps whose service call was made twice across graceful restarts: {twice:?}\n{}",
        detail.join("\n")
    );
    assert_eq!(per_step.len(), 40 * 6);
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    assert!(
        released.is_empty(),
        "handlers take 20 ms and the grace period is {GRACE_SECONDS} s, yet the drains handed \
         back {} attempt(s):\n{}",
        released.len(),
        detail.join("\n")
    );
    let _ = a.terminate().await;
    let _ = b.terminate().await;
}
