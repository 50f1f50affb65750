//! Wake-ups between replicas: work one replica releases reaches the other
//! through `NOTIFY` at once. Its own test binary, so that its timing is not
//! measured while the lease-sensitive tests of `replicas.rs` load the
//! machine (test binaries run one after another).

mod support;

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use support::app::{ServiceProcess, database_url};
use support::cluster::{SlowSidecar, replica_id, wait_all_terminal};

/// Work one replica releases but cannot run (it has one handler slot)
/// reaches the other through `NOTIFY` at once, not at its next poll (1 s).
/// Nine executions one after another: the median delay from the root's
/// result to the idle replica's first claim must stay far below the poll
/// (without the `NOTIFY` it would be about half of it).
#[sqlx::test]
async fn released_work_wakes_the_other_replica_at_once(pool: PgPool) {
    let (_sidecar, sidecar_url) = SlowSidecar::start().await;
    let db = database_url(&pool);
    let busy = ServiceProcess::start(
        &db,
        &[
            ("DAPR_HTTP_ENDPOINT", sidecar_url.as_str()),
            ("MAX_CONCURRENT_STEPS", "1"),
        ],
    )
    .await;
    let idle = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", sidecar_url.as_str())]).await;
    let idle_id = replica_id(&idle.api).await;
    let slow = |id: &str| {
        json!({"id": id, "action": "invoke_service", "depends_on": ["root"],
               "params": {"app_id": "slowapp", "method_path": "/sleep/300", "http_method": "POST"}})
    };
    let wf = busy
        .api
        .create_workflow(json!({"name": "wake", "steps": [
            {"id": "root", "action": "log"}, slow("s1"), slow("s2"), slow("s3"), slow("s4")
        ]}))
        .await;
    let mut delays = Vec::new();
    for _ in 0..9 {
        let execution = busy.api.execute(wf, json!({})).await;
        wait_all_terminal(&pool, &[execution], Duration::from_secs(20)).await;
        let delay_ms: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM min(s.started_at) - r.ended_at)::float8 * 1000
             FROM step_attempts s, step_attempts r
             WHERE s.execution_id = $1 AND r.execution_id = $1 AND r.step_id = 'root'
               AND s.step_id <> 'root' AND s.replica_id = $2
             GROUP BY r.ended_at",
        )
        .bind(execution)
        .bind(idle_id)
        .fetch_optional(&pool)
        .await
        .unwrap();
        delays.push(delay_ms.expect("the idle replica ran some of the released steps"));
    }
    delays.sort_by(f64::total_cmp);
    let median = delays[delays.len() / 2];
    eprintln!("delays from the root's result to the idle replica's claim (ms): {delays:?}");
    assert!(
        median < 250.0,
        "the idle replica found released work after {median:.0} ms (median): woken by its poll, not NOTIFY"
    );
}
