//! The original's Bud actions against stand-ins that answer what budapp,
//! budsim and budcluster really answer (their route handlers and response
//! schemas at bud-runtime 3b8a3f9), with the events they really publish
//! (`tests/fixtures/events/`). Each test checks the exact method, path,
//! query and body an action sends, and a waiting action's whole event
//! sequence; budapp's guardrail DAGs, built as
//! `services/budapp/budapp/guardrails/services.py` builds them, validate and
//! run end to end.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, TOKEN, TestApp, step};
use support::bud::{FakeBud, Reply};
use support::events::{fixture, stage_of};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
/// The topic a Bud install subscribes budpipeline to.
const OUR_TOPIC: &str = "budpipelineEvents";
const BUDAPP_TOPIC: &str = "budAppMessages";
const USER: &str = "4b7c2f0e-9a1d-4c3b-8e5f-6a7b8c9d0e1f";
const MODEL: &str = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d";
const PROJECT: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const CLUSTER: &str = "5c4b3a29-1807-4f6e-9d5c-4b3a29180706";

/// budapp's `RetrieveWorkflowDataResponse` (`workflow_ops/services.py`
/// `_parse_workflow_step_data_response`), answered by every `*-workflow` route.
fn budapp_workflow(workflow_id: &str, status: &str) -> Value {
    json!({"object": "workflow.get", "message": "Workflow data retrieved successfully",
           "workflow_id": workflow_id, "status": status, "current_step": 1, "total_steps": 1,
           "reason": null, "workflow_steps": {}})
}

/// budapp's `ErrorResponse` as `to_http_response` sends it.
fn budapp_error(code: u16, message: &str, kind: &str) -> Reply {
    Reply::json(
        code,
        json!({"object": "error", "message": message, "type": kind, "param": null, "code": code}),
    )
}

/// budapp's `ModelDetailSuccessResponse` for `GET /models/{id}`.
fn budapp_model(id: &str, provider_type: &str) -> Value {
    json!({"object": "model.get", "message": "Successfully retrieved model",
           "model": {"id": id, "name": "Qwen2.5-7B-Instruct", "author": "Qwen",
                     "modality": {"text": {"input": true, "output": true}},
                     "source": "huggingface", "provider_type": provider_type,
                     "uri": "Qwen/Qwen2.5-7B-Instruct",
                     "local_path": "Qwen/Qwen2.5-7B-Instruct",
                     "huggingface_url": "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct",
                     "supported_endpoints": {
                         "chat": {"path": "/v1/chat/completions", "enabled": true, "label": "Chat Completions"},
                         "embedding": {"path": "/v1/embeddings", "enabled": false, "label": "Embeddings"}},
                     "created_at": "2026-03-14T10:00:00Z"},
           "scan_result": null, "eval_result": null,
           "model_tree": {"adapters_count": 0, "finetunes_count": 0, "merges_count": 0,
                          "quantizations_count": 0},
           "endpoints_count": 0})
}

/// budsim's answer to an asynchronous `/simulator/run`: budmicroframe's
/// `WorkflowMetadataResponse`.
fn budsim_started(workflow_id: &str) -> Value {
    json!({"object": "workflow_metadata", "workflow_id": workflow_id,
           "workflow_name": "run_simulation", "status": "PENDING", "eta": 1,
           "steps": [{"id": "validation", "title": "Identifying compatibles clusters",
                      "description": "Ensure all requirements and runtime compatibility are met"}]})
}

/// budsim's answer to a `debug: true` run: `ClusterRecommendationResponse`.
fn budsim_recommendations(workflow_id: &str) -> Value {
    let sim = fixture("budsim_simulation_success");
    let mut result = sim.events.last().unwrap()["payload"]["content"]["result"].clone();
    result["workflow_id"] = json!(workflow_id);
    result
}

// ---------------------------------------------------------------------------

struct Stand {
    budapp: FakeBud,
    budsim: FakeBud,
    budcluster: FakeBud,
    sidecar: FakeSidecar,
    app: TestApp,
}

impl Stand {
    async fn start(pool: &PgPool) -> Self {
        Self::start_with(pool, &[]).await
    }

    async fn start_with(pool: &PgPool, env: &[(&str, &str)]) -> Self {
        let budapp = FakeBud::start().await;
        let budsim = FakeBud::start().await;
        let budcluster = FakeBud::start().await;
        let sidecar = FakeSidecar::start(budcluster.url()).await;
        sidecar.add_app("budapp", budapp.url());
        sidecar.add_app("budsim", budsim.url());
        let mut vars: Vec<(&str, &str)> = vec![
            ("DAPR_HTTP_ENDPOINT", sidecar.url()),
            ("WORKFLOW_EVENTS_TOPIC", OUR_TOPIC),
        ];
        vars.extend_from_slice(env);
        let app = TestApp::spawn_with(pool, &vars).await;
        Self {
            budapp,
            budsim,
            budcluster,
            sidecar,
            app,
        }
    }

    fn api(&self) -> &Api {
        &self.app.api
    }

    /// Deliver as daprd delivers a publisher's own CloudEvent; the outcome.
    async fn deliver(&self, event: &Value) -> String {
        self.sidecar
            .deliver_accepted(&self.app.api.base, TOKEN, event)
            .await
    }

    /// Create `dag` and execute it with `parameters` and budapp's routing.
    async fn run(&self, dag: Value, parameters: Value) -> Uuid {
        let wf = self.api().create_workflow(dag).await;
        self.api()
            .execute(
                wf,
                json!({"parameters": parameters, "callback_topics": [BUDAPP_TOPIC],
                       "payload_type": "guardrail_deployment",
                       "notification_workflow_id": "budapp-guardrail-wf"}),
            )
            .await
    }

    async fn wait_waiting(&self, exec: Uuid, id: &str) -> Value {
        let e = self
            .api()
            .wait_until(exec, WAIT, |e| {
                let s = step(e, id);
                (s["status"] == "RUNNING" && s["awaiting_event"] == true)
                    || matches!(s["status"].as_str(), Some("FAILED" | "COMPLETED"))
            })
            .await;
        let s = step(&e, id).clone();
        assert_eq!(s["awaiting_event"], true, "step {id} should wait: {s:#}");
        s
    }

    async fn still_waiting(&self, exec: Uuid, id: &str) {
        let e = self.api().execution(exec).await;
        let s = step(&e, id);
        assert_eq!(
            (s["status"].as_str(), s["awaiting_event"].as_bool()),
            (Some("RUNNING"), Some(true)),
            "step {id} should still wait: {s:#}"
        );
    }
}

fn one_step(id: &str, action: &str, params: Value) -> Value {
    json!({"name": format!("{action}-test"),
           "steps": [{"id": id, "name": id, "action": action, "params": params}]})
}

// ---------------------------------------------------------------------------
// model_add

