//! The events Bud services really publish, replayed against the real service.
//!
//! `tests/fixtures/events/*.json` hold, in order, the events budcluster,
//! budmodel and budsim publish for one run of a workflow, built from the
//! publishers' code and delivered here the way daprd delivers them: each
//! publisher sends its flat event as its own CloudEvent, so the body is the
//! event itself with daprd's attributes beside it and no `data` (see the
//! fixtures' README). A waiting step must end only on its operation's final
//! stage, record the stages before it as progress, and republish them to the
//! flow that asked for the run (budapp's `SubscriberHandler`).

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, TOKEN, TestApp, step};
use support::budcluster::{FakeBudcluster, Reply, Route};
use support::events::{Fixture, fixture, stage_of};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
/// The callback topic budapp's guardrail flows pass, and what they route on.
const BUDAPP_TOPIC: &str = "budAppMessages";
const BUDAPP_WORKFLOW: &str = "7d3f0c1e-budapp-guardrail-workflow";

/// A Bud service stand-in (the budcluster one serves any app's routes), a
/// sidecar in front of it, and the service.
struct Stand {
    callee: FakeBudcluster,
    sidecar: FakeSidecar,
    app: TestApp,
}

impl Stand {
    async fn start(pool: &PgPool, env: &[(&str, &str)]) -> Self {
        let callee = FakeBudcluster::start().await;
        let sidecar = FakeSidecar::start(callee.url()).await;
        sidecar.add_app("budmodel", callee.url());
        sidecar.add_app("budsim", callee.url());
        let mut vars: Vec<(&str, &str)> = vec![("DAPR_HTTP_ENDPOINT", sidecar.url())];
        vars.extend_from_slice(env);
        let app = TestApp::spawn_with(pool, &vars).await;
        Self {
            callee,
            sidecar,
            app,
        }
    }

    fn api(&self) -> &Api {
        &self.app.api
    }

    /// Deliver as daprd does for a publisher's own CloudEvent; the answer's
    /// `outcome` (applied, ignored, duplicate, stale, kept).
    async fn deliver(&self, event: &Value) -> String {
        self.sidecar
            .deliver_accepted(&self.app.api.base, TOKEN, event)
            .await
    }

    /// Start `dag` with the routing budapp's guardrail flows send, and wait
    /// until step `waiting` waits for its event.
    async fn start_waiting(&self, dag: Value, waiting: &str) -> Uuid {
        let api = self.api();
        let wf = api.create_workflow(dag).await;
        let exec = api
            .execute(
                wf,
                json!({"callback_topics": [BUDAPP_TOPIC],
                       "payload_type": "guardrail_deployment",
                       "notification_workflow_id": BUDAPP_WORKFLOW}),
            )
            .await;
        api.wait_until(exec, WAIT, |e| {
            let s = step(e, waiting);
            s["status"] == "RUNNING" && s["awaiting_event"] == true
        })
        .await;
        exec
    }
}

/// `deploy` (deploy_model) then `announce` (log); no DAG outputs, so the
/// execution's outputs are `{step_id: outputs}` (what budapp reads).
fn deploy_dag() -> Value {
    json!({
        "name": "guardrail-deploy",
        "steps": [
            {"id": "deploy", "name": "Deploy model", "action": "deploy_model",
             "params": {"cluster_id": "c-1", "model_id": "m-1"}},
            {"id": "announce", "name": "Announce", "action": "log", "depends_on": ["deploy"],
             "params": {"message": "deployed to {{ steps.deploy.outputs.namespace }}"}}
        ]
    })
}

/// One `invoke_service` step that waits on the callee's `workflow_id`.
fn invoke_dag(app_id: &str, path: &str) -> Value {
    json!({
        "name": format!("wait-for-{app_id}"),
        "steps": [
            {"id": "run", "name": "Run", "action": "invoke_service",
             "params": {"app_id": app_id, "method_path": path, "data": {"x": 1},
                        "await_event": {"correlation_field": "workflow_id"}}}
        ]
    })
}

async fn waiting_step(api: &Api, exec: Uuid, id: &str) -> Value {
    let e = api.execution(exec).await;
    let s = step(&e, id).clone();
    assert_eq!(
        (s["status"].as_str(), s["awaiting_event"].as_bool()),
        (Some("RUNNING"), Some(true)),
        "step {id} should still wait: {s:#}"
    );
    s
}

