mod support;

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

#[sqlx::test]
async fn a_result_the_database_refuses_fails_the_step_instead_of_wedging_it(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    // The template renders a NUL character, which jsonb cannot store.
    let wf = app
        .api
        .create_workflow(json!({"name": "nul", "steps": [
            {"id": "a", "action": "set_output", "params": {"outputs": {"x": "{{ '\\u0000' }}"}}}
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

/// The same among thirty results recorded together: the refused one fails
/// alone, the others complete.
#[sqlx::test]
async fn a_refused_result_among_combined_ones_fails_only_its_step(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let mut steps = vec![json!({"id": "root", "action": "log"})];
    for i in 0..30 {
        let value = if i == 17 { "{{ '\\u0000' }}" } else { "fine" };
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
