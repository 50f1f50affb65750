//! Two replicas of the real binary on one database share the work: every
//! step runs exactly once, on one replica or the other, never both.

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

/// start -> (a, b, call, c) -> join: a fan-out of log steps plus one quick
/// service call (30 ms, so handlers of both replicas are in flight together
/// and the stand-in sees any step run twice at once).
fn fan_out_dag(name: &str) -> Value {
    json!({"name": name, "steps": [
        {"id": "start", "action": "log", "params": {"message": "start"}},
        {"id": "a", "action": "log", "params": {"message": "a"}, "depends_on": ["start"]},
        {"id": "b", "action": "log", "params": {"message": "b"}, "depends_on": ["start"]},
        {"id": "call", "action": "invoke_service",
         "params": {"app_id": "slowapp", "method_path": "/sleep/30", "http_method": "POST"},
         "depends_on": ["start"]},
        {"id": "c", "action": "log", "params": {"message": "c"}, "depends_on": ["start"]},
        {"id": "join", "action": "log", "params": {"message": "join"}, "depends_on": ["a", "b", "call", "c"]}
    ]})
}
const FAN_OUT_STEPS: usize = 6;

#[sqlx::test]
async fn two_replicas_share_200_executions_and_run_each_step_once(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let overrides = [("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())];
    let mut first = ServiceProcess::start(&db, &overrides).await;
    let mut second = ServiceProcess::start(&db, &overrides).await;
    let ids = [replica_id(&first.api).await, replica_id(&second.api).await];
    assert_ne!(ids[0], ids[1], "each process has its own replica id");
    let wf = first.api.create_workflow(fan_out_dag("replicas")).await;

    // 200 executions, submitted alternately to both, 8 requests at a time.
    let mut executions = Vec::with_capacity(200);
    let mut batch = Vec::new();
    for i in 0..200 {
        let api = if i % 2 == 0 {
            first.api.clone()
        } else {
            second.api.clone()
        };
        batch.push(tokio::spawn(
            async move { api.execute(wf, json!({})).await },
        ));
        if batch.len() == 8 {
            for h in batch.drain(..) {
                executions.push(h.await.unwrap());
            }
        }
    }
    for h in batch {
        executions.push(h.await.unwrap());
    }
    let submitted = t0.elapsed();
    wait_all_terminal(&pool, &executions, Duration::from_secs(45)).await;
    let finished = t0.elapsed();

    let history = check_history(&pool, &executions, FAN_OUT_STEPS).await;
    eprintln!(
        "submitted in {submitted:?}, all finished at {finished:?}; history: {history:?}; \
         sidecar calls {}",
        sidecar.calls().len()
    );
    // Exactly once: one attempt per step, nothing retried or released.
    let per_step: Vec<(Uuid, String, i32, i64)> = sqlx::query_as(
        "SELECT s.execution_id, s.step_id, s.attempt,
                (SELECT count(*) FROM step_attempts a
                  WHERE a.execution_id = s.execution_id AND a.step_id = s.step_id)
         FROM step_executions s WHERE s.execution_id = ANY($1)
           AND (s.attempt <> 1 OR s.status <> 'COMPLETED'
                OR (SELECT count(*) FROM step_attempts a
                     WHERE a.execution_id = s.execution_id AND a.step_id = s.step_id) <> 1)",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        per_step.is_empty(),
        "steps not run exactly once: {:?}",
        &per_step[..per_step.len().min(20)]
    );
    assert_eq!(
        history.outcomes.get("COMPLETED"),
        Some(&(200 * FAN_OUT_STEPS))
    );
    // Both replicas did work, and no one else did.
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(
        history.replicas, expected,
        "attempts per replica: {:?}",
        history.per_replica
    );
    for id in ids {
        let n = history.per_replica[&id];
        assert!(
            n >= 50,
            "replica {id} ran only {n} of {} steps",
            200 * FAN_OUT_STEPS
        );
    }
    // The service calls: one per execution, never two of a step at once.
    let calls = sidecar.calls();
    assert_eq!(calls.len(), 200, "one call per execution");
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());

    let a = first.terminate().await;
    let b = second.terminate().await;
    assert!(a.success() && b.success(), "exit statuses {a:?} {b:?}");
    eprintln!("total {:?}", t0.elapsed());
}

/// All 200 executions go to one replica whose handler slots are few
/// (MAX_CONCURRENT_STEPS=4 on both), so the steps it cannot take itself
/// are left claimable and the other replica must pick them up (NOTIFY or
/// its poll) — real sharing within executions, not only between them.
#[sqlx::test]
async fn a_busy_replica_s_overflow_is_claimed_by_the_other(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let overrides = [
        ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
        ("MAX_CONCURRENT_STEPS", "4"),
    ];
    let mut first = ServiceProcess::start(&db, &overrides).await;
    let mut second = ServiceProcess::start(&db, &overrides).await;
    let ids = [replica_id(&first.api).await, replica_id(&second.api).await];
    let wf = first.api.create_workflow(fan_out_dag("overflow")).await;

    let executions = submit(&first.api, wf, 200).await;
    let submitted = t0.elapsed();
    wait_all_terminal(&pool, &executions, Duration::from_secs(50)).await;
    let finished = t0.elapsed();

    let history = check_history(&pool, &executions, FAN_OUT_STEPS).await;
    let mixed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT execution_id FROM step_attempts
                               WHERE execution_id = ANY($1)
                               GROUP BY execution_id HAVING count(DISTINCT replica_id) > 1) m",
    )
    .bind(&executions)
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!(
        "submitted in {submitted:?}, all finished at {finished:?}; executions run by both: {mixed}; \
         history: {history:?}"
    );
    assert_eq!(history.retried_steps, 0, "no step needed a second attempt");
    assert_eq!(
        history.outcomes.get("COMPLETED"),
        Some(&(200 * FAN_OUT_STEPS))
    );
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(history.replicas, expected, "{:?}", history.per_replica);
    let second_share = history.per_replica[&ids[1]];
    assert!(
        second_share >= 100,
        "the idle replica took only {second_share} steps of the busy one's overflow"
    );
    assert!(mixed > 0, "no execution had steps on both replicas");
    assert_eq!(sidecar.calls().len(), 200);
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());

    let a = first.terminate().await;
    let b = second.terminate().await;
    assert!(a.success() && b.success(), "exit statuses {a:?} {b:?}");
    eprintln!("total {:?}", t0.elapsed());
}

