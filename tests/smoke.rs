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
    app.stop().await;
}
