use crate::support;

use std::time::Duration;

use serde_json::json;
use support::app::TestApp;

#[sqlx::test]
async fn a_diamond_runs_to_completion(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "diamond", "steps": [
            {"id": "a", "action": "log"},
            {"id": "b", "action": "log", "depends_on": ["a"]},
            {"id": "c", "action": "log", "depends_on": ["a"]},
            {"id": "d", "action": "log", "depends_on": ["b", "c"]}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal(ex, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let metrics = reqwest::get(format!("{}/metrics", app.api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"budpipeline_steps_finished_total{action="log",status="COMPLETED"} 4"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"budpipeline_executions_finished_total{status="COMPLETED"} 1"#));
    app.stop().await;
}

#[sqlx::test]
async fn execute_takes_an_empty_body_and_ignores_unknown_fields(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "one", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    let url = format!("{}/workflows/{wf}/execute", app.api.base);
    let empty = app
        .api
        .http
        .post(&url)
        .header("dapr-api-token", support::app::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 202);
    let (status, body) = app
        .api
        .post(
            &format!("/workflows/{wf}/execute"),
            json!({"parameters": {}, "priority": "high"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let text = app
        .api
        .http
        .post(&url)
        .header("dapr-api-token", support::app::TOKEN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
}

/// Make this test's database refuse any step outputs holding `refuse-me`,
/// as Postgres refuses a value it cannot hold (SQLSTATE class 22). The
/// engine already makes what it knows of storable (NUL characters, long
/// correlation ids): this stands for whatever else a database may refuse.
async fn refuse_outputs_marked(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'this value cannot be stored' USING ERRCODE = '22023';
         END $$;
         CREATE TRIGGER refuse_marked BEFORE UPDATE ON step_executions FOR EACH ROW
             WHEN (NEW.outputs::text LIKE '%refuse-me%') EXECUTE FUNCTION refuse_marked();",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn a_result_the_database_refuses_fails_the_step_instead_of_wedging_it(pool: sqlx::PgPool) {
    refuse_outputs_marked(&pool).await;
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "refused", "steps": [
            {"id": "a", "action": "set_output", "params": {"outputs": {"x": "refuse-me"}}}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal(ex, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let a = support::app::step(&done, "a");
    assert!(
        a["error"].as_str().unwrap().contains("could not be stored"),
        "{a:#}"
    );
    app.stop().await;
}

/// A NUL character, which jsonb cannot store, rendered by a template into a
/// built-in action's outputs: the engine replaces it (U+FFFD) as it does in
/// every outcome and in events, and the step completes.
#[sqlx::test]
async fn a_nul_character_in_a_result_is_replaced_and_the_step_completes(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let wf = app
        .api
        .create_workflow(json!({"name": "nul", "steps": [
            {"id": "a", "action": "set_output", "params": {"outputs": {"x": "{{ 'a\\u0000b' }}"}}}
        ]}))
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal(ex, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let a = support::app::step(&done, "a");
    assert_eq!(a["outputs"]["x"], "a\u{FFFD}b", "{a:#}");
    app.stop().await;
}

/// The same among thirty results recorded together: the refused one fails
/// alone, the others complete.
#[sqlx::test]
async fn a_refused_result_among_combined_ones_fails_only_its_step(pool: sqlx::PgPool) {
    refuse_outputs_marked(&pool).await;
    let app = TestApp::spawn(&pool).await;
    let mut steps = vec![json!({"id": "root", "action": "log"})];
    for i in 0..30 {
        let value = if i == 17 { "refuse-me" } else { "fine" };
        steps.push(
            json!({"id": format!("w{i}"), "action": "set_output", "depends_on": ["root"],
                          "params": {"outputs": {"x": value}}}),
        );
    }
    let wf = app
        .api
        .create_workflow(
            json!({"name": "nul-wide", "settings": {"max_parallel_steps": 30,
                                "fail_fast": false}, "steps": steps}),
        )
        .await;
    let ex = app.api.execute(wf, json!({})).await;
    let done = app.api.wait_terminal(ex, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    for i in 0..30 {
        let s = support::app::step(&done, &format!("w{i}"));
        if i == 17 {
            assert_eq!(s["status"], "FAILED", "{s:#}");
            assert!(
                s["error"].as_str().unwrap().contains("could not be stored"),
                "{s:#}"
            );
        } else {
            assert_eq!(s["status"], "COMPLETED", "{s:#}");
            assert_eq!(s["outputs"]["x"], "fine");
        }
    }
    app.stop().await;
}
