//! Helpers for the process-level tests (`crash.rs`, `replicas.rs`,
//! `shutdown.rs`) that run the real binary as one or more replicas
//! ([`super::app::ServiceProcess`]) on one database:
//!
//! - [`SlowSidecar`]: a Dapr sidecar stand-in whose service calls sleep and
//!   that flags two calls of one step in flight at once;
//! - [`check_history`]: the step guarantees, checked on `step_executions`
//!   and `step_attempts` (who ran which attempt of which step, from when
//!   until when, and how it ended);
//! - waiting and looking: [`wait_all_terminal`], [`snapshot`],
//!   [`replica_id`], [`log_tail`], [`log_lines_matching`];
//! - load: [`submit`], [`try_execute`] and the DAGs [`load_dag`],
//!   [`slow_call_dag`].

#![allow(dead_code, clippy::type_complexity)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::app::{Api, TOKEN};

/// A stand-in for the Dapr sidecar whose service invocations take a while:
/// `POST /v1.0/invoke/{app}/method/sleep/{ms}` answers `200 {"slept_ms": ms}`
/// after `ms` milliseconds. It records, per `(execution_id, step_id)` (from
/// the `idempotency-key` header `{execution_id}:{step_id}:{attempt}`), how
/// many calls are in flight at once, so two executors of one step at the
/// same time show up in [`SlowSidecar::overlaps`]. Health checks answer
/// 204, publishes 204.
#[derive(Clone, Default)]
pub(crate) struct SlowSidecar {
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
    pub(crate) async fn start() -> (Self, String) {
        let sidecar = SlowSidecar::default();
        let app = axum::Router::new()
            .fallback(sidecar_handle)
            .with_state(sidecar.clone());
        let (url, _serving) = super::serve(app, "slow sidecar").await;
        (sidecar, url)
    }

    pub(crate) fn overlaps(&self) -> Vec<String> {
        self.state.lock().unwrap().overlaps.clone()
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// (execution_id, step_id, attempt, arrived) of every call.
    pub(crate) fn timed_calls(&self) -> Vec<(Uuid, String, i32, DateTime<Utc>)> {
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
pub(crate) struct AttemptRow {
    pub execution_id: Uuid,
    pub step_id: String,
    pub attempt: i32,
    pub replica_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(dead_code)]
pub(crate) struct StepState {
    pub execution_id: Uuid,
    pub step_id: String,
    pub status: String,
    pub attempt: i32,
    pub failures: i32,
    pub lease_owner: Option<Uuid>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What the database says about a finished load.
#[derive(Debug, Default)]
#[allow(dead_code)]
pub(crate) struct History {
    /// Attempts that did not end COMPLETED (RELEASED by a drain or by the
    /// sweeper after a dead replica's lease expired, FAILED, ...).
    pub not_completed_attempts: usize,
    /// Steps that needed more than one attempt.
    pub retried_steps: usize,
    /// Distinct replicas that ran attempts.
    pub replicas: Vec<Uuid>,
    /// Attempts per replica.
    pub per_replica: HashMap<Uuid, usize>,
    pub outcomes: HashMap<String, usize>,
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
pub(crate) async fn check_history(
    pool: &PgPool,
    executions: &[Uuid],
    steps_per_execution: usize,
) -> History {
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
pub(crate) async fn wait_all_terminal(pool: &PgPool, executions: &[Uuid], timeout: Duration) {
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

#[derive(Debug, Default, Clone, Copy, sqlx::FromRow)]
#[allow(dead_code)]
pub(crate) struct Snapshot {
    pub executions_open: i64,
    pub executions_completed: i64,
    pub steps_completed: i64,
    pub steps_in_handler: i64,
    pub steps_waiting: i64,
    pub steps_pending: i64,
}

pub(crate) async fn snapshot(pool: &PgPool) -> Snapshot {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM executions WHERE status = 'RUNNING') AS executions_open,
           (SELECT count(*) FROM executions WHERE status = 'COMPLETED') AS executions_completed,
           (SELECT count(*) FROM step_executions WHERE status = 'COMPLETED') AS steps_completed,
           (SELECT count(*) FROM step_executions
            WHERE status = 'RUNNING' AND NOT awaiting_event) AS steps_in_handler,
           (SELECT count(*) FROM step_executions
            WHERE status = 'RUNNING' AND awaiting_event) AS steps_waiting,
           (SELECT count(*) FROM step_executions WHERE status = 'PENDING') AS steps_pending",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Submit `n` executions of `workflow` concurrently (8 at a time).
pub(crate) async fn submit(api: &Api, workflow: Uuid, n: usize) -> Vec<Uuid> {
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
pub(crate) async fn replica_id(api: &Api) -> Uuid {
    let (status, body) = api.get("/internal/status").await;
    assert!(status.is_success(), "status: {body}");
    body["replica_id"].as_str().unwrap().parse().unwrap()
}

/// The last `lines` lines of the log of the [`super::app::ServiceProcess`]
/// on `port`.
pub(crate) fn log_tail(port: u16, lines: usize) -> String {
    let path = std::env::temp_dir().join(format!("budpipeline-test-{port}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many lines of the log of the service on `port` contain `needle`.
pub(crate) fn log_lines_matching(port: u16, needle: &str) -> usize {
    let path = std::env::temp_dir().join(format!("budpipeline-test-{port}.log"));
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// POST execute without panicking: `Some(id)` on 202, `None` when the
/// request failed (refused, or reset by a kill) or got another status.
pub(crate) async fn try_execute(api: &Api, workflow: Uuid) -> Option<Uuid> {
    let resp = api
        .http
        .post(format!("{}/workflows/{workflow}/execute", api.base))
        .header("dapr-api-token", TOKEN)
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

/// log -> wait_until 1 s -> log -> log, and a parallel branch with a slow
/// service call (`slow_ms`, a handler that holds its lease while it runs)
/// then a log, joined at the end: [`LOAD_DAG_STEPS`] steps.
pub(crate) fn load_dag(name: &str, slow_ms: u64) -> Value {
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
pub(crate) const LOAD_DAG_STEPS: usize = 7;

/// `steps` log steps named `chain`, each depending on the one before
/// (`s0` -> `s1` -> ...).
pub(crate) fn chain_dag(steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            if i == 0 {
                json!({"id": "s0", "action": "log"})
            } else {
                json!({"id": format!("s{i}"), "action": "log", "depends_on": [format!("s{}", i - 1)]})
            }
        })
        .collect();
    json!({"name": "chain", "steps": steps})
}

/// start -> one service call of `call_ms` (`slow`) -> end: 3 steps.
pub(crate) fn slow_call_dag(name: &str, call_ms: u64) -> Value {
    json!({"name": name, "steps": [
        {"id": "start", "action": "log"},
        {"id": "slow", "action": "invoke_service",
         "params": {"app_id": "slowapp", "method_path": format!("/sleep/{call_ms}"), "http_method": "POST"},
         "depends_on": ["start"]},
        {"id": "end", "action": "log", "depends_on": ["slow"]}
    ]})
}