#[sqlx::test]
async fn model_add_starts_budapps_local_model_workflow_and_completes_on_budmodels_results(
    pool: PgPool,
) {
    let f = fixture("budmodel_extraction_success");
    let stand = Stand::start_with(&pool, &[("APP_API_TOKEN", TOKEN)]).await;
    stand.budapp.on(
        "POST",
        "/models/local-model-workflow",
        Reply::json(200, budapp_workflow(&f.correlation_id, "in_progress")),
    );
    let exec = stand
        .run(
            one_step(
                "add",
                "model_add",
                json!({"model_uri": "Qwen/Qwen2.5-7B-Instruct", "author": "Qwen",
                       "credential_id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"}),
            ),
            json!({"user_id": USER}),
        )
        .await;
    let waiting = stand.wait_waiting(exec, "add").await;
    assert_eq!(waiting["outputs"]["workflow_id"], f.correlation_id.as_str());
    assert_eq!(waiting["outputs"]["status"], "running");

    let sent = stand
        .budapp
        .requests_to("POST", "/models/local-model-workflow");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query_param("user_id").as_deref(), Some(USER));
    assert_eq!(sent[0].header("x-app-api-token"), Some(TOKEN));
    assert_eq!(
        sent[0].body,
        json!({"workflow_total_steps": 1, "step_number": 1, "trigger_workflow": true,
               "provider_type": "hugging_face", "name": "Qwen2.5-7B-Instruct",
               "uri": "Qwen/Qwen2.5-7B-Instruct", "description": "", "author": "Qwen",
               "callback_topic": OUR_TOPIC,
               "proprietary_credential_id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"})
    );

    let (last, before) = f.events.split_last().unwrap();
    for event in before {
        stand.deliver(event).await;
        stand.still_waiting(exec, "add").await;
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "add")["outputs"];
    assert_eq!(
        *outputs,
        json!({"success": true, "model_id": null, "model_name": "Qwen2.5-7B-Instruct",
               "workflow_id": f.correlation_id, "status": "completed",
               "message": "Model 'Qwen2.5-7B-Instruct' added successfully"})
    );
    // budmodel's estimates reach the flow that asked, as budapp reads them.
    let etas: Vec<String> = stand
        .sidecar
        .published_to(BUDAPP_TOPIC)
        .iter()
        .filter(|p| p.body["payload"]["event"] == "eta")
        .map(|p| {
            p.body["payload"]["content"]["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(etas.contains(&"9".to_owned()), "{etas:?}");
}

#[sqlx::test]
async fn model_add_fails_when_a_stage_of_the_extraction_fails(pool: PgPool) {
    let f = fixture("budmodel_extraction_success");
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "POST",
        "/models/local-model-workflow",
        Reply::json(200, budapp_workflow(&f.correlation_id, "in_progress")),
    );
    let exec = stand
        .run(
            one_step(
                "add",
                "model_add",
                json!({"model_uri": "https://example.com/m.tar", "model_source": "url",
                       "credential_id": "ignored-for-urls"}),
            ),
            json!({}),
        )
        .await;
    stand.wait_waiting(exec, "add").await;
    let body = &stand.budapp.requests()[0].body;
    assert_eq!(body["provider_type"], "url");
    assert_eq!(body["name"], "m.tar");
    assert!(
        body.get("proprietary_credential_id").is_none(),
        "budapp refuses a credential for url sources"
    );
    // No user named and no SYSTEM_USER_ID: budapp decides.
    assert_eq!(stand.budapp.requests()[0].query, None);

    let download = f
        .events
        .iter()
        .position(|e| stage_of(e) == "model_download")
        .unwrap();
    for event in &f.events[..download] {
        stand.deliver(event).await;
    }
    let mut failed = f.events[download].clone();
    failed["payload"]["content"]["status"] = json!("FAILED");
    failed["payload"]["content"]["message"] = json!("Model download failed: 404 Not Found");
    assert_eq!(stand.deliver(&failed).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(
        step(&done, "add")["error"],
        "Model download failed: 404 Not Found"
    );
}

#[sqlx::test]
async fn model_add_completes_on_budapps_workflow_completed_event(pool: PgPool) {
    let f = fixture("budapp_workflow_completed");
    let stand = Stand::start_with(&pool, &[("SYSTEM_USER_ID", USER)]).await;
    stand.budapp.on(
        "POST",
        "/models/local-model-workflow",
        Reply::json(200, budapp_workflow(&f.correlation_id, "in_progress")),
    );
    let exec = stand
        .run(
            one_step(
                "add",
                "model_add",
                json!({"model_uri": "Qwen/Qwen2.5-7B-Instruct"}),
            ),
            json!({}),
        )
        .await;
    stand.wait_waiting(exec, "add").await;
    assert_eq!(
        stand.budapp.requests()[0].query_param("user_id").as_deref(),
        Some(USER),
        "SYSTEM_USER_ID when nobody is named"
    );
    assert_eq!(stand.deliver(&f.events[0]).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "add")["outputs"];
    assert_eq!(outputs["model_id"], "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d");
    assert_eq!(outputs["model_name"], "qwen2.5-7b-instruct");
}

#[sqlx::test]
async fn a_callees_4xx_fails_the_step_with_its_message_and_is_never_retried(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "POST",
        "/models/local-model-workflow",
        budapp_error(
            400,
            "Model with uri Qwen/Qwen2.5-7B-Instruct already exists",
            "BadRequest",
        ),
    );
    let mut dag = one_step(
        "add",
        "model_add",
        json!({"model_uri": "Qwen/Qwen2.5-7B-Instruct"}),
    );
    dag["steps"][0]["retry"] = json!({"max_attempts": 3, "backoff_seconds": 0});
    let exec = stand.run(dag, json!({"user_id": USER})).await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let add = step(&done, "add");
    assert_eq!(
        add["error"],
        "Failed to start model workflow: budapp answered 400: \
         Model with uri Qwen/Qwen2.5-7B-Instruct already exists"
    );
    assert_eq!(add["outputs"]["status"], "failed");
    assert_eq!(add["outputs"]["success"], false);
    assert_eq!(
        stand.budapp.requests().len(),
        1,
        "a 4xx is neither retried by the call nor by the step"
    );
}

// ---------------------------------------------------------------------------
// simulation_run

fn simulation_params() -> Value {
    json!({"model_id": MODEL, "input_tokens": 2048, "output_tokens": 256, "concurrency": 10,
           "target_ttft": 200, "target_throughput_per_user": 40, "target_e2e_latency": 12,
           "hardware_mode": "dedicated", "model_endpoints": "LLM", "max_wait_seconds": 7200})
}

#[sqlx::test]
async fn simulation_run_resolves_the_model_then_waits_for_budsims_results(pool: PgPool) {
    let f = fixture("budsim_simulation_success");
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "GET",
        &format!("/models/{MODEL}"),
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    stand.budsim.on(
        "POST",
        "/simulator/run",
        Reply::json(200, budsim_started(&f.correlation_id)),
    );
    let exec = stand
        .run(
            one_step("sim", "simulation_run", simulation_params()),
            json!({"user_id": USER}),
        )
        .await;
    let waiting = stand.wait_waiting(exec, "sim").await;
    assert_eq!(waiting["outputs"]["workflow_id"], f.correlation_id.as_str());

    let lookup = stand.budapp.requests_to("GET", &format!("/models/{MODEL}"));
    assert_eq!(lookup.len(), 1);
    assert_eq!(lookup[0].query_param("user_id").as_deref(), Some(USER));
    let run = stand.budsim.requests_to("POST", "/simulator/run");
    assert_eq!(
        run[0].body,
        json!({"input_tokens": 2048, "output_tokens": 256, "concurrency": 10,
               "is_proprietary_model": false, "hardware_mode": "dedicated", "debug": false,
               "source_topic": OUR_TOPIC, "pretrained_model_uri": "Qwen/Qwen2.5-7B-Instruct",
               "model_uri": "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct",
               "target_ttft": 200, "target_throughput_per_user": 40, "target_e2e_latency": 12,
               "model_endpoints": "LLM"})
    );
    assert_eq!(run[0].query, None, "budsim takes no user");

    let (last, before) = f.events.split_last().unwrap();
    for event in before {
        stand.deliver(event).await;
        stand.still_waiting(exec, "sim").await;
    }
    let ranked = stand.api().execution(exec).await;
    assert_eq!(
        step(&ranked, "sim")["stage"]["progress"],
        95.0,
        "ranking COMPLETED"
    );
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "sim")["outputs"];
    let recommendations = &last["payload"]["content"]["result"]["recommendations"];
    assert_eq!(outputs["recommendations"], *recommendations);
    assert_eq!(outputs["top_recommendation"], recommendations[0]);
    assert_eq!(outputs["cluster_id"], CLUSTER);
    assert_eq!(outputs["tool_calling_parser_type"], "hermes");
    assert_eq!(outputs["metrics"]["ttft"], 180.5);
    assert_eq!(outputs["workflow_id"], f.correlation_id.as_str());
    assert_eq!(outputs["success"], true);
}

