//! Every workflow in `examples/` runs to its expected final state through
//! the command line (`budpipeline run FILE`) against the real service, so
//! the examples cannot rot. The local ones run with no Bud service at all;
//! the `examples/bud/` ones run against stand-ins for the Dapr sidecar,
//! budcluster and budsim, which answer and publish as the real services do.
//!
//! A new file in `examples/` must get a case here
//! (`every_example_has_a_test`).

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{ServiceProcess, TOKEN, database_url};
use support::budcluster::{FakeBudcluster, Reply, Route, deployment_event};
use support::cli::{Cli, wait};
use support::sidecar::FakeSidecar;

/// The examples tested below, by path.
const TESTED: &[&str] = &[
    "examples/hello.yaml",
    "examples/fan-out.yaml",
    "examples/branches.yaml",
    "examples/failure-handling.yaml",
    "examples/bud/deploy-model.yaml",
    "examples/bud/simulate.yaml",
];

#[test]
fn every_example_has_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut dirs = vec![root.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                let relative = path.strip_prefix(root).unwrap();
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    let mut tested: Vec<String> = TESTED.iter().map(|s| (*s).to_owned()).collect();
    tested.sort();
    assert_eq!(
        found, tested,
        "each example needs a test in tests/it/examples.rs"
    );
}

/// `budpipeline run FILE ARGS` against a fresh service without a sidecar;
/// returns the CLI's output and the execution as the API shows it.
async fn run_local(pool: &PgPool, file: &str, args: &[&str]) -> (support::cli::Output, Value) {
    let service = ServiceProcess::start(&database_url(pool), &[]).await;
    let cli = Cli::new(&service.api);
    let mut all = vec!["run", file];
    all.extend_from_slice(args);
    let out = cli.run(&all).await;
    let execution = service.api.execution(out.execution_id()).await;
    (out, execution)
}

