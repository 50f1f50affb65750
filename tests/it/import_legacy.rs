//! `budpipeline import-legacy --from URL` (COMPAT.md "Moving over from the
//! original"), run as the real binary against a database holding the
//! original's final schema (tests/fixtures/legacy_schema.sql, written from
//! its nine alembic migrations) and rows as the original writes them (enum
//! member names, snapshots, subscriptions). The copy is read back through
//! the running service, then the import is run again.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use support::app::{Api, TOKEN, TestApp, database_url};
use uuid::Uuid;

const ALICE: &str = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e";
const BOB: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";

/// A database of the original's, created beside the test's own and dropped
/// at the end.
struct Legacy {
    name: String,
    url: String,
    pool: PgPool,
}

impl Legacy {
    async fn create(server: &PgPool) -> Self {
        let name = format!("legacy_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(server)
            .await
            .expect("create the original's database");
        let own = database_url(server);
        let root = own.rsplit_once('/').map(|(r, _)| r).unwrap();
        let url = format!("{root}/{name}");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("connect to the original's database");
        sqlx::raw_sql(include_str!("../fixtures/legacy_schema.sql"))
            .execute(&pool)
            .await
            .expect("the original's schema");
        Self { name, url, pool }
    }

    async fn drop(self, server: &PgPool) {
        self.pool.close().await;
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(server)
            .await
            .expect("drop the original's database");
    }

    #[allow(clippy::too_many_arguments)]
    async fn pipeline(
        &self,
        name: &str,
        status: &str,
        user: Option<&str>,
        system: bool,
        icon: Option<&str>,
        version: i32,
        dag: &Value,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let steps = dag["steps"].as_array().map_or(0, Vec::len) as i32;
        sqlx::query(
            "INSERT INTO pipeline_definition (id, version, name, dag_definition, status, user_id,
                 system_owned, icon, step_count, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8, $9, 'api',
                     now() - interval '30 days', now() - interval '2 days')",
        )
        .bind(id)
        .bind(version)
        .bind(name)
        .bind(dag)
        .bind(status)
        .bind(user)
        .bind(system)
        .bind(icon)
        .bind(steps)
        .execute(&self.pool)
        .await
        .expect("insert pipeline_definition");
        id
    }

