//! A schedule fires once per due time, however many replicas run and
//! whatever is killed when: two replicas of the real binary, an
//! every-second schedule for 20 s, each replica `kill -9`ed once and
//! restarted, and `/internal/schedule-poll` called on both every 100 ms;
//! every due time has exactly one execution.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use support::app::{ServiceProcess, database_url};
use support::cluster::wait_all_terminal;
use uuid::Uuid;

/// (due time, execution, error, replica) of one firing row.
type Firing = (DateTime<Utc>, Option<Uuid>, Option<String>, Uuid);

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

#[sqlx::test]
async fn two_replicas_fire_an_every_second_schedule_once_per_due_time_across_kill9(pool: PgPool) {
    let db = database_url(&pool);
    let mut a = ServiceProcess::start(&db, &[]).await;
    let mut b = ServiceProcess::start(&db, &[]).await;
    let wf = a
        .api
        .create_workflow(json!({"name": "tick", "steps": [
            {"id": "log", "action": "log", "params": {"message": "tick"}}
        ]}))
        .await;
    let (status, schedule) = b
        .api
        .post(
            "/schedules",
            json!({"workflow_id": wf, "name": "every second",
                   "schedule": {"type": "interval", "expression": "@every 1s"},
                   "params": {"source": "test"}}),
        )
        .await;
    assert_eq!(status, 201, "{schedule:#}");
    let id: Uuid = schedule["id"].as_str().unwrap().parse().unwrap();
    let t0 = Instant::now();

    // Meanwhile Bud's cron binding, much too often: /internal/schedule-poll
    // on both replicas every 100 ms (a killed one's calls fail; ignored).
    let stop = Arc::new(AtomicBool::new(false));
    let polls = {
        let (stop, apis) = (stop.clone(), [a.api.clone(), b.api.clone()]);
        tokio::spawn(async move {
            let mut answered = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for api in &apis {
                    let sent = api
                        .http
                        .post(format!("{}/internal/schedule-poll", api.base))
                        .header("dapr-api-token", api.token.clone().unwrap_or_default())
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        answered += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answered
        })
    };

    // kill -9 each replica once (never both at once), each back 2 s later.
    sleep_until(t0 + Duration::from_millis(4500)).await;
    a.kill9().await;
    let killed_a = t0.elapsed();
    sleep_until(t0 + Duration::from_millis(6500)).await;
    a.restart().await;
    sleep_until(t0 + Duration::from_millis(10_500)).await;
    b.kill9().await;
    let killed_b = t0.elapsed();
    sleep_until(t0 + Duration::from_millis(12_500)).await;
    b.restart().await;
    sleep_until(t0 + Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = polls.await.unwrap();
    assert!(answered > 100, "the polls were answered: {answered}");

    // Stop firing; a firing in progress commits (or not) before the pause,
    // which waits for the schedule's row lock.
    let (status, paused) = a
        .api
        .post(&format!("/schedules/{id}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{paused:#}");
    assert_eq!(paused["status"], "paused");

    // One execution per due time, read from the executions themselves.
    let per_due: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT parameters->'_trigger'->>'scheduled_at', count(*) FROM executions
         WHERE workflow_id = $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(wf)
    .fetch_all(&pool)
    .await
    .unwrap();
    let twice: Vec<_> = per_due.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        twice.is_empty(),
        "due times with other than one execution: {twice:?}"
    );
    assert!(per_due.iter().all(|(due, _)| due.is_some()), "{per_due:?}");

    // The firing rows and the executions are the same set.
    let firings: Vec<Firing> = sqlx::query_as(
        "SELECT due_at, execution_id, error, replica_id FROM schedule_firings
         WHERE schedule_id = $1 ORDER BY due_at",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(firings.len(), per_due.len(), "one firing row per execution");
    let executions: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, parameters->'_trigger'->>'scheduled_at' FROM executions WHERE workflow_id = $1",
    )
    .bind(wf)
    .fetch_all(&pool)
    .await
    .unwrap();
    let by_id: BTreeMap<Uuid, DateTime<Utc>> = executions
        .iter()
        .map(|(id, due)| (*id, due.parse().unwrap()))
        .collect();
    for (due, execution, error, _) in &firings {
        assert!(error.is_none(), "{due}: {error:?}");
        let execution = execution.expect("every firing started its execution");
        assert_eq!(by_id.get(&execution), Some(due), "the execution of {due}");
    }

    // On the schedule's one-second grid, in order, with (almost) none
    // skipped: while one replica was down the other fired.
    let dues: Vec<DateTime<Utc>> = firings.iter().map(|f| f.0).collect();
    let gaps: Vec<i64> = dues
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert!(gaps.iter().all(|g| g % 1000 == 0 && *g > 0), "{gaps:?}");
    let skipped: i64 = gaps.iter().map(|g| g / 1000 - 1).sum();
    let replicas: HashSet<Uuid> = firings.iter().map(|f| f.3).collect();
    eprintln!(
        "{} due times fired by {} replica processes, {skipped} skipped; a killed at {killed_a:?}, b at {killed_b:?}",
        dues.len(),
        replicas.len()
    );
    assert!(dues.len() >= 15, "fired {} due times in 20 s", dues.len());
    assert!(skipped <= 2, "skipped {skipped} due times: {gaps:?}");
    assert!(replicas.len() >= 2, "the survivors fired: {replicas:?}");

    let (_, schedule) = a.api.get(&format!("/schedules/{id}")).await;
    assert_eq!(schedule["run_count"], json!(dues.len()), "{schedule:#}");
    assert_eq!(schedule["failure_count"], 0);

    // And every run finishes.
    let ids: Vec<Uuid> = by_id.keys().copied().collect();
    wait_all_terminal(&pool, &ids, Duration::from_secs(20)).await;
    let completed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM executions WHERE workflow_id = $1 AND status = 'COMPLETED'",
    )
    .bind(wf)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(completed as usize, ids.len());
}
