//! Crash safety of the real binary: `kill -9` in the middle of a load, then a
//! restart, loses nothing and runs no step twice at the same time.
//!
//! Every check reads Postgres directly: `step_executions` for the final
//! state and `step_attempts` for the history of claims (who ran which attempt
//! of which step, from when until when, and how it ended).

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{ServiceProcess, database_url};
use support::cluster::{
    LOAD_DAG_STEPS, SlowSidecar, check_history, load_dag, log_lines_matching, log_tail, replica_id,
    snapshot, submit, try_execute, wait_all_terminal,
};
use uuid::Uuid;

#[sqlx::test]
async fn kill9_mid_flight_then_restart_completes_everything_once(pool: PgPool) {
    let t0 = Instant::now();
    let (sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let mut service = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", &sidecar_url)]).await;
    let port = service.port;
    let wf = service
        .api
        .create_workflow(load_dag("crash-mid-flight", 400))
        .await;

    // In two waves, so that the kill finds executions at every stage: the
    // pure steps run inline, so one wave's executions all move in step.
    let mut executions = submit(&service.api, wf, 25).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while snapshot(&pool).await.executions_completed == 0 {
        assert!(Instant::now() < deadline, "the first wave never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    executions.extend(submit(&service.api, wf, 25).await);
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

    let history = check_history(&pool, &executions, LOAD_DAG_STEPS).await;
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
    let wf = service
        .api
        .create_workflow(load_dag("crash-submit", 400))
        .await;

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
    let history = check_history(&pool, &recorded, LOAD_DAG_STEPS).await;
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
        .create_workflow(load_dag("crash-survivor", 400))
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
    let history = check_history(&pool, &executions, LOAD_DAG_STEPS).await;
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