    /// An execution as the original records one: the snapshot, the
    /// notification fields, times `days_ago`.
    #[allow(clippy::too_many_arguments)]
    async fn execution(
        &self,
        pipeline: Option<Uuid>,
        snapshot_id: &str,
        name: &str,
        dag: &Value,
        params: Value,
        status: &str,
        error_info: Option<Value>,
        outputs: Option<Value>,
        days_ago: i32,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let snapshot = json!({
            "workflow_id": snapshot_id, "workflow_name": name, "dag": dag, "params": params,
        });
        let finished = matches!(status, "COMPLETED" | "FAILED" | "INTERRUPTED");
        sqlx::query(
            "INSERT INTO pipeline_execution (id, version, pipeline_id, pipeline_definition, initiator,
                 start_time, end_time, status, progress_percentage, final_outputs, error_info,
                 subscriber_ids, payload_type, notification_workflow_id, created_at, updated_at)
             VALUES ($1, 4, $2, $3, $4,
                     now() - make_interval(days => $5) + interval '1 second',
                     CASE WHEN $6 THEN now() - make_interval(days => $5) + interval '90 seconds' END,
                     $7, CASE WHEN $7 = 'COMPLETED' THEN 100 ELSE 50 END, $8, $9, $10,
                     'pipeline_execution', $11,
                     now() - make_interval(days => $5), now() - make_interval(days => $5))",
        )
        .bind(id)
        .bind(pipeline)
        .bind(&snapshot)
        .bind(ALICE)
        .bind(days_ago)
        .bind(finished)
        .bind(status)
        .bind(outputs)
        .bind(error_info)
        .bind(ALICE)
        .bind(format!("notify-{id}"))
        .execute(&self.pool)
        .await
        .expect("insert pipeline_execution");
        id
    }

    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        execution: Uuid,
        seq: i32,
        step_id: &str,
        status: &str,
        handler: &str,
        outputs: Option<Value>,
        error: Option<&str>,
    ) {
        let ran = !matches!(status, "PENDING" | "SKIPPED");
        sqlx::query(
            "INSERT INTO step_execution (id, execution_id, step_id, step_name, status, start_time,
                 end_time, progress_percentage, outputs, error_message, sequence_number,
                 handler_type, external_workflow_id)
             VALUES ($1, $2, $3, $4, $5,
                     CASE WHEN $6 THEN now() - interval '1 day' END,
                     CASE WHEN $5 IN ('COMPLETED', 'FAILED', 'SKIPPED') THEN now() - interval '1 day' + interval '5 seconds' END,
                     CASE WHEN $5 = 'COMPLETED' THEN 100 ELSE 0 END, $7, $8, $9, $10, $11)",
        )
        .bind(Uuid::new_v4())
        .bind(execution)
        .bind(step_id)
        .bind(format!("Step {step_id}"))
        .bind(status)
        .bind(ran)
        .bind(outputs)
        .bind(error)
        .bind(seq)
        .bind(handler)
        .bind(format!("budapp-wf-{execution}-{step_id}"))
        .execute(&self.pool)
        .await
        .expect("insert step_execution");
    }

    async fn subscribe(&self, execution: Uuid, topic: &str) {
        sqlx::query(
            "INSERT INTO execution_subscription (id, execution_id, callback_topic, delivery_status)
             VALUES ($1, $2, $3, 'ACTIVE')",
        )
        .bind(Uuid::new_v4())
        .bind(execution)
        .bind(topic)
        .execute(&self.pool)
        .await
        .expect("insert execution_subscription");
    }
}