#[sqlx::test]
async fn simulation_run_fails_when_budsim_recommends_nothing(pool: PgPool) {
    let f = fixture("budsim_simulation_success");
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "GET",
        "/models/*",
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    stand.budsim.on(
        "POST",
        "/simulator/run",
        Reply::json(200, budsim_started(&f.correlation_id)),
    );
    let exec = stand
        .run(
            one_step("sim", "simulation_run", simulation_params()),
            json!({}),
        )
        .await;
    stand.wait_waiting(exec, "sim").await;
    let mut last = f.events.last().unwrap().clone();
    last["payload"]["content"]["result"]["recommendations"] = json!([]);
    assert_eq!(stand.deliver(&last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(
        step(&done, "sim")["error"],
        "Simulation completed but returned no recommendations"
    );
}

#[sqlx::test]
async fn simulation_run_fails_with_budapps_message_for_an_unknown_model(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "GET",
        "/models/*",
        budapp_error(404, "Model not found", "NotFound"),
    );
    let exec = stand
        .run(
            one_step("sim", "simulation_run", simulation_params()),
            json!({}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(
        step(&done, "sim")["error"],
        "Could not resolve model URI from model_id: budapp answered 404: Model not found"
    );
    assert!(stand.budsim.requests().is_empty());
}

// ---------------------------------------------------------------------------
// deployment_create

fn deployment_params() -> Value {
    json!({"model_id": MODEL, "project_id": PROJECT, "endpoint_name": "qwen-guardrail-1a2b3c4d",
           "cluster_id": CLUSTER, "hardware_mode": "dedicated", "concurrent_requests": 10,
           "avg_sequence_length": 256, "avg_context_length": 2048,
           "ttft": [50, 200], "per_session_tokens_per_sec": [10, 40], "e2e_latency": [10, 60],
           "budaiscaler_specification": {"enabled": true, "minReplicas": 1, "maxReplicas": 2}})
}

#[sqlx::test]
async fn deployment_create_simulates_then_deploys_and_waits_for_budclusters_results(pool: PgPool) {
    let f = fixture("budcluster_deploy_success");
    let sim_id = "0d9c8b7a-6f5e-4d3c-8b2a-190807060504";
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "GET",
        &format!("/models/{MODEL}"),
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    stand.budsim.on(
        "POST",
        "/simulator/run",
        Reply::json(200, budsim_recommendations(sim_id)),
    );
    stand.budapp.on(
        "POST",
        "/models/deploy-workflow",
        Reply::json(200, budapp_workflow(&f.correlation_id, "in_progress")),
    );
    let exec = stand
        .run(
            json!({"name": "deploy", "steps": [
                {"id": "deploy", "name": "Deploy", "action": "deployment_create",
                 "params": deployment_params()},
                {"id": "after", "name": "After", "action": "log", "depends_on": ["deploy"],
                 "params": {"message": "{{ steps.deploy.outputs.status }}"}}]}),
            json!({"user_id": USER}),
        )
        .await;
    let waiting = stand.wait_waiting(exec, "deploy").await;
    assert_eq!(waiting["outputs"]["status"], "deploying");

    let sim = stand.budsim.requests_to("POST", "/simulator/run");
    assert_eq!(
        sim[0].body,
        json!({"pretrained_model_uri": "Qwen/Qwen2.5-7B-Instruct", "input_tokens": 2048,
               "output_tokens": 256, "concurrency": 10, "target_ttft": 50,
               "target_throughput_per_user": 40, "target_e2e_latency": 10,
               "is_proprietary_model": false, "hardware_mode": "dedicated", "debug": true,
               "cluster_id": CLUSTER, "model_endpoints": "LLM"})
    );
    let deploy = stand.budapp.requests_to("POST", "/models/deploy-workflow");
    assert_eq!(deploy[0].query_param("user_id").as_deref(), Some(USER));
    assert_eq!(
        deploy[0].body,
        json!({"workflow_total_steps": 1, "step_number": 1, "trigger_workflow": true,
               "model_id": MODEL, "project_id": PROJECT,
               "endpoint_name": "qwen-guardrail-1a2b3c4d",
               "deploy_config": {"concurrent_requests": 10, "avg_sequence_length": 256,
                                 "avg_context_length": 2048, "ttft": [50, 200],
                                 "per_session_tokens_per_sec": [10, 40],
                                 "e2e_latency": [10, 60]},
               "callback_topic": OUR_TOPIC, "cluster_id": CLUSTER,
               "hardware_mode": "dedicated", "enable_tool_calling": true,
               "tool_calling_parser_type": "hermes", "supports_lora": true,
               "supports_pipeline_parallelism": true,
               "budaiscaler_specification": {"enabled": true, "minReplicas": 1, "maxReplicas": 2},
               "simulator_id": sim_id})
    );

    let (last, before) = f.events.split_last().unwrap();
    for event in before {
        stand.deliver(event).await;
        stand.still_waiting(exec, "deploy").await;
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "deploy")["outputs"];
    assert_eq!(outputs["status"], "completed");
    assert_eq!(outputs["workflow_id"], f.correlation_id.as_str());
    assert_eq!(
        outputs["message"],
        "Endpoint 'qwen-guardrail-1a2b3c4d' deployed successfully"
    );
    assert_eq!(step(&done, "after")["outputs"]["message"], "completed");
}

#[sqlx::test]
async fn deployment_create_fails_on_budclusters_failed_stage(pool: PgPool) {
    let f = fixture("budcluster_deploy_failure");
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "POST",
        "/models/deploy-workflow",
        Reply::json(200, budapp_workflow(&f.correlation_id, "in_progress")),
    );
    let mut params = deployment_params();
    // Parser settings given: no simulation.
    params["tool_calling_parser_type"] = json!("hermes");
    let exec = stand
        .run(one_step("deploy", "deployment_create", params), json!({}))
        .await;
    stand.wait_waiting(exec, "deploy").await;
    assert!(stand.budsim.requests().is_empty(), "no smart mode");
    assert!(stand.budapp.requests_to("GET", "/models/*").is_empty());
    let failing = f
        .events
        .iter()
        .position(|e| e["payload"]["content"]["status"] == "FAILED")
        .unwrap();
    for event in &f.events[..failing] {
        stand.deliver(event).await;
        stand.still_waiting(exec, "deploy").await;
    }
    assert_eq!(stand.deliver(&f.events[failing]).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(step(&done, "deploy")["error"], "Transfer model failed");
    for event in &f.events[failing + 1..] {
        assert_eq!(stand.deliver(event).await, "stale");
    }
}

#[sqlx::test]
async fn deployment_create_of_a_cloud_model_completes_at_once(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let wf = Uuid::new_v4().to_string();
    stand.budapp.on(
        "POST",
        "/models/deploy-workflow",
        Reply::json(200, budapp_workflow(&wf, "completed")),
    );
    let exec = stand
        .run(
            one_step(
                "deploy",
                "deployment_create",
                json!({"model_id": MODEL, "project_id": PROJECT, "endpoint_name": "gpt",
                       "credential_id": "3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b"}),
            ),
            json!({}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(step(&done, "deploy")["outputs"]["status"], "completed");
    let body = &stand.budapp.requests()[0].body;
    assert_eq!(
        body["credential_id"],
        "3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b"
    );
    assert!(body.get("cluster_id").is_none());
    assert!(stand.budsim.requests().is_empty());
}

#[sqlx::test]
async fn a_dedicated_deployment_fails_when_the_simulation_does(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "GET",
        "/models/*",
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    stand.budsim.on(
        "POST",
        "/simulator/run",
        Reply::json(
            422,
            json!({"detail": [{"type": "value_error", "loc": ["body"],
                               "msg": "Value error, pretrained_model_uri is required"}]}),
        ),
    );
    let exec = stand
        .run(
            one_step("deploy", "deployment_create", deployment_params()),
            json!({}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(
        step(&done, "deploy")["error"],
        "Simulation failed: budsim answered 422: body: Value error, pretrained_model_uri is required"
    );
    assert!(
        stand
            .budapp
            .requests_to("POST", "/models/deploy-workflow")
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// budapp's guardrail DAGs, as `guardrails/services.py` builds them.

/// `_sanitize_step_id`.
fn sanitize(prefix: &str, name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .to_lowercase();
    let cleaned = cleaned.trim_matches('-');
    format!("{prefix}-{}", &cleaned[..cleaned.len().min(60)])
}

/// `trigger_model_onboarding`.
fn onboarding_dag(uris: &[&str], credential_id: Option<&str>) -> Value {
    let steps: Vec<Value> = uris
        .iter()
        .map(|uri| {
            let parts: Vec<&str> = uri.split('/').collect();
            let name = parts.last().unwrap();
            let author = (parts.len() > 1).then(|| parts[0]);
            let mut params = json!({"model_uri": uri, "model_name": name,
                                    "model_source": "hugging_face", "author": author,
                                    "description": "Guardrail model for rule r-1",
                                    "max_wait_seconds": 86400});
            if let Some(c) = credential_id {
                params["credential_id"] = json!(c);
            }
            json!({"id": sanitize("onboard", name), "name": format!("Onboard {name}"),
                   "action": "model_add", "params": params, "depends_on": []})
        })
        .collect();
    json!({"name": "guardrail-model-onboarding",
           "description": format!("Onboard {} models for guardrail deployment", uris.len()),
           "steps": steps, "outputs": {}, "parameters": []})
}

/// `trigger_simulation` (a target the profile does not set is 0).
fn simulation_dag(models: &[(&str, &str)]) -> Value {
    let steps: Vec<Value> = models
        .iter()
        .map(|(id, uri)| {
            let name = uri.rsplit('/').next().unwrap();
            json!({"id": sanitize("sim", name), "name": format!("Simulate {name}"),
                   "action": "simulation_run",
                   "params": {"model_id": id, "input_tokens": 4096, "output_tokens": 512,
                              "concurrency": 1, "target_ttft": 0,
                              "target_throughput_per_user": 0, "target_e2e_latency": 0,
                              "hardware_mode": "shared", "max_wait_seconds": 7200,
                              "model_endpoints": "LLM"},
                   "depends_on": []})
        })
        .collect();
    json!({"name": "guardrail-cluster-recommendation",
           "description": format!("Simulate {} models for cluster recommendation", models.len()),
           "steps": steps, "outputs": {}, "parameters": []})
}

/// `trigger_deployment`: sequential deployment_create steps.
fn deployment_dag(models: &[(&str, &str)]) -> Value {
    let mut previous: Option<String> = None;
    let steps: Vec<Value> = models
        .iter()
        .map(|(id, name)| {
            let step_id = sanitize("deploy", name);
            let depends_on: Vec<String> = previous.iter().cloned().collect();
            previous = Some(step_id.clone());
            json!({"id": step_id, "name": format!("Deploy {name}"), "action": "deployment_create",
                   "params": {"model_id": id, "project_id": PROJECT,
                              "endpoint_name": format!("{}-guardrail-1a2b3c4d", name.to_lowercase()),
                              "cluster_id": CLUSTER, "hardware_mode": "dedicated",
                              "concurrent_requests": 1, "avg_sequence_length": 512,
                              "avg_context_length": 4096, "ttft": [50, 200],
                              "per_session_tokens_per_sec": [10, 50], "e2e_latency": [10, 60]},
                   "depends_on": depends_on})
        })
        .collect();
    json!({"name": "guardrail-model-deployment",
           "description": format!("Deploy {} models for guardrail", models.len()),
           "steps": steps, "outputs": {}, "parameters": []})
}

async fn assert_valid(api: &Api, dag: &Value) {
    let (status, report) = api.post("/workflows/validate", json!({"dag": dag})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["errors"], json!([]), "{report:#}");
}

#[sqlx::test]
async fn budapps_guardrail_onboarding_dag_validates_and_runs(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let dag = onboarding_dag(
        &["meta-llama/Llama-Guard-3-1B", "Qwen/Qwen3Guard-Gen-0.6B"],
        Some("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"),
    );
    assert_valid(stand.api(), &dag).await;
    let ids = [Uuid::new_v4().to_string(), Uuid::new_v4().to_string()];
    for id in &ids {
        stand.budapp.on(
            "POST",
            "/models/local-model-workflow",
            Reply::json(200, budapp_workflow(id, "in_progress")),
        );
    }
    let exec = stand.run(dag, json!({"user_id": USER})).await;
    let first = stand.wait_waiting(exec, "onboard-llama-guard-3-1b").await;
    let second = stand
        .wait_waiting(exec, "onboard-qwen3guard-gen-0-6b")
        .await;
    let base = fixture("budmodel_extraction_success");
    for waiting in [first, second] {
        let id = waiting["outputs"]["workflow_id"].as_str().unwrap();
        for event in base.for_id(id).events {
            stand.deliver(&event).await;
        }
    }
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let sent = stand
        .budapp
        .requests_to("POST", "/models/local-model-workflow");
    let mut names: Vec<&str> = sent
        .iter()
        .map(|r| r.body["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Llama-Guard-3-1B", "Qwen3Guard-Gen-0.6B"]);
    assert!(
        sent.iter()
            .all(|r| r.query_param("user_id").as_deref() == Some(USER))
    );
}

#[sqlx::test]
async fn budapps_guardrail_simulation_dag_validates_and_runs(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let other = "7e6f5a4b-3c2d-4e1f-8a9b-0c1d2e3f4a5b";
    let dag = simulation_dag(&[
        (MODEL, "Qwen/Qwen2.5-7B-Instruct"),
        (other, "meta-llama/Llama-Guard-3-1B"),
    ]);
    assert_valid(stand.api(), &dag).await;
    stand.budapp.on(
        "GET",
        "/models/*",
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    let ids = [Uuid::new_v4().to_string(), Uuid::new_v4().to_string()];
    for id in &ids {
        stand.budsim.on(
            "POST",
            "/simulator/run",
            Reply::json(200, budsim_started(id)),
        );
    }
    let exec = stand.run(dag, json!({"user_id": USER})).await;
    let a = stand.wait_waiting(exec, "sim-qwen2-5-7b-instruct").await;
    let b = stand.wait_waiting(exec, "sim-llama-guard-3-1b").await;
    let base = fixture("budsim_simulation_success");
    for waiting in [a, b] {
        let id = waiting["outputs"]["workflow_id"].as_str().unwrap();
        for event in base.for_id(id).events {
            stand.deliver(&event).await;
        }
    }
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    // What budapp's _handle_guardrail_simulation_results reads.
    let results = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == BUDAPP_TOPIC && p.body["payload"]["event"] == "results",
            WAIT,
        )
        .await
        .expect("results for budapp");
    let outputs = &results.body["payload"]["content"]["result"]["outputs"];
    for step_id in ["sim-qwen2-5-7b-instruct", "sim-llama-guard-3-1b"] {
        assert_eq!(outputs[step_id]["success"], true, "{outputs:#}");
        assert!(
            !outputs[step_id]["recommendations"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    let sent = stand.budsim.requests_to("POST", "/simulator/run");
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|r| r.body["target_ttft"] == 0 && r.body["hardware_mode"] == "shared")
    );
}

#[sqlx::test]
async fn budapps_guardrail_deployment_dag_validates_and_runs(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let other = "7e6f5a4b-3c2d-4e1f-8a9b-0c1d2e3f4a5b";
    let dag = deployment_dag(&[(MODEL, "Qwen2.5-7B-Instruct"), (other, "Llama-Guard-3-1B")]);
    assert_valid(stand.api(), &dag).await;
    stand.budapp.on(
        "GET",
        "/models/*",
        Reply::json(200, budapp_model(MODEL, "hugging_face")),
    );
    stand.budsim.on(
        "POST",
        "/simulator/run",
        Reply::json(200, budsim_recommendations(&Uuid::new_v4().to_string())),
    );
    let ids = [Uuid::new_v4().to_string(), Uuid::new_v4().to_string()];
    for id in &ids {
        stand.budapp.on(
            "POST",
            "/models/deploy-workflow",
            Reply::json(200, budapp_workflow(id, "in_progress")),
        );
    }
    let exec = stand.run(dag, json!({"user_id": USER})).await;
    let base = fixture("budcluster_deploy_success");
    for (step_id, id) in [
        ("deploy-qwen2-5-7b-instruct", &ids[0]),
        ("deploy-llama-guard-3-1b", &ids[1]),
    ] {
        let waiting = stand.wait_waiting(exec, step_id).await;
        assert_eq!(waiting["outputs"]["workflow_id"], id.as_str(), "sequential");
        for event in base.for_id(id).events {
            stand.deliver(&event).await;
        }
    }
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(
        stand
            .budapp
            .requests_to("POST", "/models/deploy-workflow")
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------
// Validation and listing

#[sqlx::test]
async fn wrong_types_and_missing_params_are_reported_with_their_path(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let dag = json!({"name": "bad", "steps": [
        {"id": "sim", "name": "Sim", "action": "simulation_run",
         "params": {"model_id": {"x": 1}, "input_tokens": "many", "target_ttft": 100,
                    "target_e2e_latency": 10, "is_quantization": "yes"}},
        {"id": "deploy", "name": "Deploy", "action": "deployment_create",
         "params": {"model_id": MODEL, "endpoint_name": "e", "cluster_id": CLUSTER,
                    "ttft": 5}},
        {"id": "add", "name": "Add", "action": "model_add", "params": {"max_wait_seconds": 10}}
    ]});
    let (status, report) = app
        .api
        .post("/workflows/validate", json!({"dag": dag}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["valid"], false);
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for expected in [
        "steps.sim.params.model_id: must be a string, got object",
        "steps.sim.params.input_tokens: must be a number, got string",
        "steps.sim.params.target_throughput_per_user: is required",
        "steps.sim.params.is_quantization: must be a boolean, got string",
        "steps.deploy.params.project_id: is required",
        "steps.deploy.params.ttft: must be an array, got integer",
        "steps.add.params.model_uri: is required",
        "steps.add.params.max_wait_seconds: must be at least 300",
    ] {
        assert!(
            errors.contains(&expected),
            "missing `{expected}` in {errors:#?}"
        );
    }
}

#[sqlx::test]
async fn the_bud_actions_are_listed_with_their_params_and_outputs(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, list) = app.api.get("/actions").await;
    assert_eq!(status, StatusCode::OK);
    let actions = list["actions"].as_array().unwrap();
    let find = |kind: &str| {
        actions
            .iter()
            .find(|a| a["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} is not listed"))
    };
    let add = find("model_add");
    assert_eq!(add["category"], "Model Operations");
    assert_eq!(add["waits_for_event"], true);
    let source = add["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "model_source")
        .unwrap();
    assert_eq!(source["default"], "hugging_face");
    // The original's form metadata: options as {value, label}.
    let values: Vec<&str> = source["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["hugging_face", "url", "disk"]);
    let sim = find("simulation_run");
    let outputs: Vec<&str> = sim["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(outputs.contains(&"recommendations") && outputs.contains(&"top_recommendation"));
    assert_eq!(find("deployment_create")["category"], "Deployment");
}

// ---------------------------------------------------------------------------
// http_request

/// A DAG of independent `http_request` steps that all run whatever the
/// others do.
fn requests_dag(steps: &[(&str, Value)]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(id, params)| {
            json!({"id": id, "name": id, "action": "http_request", "params": params,
                   "on_failure": "continue"})
        })
        .collect();
    json!({"name": "requests", "steps": steps})
}

#[sqlx::test]
async fn http_request_sends_the_method_headers_and_body_and_keeps_the_answer(pool: PgPool) {
    let stand = Stand::start_with(&pool, &[("HTTP_REQUEST_ALLOWED_CIDRS", "127.0.0.0/8")]).await;
    let target = FakeBud::start().await;
    target.on(
        "POST",
        "/hooks/done",
        Reply::json(201, json!({"accepted": true, "id": 7})).header("x-reply", "yes"),
    );
    target.on("GET", "/start", Reply::redirect(302, "/hooks/text"));
    target.on("GET", "/hooks/text", Reply::text(200, "plain words"));
    let dag = requests_dag(&[
        (
            "post",
            json!({"url": format!("{}/hooks/done", target.url()), "method": "POST",
                   "headers": {"Authorization": "Bearer t0k", "X-Count": 3},
                   "body": {"model": "qwen"}, "include_metadata": true,
                   "timeout_seconds": 5}),
        ),
        ("get", json!({"url": format!("{}/start", target.url())})),
    ]);
    let exec = stand.run(dag, json!({})).await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");

    let sent = target.requests_to("POST", "/hooks/done");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("authorization"), Some("Bearer t0k"));
    assert_eq!(sent[0].header("x-count"), Some("3"));
    assert_eq!(
        sent[0].body,
        json!({"model": "qwen",
               "_workflow_metadata": {"execution_id": exec.to_string(), "step_id": "post"}})
    );
    let post = &step(&done, "post")["outputs"];
    assert_eq!(post["status_code"], 201);
    assert_eq!(post["body"], json!({"accepted": true, "id": 7}));
    assert_eq!(post["headers"]["x-reply"], "yes");
    let get = &step(&done, "get")["outputs"];
    assert_eq!(get["status_code"], 200, "the redirect was followed");
    assert_eq!(get["body"], "plain words");
    assert_eq!(
        target.requests_to("GET", "/hooks/text")[0].body,
        Value::Null
    );
}

#[sqlx::test]
async fn http_request_fails_with_the_status_of_an_error_answer_and_bounds_the_body(pool: PgPool) {
    let stand = Stand::start_with(&pool, &[("HTTP_REQUEST_ALLOWED_CIDRS", "127.0.0.1")]).await;
    let target = FakeBud::start().await;
    target.on(
        "DELETE",
        "/thing",
        Reply::json(404, json!({"detail": "no thing"})),
    );
    target.on(
        "GET",
        "/huge",
        Reply::text(200, &"x".repeat(1024 * 1024 + 1)),
    );
    let mut dag = requests_dag(&[
        (
            "missing",
            json!({"url": format!("{}/thing", target.url()), "method": "DELETE"}),
        ),
        ("huge", json!({"url": format!("{}/huge", target.url())})),
    ]);
    dag["steps"][0]["retry"] = json!({"max_attempts": 3, "backoff_seconds": 0});
    let exec = stand.run(dag, json!({})).await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    let missing = step(&done, "missing");
    assert_eq!(missing["status"], "FAILED", "{done:#}");
    assert_eq!(missing["error"], "HTTP 404");
    assert_eq!(missing["outputs"]["status_code"], 404);
    assert_eq!(missing["outputs"]["body"], json!({"detail": "no thing"}));
    assert_eq!(
        target.requests_to("DELETE", "/thing").len(),
        1,
        "a 4xx is not retried"
    );
    let huge = step(&done, "huge");
    assert_eq!(huge["status"], "FAILED");
    assert_eq!(
        huge["error"],
        "Request failed: the response body is larger than 1048576 bytes"
    );
    assert_eq!(huge["outputs"]["body"], Value::Null);
}

#[sqlx::test]
async fn http_request_refuses_every_forbidden_address_class_without_contacting_it(pool: PgPool) {
    // No allowed ranges: the stand-in on 127.0.0.1 is itself forbidden.
    let stand = Stand::start(&pool).await;
    let target = FakeBud::start().await;
    target.on("GET", "/x", Reply::json(200, json!({})));
    let port = target.url().rsplit(':').next().unwrap().to_owned();
    let cases = [
        (
            "loopback",
            format!("http://127.0.0.1:{port}/x"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "loopback6",
            format!("http://[::1]:{port}/x"),
            "::1 is a loopback address",
        ),
        (
            "name",
            format!("http://localhost:{port}/x"),
            "localhost resolves to ",
        ),
        (
            "private10",
            "http://10.0.0.1/".to_owned(),
            "10.0.0.1 is a private address",
        ),
        (
            "private192",
            "http://192.168.1.1:8080/".to_owned(),
            "192.168.1.1 is a private address",
        ),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254 is a link-local (metadata) address",
        ),
    ];
    let steps: Vec<(&str, Value)> = cases
        .iter()
        .map(|(id, url, _)| (*id, json!({"url": url, "timeout_seconds": 2})))
        .collect();
    let exec = stand.run(requests_dag(&steps), json!({})).await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    for (id, _, why) in cases {
        let s = step(&done, id);
        assert_eq!(s["status"], "FAILED", "{s:#}");
        let error = s["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("Request blocked (SSRF protection): {why}")),
            "{id}: {error}"
        );
        assert_eq!(s["outputs"]["status_code"], 0);
        assert_eq!(s["attempt"], 1, "a refusal is not retried");
    }
    assert!(target.requests().is_empty(), "nothing was contacted");
}

#[sqlx::test]
async fn http_request_refuses_a_redirect_to_a_forbidden_address(pool: PgPool) {
    let stand = Stand::start_with(&pool, &[("HTTP_REQUEST_ALLOWED_CIDRS", "127.0.0.0/8")]).await;
    let target = FakeBud::start().await;
    let port = target.url().rsplit(':').next().unwrap().to_owned();
    target.on(
        "GET",
        "/to-metadata",
        Reply::redirect(302, "http://169.254.169.254/latest/meta-data/iam"),
    );
    target.on(
        "POST",
        "/to-private",
        Reply::redirect(307, "http://10.1.2.3/internal"),
    );
    target.on(
        "GET",
        "/to-loopback6",
        Reply::redirect(301, &format!("http://[::1]:{port}/x")),
    );
    target.on("GET", "/x", Reply::json(200, json!({})));
    let exec = stand
        .run(
            requests_dag(&[
                (
                    "metadata",
                    json!({"url": format!("{}/to-metadata", target.url())}),
                ),
                (
                    "private",
                    json!({"url": format!("{}/to-private", target.url()), "method": "POST",
                           "body": {"a": 1}}),
                ),
                (
                    "loopback6",
                    json!({"url": format!("{}/to-loopback6", target.url())}),
                ),
            ]),
            json!({}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    for (id, why) in [
        (
            "metadata",
            "169.254.169.254 is a link-local (metadata) address",
        ),
        ("private", "10.1.2.3 is a private address"),
        ("loopback6", "::1 is a loopback address"),
    ] {
        let s = step(&done, id);
        assert_eq!(s["status"], "FAILED", "{s:#}");
        assert_eq!(
            s["error"],
            format!("Request blocked (SSRF protection): {why}"),
            "{id}"
        );
    }
    assert_eq!(
        target.requests().len(),
        3,
        "only the allowed first hops were sent"
    );
    assert!(target.requests_to("GET", "/x").is_empty());
}

// ---------------------------------------------------------------------------
// cloud_model_add, model_delete, deployment_scale, deployment_ratelimit,
// deployment_delete

const ENDPOINT: &str = "8a7b6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d";
const PROVIDER: &str = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e";

#[sqlx::test]
async fn cloud_model_add_registers_through_budapps_cloud_workflow(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let wf = Uuid::new_v4().to_string();
    let mut answer = budapp_workflow(&wf, "completed");
    answer["workflow_steps"] = json!({"provider_type": "cloud_model", "provider_id": PROVIDER,
                                      "model_id": MODEL, "name": "gpt-4o-mini"});
    stand.budapp.on(
        "POST",
        "/models/cloud-model-workflow",
        Reply::json(200, answer),
    );
    let exec = stand
        .run(
            one_step(
                "add",
                "cloud_model_add",
                json!({"provider_id": PROVIDER, "model_name": "gpt-4o-mini",
                       "model_uri": "openai/gpt-4o-mini", "user_id": USER}),
            ),
            json!({"user_id": "someone-else"}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let sent = stand
        .budapp
        .requests_to("POST", "/models/cloud-model-workflow");
    assert_eq!(
        sent[0].query_param("user_id").as_deref(),
        Some(USER),
        "the step's user_id wins"
    );
    assert_eq!(
        sent[0].body,
        json!({"workflow_total_steps": 1, "step_number": 1, "trigger_workflow": true,
               "provider_type": "cloud_model", "provider_id": PROVIDER, "cloud_model_id": null,
               "name": "gpt-4o-mini", "uri": "openai/gpt-4o-mini", "tags": [],
               "modality": ["text_input", "text_output"]})
    );
    assert_eq!(
        step(&done, "add")["outputs"],
        json!({"success": true, "model_id": MODEL, "model_name": "gpt-4o-mini",
               "provider_id": PROVIDER, "workflow_id": wf, "status": "completed",
               "message": "Cloud model 'gpt-4o-mini' added successfully"})
    );
}

#[sqlx::test]
async fn model_delete_calls_budapps_delete_route_and_reports_its_refusal(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let other = "7e6f5a4b-3c2d-4e1f-8a9b-0c1d2e3f4a5b";
    stand.budapp.on(
        "DELETE",
        &format!("/models/{MODEL}"),
        Reply::json(
            200,
            json!({"object": "model.delete", "message": "Model deleted successfully"}),
        ),
    );
    // delete_active_model's lookup of a model that is not there.
    stand.budapp.on(
        "DELETE",
        &format!("/models/{other}"),
        Reply::json(404, json!({"detail": "Model not found"})),
    );
    let exec = stand
        .run(
            requests_like(&[
                (
                    "gone",
                    "model_delete",
                    json!({"model_id": MODEL, "force": true}),
                ),
                ("missing", "model_delete", json!({"model_id": other})),
            ]),
            json!({"user_id": USER}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    let sent = stand
        .budapp
        .requests_to("DELETE", &format!("/models/{MODEL}"));
    assert_eq!(
        sent[0].query.as_deref(),
        Some(format!("force=true&user_id={USER}").as_str())
    );
    assert_eq!(sent[0].body, Value::Null);
    assert_eq!(
        step(&done, "gone")["outputs"],
        json!({"success": true, "model_id": MODEL,
               "message": format!("Model {MODEL} deleted successfully")})
    );
    let missing = step(&done, "missing");
    assert_eq!(missing["status"], "FAILED");
    assert_eq!(
        missing["error"],
        "Failed to delete model: budapp answered 404: Model not found"
    );
    assert_eq!(
        stand
            .budapp
            .requests_to("DELETE", &format!("/models/{other}"))[0]
            .query_param("force")
            .as_deref(),
        Some("false")
    );
}

/// Independent steps of any actions that all run whatever the others do.
fn requests_like(steps: &[(&str, &str, Value)]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(id, action, params)| {
            json!({"id": id, "name": id, "action": action, "params": params,
                   "on_failure": "continue"})
        })
        .collect();
    json!({"name": "steps", "steps": steps})
}

#[sqlx::test]
async fn deployment_scale_keeps_the_autoscale_settings_and_fixes_the_replicas(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let path = format!("/endpoints/{ENDPOINT}/autoscale");
    // budapp's AutoscaleConfigResponse.
    let current = json!({"object": "endpoint.autoscale", "message": "Autoscale configuration retrieved",
                         "endpoint_id": ENDPOINT, "autoscale_enabled": true,
                         "budaiscaler_config": {"enabled": true, "minReplicas": 1, "maxReplicas": 4,
                                                "scalingStrategy": "BudScaler",
                                                "metricsSources": [{"type": "inferenceEngine"}],
                                                "gpuConfig": {}, "behavior": null}});
    stand.budapp.on("GET", &path, Reply::json(200, current));
    stand.budapp.on(
        "PUT",
        &path,
        Reply::json(
            200,
            json!({"object": "endpoint.autoscale", "message": "Autoscale configuration updated",
                                "endpoint_id": ENDPOINT, "autoscale_enabled": true,
                                "budaiscaler_config": {"enabled": true, "minReplicas": 3,
                                                       "maxReplicas": 3}}),
        ),
    );
    let exec = stand
        .run(
            one_step(
                "scale",
                "deployment_scale",
                json!({"endpoint_id": ENDPOINT, "target_replicas": 3}),
            ),
            json!({"user_id": USER}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let put = stand.budapp.requests_to("PUT", &path);
    assert_eq!(put[0].query_param("user_id").as_deref(), Some(USER));
    assert_eq!(
        put[0].body,
        json!({"budaiscaler_specification": {"enabled": true, "minReplicas": 3, "maxReplicas": 3,
                                             "scalingStrategy": "BudScaler",
                                             "metricsSources": [{"type": "inferenceEngine"}]}})
    );
    assert_eq!(
        step(&done, "scale")["outputs"],
        json!({"success": true, "endpoint_id": ENDPOINT, "target_replicas": 3,
               "previous_min_replicas": 1, "previous_max_replicas": 4,
               "scaling_strategy": "BudScaler", "message": "Scaled deployment to 3 replicas"})
    );
}

#[sqlx::test]
async fn deployment_ratelimit_puts_the_rate_limits_and_budapps_refusal_fails_it(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let path = format!("/endpoints/{ENDPOINT}/deployment-settings");
    let other = "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e";
    stand.budapp.on(
        "PUT",
        &path,
        Reply::json(
            200,
            json!({"object": "endpoint.deployment_settings",
                                "message": "Successfully updated deployment settings",
                                "endpoint_id": ENDPOINT,
                                "deployment_settings": {"rate_limits": {
                                    "algorithm": "sliding_window", "requests_per_second": 20,
                                    "requests_per_minute": null, "requests_per_hour": null,
                                    "burst_size": 100, "enabled": true},
                                    "retry_config": null, "fallback_config": null}}),
        ),
    );
    // The route takes a signed-in user only (get_current_active_user): an
    // internal call has no bearer token, which HTTPBearer refuses.
    stand.budapp.on(
        "PUT",
        &format!("/endpoints/{other}/deployment-settings"),
        Reply::json(403, json!({"detail": "Not authenticated"})),
    );
    let exec = stand
        .run(
            requests_like(&[
                (
                    "limit",
                    "deployment_ratelimit",
                    json!({"endpoint_id": ENDPOINT, "algorithm": "sliding_window",
                           "requests_per_second": 20.7, "burst_size": 100}),
                ),
                (
                    "refused",
                    "deployment_ratelimit",
                    json!({"endpoint_id": other, "requests_per_minute": 600}),
                ),
            ]),
            json!({}),
        )
        .await;
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(
        stand.budapp.requests_to("PUT", &path)[0].body,
        json!({"rate_limits": {"algorithm": "sliding_window", "enabled": true,
                               "requests_per_second": 20, "burst_size": 100}})
    );
    let limit = &step(&done, "limit")["outputs"];
    assert_eq!(limit["config"]["algorithm"], "sliding_window");
    assert_eq!(limit["message"], "Rate limiting enabled for endpoint");
    let refused = step(&done, "refused");
    assert_eq!(refused["status"], "FAILED");
    assert_eq!(
        refused["error"],
        "Failed to configure rate limiting: budapp answered 403: Not authenticated"
    );
    assert_eq!(refused["attempt"], 1);
}

#[sqlx::test]
async fn deployment_delete_waits_for_budclusters_deletion(pool: PgPool) {
    let f = fixture("budcluster_delete_success");
    let stand = Stand::start(&pool).await;
    let path = format!("/endpoints/{ENDPOINT}/delete-workflow");
    // budapp's EndpointDeleteResponse.
    stand.budapp.on(
        "POST",
        &path,
        Reply::json(
            200,
            json!({"object": "endpoint.delete",
                                "message": "Deployment deleting initiated successfully",
                                "workflow_id": f.correlation_id}),
        ),
    );
    let exec = stand
        .run(
            one_step(
                "delete",
                "deployment_delete",
                json!({"endpoint_id": ENDPOINT, "max_wait_seconds": 600}),
            ),
            json!({"user_id": USER}),
        )
        .await;
    let waiting = stand.wait_waiting(exec, "delete").await;
    assert_eq!(waiting["outputs"]["status"], "deleting");
    let sent = stand.budapp.requests_to("POST", &path);
    assert_eq!(sent[0].query_param("user_id").as_deref(), Some(USER));
    assert_eq!(
        sent[0].body,
        json!({"callback_topic": OUR_TOPIC, "force": false})
    );
    let (last, before) = f.events.split_last().unwrap();
    for event in before {
        stand.deliver(event).await;
        stand.still_waiting(exec, "delete").await;
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "delete")["outputs"];
    assert_eq!(outputs["status"], "deleted");
    assert_eq!(outputs["endpoint_id"], ENDPOINT);
    assert_eq!(outputs["workflow_id"], f.correlation_id.as_str());
}

#[sqlx::test]
async fn deployment_delete_fails_on_a_failed_deletion_stage(pool: PgPool) {
    let f = fixture("budcluster_delete_success");
    let stand = Stand::start(&pool).await;
    stand.budapp.on(
        "POST",
        "/endpoints/*/delete-workflow",
        Reply::json(
            200,
            json!({"object": "endpoint.delete",
                                "message": "Deployment deleting initiated successfully",
                                "workflow_id": f.correlation_id}),
        ),
    );
    let exec = stand
        .run(
            one_step(
                "delete",
                "deployment_delete",
                json!({"endpoint_id": ENDPOINT}),
            ),
            json!({}),
        )
        .await;
    stand.wait_waiting(exec, "delete").await;
    let namespace = f
        .events
        .iter()
        .position(|e| stage_of(e) == "delete_namespace")
        .unwrap();
    for event in &f.events[..namespace] {
        stand.deliver(event).await;
    }
    let mut failed = f.events[namespace].clone();
    failed["payload"]["content"]["status"] = json!("FAILED");
    failed["payload"]["content"]["message"] = json!("Failed to delete namespace");
    assert_eq!(stand.deliver(&failed).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(step(&done, "delete")["error"], "Failed to delete namespace");
}

// ---------------------------------------------------------------------------
// model_benchmark

const BUD_CLUSTER: &str = "3a4b5c6d-7e8f-4a9b-8c7d-6e5f4a3b2c1d";

/// budapp's `SingleClusterResponse`.
fn budapp_cluster() -> Value {
    json!({"object": "cluster.get", "message": "Cluster details fetched successfully",
           "cluster": {"id": CLUSTER, "name": "gpu-cluster", "icon": "🖥", "cluster_id": BUD_CLUSTER,
                       "status": "available", "cpu_count": 64, "gpu_count": 8, "hpu_count": 0,
                       "cpu_total_workers": 0, "cpu_available_workers": 0,
                       "gpu_total_workers": 8, "gpu_available_workers": 8,
                       "created_at": "2026-03-01T00:00:00Z", "modified_at": "2026-03-01T00:00:00Z",
                       "total_workers_count": 8, "active_workers_count": 8,
                       "total_endpoints_count": 0, "running_endpoints_count": 0,
                       "hardware_type": ["cuda"]}})
}

/// budcluster's `SuccessResponse(param={"nodes": [ClusterNodeInfoResponse]})`.
fn budcluster_nodes() -> Value {
    json!({"object": "info", "message": "Cluster nodes fetched successfully",
           "param": {"nodes": [
               {"id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "cluster_id": BUD_CLUSTER,
                "name": "gpu-node-1", "internal_ip": "10.0.0.11", "type": "cuda",
                "total_workers": 8, "available_workers": 8, "used_workers": 0,
                "threads_per_core": 2, "core_count": 32,
                "hardware_info": [{"type": "cuda", "available_count": 8, "product_name": "H100"}],
                "status": true, "status_sync_at": "2026-03-14T10:00:00Z",
                "created_at": null, "modified_at": null}]}})
}

/// budapp's `NodeConfigurationProxyResponse`.
fn node_configurations() -> Value {
    json!({"cluster_id": CLUSTER,
           "model_info": {"model_id": MODEL, "total_memory_gb": 16.2},
           "device_configurations": [{
               "device_type": "cuda", "device_name": "H100", "device_model": "H100",
               "total_devices": 8, "nodes_count": 1, "max_devices_per_node": 8,
               "memory_per_device_gb": 80.0, "min_tp_required": 1,
               "supports_pipeline_parallelism": true,
               "tp_pp_options": [
                   {"tp_size": 1, "pp_size": 1, "max_replicas": 8, "total_devices_needed": 1,
                    "description": "TP=1, PP=1"},
                   {"tp_size": 2, "pp_size": 1, "max_replicas": 4, "total_devices_needed": 2,
                    "description": "TP=2, PP=1"}]}],
           "selected_nodes": ["gpu-node-1"], "hardware_mode": "dedicated"})
}

/// budcluster's benchmark: its deploy workflow named `performance_benchmark`.
fn benchmark_events(workflow_id: &str) -> Vec<Value> {
    let deploy = fixture("budcluster_deploy_success").for_id(workflow_id);
    deploy
        .events
        .into_iter()
        .map(|mut e| {
            if e["payload"]["type"] == "deploy_model" {
                e["payload"]["type"] = json!("performance_benchmark");
            }
            e
        })
        .collect()
}

#[sqlx::test]
async fn model_benchmark_chooses_a_layout_starts_budapps_benchmark_and_waits(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let wf = Uuid::new_v4().to_string();
    stand.budapp.on(
        "GET",
        &format!("/clusters/{CLUSTER}"),
        Reply::json(200, budapp_cluster()),
    );
    stand.budcluster.on(
        "GET",
        &format!("/cluster/{BUD_CLUSTER}/nodes"),
        Reply::json(200, budcluster_nodes()),
    );
    stand.budapp.on(
        "POST",
        "/benchmark/node-configurations",
        Reply::json(200, node_configurations()),
    );
    stand.budapp.on(
        "POST",
        "/benchmark/run-workflow",
        Reply::json(200, budapp_workflow(&wf, "in_progress")),
    );
    let exec = stand
        .run(
            one_step(
                "bench",
                "model_benchmark",
                json!({"model_id": MODEL, "cluster_id": CLUSTER, "tp_size": 2, "pp_size": 1,
                       "concurrent_requests": 4, "benchmark_name": "qwen-bench"}),
            ),
            json!({"user_id": USER}),
        )
        .await;
    let waiting = stand.wait_waiting(exec, "bench").await;
    assert_eq!(waiting["outputs"]["workflow_id"], wf.as_str());

    let configs = stand
        .budapp
        .requests_to("POST", "/benchmark/node-configurations");
    assert_eq!(
        configs[0].body,
        json!({"model_id": MODEL, "cluster_id": CLUSTER, "hostnames": ["gpu-node-1"],
               "hardware_mode": "dedicated", "input_tokens": 1024, "output_tokens": 512,
               "concurrency": 4})
    );
    let run = stand.budapp.requests_to("POST", "/benchmark/run-workflow");
    assert_eq!(run[0].query_param("user_id").as_deref(), Some(USER));
    assert_eq!(
        run[0].body,
        json!({"workflow_total_steps": 1, "step_number": 1, "trigger_workflow": true,
               "model_id": MODEL, "cluster_id": CLUSTER, "bud_cluster_id": BUD_CLUSTER,
               "nodes": [{"hostname": "gpu-node-1", "type": "cuda", "total_workers": 8,
                          "available_workers": 8,
                          "hardware_info": [{"type": "cuda", "available_count": 8,
                                             "product_name": "H100"}]}],
               "name": "qwen-bench", "tags": [],
               "description": "Automated benchmark from workflow step bench",
               "eval_with": "configuration", "concurrent_requests": 4,
               "max_input_tokens": 1024, "max_output_tokens": 512,
               "hardware_mode": "dedicated", "selected_device_type": "cuda",
               "tp_size": 2, "pp_size": 1, "replicas": 4, "num_prompts": 10,
               "user_confirmation": true, "run_as_simulation": false,
               "callback_topic": OUR_TOPIC})
    );

    let events = benchmark_events(&wf);
    let (last, before) = events.split_last().unwrap();
    for event in before {
        stand.deliver(event).await;
        stand.still_waiting(exec, "bench").await;
    }
    assert_eq!(stand.deliver(last).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "bench")["outputs"];
    assert_eq!(outputs["status"], "completed");
    assert_eq!(
        outputs["benchmark_id"],
        last["payload"]["content"]["result"]["bud_cluster_benchmark_id"]
    );
    assert_eq!(outputs["results"], last["payload"]["content"]["result"]);
}

#[sqlx::test]
async fn model_benchmark_finds_a_budcluster_id_and_falls_back_to_the_nodes_hardware(pool: PgPool) {
    let stand = Stand::start(&pool).await;
    let wf = Uuid::new_v4().to_string();
    // The id is budcluster's: budapp knows no such cluster id...
    stand.budapp.on(
        "GET",
        &format!("/clusters/{BUD_CLUSTER}"),
        budapp_error(400, "Cluster not found", "BadRequest"),
    );
    // ...but lists it.
    stand.budapp.on(
        "GET",
        "/clusters/clusters",
        Reply::json(
            200,
            json!({"object": "cluster.list", "message": "ok", "page": 1,
                                "limit": 100, "total_record": 1, "total_pages": 1,
                                "clusters": [budapp_cluster()["cluster"]]}),
        ),
    );
    stand.budcluster.on(
        "GET",
        &format!("/cluster/{BUD_CLUSTER}/nodes"),
        Reply::json(200, budcluster_nodes()),
    );
    stand.budapp.on(
        "POST",
        "/benchmark/node-configurations",
        budapp_error(
            500,
            "Failed to get node configurations",
            "InternalServerError",
        ),
    );
    stand.budapp.on(
        "POST",
        "/benchmark/run-workflow",
        Reply::json(200, budapp_workflow(&wf, "in_progress")),
    );
    let exec = stand
        .run(
            one_step(
                "bench",
                "model_benchmark",
                json!({"model_id": MODEL, "cluster_id": BUD_CLUSTER}),
            ),
            json!({}),
        )
        .await;
    stand.wait_waiting(exec, "bench").await;
    let list = stand.budapp.requests_to("GET", "/clusters/clusters");
    assert_eq!(list[0].query.as_deref(), Some("limit=100"));
    let run = &stand.budapp.requests_to("POST", "/benchmark/run-workflow")[0].body;
    assert_eq!(run["cluster_id"], CLUSTER);
    assert_eq!(run["bud_cluster_id"], BUD_CLUSTER);
    assert_eq!(
        (
            run["selected_device_type"].as_str(),
            run["tp_size"].as_i64(),
            run["replicas"].as_i64()
        ),
        (Some("cuda"), Some(1), Some(1))
    );
    // A FAILED stage of the benchmark fails the step.
    let events = benchmark_events(&wf);
    let mut failed = events[2].clone();
    failed["payload"]["content"]["status"] = json!("FAILED");
    failed["payload"]["content"]["message"] = json!("Benchmark pod crashed");
    assert_eq!(stand.deliver(&failed).await, "applied");
    let done = stand.api().wait_terminal(exec, WAIT).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    assert_eq!(step(&done, "bench")["error"], "Benchmark pod crashed");
}