#[sqlx::test]
async fn budclusters_deploy_ends_the_wait_only_on_results(pool: PgPool) {
    let f = fixture("budcluster_deploy_success");
    let stand = Stand::start(&pool, &[]).await;
    stand.callee.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": f.correlation_id, "deployment_id": "dep-1"}),
    );
    let exec = stand.start_waiting(deploy_dag(), "deploy").await;
    let (last, before) = f.events.split_last().unwrap();
    assert!(
        before
            .iter()
            .any(|e| stage_of(e) == "transfer_model_to_cluster"
                && e["payload"]["content"]["status"] == "COMPLETED"),
        "the fixture has an intermediate COMPLETED stage"
    );
    for event in before {
        stand.deliver(event).await;
        let s = waiting_step(stand.api(), exec, "deploy").await;
        if stage_of(event) == "transfer_model_to_cluster" {
            assert_eq!(s["stage"]["stage"], "transfer_model_to_cluster", "{s:#}");
            assert_eq!(s["stage"]["status"], "COMPLETED", "{s:#}");
        }
        if stage_of(event) == "eta" {
            let minutes: i64 = event["payload"]["content"]["message"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(s["stage"]["eta_minutes"], minutes, "{s:#}");
        }
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["outputs"]["deployment_id"], "dep-1");
    let result = &last["payload"]["content"]["result"];
    assert_eq!(deploy["outputs"]["namespace"], result["namespace"]);
    assert_eq!(
        step(&done, "announce")["outputs"]["message"],
        format!("deployed to {}", result["namespace"].as_str().unwrap())
    );

    // What budapp's SubscriberHandler receives on its callback topic.
    let published = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == BUDAPP_TOPIC && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("a results event for budapp");
    assert_eq!(published.body["payload"]["content"]["status"], "COMPLETED");
    assert_eq!(
        published.body["payload"]["content"]["result"]["outputs"]["deploy"]["namespace"],
        result["namespace"]
    );
    let etas: Vec<i64> = stand
        .sidecar
        .published_to(BUDAPP_TOPIC)
        .iter()
        .filter(|p| p.body["payload"]["event"] == "eta")
        .map(|p| {
            // budapp reads the minutes as int(content.message).
            p.body["payload"]["content"]["message"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let expected: Vec<i64> = before
        .iter()
        .filter(|e| stage_of(e) == "eta")
        .map(|e| {
            e["payload"]["content"]["message"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(etas, expected, "every eta is republished, in order");
    assert!(
        stand
            .sidecar
            .published_to(BUDAPP_TOPIC)
            .iter()
            .any(|p| p.body["payload"]["event"] == "progress"
                && p.body["payload"]["content"]["result"]["stage"] == "transfer_model_to_cluster"),
        "stages are republished as progress"
    );
}

#[sqlx::test]
async fn a_failed_stage_fails_the_deploy_and_the_trailing_results_changes_nothing(pool: PgPool) {
    let f = fixture("budcluster_deploy_failure");
    let stand = Stand::start(&pool, &[]).await;
    stand.callee.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": f.correlation_id, "deployment_id": "dep-2"}),
    );
    let exec = stand.start_waiting(deploy_dag(), "deploy").await;
    let failing = f
        .events
        .iter()
        .position(|e| e["payload"]["content"]["status"] == "FAILED")
        .expect("a FAILED stage");
    for event in &f.events[..failing] {
        stand.deliver(event).await;
        waiting_step(stand.api(), exec, "deploy").await;
    }
    assert_eq!(stand.deliver(&f.events[failing]).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "FAILED");
    assert_eq!(
        deploy["error"],
        f.events[failing]["payload"]["content"]["message"]
    );
    assert_eq!(step(&done, "announce")["status"], "SKIPPED");
    // budcluster's extra FAILED `results` arrives after the step stopped waiting.
    for event in &f.events[failing + 1..] {
        assert_eq!(stand.deliver(event).await, "stale");
    }
    let after = stand.api().execution(exec).await;
    assert_eq!(step(&after, "deploy")["error"], deploy["error"]);
    let failed = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == BUDAPP_TOPIC && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("a results event");
    assert_eq!(failed.body["payload"]["content"]["status"], "FAILED");
}

/// An `invoke_service` wait through a whole flow of another service:
/// returns the finished execution.
async fn replay_invoked_flow(stand: &Stand, app_id: &str, path: &str, f: &Fixture) -> Value {
    stand.callee.push(
        Route::Other,
        Reply::json(
            200,
            json!({"workflow_id": f.correlation_id, "status": "PENDING"}),
        ),
    );
    let exec = stand.start_waiting(invoke_dag(app_id, path), "run").await;
    let (last, before) = f.events.split_last().unwrap();
    for event in before {
        let outcome = stand.deliver(event).await;
        if event["object"] == "workflow_metadata" {
            // Announces the steps; nothing happened yet. Its workflow_id is
            // the publisher's own: the wait's when the caller is budsim.
            assert!(["ignored", "kept"].contains(&outcome.as_str()), "{outcome}");
        } else {
            assert_eq!(outcome, "applied", "{}", stage_of(event));
        }
        waiting_step(stand.api(), exec, "run").await;
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let invoked = stand.sidecar.invocations();
    assert!(
        invoked
            .iter()
            .any(|i| i.app_id == app_id && i.method == "POST"),
        "{invoked:?}"
    );
    done
}

#[sqlx::test]
async fn budmodels_extraction_completes_on_results_with_the_model_info(pool: PgPool) {
    let f = fixture("budmodel_extraction_success");
    let stand = Stand::start(&pool, &[]).await;
    let done = replay_invoked_flow(&stand, "budmodel", "/model-info/extract", &f).await;
    let outputs = &step(&done, "run")["outputs"];
    let result = &f.events.last().unwrap()["payload"]["content"]["result"];
    assert_eq!(outputs["model_info"], result["model_info"]);
    assert_eq!(outputs["local_path"], result["local_path"]);
    assert_eq!(outputs["correlation_id"], f.correlation_id.as_str());
}

#[sqlx::test]
async fn budsims_simulation_completes_on_results_with_its_recommendations(pool: PgPool) {
    let f = fixture("budsim_simulation_success");
    assert_eq!(
        f.events[0]["workflow_id"], f.correlation_id,
        "budsim's metadata event carries the id the step waits on"
    );
    let stand = Stand::start(&pool, &[]).await;
    let done = replay_invoked_flow(&stand, "budsim", "/simulator/run", &f).await;
    let outputs = &step(&done, "run")["outputs"];
    let result = &f.events.last().unwrap()["payload"]["content"]["result"];
    assert!(!result["recommendations"].as_array().unwrap().is_empty());
    assert_eq!(outputs["recommendations"], result["recommendations"]);
}

#[sqlx::test]
async fn the_same_events_wrapped_in_data_still_work(pool: PgPool) {
    let f = fixture("budcluster_deploy_success");
    let stand = Stand::start(&pool, &[]).await;
    stand.callee.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": f.correlation_id, "deployment_id": "dep-3"}),
    );
    let exec = stand.start_waiting(deploy_dag(), "deploy").await;
    for event in &f.events {
        let (status, body) = stand
            .sidecar
            .deliver(&stand.app.api.base, TOKEN, event.clone())
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("SUCCESS")),
            "{body}"
        );
    }
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
}

#[sqlx::test]
async fn a_redelivered_event_is_applied_once(pool: PgPool) {
    let f = fixture("budcluster_deploy_success");
    let stand = Stand::start(&pool, &[]).await;
    stand.callee.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": f.correlation_id, "deployment_id": "dep-4"}),
    );
    let exec = stand.start_waiting(deploy_dag(), "deploy").await;
    let eta = f.events.iter().find(|e| stage_of(e) == "eta").unwrap();
    assert_eq!(stand.deliver(eta).await, "applied");
    assert_eq!(stand.deliver(eta).await, "duplicate");
    let last = f.events.last().unwrap();
    assert_eq!(stand.deliver(last).await, "applied");
    assert_eq!(stand.deliver(last).await, "duplicate");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    stand
        .sidecar
        .wait_for_published(
            |p| p.topic == BUDAPP_TOPIC && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("results published");
    let etas = stand
        .sidecar
        .published_to(BUDAPP_TOPIC)
        .into_iter()
        .filter(|p| p.body["payload"]["event"] == "eta")
        .count();
    assert_eq!(etas, 1, "a redelivered eta is not republished");
}

/// The top-level keys budapp's `NotificationRequest` accepts
/// (`extra="forbid"`: any other key is a 422 that Dapr dead-letters).
const BUDAPP_ACCEPTS: &[&str] = &[
    "specversion",
    "topic",
    "pubsubname",
    "source",
    "source_topic",
    "data",
    "traceid",
    "tracestate",
    "traceparent",
    "type",
    "time",
    "debug",
    "notification_type",
    "name",
    "subscriber_ids",
    "actor",
    "topic_keys",
    "payload",
];

#[sqlx::test]
async fn published_events_reach_the_budapp_flow_that_asked(pool: PgPool) {
    let stand = Stand::start(&pool, &[("PUBLISH_FORMAT", "cloudevent")]).await;
    let wf = stand
        .api()
        .create_workflow(json!({
            "name": "guardrail-simulate",
            "steps": [
                {"id": "simulate_m1", "name": "Simulate", "action": "set_output",
                 "params": {"outputs": {"success": true, "recommendations": [{"cluster_id": "c-1"}]}}}
            ]
        }))
        .await;
    let exec = stand
        .api()
        .execute(
            wf,
            json!({"callback_topics": [BUDAPP_TOPIC], "payload_type": "guardrail_simulation",
                   "notification_workflow_id": BUDAPP_WORKFLOW}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(done["payload_type"], "guardrail_simulation");
    assert_eq!(done["notification_workflow_id"], BUDAPP_WORKFLOW);
    let results = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == BUDAPP_TOPIC && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("results published");
    let all = stand.sidecar.published_to(BUDAPP_TOPIC);
    assert!(all.len() >= 3, "started, finished, results: {all:?}");
    let events: BTreeSet<String> = all
        .iter()
        .map(|p| p.body["payload"]["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.contains("simulate_m1"), "{events:?}");
    for p in &all {
        // Sent as its own CloudEvent, so budapp sees these keys at the top.
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        for key in p.body.as_object().unwrap().keys() {
            assert!(
                BUDAPP_ACCEPTS.contains(&key.as_str()),
                "budapp refuses `{key}`"
            );
        }
        let payload = &p.body["payload"];
        // What SubscriberHandler dispatches on.
        assert_eq!(payload["type"], "guardrail_simulation");
        assert_eq!(payload["workflow_id"], BUDAPP_WORKFLOW);
        assert_eq!(payload["category"], "internal");
        assert!(payload["source"].is_string() && p.body["name"].is_string());
        assert!(payload["content"]["status"].is_string());
    }
    let result = &results.body["payload"]["content"]["result"];
    assert_eq!(result["outputs"]["simulate_m1"]["success"], true);
    assert_eq!(
        result["outputs"]["simulate_m1"]["recommendations"][0]["cluster_id"],
        "c-1"
    );
}

#[sqlx::test]
async fn without_routing_events_name_the_execution(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let wf = stand
        .api()
        .create_workflow(json!({"name": "plain", "steps": [
            {"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}}]}))
        .await;
    let exec = stand
        .api()
        .execute(wf, json!({"callback_topics": ["plainTopic"]}))
        .await;
    stand.api().wait_terminal(exec, WAIT).await;
    let results = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == "plainTopic" && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("results published");
    assert_eq!(results.body["payload"]["type"], "pipeline_execution");
    assert_eq!(results.body["payload"]["workflow_id"], exec.to_string());
    assert_eq!(results.content_type.as_deref(), Some("application/json"));
}

#[sqlx::test]
async fn routing_values_are_bounded(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let wf = stand
        .api()
        .create_workflow(json!({"name": "r", "steps": [
            {"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}}]}))
        .await;
    let path = format!("/workflows/{wf}/execute");
    for body in [
        json!({"payload_type": "x".repeat(256)}),
        json!({"notification_workflow_id": "a\u{1}b"}),
        json!({"payload_type": 5}),
    ] {
        let (status, answer) = stand.api().post(&path, body.clone()).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{body} -> {status} {answer}"
        );
    }
}