/// Two `log` steps, `b` after `a`.
fn two_steps(name: &str) -> Value {
    json!({
        "name": name,
        "version": "1.0",
        "parameters": [{"name": "model", "type": "string", "required": false, "default": "m0"}],
        "steps": [
            {"id": "a", "name": "First", "action": "log", "params": {"message": "start {{ params.model }}"}},
            {"id": "b", "name": "Second", "action": "log", "params": {"message": "done"}, "depends_on": ["a"]}
        ],
        "outputs": {"model": "{{ params.model }}"}
    })
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn import(target: &str, from: &str) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_budpipeline"))
        .args(["import-legacy", "--from", from])
        .env_clear()
        .env("DATABASE_URL", target)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run budpipeline import-legacy");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The output line about `id`.
fn line_of(run: &Run, id: Uuid) -> &str {
    run.stdout
        .lines()
        .find(|l| l.contains(&id.to_string()) && !l.starts_with("pipelines:"))
        .unwrap_or_else(|| panic!("no line about {id} in:\n{}", run.stdout))
}

async fn get(api: &Api, path: &str, user: Option<&str>) -> (StatusCode, Value) {
    let mut request = api
        .http
        .get(format!("{}{path}", api.base))
        .header("dapr-api-token", TOKEN);
    if let Some(user) = user {
        request = request.header("X-User-ID", user);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn counts(pool: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM workflows), (SELECT count(*) FROM workflow_versions),
                (SELECT count(*) FROM executions), (SELECT count(*) FROM step_executions)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// What the import reads fits the original's schema: each statement
/// prepares there, and its rows read into the import's types (the same
/// check `schema::every_statement_fits_the_schema` makes of this service's).
#[sqlx::test(migrations = false)]
async fn every_statement_fits_the_originals_schema(pool: PgPool) {
    use budpipeline::db::check;
    let legacy = Legacy::create(&pool).await;
    let mut conn = legacy.pool.acquire().await.unwrap();
    let problems = check::check(&mut conn, &check::original()).await;
    drop(conn);
    legacy.drop(&pool).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// The test database starts empty: the import migrates it.
#[sqlx::test(migrations = false)]
async fn copies_the_originals_pipelines_and_finished_executions_once(pool: PgPool) {
    let legacy = Legacy::create(&pool).await;
    let l = &legacy;

    // Pipelines as the original stores them (member names for statuses).
    let deploy_dag = two_steps("deploy");
    let deploy = l
        .pipeline(
            "Deploy model",
            "ACTIVE",
            Some(ALICE),
            false,
            Some("🚀"),
            3,
            &deploy_dag,
        )
        .await;
    let system = l
        .pipeline(
            "Guardrail checks",
            "ACTIVE",
            None,
            true,
            None,
            1,
            &two_steps("guard"),
        )
        .await;
    let draft = l
        .pipeline(
            "Work in progress",
            "DRAFT",
            Some(ALICE),
            false,
            Some("📝"),
            2,
            &json!({"name": "Work in progress", "steps": []}),
        )
        .await;
    let archived = l
        .pipeline(
            "Old flow",
            "ARCHIVED",
            Some(BOB),
            false,
            None,
            5,
            &two_steps("old"),
        )
        .await;
    let unknown_dag = json!({"name": "Add model", "steps": [
        {"id": "add", "name": "Add", "action": "model_add_v9", "params": {"model_uri": "x"}}
    ]});
    let unknown = l
        .pipeline(
            "Add model",
            "ACTIVE",
            Some(ALICE),
            false,
            None,
            1,
            &unknown_dag,
        )
        .await;
    // The original checked names in code only: two requests at once could
    // both store one name for one owner.
    let first_report = l
        .pipeline(
            "Nightly report",
            "ACTIVE",
            Some(BOB),
            false,
            None,
            1,
            &two_steps("r1"),
        )
        .await;
    let second_report = l
        .pipeline(
            "Nightly report",
            "ACTIVE",
            Some(BOB),
            false,
            None,
            1,
            &two_steps("r2"),
        )
        .await;

    // Executions.
    let deploy_id = deploy.to_string();
    let completed = l
        .execution(
            Some(deploy),
            &deploy_id,
            "Deploy model",
            &deploy_dag,
            json!({"model": "m1", "user_id": ALICE}),
            "COMPLETED",
            None,
            Some(json!({"model": "m1"})),
            10,
        )
        .await;
    l.step(
        completed,
        1,
        "a",
        "COMPLETED",
        "log",
        Some(json!({"logged": true})),
        None,
    )
    .await;
    l.step(
        completed,
        2,
        "b",
        "COMPLETED",
        "log",
        Some(json!({"logged": true})),
        None,
    )
    .await;
    l.subscribe(completed, "budappCallbacks").await;
    l.subscribe(completed, "budadminProgress").await;

    // Ran an earlier version of the pipeline (the original kept only the
    // current DAG): one step, failed.
    let earlier_dag = json!({"name": "deploy", "steps": [
        {"id": "a", "name": "First", "action": "log", "params": {"message": "v1"}}
    ]});
    let failed = l
        .execution(
            Some(deploy),
            &deploy_id,
            "Deploy model",
            &earlier_dag,
            json!({"model": "m2"}),
            "FAILED",
            Some(json!({"failed_steps": 1, "total_steps": 1})),
            None,
            20,
        )
        .await;
    l.step(
        failed,
        1,
        "a",
        "FAILED",
        "log",
        None,
        Some("model not found"),
    )
    .await;

    let interrupted = l
        .execution(
            Some(system),
            &system.to_string(),
            "Guardrail checks",
            &two_steps("guard"),
            json!({}),
            "INTERRUPTED",
            None,
            None,
            5,
        )
        .await;
    l.step(interrupted, 1, "a", "COMPLETED", "log", None, None)
        .await;
    l.step(interrupted, 2, "b", "RUNNING", "log", None, None)
        .await;

    let running = l
        .execution(
            Some(deploy),
            &deploy_id,
            "Deploy model",
            &deploy_dag,
            json!({"model": "m3"}),
            "RUNNING",
            None,
            None,
            1,
        )
        .await;
    l.step(running, 1, "a", "RUNNING", "log", None, None).await;
    l.step(running, 2, "b", "PENDING", "log", None, None).await;

    // `POST /executions/run` in the original: no pipeline.
    let ephemeral = l
        .execution(
            None,
            "ephemeral",
            "Guardrail deploy",
            &two_steps("guardrail-deploy"),
            json!({"user_id": BOB}),
            "COMPLETED",
            None,
            Some(json!({"model": "m0"})),
            3,
        )
        .await;
    l.step(ephemeral, 1, "a", "COMPLETED", "log", None, None)
        .await;
    l.step(ephemeral, 2, "b", "COMPLETED", "log", None, None)
        .await;

    // Its pipeline was deleted (the FK set pipeline_id NULL).
    let gone = Uuid::new_v4();
    let orphan = l
        .execution(
            None,
            &gone.to_string(),
            "Deleted pipeline",
            &two_steps("deleted"),
            json!({"model": "m4"}),
            "FAILED",
            Some(json!({"error": "Deployment failed"})),
            None,
            4,
        )
        .await;
    l.step(
        orphan,
        1,
        "a",
        "FAILED",
        "log",
        None,
        Some("Deployment failed"),
    )
    .await;
    l.step(
        orphan,
        2,
        "b",
        "SKIPPED",
        "log",
        None,
        Some("Workflow aborted"),
    )
    .await;

    let with_unknown_action = l
        .execution(
            Some(unknown),
            &unknown.to_string(),
            "Add model",
            &unknown_dag,
            json!({}),
            "COMPLETED",
            None,
            Some(json!({})),
            2,
        )
        .await;
    l.step(
        with_unknown_action,
        1,
        "add",
        "COMPLETED",
        "model_add_v9",
        None,
        None,
    )
    .await;

    // First run.
    let target = database_url(&pool);
    let first = import(&target, &l.url).await;
    assert_eq!(
        first.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        first.stdout,
        first.stderr
    );
    let summary = first.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "pipelines: 7 copied, 0 skipped; executions: 6 copied, 1 skipped",
        "{}",
        first.stdout
    );
    assert!(
        line_of(&first, deploy).ends_with(": copied"),
        "{}",
        first.stdout
    );
    let unknown_line = line_of(&first, unknown);
    assert!(
        unknown_line.contains("copied as a draft") && unknown_line.contains("model_add_v9"),
        "{unknown_line}"
    );
    let renamed = line_of(&first, second_report);
    assert!(
        renamed.contains("copied as \"Nightly report (imported)\"")
            && renamed.contains(&first_report.to_string()),
        "{renamed}"
    );
    let skipped = line_of(&first, running);
    assert!(
        skipped.contains("skipped: RUNNING in the original"),
        "{skipped}"
    );
    assert!(
        line_of(&first, interrupted)
            .contains("copied as FAILED (INTERRUPTED in the original; 2 steps"),
        "{}",
        first.stdout
    );
    assert!(
        line_of(&first, orphan).contains(&format!("its pipeline {gone} was deleted")),
        "{}",
        first.stdout
    );

    // Read back through the service.
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;

    let (status, all) = get(api, "/pipelines", None).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().expect("an array").clone();
    let by_id = |id: Uuid| {
        all.iter()
            .find(|p| p["id"] == id.to_string())
            .unwrap_or_else(|| panic!("pipeline {id} not listed: {all:#?}"))
            .clone()
    };
    assert_eq!(
        all.len(),
        7,
        "ephemeral definitions are not listed: {all:#?}"
    );
    let p = by_id(deploy);
    assert_eq!(p["name"], "Deploy model");
    assert_eq!(p["status"], "active");
    assert_eq!(p["version"], "3");
    assert_eq!(p["icon"], "🚀");
    assert_eq!(p["user_id"], ALICE);
    assert_eq!(p["system_owned"], false);
    assert_eq!(p["step_count"], 2);
    assert_eq!(p["execution_count"], 2, "{p:#}");
    assert_eq!(by_id(system)["system_owned"], true);
    assert_eq!(by_id(system)["user_id"], Value::Null);
    assert_eq!(by_id(draft)["status"], "draft");
    assert_eq!(by_id(draft)["icon"], "📝");
    assert_eq!(by_id(archived)["status"], "archived");
    assert_eq!(by_id(archived)["version"], "5");
    let u = by_id(unknown);
    assert_eq!(u["status"], "draft");
    assert_eq!(u["step_count"], 1);
    assert_eq!(u["dag"], unknown_dag, "kept as the original stored it");
    assert_eq!(by_id(first_report)["name"], "Nightly report");
    assert_eq!(by_id(second_report)["name"], "Nightly report (imported)");

    // Alice sees hers and, with include_system, the system pipeline.
    let (_, mine) = get(api, "/pipelines?include_system=true", Some(ALICE)).await;
    let mut ids: Vec<String> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = [deploy, system, draft, unknown]
        .iter()
        .map(Uuid::to_string)
        .collect();
    expected.sort();
    assert_eq!(ids, expected);

    // A draft cannot run until it is fixed.
    let (status, _) = api
        .post("/executions", json!({"workflow_id": unknown.to_string()}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let e = api.execution(completed).await;
    assert_eq!(e["status"], "COMPLETED");
    assert_eq!(e["workflow_id"], deploy.to_string());
    assert_eq!(e["workflow_version"], 3, "the current DAG: {e:#}");
    assert_eq!(e["workflow_name"], "Deploy model");
    assert_eq!(e["params"], json!({"model": "m1", "user_id": ALICE}));
    assert_eq!(e["outputs"], json!({"model": "m1"}));
    assert_eq!(
        e["callback_topics"],
        json!(["budappCallbacks", "budadminProgress"])
    );
    assert_eq!(e["initiator"], ALICE);
    assert_eq!(e["subscriber_ids"], ALICE);
    assert_eq!(e["payload_type"], "pipeline_execution");
    assert_eq!(e["notification_workflow_id"], format!("notify-{completed}"));
    assert_eq!(e["error"], Value::Null);
    assert!(e["started_at"].is_string() && e["completed_at"].is_string());
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["step_id"], "a");
    assert_eq!(steps[0]["name"], "Step a");
    assert_eq!(steps[0]["action"], "log");
    assert_eq!(steps[0]["status"], "COMPLETED");
    assert_eq!(steps[0]["attempt"], 1);
    assert_eq!(steps[0]["outputs"], json!({"logged": true}));
    assert_eq!(
        steps[1]["external_workflow_id"],
        format!("budapp-wf-{completed}-b")
    );

    let e = api.execution(failed).await;
    assert_eq!(e["status"], "FAILED");
    assert_eq!(e["error"], "1 of 1 steps failed");
    assert_eq!(
        e["workflow_version"], 1,
        "an earlier DAG gets an earlier version: {e:#}"
    );
    assert_eq!(e["steps"][0]["error"], "model not found");

    let (status, progress) = get(api, &format!("/executions/{interrupted}/progress"), None).await;
    assert_eq!(status, StatusCode::OK, "{progress:#}");
    assert_eq!(progress["execution"]["status"], "FAILED");
    assert!(
        progress["execution"]["error"]
            .as_str()
            .unwrap()
            .contains("INTERRUPTED"),
        "{progress:#}"
    );
    assert_eq!(progress["steps"][0]["status"], "COMPLETED");
    assert_eq!(progress["steps"][1]["status"], "CANCELLED");
    assert_eq!(progress["steps"][1]["step_name"], "Step b");

    let (status, _) = get(api, &format!("/executions/{running}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "running ones are not copied");

    let e = api.execution(ephemeral).await;
    assert_eq!(e["status"], "COMPLETED");
    assert_eq!(e["workflow_name"], "Guardrail deploy");
    let definition: (bool, Option<String>) =
        sqlx::query_as("SELECT ephemeral, created_by FROM workflows WHERE id = $1::uuid")
            .bind(e["workflow_id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(definition, (true, Some(BOB.to_owned())));

    let e = api.execution(orphan).await;
    assert_eq!(e["status"], "FAILED");
    assert_eq!(e["error"], "Deployment failed");
    assert_eq!(e["workflow_name"], "Deleted pipeline");
    assert_eq!(e["steps"][1]["status"], "SKIPPED");
    assert_eq!(e["steps"][1]["skip_reason"], "upstream_failed");

    let e = api.execution(with_unknown_action).await;
    assert_eq!(e["status"], "COMPLETED");
    assert_eq!(e["workflow_id"], unknown.to_string());
    assert_eq!(e["steps"][0]["action"], "model_add_v9");

    let (_, list) = get(api, &format!("/executions?workflow_id={deploy}"), None).await;
    assert_eq!(list["pagination"]["total_count"], 2, "{list:#}");

    // Second run: nothing is copied twice.
    let before = counts(&pool).await;
    let second = import(&target, &l.url).await;
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    assert_eq!(
        second.stdout.lines().last().unwrap_or_default(),
        "pipelines: 0 copied, 7 skipped; executions: 0 copied, 7 skipped",
        "{}",
        second.stdout
    );
    for id in [
        deploy,
        system,
        draft,
        archived,
        unknown,
        first_report,
        second_report,
        completed,
        failed,
        interrupted,
        ephemeral,
        orphan,
        with_unknown_action,
    ] {
        assert!(
            line_of(&second, id).ends_with("skipped: already imported"),
            "{}",
            second.stdout
        );
    }
    assert!(line_of(&second, running).contains("RUNNING in the original"));
    assert_eq!(counts(&pool).await, before);

    // Once the running one has finished, a third run copies just it.
    sqlx::query(
        "UPDATE pipeline_execution SET status = 'COMPLETED', end_time = now() WHERE id = $1;",
    )
    .bind(running)
    .execute(&l.pool)
    .await
    .unwrap();
    let third = import(&target, &l.url).await;
    assert_eq!(
        third.stdout.lines().last().unwrap_or_default(),
        "pipelines: 0 copied, 7 skipped; executions: 1 copied, 6 skipped",
        "{}",
        third.stdout
    );
    let e = api.execution(running).await;
    assert_eq!(e["steps"][0]["status"], "CANCELLED");
    assert_eq!(e["steps"][1]["status"], "SKIPPED");

    // A copied execution runs on this engine like its own: retrying the
    // failed one reruns its steps from the DAG it ran.
    let (status, body) = api
        .post(&format!("/executions/{orphan}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let e = api.wait_terminal(orphan, Duration::from_secs(10)).await;
    assert_eq!(e["status"], "COMPLETED", "{e:#}");

    app.stop().await;
    legacy.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn an_unreachable_or_foreign_database_stops_the_import(pool: PgPool) {
    let target = database_url(&pool);
    let root = target.rsplit_once('/').map(|(r, _)| r).unwrap();
    let run = import(
        &target,
        &format!("{root}/no_such_database_{}", Uuid::new_v4().simple()),
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("cannot connect to the original's database"),
        "{}",
        run.stderr
    );

    // A database without the original's tables (this service's own).
    let run = import(&target, &target).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("lacks the original budpipeline's tables"),
        "{}",
        run.stderr
    );
}
