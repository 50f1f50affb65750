//! Two replicas of the real binary on one database share the work: every
//! step runs exactly once, on one replica or the other, never both.

#![allow(clippy::type_complexity)]

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{ServiceProcess, database_url};
use support::cluster::{
    SlowSidecar, chain_dag, check_history, replica_id, slow_call_dag, submit, wait_all_terminal,
};
use uuid::Uuid;

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

/// start -> `width` service calls of `call_ms` each -> join.
fn calls_fan_out_dag(name: &str, width: usize, call_ms: u64) -> Value {
    let mut steps = vec![json!({"id": "start", "action": "log", "params": {"message": "start"}})];
    let branches: Vec<String> = (0..width).map(|i| format!("call{i}")).collect();
    steps.extend(branches.iter().map(|id| {
        json!({"id": id, "action": "invoke_service", "depends_on": ["start"],
               "params": {"app_id": "slowapp", "method_path": format!("/sleep/{call_ms}"),
                          "http_method": "POST"}})
    }));
    steps.push(json!({"id": "join", "action": "log", "params": {"message": "join"}, "depends_on": branches}));
    json!({"name": name, "steps": steps})
}

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

/// One execution: start, 40 calls, join.
const WIDE_STEPS: usize = 42;

/// One execution goes to one replica whose handler slots are few
/// (MAX_CONCURRENT_STEPS=4 on both): it fans out to 40 service calls of
/// 200 ms, more than the replica claims with its root's result (its 4
/// slots and at most 4 steps kept waiting for them), so the rest is left
/// claimable and the idle replica must pick it up (NOTIFY or its poll):
/// real sharing within an execution. (With many executions both replicas
/// claim roots and each keeps its roots' fan-outs busy: the replica that
/// records a branch's result goes on with the next branch in that slot.
/// `two_replicas_share_200_executions_and_run_each_step_once` covers
/// sharing between executions.)
#[sqlx::test]
async fn a_busy_replica_s_overflow_is_claimed_by_the_other(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    // Pure steps claimed one by one: inline, they would run in the
    // transition of the step before them, on its replica, and only the
    // service call would be left to share.
    let overrides = [
        ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
        ("MAX_CONCURRENT_STEPS", "4"),
        ("INLINE_STEPS", "false"),
    ];
    let mut first = ServiceProcess::start(&db, &overrides).await;
    let mut second = ServiceProcess::start(&db, &overrides).await;
    let ids = [replica_id(&first.api).await, replica_id(&second.api).await];
    let wf = first
        .api
        .create_workflow(calls_fan_out_dag("overflow", 40, 200))
        .await;

    let executions = submit(&first.api, wf, 1).await;
    let submitted = t0.elapsed();
    wait_all_terminal(&pool, &executions, Duration::from_secs(50)).await;
    let finished = t0.elapsed();

    let history = check_history(&pool, &executions, WIDE_STEPS).await;
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
    assert_eq!(history.outcomes.get("COMPLETED"), Some(&WIDE_STEPS));
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(history.replicas, expected, "{:?}", history.per_replica);
    let second_share = history.per_replica[&ids[1]];
    assert!(
        second_share >= 5,
        "the idle replica took only {second_share} steps of the busy one's overflow"
    );
    assert_eq!(
        mixed, 1,
        "the execution did not have steps on both replicas"
    );
    assert_eq!(sidecar.calls().len(), 40);
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
    let long = first.api.create_workflow(slow_call_dag("long", 4000)).await;
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
        .create_workflow(slow_call_dag("frozen", 1500))
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
    // One transaction a step, so that the chains keep the frozen replica
    // in and out of transactions (inline, a chain of 30 `log` steps is two).
    let mut frozen = ServiceProcess::start(&db, &[("INLINE_STEPS", "false")]).await;
    let mut other = ServiceProcess::start(&db, &[]).await;
    let frozen_id = replica_id(&frozen.api).await;
    let busy = frozen.api.create_workflow(chain_dag(30)).await;
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