fn statuses(execution: &Value) -> Vec<(String, String)> {
    execution["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[sqlx::test]
async fn hello_completes_with_its_greetings(pool: PgPool) {
    let (out, execution) = run_local(&pool, "examples/hello.yaml", &["--param", "who=Ada"]).await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        out.stdout.contains("created workflow hello"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("COMPLETED in"), "{}", out.stdout);
    assert_eq!(execution["status"], "COMPLETED");
    assert_eq!(
        execution["outputs"],
        json!({"greeting": "Hello, Ada!", "loud": "HELLO, ADA!",
               "french": "Bonjour, Ada !", "name_length": 3})
    );
    // The outputs are printed too.
    assert!(
        out.stdout.contains("\"loud\": \"HELLO, ADA!\""),
        "{}",
        out.stdout
    );
}

#[sqlx::test]
async fn fan_out_runs_its_branches_in_parallel_and_completes_after_the_timer(pool: PgPool) {
    let started = Instant::now();
    let (out, execution) = run_local(
        &pool,
        "examples/fan-out.yaml",
        &["--param", "items=[5, 3, 8]", "--param", "pause_seconds=1"],
    )
    .await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(execution["status"], "COMPLETED");
    let report = &execution["outputs"]["report"];
    assert_eq!(report["count"], 3);
    assert_eq!(report["sorted"], json!([3, 5, 8]));
    assert_eq!(report["sum"], 16);
    assert!(report["waited_until"].is_string(), "{report:#}");
    // The four first steps started before any of them finished.
    let steps = execution["steps"].as_array().unwrap();
    let first_end = steps[..4]
        .iter()
        .filter_map(|s| s["completed_at"].as_str())
        .min()
        .unwrap();
    for s in &steps[..4] {
        assert!(
            s["started_at"].as_str().unwrap() <= first_end,
            "{} started after another step ended: {execution:#}",
            s["step_id"]
        );
    }
}

#[sqlx::test]
async fn branches_takes_one_path_and_skips_the_other(pool: PgPool) {
    let (out, execution) = run_local(&pool, "examples/branches.yaml", &[]).await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(
        statuses(&execution),
        pairs(&[
            ("choose", "COMPLETED"),
            ("small_path", "SKIPPED"),
            ("large_path", "COMPLETED"),
            ("announce", "SKIPPED"),
            ("done", "COMPLETED"),
        ])
    );
    assert_eq!(
        execution["outputs"],
        json!({"path": "large", "small": "skipped", "large": "large job of size 7"})
    );
    assert!(
        out.stdout.contains("small_path  SKIPPED  (branch)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("announce  SKIPPED  (condition)"),
        "{}",
        out.stdout
    );
}

#[sqlx::test]
async fn branches_with_params_takes_the_small_path_and_announces(pool: PgPool) {
    let (out, execution) = run_local(
        &pool,
        "examples/branches.yaml",
        &["--param", "size=2", "--param", "announce=true"],
    )
    .await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(execution["outputs"]["path"], "small");
    assert_eq!(
        statuses(&execution)[3],
        ("announce".to_owned(), "COMPLETED".to_owned())
    );
}

#[sqlx::test]
async fn failure_handling_completes_despite_its_optional_failure(pool: PgPool) {
    let (out, execution) = run_local(&pool, "examples/failure-handling.yaml", &[]).await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(
        statuses(&execution),
        pairs(&[
            ("optional", "FAILED"),
            ("required", "COMPLETED"),
            ("required_strict", "SKIPPED"),
            ("report", "COMPLETED"),
        ])
    );
    assert_eq!(execution["status"], "COMPLETED");
}

#[sqlx::test]
async fn failure_handling_in_strict_mode_fails_and_exits_1(pool: PgPool) {
    let (out, execution) = run_local(
        &pool,
        "examples/failure-handling.yaml",
        &["--param", "strict=true"],
    )
    .await;
    assert_eq!(out.code(), 1, "{out:#?}");
    assert_eq!(execution["status"], "FAILED");
    assert_eq!(
        statuses(&execution)[3],
        ("report".to_owned(), "SKIPPED".to_owned())
    );
    assert!(
        out.stdout.contains(
            "error: step 'required_strict' failed: strict mode: the required step failed"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(execution["outputs"]["report"], "not reached");
}

/// The service with stand-ins for the sidecar and budcluster (which also
/// plays budsim, under the app id `budsim`).
struct BudStand {
    budcluster: FakeBudcluster,
    sidecar: FakeSidecar,
    service: ServiceProcess,
}

impl BudStand {
    async fn start(pool: &PgPool) -> Self {
        let budcluster = FakeBudcluster::start().await;
        let sidecar = FakeSidecar::start(budcluster.url()).await;
        sidecar.add_app("budsim", budcluster.url());
        let service = ServiceProcess::start(
            &database_url(pool),
            &[
                ("DAPR_HTTP_ENDPOINT", sidecar.url()),
                ("NOTIFY_TOPIC", "notifications"),
                ("SERVICE_INVOKE_TIMEOUT", "5"),
            ],
        )
        .await;
        Self {
            budcluster,
            sidecar,
            service,
        }
    }

    /// Waits until budcluster (or budsim) got a request on `route`.
    async fn requested(&self, route: Route) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.budcluster.requests_to(route).is_empty() {
            assert!(Instant::now() < deadline, "no {route:?} request came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[sqlx::test]
async fn deploy_model_waits_for_budclusters_event_then_completes_and_notifies(pool: PgPool) {
    let stand = BudStand::start(&pool).await;
    let cli = Cli::new(&stand.service.api);
    let run = cli.spawn(&[
        "run",
        "examples/bud/deploy-model.yaml",
        "--param",
        "cluster_id=5c4b3a29-1807-4f6e-9d5c-4b3a29180706",
        "--param",
        "model_id=qwen2-5-7b",
    ]);
    stand.requested(Route::Deploy).await;
    let correlation = stand.budcluster.deploy_workflow_ids()[0].clone();
    // While it waits, `executions show` says on what.
    let listed = cli.run(&["executions", "list", "--json"]).await;
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let id = listed["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = format!("waiting for event {correlation}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The request reached budcluster; the wait is recorded right after.
        let shown = cli.run(&["executions", "show", &id]).await;
        assert_eq!(shown.code(), 0, "{shown:#?}");
        if shown.stdout.contains(&waiting) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", shown.stdout);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // budcluster's completion event ends the wait.
    let (status, answer) = stand
        .sidecar
        .deliver(
            &stand.service.api.base,
            TOKEN,
            deployment_event(
                &correlation,
                "COMPLETED",
                json!({"message": "Deployment successful"}),
            ),
        )
        .await;
    assert!(status.is_success(), "{status} {answer}");
    let out = wait(run, "budpipeline run deploy-model").await;
    assert_eq!(out.code(), 0, "{out:#?}");
    let execution = stand.service.api.execution(out.execution_id()).await;
    assert_eq!(
        statuses(&execution),
        pairs(&[
            ("health", "COMPLETED"),
            ("deploy", "COMPLETED"),
            ("notify", "COMPLETED")
        ])
    );
    assert_eq!(execution["outputs"]["healthy"], true);
    assert!(
        execution["outputs"]["deployment_id"].is_string(),
        "{execution:#}"
    );
    let deploy = &stand.budcluster.requests_to(Route::Deploy)[0];
    assert_eq!(deploy.body["model_id"], "qwen2-5-7b");
    assert_eq!(deploy.body["config"], json!({"replicas": 1}));
    let note = stand
        .sidecar
        .wait_for_published(|p| p.topic == "notifications", Duration::from_secs(10))
        .await
        .expect("a notification to budnotify");
    assert!(
        note.body.to_string().contains("qwen2-5-7b runs on"),
        "{:?}",
        note.body
    );
}

#[sqlx::test]
async fn simulate_waits_for_budsims_results_and_reports_its_recommendations(pool: PgPool) {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/events/budsim_simulation_success.json").unwrap(),
    )
    .unwrap();
    let correlation = fixture["correlation_id"].as_str().unwrap();
    let stand = BudStand::start(&pool).await;
    stand.budcluster.push(
        Route::Other,
        Reply::json(
            200,
            json!({"workflow_id": correlation, "status": "PENDING"}),
        ),
    );
    let cli = Cli::new(&stand.service.api);
    let run = cli.spawn(&[
        "run",
        "examples/bud/simulate.yaml",
        "--param",
        "model_uri=Qwen/Qwen2.5-7B-Instruct",
        "--param",
        "cluster_id=5c4b3a29-1807-4f6e-9d5c-4b3a29180706",
    ]);
    stand.requested(Route::Other).await;
    let asked = &stand.budcluster.requests_to(Route::Other)[0];
    assert_eq!(asked.path, "/simulator/run");
    assert_eq!(
        asked.body["pretrained_model_uri"],
        "Qwen/Qwen2.5-7B-Instruct"
    );
    assert_eq!(asked.body["concurrency"], 10);
    // budsim's events as Dapr delivers them, the stages first, then results.
    for event in fixture["events"].as_array().unwrap() {
        let (status, answer) = stand
            .sidecar
            .deliver_raw(&stand.service.api.base, TOKEN, event)
            .await;
        assert!(status.is_success(), "{status} {answer}");
    }
    let out = wait(run, "budpipeline run simulate").await;
    assert_eq!(out.code(), 0, "{out:#?}");
    let execution = stand.service.api.execution(out.execution_id()).await;
    assert_eq!(execution["status"], "COMPLETED");
    assert_eq!(execution["outputs"]["simulation_id"], correlation);
    assert_eq!(
        execution["outputs"]["recommendations"][0]["engine_version"],
        "0.8.5"
    );
    assert!(
        out.stdout.contains("1 recommendation(s)")
            || execution.to_string().contains("1 recommendation(s)"),
        "{out:#?}"
    );
}
