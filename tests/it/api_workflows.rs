//! The workflow definitions API (API.md "Workflows"): create, list, read,
//! update (versions), delete, validate, and durability across a restart.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::app::{ServiceProcess, TestApp, database_url};
use uuid::Uuid;

/// A valid one-step DAG named `name`.
fn dag(name: &str) -> Value {
    json!({"name": name, "steps": [{"id": "a", "action": "log", "params": {"message": "hi"}}]})
}

fn assert_rfc3339(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what} is RFC 3339 ({text}): {e}"));
    assert_eq!(
        parsed.offset().local_minus_utc(),
        0,
        "{what} is UTC: {text}"
    );
}

fn errors_of(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors is a list: {body:#}"))
        .iter()
        .map(|e| e.as_str().expect("error messages are strings").to_owned())
        .collect()
}

/// POST /workflows with `dag`, expecting a 422 DAG validation failure; the errors.
async fn rejected(app: &TestApp, dag: Value) -> Vec<String> {
    let (status, body) = app.api.post("/workflows", json!({ "dag": dag })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    assert_eq!(body["detail"], "DAG validation failed", "{body:#}");
    let errors = errors_of(&body);
    assert!(!errors.is_empty(), "{body:#}");
    errors
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.api.get(&format!("/workflows{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

fn names(list: &Value) -> Vec<String> {
    list["workflows"]
        .as_array()
        .unwrap_or_else(|| panic!("workflows is a list: {list:#}"))
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn create_returns_the_workflow_object(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let document = json!({
        "name": "deploy-and-check",
        "description": "two steps",
        "parameters": [{"name": "who", "type": "string", "default": "world"}],
        "steps": [
            {"id": "a", "action": "log", "params": {"message": "hello {{ params.who }}"}},
            {"id": "b", "action": "log", "depends_on": ["a"]}
        ]
    });
    let (status, body) = app
        .api
        .post(
            "/workflows",
            json!({"dag": document, "name": "custom-name", "created_by": "alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let id: Uuid = body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("id is a UUID");
    assert_eq!(body["id"].as_str().unwrap(), id.hyphenated().to_string());
    assert_eq!(body["name"], "custom-name");
    assert_eq!(body["version"], 1);
    assert_eq!(body["status"], "active");
    assert_eq!(body["created_by"], "alice");
    assert_eq!(body["step_count"], 2);
    assert_rfc3339(&body["created_at"], "created_at");
    assert_rfc3339(&body["updated_at"], "updated_at");
    assert_eq!(body["dag"]["name"], "deploy-and-check");
    assert_eq!(body["dag"]["steps"][0]["id"], "a");
    assert_eq!(body["dag"]["steps"][1]["depends_on"], json!(["a"]));

    // GET answers the same object.
    let (status, got) = app.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{got:#}");
    for field in [
        "id",
        "name",
        "version",
        "status",
        "created_by",
        "created_at",
        "updated_at",
        "step_count",
        "dag",
    ] {
        assert_eq!(got[field], body[field], "field {field}: {got:#}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn name_defaults_to_the_dag_name(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app
        .api
        .post("/workflows", json!({"dag": dag("from-dag")}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_eq!(body["name"], "from-dag");
    assert_eq!(body["created_by"], Value::Null);
    assert_eq!(body["step_count"], 1);
    app.stop().await;
}

#[sqlx::test]
async fn duplicate_name_and_owner_is_a_conflict(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let post = |body: Value| {
        let api = app.api.clone();
        async move { api.post("/workflows", body).await }
    };

    // Two without created_by collide.
    let (status, body) = post(json!({"dag": dag("dup")})).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let (status, body) = post(json!({"dag": dag("dup")})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(body["detail"].as_str().unwrap().contains("dup"), "{body:#}");

    // Same name, an owner: a different value, allowed once.
    let (status, body) = post(json!({"dag": dag("dup"), "created_by": "alice"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let (status, body) = post(json!({"dag": dag("dup"), "created_by": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let (status, body) = post(json!({"dag": dag("dup"), "created_by": "alice"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(body["detail"].is_string(), "{body:#}");

    // The explicit name is what counts, not dag.name.
    let (status, body) =
        post(json!({"dag": dag("other"), "name": "dup", "created_by": "bob"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");

    assert_eq!(list(&app, "").await["total"], 3);
    app.stop().await;
}

#[sqlx::test]
async fn a_deleted_workflows_name_can_be_reused(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let first = app.api.create_workflow(dag("again")).await;
    let (status, body) = app
        .api
        .call(Method::DELETE, &format!("/workflows/{first}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:#}");
    let (status, body) = app
        .api
        .post("/workflows", json!({"dag": dag("again")}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    assert_ne!(body["id"].as_str().unwrap(), first.to_string());
    assert_eq!(body["version"], 1);
    app.stop().await;
}

#[sqlx::test]
async fn empty_steps_are_rejected(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let errors = rejected(&app, json!({"name": "empty", "steps": []})).await;
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("steps") && e.contains("at least one step")),
        "{errors:?}"
    );
    let errors = rejected(&app, json!({"name": "none"})).await;
    assert!(errors.iter().any(|e| e.starts_with("steps")), "{errors:?}");
    assert_eq!(list(&app, "").await["total"], 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_cycle_is_rejected_with_its_path(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let errors = rejected(
        &app,
        json!({"name": "cyclic", "steps": [
            {"id": "a", "action": "log", "depends_on": ["b"]},
            {"id": "b", "action": "log", "depends_on": ["a"]}
        ]}),
    )
    .await;
    let cycle = errors
        .iter()
        .find(|e| e.contains("cycle"))
        .unwrap_or_else(|| panic!("a cycle message: {errors:?}"));
    assert!(cycle.starts_with("steps"), "{cycle}");
    assert!(
        cycle.contains("a -> b -> a") || cycle.contains("b -> a -> b"),
        "{cycle}"
    );

    // A longer one names every step on it.
    let errors = rejected(
        &app,
        json!({"name": "cyclic3", "steps": [
            {"id": "start", "action": "log"},
            {"id": "x", "action": "log", "depends_on": ["start", "z"]},
            {"id": "y", "action": "log", "depends_on": ["x"]},
            {"id": "z", "action": "log", "depends_on": ["y"]}
        ]}),
    )
    .await;
    let cycle = errors.iter().find(|e| e.contains("cycle")).expect("cycle");
    assert!(
        [
            "x -> z -> y -> x",
            "x -> y -> z -> x",
            "y -> z -> x -> y",
            "y -> x -> z -> y",
            "z -> x -> y -> z",
            "z -> y -> x -> z"
        ]
        .iter()
        .any(|p| cycle.contains(p)),
        "{cycle}"
    );
    assert!(!cycle.contains("start"), "{cycle}");
    app.stop().await;
}

#[sqlx::test]
async fn unknown_dependency_action_and_parameter_are_reported_together(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let errors = rejected(
        &app,
        json!({"name": "broken", "steps": [
            {"id": "deploy", "action": "log", "depends_on": ["ghost"]},
            {"id": "mystery", "action": "no_such_action"},
            {"id": "talk", "action": "log", "params": {"message": "hi {{ params.nobody }}"}}
        ]}),
    )
    .await;
    assert!(errors.len() >= 3, "all problems at once: {errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("steps.deploy.depends_on") && e.contains("ghost")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("steps.mystery") && e.contains("no_such_action")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("steps.talk") && e.contains("nobody")),
        "{errors:?}"
    );
    // Every message starts with the path it is about.
    for e in &errors {
        assert!(e.starts_with("steps"), "{e}");
    }
    assert_eq!(list(&app, "").await["total"], 0, "nothing was stored");
    app.stop().await;
}

#[sqlx::test]
async fn list_pages_newest_first_and_filters_by_owner(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    for i in 0..5 {
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        let (status, body) = app
            .api
            .post(
                "/workflows",
                json!({"dag": dag(&format!("wf{i}")), "created_by": owner}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body:#}");
    }

    let all = list(&app, "").await;
    assert_eq!(all["total"], 5);
    assert_eq!(all["offset"], 0);
    assert!(all["limit"].as_i64().unwrap() >= 5, "{all:#}");
    assert_eq!(names(&all), ["wf4", "wf3", "wf2", "wf1", "wf0"]);

    let page = list(&app, "?limit=2&offset=1").await;
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    assert_eq!(names(&page), ["wf3", "wf2"]);

    let tail = list(&app, "?limit=2&offset=4").await;
    assert_eq!(names(&tail), ["wf0"]);
    let past = list(&app, "?limit=2&offset=10").await;
    assert_eq!(names(&past), Vec::<String>::new());
    assert_eq!(past["total"], 5);

    let alice = list(&app, "?created_by=alice").await;
    assert_eq!(alice["total"], 3);
    assert_eq!(names(&alice), ["wf4", "wf2", "wf0"]);
    for w in alice["workflows"].as_array().unwrap() {
        assert_eq!(w["created_by"], "alice");
        assert_eq!(w["status"], "active");
    }
    let bob = list(&app, "?created_by=bob&limit=1").await;
    assert_eq!(bob["total"], 2);
    assert_eq!(names(&bob), ["wf3"]);
    let nobody = list(&app, "?created_by=carol").await;
    assert_eq!(nobody["total"], 0);
    assert_eq!(nobody["workflows"], json!([]));

    // Bad paging is a client error with a JSON detail naming the field.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=abc", "limit"),
        ("?offset=-1", "offset"),
    ] {
        let (status, body) = app.api.get(&format!("/workflows{query}")).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {status} {body:#}"
        );
        assert!(
            body["detail"].as_str().unwrap_or("").contains(field),
            "{query}: {body:#}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn get_by_id_and_unknown_ids(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = app.api.create_workflow(dag("getme")).await;
    let (status, body) = app.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["name"], "getme");

    let unknown = Uuid::new_v4();
    let (status, body) = app.api.get(&format!("/workflows/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert!(body["detail"].is_string(), "{body:#}");
    app.stop().await;
}

#[sqlx::test]
async fn put_stores_a_new_version_and_running_executions_keep_theirs(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, created) = app
        .api
        .post(
            "/workflows",
            json!({"dag": dag("versioned"), "created_by": "alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let before = app.api.execute(id, json!({})).await;

    let v2 = json!({"name": "versioned", "steps": [
        {"id": "b", "action": "log"},
        {"id": "c", "action": "log", "depends_on": ["b"]}
    ]});
    let (status, updated) = app
        .api
        .call(
            Method::PUT,
            &format!("/workflows/{id}"),
            Some(json!({"dag": v2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated:#}");
    assert_eq!(updated["id"], id.to_string());
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["step_count"], 2);
    assert_eq!(updated["name"], "versioned");
    assert_eq!(updated["created_by"], "alice", "the owner is kept");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(updated["dag"]["steps"][0]["id"], "b");
    let t1 = chrono::DateTime::parse_from_rfc3339(created["updated_at"].as_str().unwrap()).unwrap();
    let t2 = chrono::DateTime::parse_from_rfc3339(updated["updated_at"].as_str().unwrap()).unwrap();
    assert!(t2 >= t1, "{t1} {t2}");

    let (status, got) = app.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["version"], 2);
    assert_eq!(got["dag"]["steps"].as_array().unwrap().len(), 2);

    // The execution started before the PUT keeps version 1 and its DAG.
    let old = app.api.execution(before).await;
    assert_eq!(old["workflow_version"], 1, "{old:#}");
    let steps: Vec<&str> = old["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step_id"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["a"], "{old:#}");

    // A new execution runs version 2.
    let after = app.api.execute(id, json!({})).await;
    let new = app.api.execution(after).await;
    assert_eq!(new["workflow_version"], 2, "{new:#}");
    assert_eq!(new["steps"].as_array().unwrap().len(), 2, "{new:#}");

    // And a third PUT is version 3, renaming it.
    let (status, v3) = app
        .api
        .call(
            Method::PUT,
            &format!("/workflows/{id}"),
            Some(json!({"dag": dag("versioned"), "name": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v3:#}");
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["name"], "renamed");
    app.stop().await;
}

#[sqlx::test]
async fn put_errors(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let taken = app.api.create_workflow(dag("taken")).await;
    let id = app.api.create_workflow(dag("mine")).await;
    let put = |target: Uuid, body: Value| {
        let api = app.api.clone();
        async move {
            api.call(Method::PUT, &format!("/workflows/{target}"), Some(body))
                .await
        }
    };

    let (status, body) = put(Uuid::new_v4(), json!({"dag": dag("x")})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert!(body["detail"].is_string(), "{body:#}");

    // Renaming onto a live name of the same owner.
    let (status, body) = put(id, json!({"dag": dag("mine"), "name": "taken"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    assert!(
        body["detail"].as_str().unwrap().contains("taken"),
        "{body:#}"
    );
    let (status, body) = put(id, json!({"dag": dag("taken")})).await;
    assert_eq!(status, StatusCode::CONFLICT, "name from dag.name: {body:#}");

    // An invalid DAG.
    let (status, body) = put(id, json!({"dag": {"name": "mine", "steps": []}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    assert_eq!(body["detail"], "DAG validation failed");
    assert!(
        errors_of(&body).iter().any(|e| e.starts_with("steps")),
        "{body:#}"
    );

    // None of the failures stored a version.
    let (_, got) = app.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(got["version"], 1, "{got:#}");
    assert_eq!(got["name"], "mine");

    // A deleted workflow cannot be updated.
    let (status, _) = app
        .api
        .call(Method::DELETE, &format!("/workflows/{taken}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = put(taken, json!({"dag": dag("taken")})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    // ... and its name is free again for a rename.
    let (status, body) = put(id, json!({"dag": dag("mine"), "name": "taken"})).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["version"], 2);
    app.stop().await;
}

#[sqlx::test]
async fn delete_hides_the_workflow_but_keeps_its_executions(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let id = app.api.create_workflow(dag("doomed")).await;
    let keep = app.api.create_workflow(dag("kept")).await;
    let execution = app.api.execute(id, json!({})).await;

    let (status, body) = app
        .api
        .call(Method::DELETE, &format!("/workflows/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:#}");
    assert_eq!(body, Value::Null, "204 has no body");

    let (status, body) = app.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert!(body["detail"].is_string());

    let listed = list(&app, "").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(names(&listed), ["kept"]);
    assert_eq!(listed["workflows"][0]["id"], keep.to_string());

    let (status, body) = app
        .api
        .post(&format!("/workflows/{id}/execute"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert!(body["detail"].is_string());

    // Deleting again: already gone.
    let (status, body) = app
        .api
        .call(Method::DELETE, &format!("/workflows/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    let (status, body) = app
        .api
        .call(
            Method::DELETE,
            &format!("/workflows/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");

    // The old execution stays readable.
    let old = app.api.execution(execution).await;
    assert_eq!(old["execution_id"], execution.to_string());
    assert_eq!(old["workflow_id"], id.to_string());
    let (status, body) = app.api.get(&format!("/executions/{execution}/steps")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["steps"][0]["step_id"], "a");
    let (status, body) = app.api.get(&format!("/executions?workflow_id={id}")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["total"], 1, "{body:#}");
    app.stop().await;
}

#[sqlx::test]
async fn validate_reports_without_persisting(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;

    let (status, body) = app
        .api
        .post("/workflows/validate", json!({"dag": dag("checked")}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["valid"], true, "{body:#}");
    assert_eq!(body["errors"], json!([]));
    assert!(body["warnings"].is_array(), "{body:#}");

    let (status, body) = app
        .api
        .post(
            "/workflows/validate",
            json!({"dag": {"name": "bad", "steps": [
                {"id": "a", "action": "log", "depends_on": ["b"]},
                {"id": "b", "action": "log", "depends_on": ["a"]},
                {"id": "c", "action": "nope"}
            ]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["valid"], false);
    let errors = errors_of(&body);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("a -> b -> a") || e.contains("b -> a -> b")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("steps.c") && e.contains("nope")),
        "{errors:?}"
    );
    assert!(body["warnings"].is_array());

    // The same messages as a rejected POST /workflows.
    let (status, post) = app
        .api
        .post(
            "/workflows",
            json!({"dag": {"name": "bad", "steps": [
                {"id": "a", "action": "log", "depends_on": ["b"]},
                {"id": "b", "action": "log", "depends_on": ["a"]},
                {"id": "c", "action": "nope"}
            ]}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(errors_of(&post), errors);

    // A non-object DAG is invalid, not an error of the endpoint.
    let (status, body) = app
        .api
        .post("/workflows/validate", json!({"dag": []}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["valid"], false);
    assert!(
        errors_of(&body).iter().any(|e| e.starts_with("dag")),
        "{body:#}"
    );

    // A warning (duplicate dependency) leaves the document valid.
    let (status, body) = app
        .api
        .post(
            "/workflows/validate",
            json!({"dag": {"name": "warned", "steps": [
                {"id": "a", "action": "log"},
                {"id": "b", "action": "log", "depends_on": ["a", "a"]}
            ]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["valid"], true, "{body:#}");
    assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body:#}");

    let listed = list(&app, "").await;
    assert_eq!(listed["total"], 0, "validate persists nothing");
    assert_eq!(listed["workflows"], json!([]));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_definition_survives_a_restart(pool: sqlx::PgPool) {
    let mut service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let (status, created) = service
        .api
        .post(
            "/workflows",
            json!({"dag": dag("durable"), "created_by": "ops"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let id = created["id"].as_str().unwrap().to_owned();

    let exit = service.terminate().await;
    assert!(exit.success(), "SIGTERM exits cleanly: {exit:?}");
    service.restart().await;

    let (status, got) = service.api.get(&format!("/workflows/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{got:#}");
    assert_eq!(got, created, "the stored definition is unchanged");
    let (status, listed) = service.api.get("/workflows").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["total"], 1);
    let exit = service.terminate().await;
    assert!(exit.success(), "{exit:?}");
}
