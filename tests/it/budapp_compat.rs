//! The calls budapp makes on the Python budpipeline, made the way its client
//! (`services/budapp/budapp/workflow_ops/budpipeline_service.py`) makes them,
//! against this service: each request as budapp builds it (headers
//! included), and assertions on exactly the fields budapp and budadmin read
//! (`useBudPipeline.ts`: `execution_id || id`, `workflow_name ||
//! pipeline_definition.name`, `pagination.total_count`, …). Errors must
//! carry their message where budapp's `invoke_service` looks for it.

use crate::support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, TOKEN, TestApp};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
const ALICE: &str = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e";
const BOB: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";

/// One call as budapp's `DaprService.invoke_service` makes it: JSON body,
/// the app token, and optional headers; returns the status and JSON body.
async fn call(
    api: &Api,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
    user: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = api
        .http
        .request(method, format!("{}/{path}", api.base))
        .header("dapr-api-token", TOKEN)
        .query(query);
    if let Some(user) = user {
        request = request.header("X-User-ID", user);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The message budapp's `invoke_service` builds from an error body.
fn budapp_message(body: &Value) -> String {
    match &body["detail"] {
        Value::Object(detail) => {
            let base = detail
                .get("message")
                .or_else(|| detail.get("error"))
                .and_then(Value::as_str);
            let errors = detail.get("errors").and_then(Value::as_array).map(|e| {
                e.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            [base.map(str::to_owned), errors]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn dag(name: &str) -> Value {
    json!({
        "name": name,
        "parameters": [{"name": "who", "type": "string", "required": false, "default": "world"}],
        "steps": [
            {"id": "hello", "name": "Say hello", "action": "log",
             "params": {"message": "hello {{ params.who }}"}},
            {"id": "shape", "name": "Shape", "action": "set_output", "depends_on": ["hello"],
             "params": {"outputs": {"greeted": "{{ params.who }}"}}}
        ]
    })
}

/// budapp's `create_pipeline`.
async fn create_pipeline(
    api: &Api,
    dag: Value,
    user_id: Option<&str>,
    system_owned: bool,
    icon: Option<&str>,
) -> (StatusCode, Value) {
    let mut data =
        json!({"dag": dag, "name": null, "user_id": user_id, "system_owned": system_owned});
    if let Some(icon) = icon {
        data["icon"] = json!(icon);
    }
    call(api, Method::POST, "pipelines", &[], Some(data), None).await
}

/// budapp's `list_pipelines`: `include_system` as a lowercase string.
async fn list_pipelines(api: &Api, user: Option<&str>, include_system: bool) -> Vec<Value> {
    let flag = include_system.to_string();
    let (status, body) = call(
        api,
        Method::GET,
        "pipelines",
        &[("include_system", &flag)],
        None,
        user,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // budapp: `result if isinstance(result, list) else []`.
    body.as_array().expect("a JSON array").clone()
}

/// budapp's `execute_pipeline`.
async fn execute_pipeline(api: &Api, pipeline_id: &str, params: Value) -> (StatusCode, Value) {
    let data = json!({"workflow_id": pipeline_id, "params": params,
                      "callback_topics": ["budAppMessages"], "user_id": ALICE,
                      "initiator": ALICE, "subscriber_ids": ALICE});
    call(api, Method::POST, "executions", &[], Some(data), None).await
}

async fn wait_done(api: &Api, id: &str) -> Value {
    api.wait_terminal(id.parse().unwrap(), WAIT).await
}

#[sqlx::test]
async fn validate_answers_what_budapp_reads(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, ok) = call(
        &app.api,
        Method::POST,
        "validate",
        &[],
        Some(json!({"dag": dag("v")})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ok["valid"].as_bool(), ok["errors"].as_array().map(Vec::len)),
        (Some(true), Some(0))
    );
    assert!(ok["warnings"].is_array());
    let cyclic = json!({"name": "c", "steps": [
        {"id": "a", "name": "A", "action": "log", "params": {"message": "x"}, "depends_on": ["b"]},
        {"id": "b", "name": "B", "action": "log", "params": {"message": "x"}, "depends_on": ["a"]}]});
    let (status, bad) = call(
        &app.api,
        Method::POST,
        "validate",
        &[],
        Some(json!({"dag": cyclic})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["has_cycles"], true);
    assert!(
        bad["errors"][0].as_str().unwrap().contains("cycle"),
        "{bad}"
    );
}

#[sqlx::test]
async fn pipelines_belong_to_their_owner_and_system_ones_to_everyone(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let (status, alices) =
        create_pipeline(api, dag("alice-1"), Some(ALICE), false, Some("🚀")).await;
    assert_eq!(status, StatusCode::CREATED, "{alices}");
    for field in ["id", "name", "status", "step_count", "icon", "dag"] {
        assert!(!alices[field].is_null(), "create answers {field}: {alices}");
    }
    assert_eq!(alices["status"], "active");
    assert_eq!(alices["step_count"], 2);
    assert_eq!(alices["icon"], "🚀");
    assert_eq!(alices["user_id"], ALICE);
    let (status, _) = create_pipeline(api, dag("bob-1"), Some(BOB), false, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, system) = create_pipeline(api, dag("system-1"), None, true, None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(system["system_owned"], true);

    let names = |rows: &[Value]| -> Vec<String> {
        let mut n: Vec<String> = rows
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&list_pipelines(api, Some(ALICE), false).await),
        ["alice-1"]
    );
    assert_eq!(
        names(&list_pipelines(api, Some(ALICE), true).await),
        ["alice-1", "system-1"]
    );
    assert_eq!(
        names(&list_pipelines(api, None, false).await),
        ["alice-1", "bob-1", "system-1"]
    );
    let row = &list_pipelines(api, Some(ALICE), false).await[0];
    for field in ["status", "step_count", "icon", "execution_count"] {
        assert!(row.get(field).is_some(), "list rows carry {field}: {row}");
    }
    assert!(row.get("last_execution_at").is_some());

    // Bob can neither read, change nor delete Alice's pipeline.
    let id = alices["id"].as_str().unwrap();
    let path = format!("pipelines/{id}");
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = call(api, method.clone(), &path, &[], None, Some(BOB)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {body}");
        assert!(
            budapp_message(&body).contains("Pipeline not found"),
            "{body}"
        );
    }
    let (status, _) = call(
        api,
        Method::PUT,
        &path,
        &[],
        Some(json!({"name": "taken"})),
        Some(BOB),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Everyone sees a system pipeline.
    let (status, _) = call(
        api,
        Method::GET,
        &format!("pipelines/{}", system["id"].as_str().unwrap()),
        &[],
        None,
        Some(BOB),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Alice can; the header's owner is the body's fallback.
    let (status, got) = call(api, Method::GET, &path, &[], None, Some(ALICE)).await;
    assert_eq!(status, StatusCode::OK);
    for field in ["dag", "name", "status", "step_count", "execution_count"] {
        assert!(!got[field].is_null(), "get answers {field}: {got}");
    }
    // Names are unique per owner: Bob may reuse Alice's, Alice may not.
    let (status, _) = create_pipeline(api, dag("alice-1"), Some(BOB), false, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, dup) = create_pipeline(api, dag("alice-1"), Some(ALICE), false, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(budapp_message(&dup).contains("already exists"), "{dup}");
    let (status, _) = call(api, Method::DELETE, &path, &[], None, Some(ALICE)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(list_pipelines(api, Some(ALICE), false).await.is_empty());
}

#[sqlx::test]
async fn a_draft_round_trip_and_a_draft_cannot_run(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    // budadmin's new-pipeline form: a name and no steps.
    let (status, draft) = create_pipeline(
        api,
        json!({"name": "my draft", "steps": []}),
        Some(ALICE),
        false,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["step_count"], 0);
    let id = draft["id"].as_str().unwrap().to_owned();
    let (status, refused) = execute_pipeline(api, &id, json!({})).await;
    assert!(status.is_client_error(), "{status} {refused}");
    assert!(budapp_message(&refused).contains("draft"), "{refused}");
    // Adding steps makes it active and runnable.
    let (status, updated) = call(
        api,
        Method::PUT,
        &format!("pipelines/{id}"),
        &[],
        Some(json!({"dag": dag("my draft"), "icon": "🧪"})),
        Some(ALICE),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"], "active");
    assert_eq!(updated["step_count"], 2);
    assert_eq!(updated["icon"], "🧪");
    assert_eq!(updated["version"], "2");
    let (status, started) = execute_pipeline(api, &id, json!({"who": "draft"})).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    wait_done(api, started["execution_id"].as_str().unwrap()).await;
    let rows = list_pipelines(api, Some(ALICE), false).await;
    assert_eq!(rows[0]["execution_count"], 1);
    assert!(rows[0]["last_execution_at"].is_string());
}

/// Executions of one pipeline started at the same moment are all counted
/// (the count is kept in shards, one per connection, added to by each insert), and the last
/// one's start is `last_execution_at`.
#[sqlx::test]
async fn a_pipeline_counts_executions_started_at_once(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let (status, created) = create_pipeline(api, dag("counted"), Some(ALICE), false, None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut started = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (api, id) = (api.clone(), id.clone());
        started.spawn(
            async move { execute_pipeline(&api, &id, json!({"who": format!("w{i}")})).await },
        );
    }
    while let Some(answer) = started.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let last: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(created_at) FROM executions WHERE workflow_id = $1")
            .bind(id.parse::<uuid::Uuid>().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    let rows = list_pipelines(api, Some(ALICE), false).await;
    assert_eq!(rows[0]["execution_count"], 24, "{}", rows[0]);
    let shown: chrono::DateTime<chrono::Utc> = rows[0]["last_execution_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shown, last);
}

#[sqlx::test]
async fn an_execution_started_through_executions_is_read_through_both_apis(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let (_, pipeline) = create_pipeline(api, dag("both"), Some(ALICE), false, None).await;
    let id = pipeline["id"].as_str().unwrap();
    let (status, started) = execute_pipeline(api, id, json!({"who": "budapp"})).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    // budapp: `object == "error"` or `detail` means a failure.
    assert!(started.get("detail").is_none() && started["object"] != "error");
    let exec = started["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(started["workflow_id"], id);
    assert_eq!(started["workflow_name"], "both");
    assert_eq!(started["params"]["user_id"], ALICE);
    let done = wait_done(api, &exec).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    // API.md's document, with the names budadmin reads.
    assert_eq!(done["workflow_name"], "both");
    assert_eq!(done["params"]["who"], "budapp");
    assert_eq!(done["initiator"], ALICE);

    // budadmin's execution view: the progress route.
    let (status, progress) = call(
        api,
        Method::GET,
        &format!("executions/{exec}/progress"),
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{progress}");
    let e = &progress["execution"];
    assert_eq!(
        e["execution_id"].as_str().or(e["id"].as_str()),
        Some(exec.as_str())
    );
    assert_eq!(e["workflow_name"], "both");
    assert_eq!(e["status"], "COMPLETED");
    assert!(e["started_at"].is_string() && e["completed_at"].is_string());
    assert_eq!(e["outputs"]["shape"]["greeted"], "budapp");
    let steps = progress["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        assert!(s["step_id"].is_string());
        assert!(s["step_name"].is_string() && s["name"].is_string());
        assert_eq!(s["status"], "COMPLETED");
        assert!(s["started_at"].is_string() && s["start_time"].is_string());
        assert!(s["completed_at"].is_string() && s["end_time"].is_string());
        assert!(s["outputs"].is_object());
    }
    assert_eq!(progress["aggregated_progress"]["overall_progress"], 100.0);
    assert_eq!(progress["aggregated_progress"]["completed_steps"], 2);
    assert!(progress["recent_events"].is_array());

    // budadmin's list: `executions[]` and `pagination`, with its field names.
    let (status, page) = call(
        api,
        Method::GET,
        "executions",
        &[("page", "1"), ("page_size", "20"), ("workflow_id", id)],
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["pagination"]["total_count"], 1);
    assert_eq!(page["pagination"]["total_pages"], 1);
    assert_eq!(page["pagination"]["page"], 1);
    assert_eq!(page["pagination"]["page_size"], 20);
    let row = &page["executions"][0];
    assert_eq!(row["execution_id"], exec.as_str());
    assert_eq!(row["workflow_name"], "both");
    assert!(row["started_at"].is_string());
    assert_eq!(row["params"]["who"], "budapp");
    assert!(row["outputs"].is_object());
    // Filters budapp passes.
    for (query, expected) in [
        (vec![("status", "COMPLETED")], 1),
        (vec![("status", "FAILED")], 0),
        (vec![("initiator", ALICE)], 1),
        (vec![("initiator", BOB)], 0),
        (vec![("start_date", "2000-01-01T00:00:00Z")], 1),
        (vec![("end_date", "2000-01-01")], 0),
    ] {
        let mut q = vec![("page", "1"), ("page_size", "5")];
        q.extend(query.iter().copied());
        let (status, page) = call(api, Method::GET, "executions", &q, None, None).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {page}");
        assert_eq!(page["pagination"]["total_count"], expected, "{query:?}");
    }
    let (status, bad) = call(
        api,
        Method::GET,
        "executions",
        &[("start_date", "yesterday")],
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(budapp_message(&bad).contains("start_date"), "{bad}");
    // The API.md list keeps its fields.
    let (_, classic) = api.get("/executions?limit=5&offset=0").await;
    assert_eq!(
        (classic["total"].as_i64(), classic["limit"].as_i64()),
        (Some(1), Some(5))
    );
}

#[sqlx::test]
async fn run_executes_a_definition_that_is_not_stored(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    // As budapp's guardrail flows call it.
    let data = json!({"pipeline_definition": dag("guardrail-onboard"), "params": {"who": "guard"},
                      "callback_topics": ["budAppMessages"], "user_id": ALICE, "initiator": ALICE,
                      "subscriber_ids": ALICE, "payload_type": "guardrail_model_onboarding",
                      "notification_workflow_id": "wf-123"});
    let (status, started) = call(api, Method::POST, "executions/run", &[], Some(data), None).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let exec = started["execution_id"].as_str().unwrap();
    let done = wait_done(api, exec).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["payload_type"], "guardrail_model_onboarding");
    assert_eq!(done["workflow_name"], "guardrail-onboard");
    // Not a pipeline anyone lists, under either API.
    assert!(list_pipelines(api, None, true).await.is_empty());
    let (_, workflows) = api.get("/workflows").await;
    assert_eq!(workflows["total"], 0);
    // Running the same definition twice is fine (no name clash).
    let data = json!({"pipeline_definition": dag("guardrail-onboard"), "params": {}});
    let (status, _) = call(api, Method::POST, "executions/run", &[], Some(data), None).await;
    assert_eq!(status, StatusCode::CREATED);

    let invalid = json!({"pipeline_definition": {"name": "x", "steps": [
        {"id": "a", "name": "A", "action": "no_such_action", "params": {}}]}});
    let (status, body) = call(
        api,
        Method::POST,
        "executions/run",
        &[],
        Some(invalid),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = budapp_message(&body);
    assert!(
        message.starts_with("Invalid pipeline definition: ") && message.contains("no_such_action"),
        "{message}"
    );
}

#[sqlx::test]
async fn bad_input_on_the_original_routes_is_a_4xx_budapp_can_show(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let unknown = Uuid::new_v4().to_string();
    let (status, body) = execute_pipeline(api, &unknown, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        budapp_message(&body).contains("Pipeline not found"),
        "{body}"
    );
    let (status, _) = execute_pipeline(api, "not-a-uuid", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A DAG with problems: each one where budapp reads it.
    let broken = json!({"name": "broken", "steps": [
        {"id": "a", "name": "A", "action": "log", "params": {}, "depends_on": ["zz"]}]});
    let (status, body) = create_pipeline(api, broken, Some(ALICE), false, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = budapp_message(&body);
    assert!(
        message.starts_with("Validation failed: ") && message.contains("zz"),
        "{message}"
    );
    // Parameters of the wrong type.
    let (_, pipeline) = create_pipeline(api, dag("typed"), Some(ALICE), false, None).await;
    let (status, body) =
        execute_pipeline(api, pipeline["id"].as_str().unwrap(), json!({"who": 5})).await;
    assert!(status.is_client_error(), "{status}");
    assert!(budapp_message(&body).contains("who"), "{body}");
    // Malformed bodies and wrong types: never a 500.
    for (path, raw) in [
        ("pipelines", "{not json"),
        ("pipelines", "[1]"),
        ("executions", "{\"workflow_id\": 5}"),
        ("executions/run", "{\"pipeline_definition\": []}"),
        ("validate", "{}"),
        ("actions/validate", "{\"params\": {}}"),
    ] {
        let response = api
            .http
            .post(format!("{}/{path}", api.base))
            .header("dapr-api-token", TOKEN)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_client_error(), "{path} {raw}: {status} {body}");
        assert!(!budapp_message(&body).is_empty(), "{path} {raw}: {body}");
    }
    let (status, _) = call(api, Method::GET, "pipelines/not-a-uuid", &[], None, None).await;
    assert!(status.is_client_error());
}

#[sqlx::test]
async fn actions_carry_the_originals_metadata_and_validate_params(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let (status, body) = call(api, Method::GET, "actions", &[], None, None).await;
    assert_eq!(status, StatusCode::OK);
    let actions = body["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    assert_eq!(body["total"], actions.len());
    let categories = body["categories"].as_array().unwrap();
    assert!(!categories.is_empty());
    let listed: usize = categories
        .iter()
        .map(|c| c["actions"].as_array().unwrap().len())
        .sum();
    assert_eq!(listed, actions.len(), "every action is in one category");
    for action in actions {
        assert!(
            matches!(
                action["executionMode"].as_str(),
                Some("sync" | "event_driven")
            ),
            "{action}"
        );
        for p in action["params"].as_array().unwrap() {
            assert!(p["label"].is_string(), "{p}");
            assert!(p.get("visibleWhen").is_some() && p.get("validation").is_some());
            if let Some(options) = p["options"].as_array() {
                assert!(
                    options
                        .iter()
                        .all(|o| o["value"].is_string() && o["label"].is_string())
                );
            }
        }
    }
    let log = actions.iter().find(|a| a["type"] == "log").unwrap();
    let level = log["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "level")
        .unwrap();
    assert_eq!(
        level["required"], false,
        "a param with a default is not required"
    );

    let validate = |body: Value| call(api, Method::POST, "actions/validate", &[], Some(body), None);
    let (status, ok) = validate(json!({"action_type": "log", "params": {"message": "hi"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ok["valid"].as_bool(), ok["errors"].as_array().map(Vec::len)),
        (Some(true), Some(0))
    );
    let (_, bad) = validate(json!({"actionType": "log", "params": {"level": "loud"}})).await;
    assert_eq!(bad["valid"], false);
    assert!(
        bad["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("params.level")),
        "{bad}"
    );
    let (status, missing) = validate(json!({"action_type": "nope", "params": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(budapp_message(&missing).contains("nope"));
}

#[sqlx::test]
async fn total_count_past_the_exact_limit_is_the_planners_estimate(pool: PgPool) {
    // The estimate query runs with the same bound filter as the list.
    let plan: Value = sqlx::query_scalar(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM executions WHERE ($1::uuid IS NULL OR workflow_id = $1)
           AND ($2::text IS NULL OR status = $2)",
    )
    .bind(None::<Uuid>)
    .bind(Some("RUNNING"))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        plan.pointer("/0/Plan/Plan Rows")
            .and_then(Value::as_f64)
            .is_some(),
        "{plan}"
    );
}

#[sqlx::test]
async fn under_bud_s_helm_chart_the_declarative_subscription_is_the_only_one(pool: PgPool) {
    let app = TestApp::spawn_with(
        &pool,
        &[
            ("PROGRAMMATIC_SUBSCRIPTION", "false"),
            ("WORKFLOW_EVENTS_TOPIC", "budpipelineEvents"),
        ],
    )
    .await;
    let (status, body) = app.api.get("/dapr/subscribe").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
    let default = TestApp::spawn(&pool).await;
    let (_, body) = default.api.get("/dapr/subscribe").await;
    assert_eq!(body[0]["route"], "/workflow-events");
}