fn signal(process: &ServiceProcess, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(process.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig}");
}

/// Handlers that run longer than the lease (4 s against 2 s) on two busy
/// replicas keep their lease by renewing it: no step is reclaimed or run a
/// second time.
#[sqlx::test]
async fn handlers_longer_than_the_lease_keep_it(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let overrides = [("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())];
    let mut first = ServiceProcess::start(&db, &overrides).await;
    let mut second = ServiceProcess::start(&db, &overrides).await;
    let long = first
        .api
        .create_workflow(json!({"name": "long", "steps": [
            {"id": "start", "action": "log"},
            {"id": "slow", "action": "invoke_service",
             "params": {"app_id": "slowapp", "method_path": "/sleep/4000", "http_method": "POST"},
             "depends_on": ["start"]},
            {"id": "end", "action": "log", "depends_on": ["slow"]}
        ]}))
        .await;
    // Busy work next to them, so renewals compete for the CPU.
    let busy = first.api.create_workflow(fan_out_dag("busy")).await;
    let mut executions = submit(&first.api, long, 10).await;
    executions.extend(submit(&second.api, long, 10).await);
    let mut others = submit(&first.api, busy, 50).await;
    others.extend(submit(&second.api, busy, 50).await);
    wait_all_terminal(&pool, &executions, Duration::from_secs(30)).await;
    wait_all_terminal(&pool, &others, Duration::from_secs(30)).await;
    let history = check_history(&pool, &executions, 3).await;
    check_history(&pool, &others, FAN_OUT_STEPS).await;
    eprintln!("history {history:?}; total {:?}", t0.elapsed());
    assert_eq!(history.retried_steps, 0, "{:?}", history.outcomes);
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    first.terminate().await;
    second.terminate().await;
}

/// A replica frozen (SIGSTOP, as in a long GC pause or a VM stall) past its
/// lease while its handlers wait on a service: the other replica takes the
/// steps back when the lease expires and runs them again; when the frozen
/// one resumes, its late results are discarded (the attempt is the fence).
#[sqlx::test]
async fn a_replica_frozen_past_its_lease_loses_its_steps_and_late_results(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let overrides = [("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())];
    let mut frozen = ServiceProcess::start(&db, &overrides).await;
    let mut other = ServiceProcess::start(&db, &overrides).await;
    let frozen_id = replica_id(&frozen.api).await;
    let other_id = replica_id(&other.api).await;
    let wf = frozen
        .api
        .create_workflow(json!({"name": "frozen", "steps": [
            {"id": "start", "action": "log"},
            {"id": "slow", "action": "invoke_service",
             "params": {"app_id": "slowapp", "method_path": "/sleep/1500", "http_method": "POST"},
             "depends_on": ["start"]},
            {"id": "end", "action": "log", "depends_on": ["slow"]}
        ]}))
        .await;
    let executions = submit(&frozen.api, wf, 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.calls().len() < 5 {
        assert!(Instant::now() < deadline, "calls {:?}", sidecar.calls());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every call is in flight on `frozen`, which holds no transaction now.
    signal(&frozen, "STOP");
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during: Vec<(String, i32, Option<Uuid>)> = sqlx::query_as(
        "SELECT step_id, attempt, lease_owner FROM step_executions
         WHERE step_id = 'slow' AND execution_id = ANY($1)",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    signal(&frozen, "CONT");
    eprintln!(
        "frozen for {:?}; slow steps then: {during:?}",
        stopped.elapsed()
    );

    wait_all_terminal(&pool, &executions, Duration::from_secs(20)).await;
    let history = check_history(&pool, &executions, 3).await;
    eprintln!("history {history:?}; total {:?}", t0.elapsed());
    let rows: Vec<(Uuid, i32, Uuid, Option<String>)> = sqlx::query_as(
        "SELECT execution_id, attempt, replica_id, outcome FROM step_attempts
         WHERE step_id = 'slow' AND execution_id = ANY($1) ORDER BY execution_id, attempt",
    )
    .bind(&executions)
    .fetch_all(&pool)
    .await
    .unwrap();
    for e in &executions {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == *e)
            .map(|r| (r.1, r.2, r.3.clone()))
            .collect();
        assert_eq!(
            mine,
            vec![
                (1, frozen_id, Some("RELEASED".to_owned())),
                (2, other_id, Some("COMPLETED".to_owned())),
            ],
            "{e}"
        );
    }
    // The recorded result is the second call's (the first was discarded).
    let calls = sidecar.timed_calls();
    assert_eq!(calls.len(), 10, "{calls:?}");
    assert!(sidecar.overlaps().is_empty(), "{:?}", sidecar.overlaps());
    let (_, metrics) = frozen.api.get("/metrics").await;
    let stale = metrics
        .as_str()
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("stale") && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!("frozen replica's stale-result metrics: {stale}");
    frozen.terminate().await;
    other.terminate().await;
}

/// A replica frozen in the middle of a transaction keeps the row lock of
/// the execution it was changing. The other replicas must keep firing
/// timers and reclaiming leases of every OTHER execution meanwhile.
#[sqlx::test]
async fn a_replica_frozen_inside_a_transaction_does_not_stall_the_others_timers(pool: PgPool) {
    let t0 = Instant::now();
    let db = database_url(&pool);
    let mut frozen = ServiceProcess::start(&db, &[]).await;
    let mut other = ServiceProcess::start(&db, &[]).await;
    let frozen_id = replica_id(&frozen.api).await;
    let chain: Vec<Value> = (0..30)
        .map(|i| {
            if i == 0 {
                json!({"id": "s0", "action": "log"})
            } else {
                json!({"id": format!("s{i}"), "action": "log", "depends_on": [format!("s{}", i - 1)]})
            }
        })
        .collect();
    let busy = frozen
        .api
        .create_workflow(json!({"name": "chain", "steps": chain}))
        .await;
    let timers = frozen
        .api
        .create_workflow(json!({"name": "timers", "steps": [
            {"id": "wait", "action": "wait_until", "params": {"duration_seconds": 3}},
            {"id": "after", "action": "log", "depends_on": ["wait"]}
        ]}))
        .await;
    let chains = submit(&frozen.api, busy, 40).await;

    // Freeze `frozen` until it is caught holding the lock of an execution
    // whose running step it leases (a transition in progress).
    let mut locked_execution = None;
    for _ in 0..40 {
        signal(&frozen, "STOP");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let leased: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT execution_id FROM step_executions
             WHERE status = 'RUNNING' AND NOT awaiting_event AND lease_owner = $1",
        )
        .bind(frozen_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        for e in leased {
            let mut tx = pool.begin().await.unwrap();
            let free: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM executions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
            )
            .bind(e)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
            if free.is_none() {
                locked_execution = Some(e);
                break;
            }
        }
        if locked_execution.is_some() {
            break;
        }
        signal(&frozen, "CONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(locked) = locked_execution else {
        signal(&frozen, "CONT");
        panic!("never caught the replica inside a transaction");
    };
    let frozen_at = Instant::now();
    // Timers on the healthy replica, due in 3 s: after the frozen replica's
    // leases (2 s) have expired, so every sweep now also wants `locked`.
    let waits = submit(&other.api, timers, 5).await;
    let fired_in = {
        let deadline = Instant::now() + Duration::from_secs(7);
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM executions WHERE id = ANY($1) AND status = 'RUNNING'",
            )
            .bind(&waits)
            .fetch_one(&pool)
            .await
            .unwrap();
            if open == 0 {
                break Some(frozen_at.elapsed());
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // Who waits on whom: (pid, state, wait event, blocked by, query).
    let blocked: Vec<(i32, String, Option<String>, Vec<i32>, Option<String>)> = sqlx::query_as(
        "SELECT pid, state, wait_event_type, pg_blocking_pids(pid), left(query, 60) FROM pg_stat_activity
         WHERE datname = current_database() AND (wait_event_type = 'Lock' OR state = 'idle in transaction')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    signal(&frozen, "CONT");
    eprintln!(
        "froze holding execution {locked}; the other replica's 3 s timers finished after {fired_in:?} \
         while it was frozen; sessions then: {blocked:#?}"
    );
    wait_all_terminal(&pool, &waits, Duration::from_secs(20)).await;
    wait_all_terminal(&pool, &chains, Duration::from_secs(40)).await;
    check_history(&pool, &waits, 2).await;
    check_history(&pool, &chains, 30).await;
    eprintln!("total {:?}", t0.elapsed());
    frozen.terminate().await;
    other.terminate().await;
    assert!(
        fired_in.is_some(),
        "timers of the healthy replica did not fire while another replica was frozen \
         holding one execution's lock (sessions: {blocked:?})"
    );
}
