//! Graceful shutdown of the real binary: SIGTERM drains (stop claiming, let
//! handlers finish within SHUTDOWN_GRACE_SECONDS, hand back what is left,
//! exit 0), so a rolling restart of every replica in the middle of a load
//! loses nothing and runs nothing twice.

#![allow(clippy::type_complexity)]

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, database_url};
use support::cluster::{
    LOAD_DAG_STEPS, SlowSidecar, check_history, load_dag, log_tail, replica_id, slow_call_dag,
    snapshot, submit, try_execute, wait_all_terminal,
};
use uuid::Uuid;

const GRACE_SECONDS: u64 = 5;
/// Exit must come within the grace period plus this.
const EXIT_MARGIN: Duration = Duration::from_secs(3);

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
        .create_workflow(slow_call_dag("long-handlers", 4000))
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
