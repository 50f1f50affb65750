//! `deployment_create`: deploy a budapp model as an endpoint through
//! budapp's deploy workflow, and wait for the deployment.
//!
//! "Smart mode" (the original's): for a local model on a cluster, with SLO
//! targets (always needed in dedicated mode) and no parser settings of its
//! own, the step first asks budapp for the model (`GET /models/{id}`) and
//! budsim for a synchronous simulation (`POST /simulator/run`, `debug:
//! true`); the top recommendation fills the parser and capability fields,
//! and budsim's id is passed on as `simulator_id` so budapp does not
//! simulate again. A failed simulation fails a dedicated deployment and is
//! skipped in shared mode.
//!
//! Then `POST budapp /models/deploy-workflow?user_id=` starts budapp's
//! workflow with our topic as `callback_topic`. A cloud model is deployed at
//! once (`status: completed`); a local one is deployed by budcluster, whose
//! `deploy_model` notifications come back under budapp's workflow id: the
//! final stage ends the wait, a FAILED stage fails it.

use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value, json};

use super::simulation_run::pretrained_model_uri;
use super::{
    BudCall, BudServices, DEPLOYMENT, Initiator, budapp_wait_timed_out, call_failed,
    callee_message, field, is_uuid, outputs, refused, workflow_id_of,
};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Bool, Number, Object, OptText};
use crate::actions::seed::{Attempt, is_template};
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dapr::InvokeError;

const HARDWARE_MODES: &[&str] = &["dedicated", "shared"];
const SLOS: [&str; 3] = ["ttft", "per_session_tokens_per_sec", "e2e_latency"];
const PARSERS: [&str; 3] = [
    "tool_calling_parser_type",
    "reasoning_parser_type",
    "chat_template",
];
const CAPABILITIES: [&str; 2] = ["supports_lora", "supports_pipeline_parallelism"];
/// The original waited 600 s, but its timeout sweep never ran under Bud's
/// chart; budcluster itself estimates 21 minutes for a 7 B model. An hour,
/// unless the step sets its own `timeout_seconds`.
const DEFAULT_WAIT_SECONDS: u64 = 3600;

/// budcluster's deployment, as budapp starts it (`deploy_model`) or as
/// budapp's own flow names it (`perform_deployment`): `results` ends it, as
/// do the original's other final stages.
const RULES: WaitRules = WaitRules {
    operations: &["deploy_model", "perform_deployment"],
    final_stages: &["deploy_model", "deployment_status"],
    final_operations: &[],
    stage_progress: &[("deploy_model", 30.0), ("deployment_status", 60.0)],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "deployment_create",
    name: "Deploy Model",
    category: DEPLOYMENT,
    description: "Deploy a model to create an inference endpoint (budapp's deploy workflow). \
                  Supports cloud models (OpenAI, Anthropic) and local models (HuggingFace). \
                  Smart Mode: for local models with SLO targets, first runs a budsim simulation \
                  to determine the parser configs (tool calling, reasoning, chat template).",
    params: vec![
        ParamSpec::new("model_id", "string", "The model to deploy.").required(),
        ParamSpec::new(
            "project_id",
            "string",
            "The project to deploy the endpoint in.",
        )
        .required(),
        ParamSpec::new(
            "endpoint_name",
            "string",
            "Unique name for the deployment endpoint (lowercase, hyphens allowed).",
        )
        .required(),
        ParamSpec::new(
            "cluster_id",
            "string",
            "Target cluster for deployment (required for local models, optional for cloud models).",
        ),
        ParamSpec::new(
            "credential_id",
            "string",
            "API credential for cloud model provider (required for cloud models).",
        ),
        ParamSpec::new(
            "hardware_mode",
            "string",
            "GPU allocation mode: 'dedicated' for full GPU access, 'shared' for GPU time-slicing.",
        )
        .default(json!("dedicated"))
        .options(HARDWARE_MODES),
        ParamSpec::new(
            "concurrent_requests",
            "number",
            "Number of concurrent requests the endpoint should handle.",
        )
        .default(json!(1))
        .range(Some(1.0), Some(1000.0)),
        ParamSpec::new(
            "avg_sequence_length",
            "number",
            "Average output sequence length (tokens).",
        )
        .default(json!(512))
        .range(Some(1.0), Some(10_000.0)),
        ParamSpec::new(
            "avg_context_length",
            "number",
            "Average input context length (tokens).",
        )
        .default(json!(4096))
        .range(Some(1.0), Some(200_000.0)),
        ParamSpec::new(
            "ttft",
            "array",
            "Time to first token range [min, max] in milliseconds (the simulation's target).",
        ),
        ParamSpec::new(
            "per_session_tokens_per_sec",
            "array",
            "Tokens per second range [min, max] (the simulation's target).",
        ),
        ParamSpec::new(
            "e2e_latency",
            "array",
            "End-to-end latency range [min, max] in seconds (the simulation's target).",
        ),
        ParamSpec::new(
            "budaiscaler_specification",
            "object",
            "BudAIScaler specification for autoscaling (minReplicas, maxReplicas, scalingStrategy, ...).",
        ),
        ParamSpec::new(
            "tool_calling_parser_type",
            "string",
            "Tool calling parser (skips the simulation when set).",
        ),
        ParamSpec::new(
            "reasoning_parser_type",
            "string",
            "Reasoning parser (skips the simulation when set).",
        ),
        ParamSpec::new(
            "chat_template",
            "string",
            "Chat template (skips the simulation when set).",
        ),
        ParamSpec::new(
            "supports_lora",
            "boolean",
            "Whether the engine supports LoRA.",
        ),
        ParamSpec::new(
            "supports_pipeline_parallelism",
            "boolean",
            "Whether the engine supports pipeline parallelism.",
        ),
    ],
    outputs: vec![
        OutputSpec::new("success", "boolean", "Whether deployment was successful."),
        OutputSpec::new(
            "endpoint_id",
            "string",
            "Unique identifier of the created endpoint (null when the completion event names none).",
        ),
        OutputSpec::new("endpoint_url", "string", "URL of the deployment endpoint."),
        OutputSpec::new(
            "endpoint_name",
            "string",
            "Name of the deployment endpoint.",
        ),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budapp's workflow id, the correlation id of the events.",
        ),
        OutputSpec::new("status", "string", "completed, deploying or failed."),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    endpoint_name: OptText,
    model_id: OptText,
    cluster_id: OptText,
    credential_id: OptText,
    hardware_mode: OptText,
    concurrent_requests: Option<Number>,
    avg_sequence_length: Option<Number>,
    avg_context_length: Option<Number>,
    // The SLOS, in their order.
    ttft: Option<Range>,
    per_session_tokens_per_sec: Option<Range>,
    e2e_latency: Option<Range>,
    // The PARSERS, in their order.
    tool_calling_parser_type: OptText,
    reasoning_parser_type: OptText,
    chat_template: OptText,
    supports_lora: Option<Bool>,
    supports_pipeline_parallelism: Option<Bool>,
    budaiscaler_specification: Option<Object>,
    project_id: OptText,
}

/// An SLO range `[min, max]` of numbers with `min <= max`, kept as given.
struct Range(Value);

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match range_problem(&value) {
            None => Ok(Self(value)),
            Some(problem) => Err(de::Error::custom(problem)),
        }
    }
}

pub(crate) struct DeploymentCreate {
    bud: BudServices,
}

/// The simulation's top recommendation and budsim's id for it.
struct Simulated {
    top: Option<Map<String, Value>>,
    simulator_id: Option<String>,
}

impl DeploymentCreate {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn start(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let endpoint_name = p.endpoint_name.or_default();
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("endpoint_id", Value::Null),
                ("endpoint_url", Value::Null),
                ("endpoint_name", json!(endpoint_name)),
                ("workflow_id", Value::Null),
                ("status", json!("failed")),
                ("message", json!(message)),
            ])
        };
        let model_id = p.model_id.or_default();
        let cluster_id = p.cluster_id.0;
        let credential_id = p.credential_id.0;
        let hardware_mode = p.hardware_mode.or("dedicated");
        let number = |n: Option<Number>, default: Value| n.map_or(default, |n| n.0);
        let mut deploy_config = json!({
            "concurrent_requests": number(p.concurrent_requests, json!(1)),
            "avg_sequence_length": number(p.avg_sequence_length, json!(512)),
            "avg_context_length": number(p.avg_context_length, json!(4096)),
        });
        let slos = [p.ttft, p.per_session_tokens_per_sec, p.e2e_latency];
        let has_slos = slos.iter().all(Option::is_some);
        for (slo, range) in SLOS.into_iter().zip(slos) {
            if let Some(Range(range)) = range {
                deploy_config[slo] = range;
            }
        }
        let mut parsers = Map::new();
        let given_parsers = [
            p.tool_calling_parser_type,
            p.reasoning_parser_type,
            p.chat_template,
        ];
        for (name, value) in PARSERS.into_iter().zip(given_parsers) {
            if let Some(value) = value.0 {
                parsers.insert(name.to_owned(), json!(value));
            }
        }
        let mut capabilities = Map::new();
        let given_capabilities = [p.supports_lora, p.supports_pipeline_parallelism];
        for (name, value) in CAPABILITIES.into_iter().zip(given_capabilities) {
            if let Some(Bool(value)) = value {
                capabilities.insert(name.to_owned(), json!(value));
            }
        }
        let budaiscaler = p.budaiscaler_specification.map(|s| s.0);

        let mut simulator_id = None;
        if needs_simulation(has_slos, cluster_id.as_deref(), &hardware_mode, &parsers) {
            let simulated = self
                .simulate(
                    ctx,
                    &model_id,
                    &deploy_config,
                    cluster_id.as_deref(),
                    &hardware_mode,
                )
                .await;
            match simulated {
                Ok(Simulated {
                    top,
                    simulator_id: id,
                }) => {
                    simulator_id = id;
                    if let Some(top) = top {
                        for name in PARSERS {
                            if let Some(v) = top.get(name).filter(|v| !v.is_null()) {
                                parsers.entry(name).or_insert_with(|| v.clone());
                            }
                        }
                        for name in CAPABILITIES {
                            if let Some(v) = top.get(name).filter(|v| !v.is_null()) {
                                capabilities.entry(name).or_insert_with(|| v.clone());
                            }
                        }
                    }
                }
                // Dedicated hardware is sized by the simulation; shared
                // hardware deploys without one (best effort).
                Err((message, retryable)) if hardware_mode == "dedicated" => {
                    let message = format!("Simulation failed: {message}");
                    return Err(StepOutcome::Failed {
                        outputs: failed(&message),
                        error: message,
                        retryable,
                    });
                }
                Err((message, _)) => {
                    tracing::warn!(error = %message, "simulation failed; deploying on shared hardware without it");
                }
            }
        }

        let mut body = json!({
            "workflow_total_steps": 1,
            "step_number": 1,
            "trigger_workflow": true,
            "model_id": model_id,
            "project_id": p.project_id.or_default(),
            "endpoint_name": endpoint_name,
            "deploy_config": deploy_config,
            "callback_topic": self.bud.callback_topic(),
        });
        if let Some(id) = &cluster_id {
            body["cluster_id"] = json!(id);
        }
        if let Some(id) = &credential_id {
            body["credential_id"] = json!(id);
        }
        body["hardware_mode"] = json!(hardware_mode);
        if parsers.contains_key("tool_calling_parser_type") {
            body["enable_tool_calling"] = json!(true);
        }
        if parsers.contains_key("reasoning_parser_type") {
            body["enable_reasoning"] = json!(true);
        }
        for (name, value) in parsers.into_iter().chain(capabilities) {
            body[name] = value;
        }
        if let Some(spec) = budaiscaler.filter(|s| !s.is_empty()) {
            body["budaiscaler_specification"] = Value::Object(spec);
        }
        if let Some(id) = simulator_id {
            body["simulator_id"] = json!(id);
        }

        let user = self.bud.initiator(ctx, Initiator::ExecutionOnly);
        let call = BudCall::post("/models/deploy-workflow", body).taking(120);
        let answer = self
            .bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to deploy model", &e, failed))?;
        let data = answer.get("data").unwrap_or(&Value::Null);
        let status = data
            .get("status")
            .or_else(|| answer.get("status"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let workflow_id = workflow_id_of(&answer);
        if status == "completed" {
            // A cloud model is deployed at once.
            let progress = data.get("progress").unwrap_or(&Value::Null);
            return Ok(StepOutcome::completed(outputs([
                ("success", json!(true)),
                (
                    "endpoint_id",
                    progress.get("endpoint_id").cloned().unwrap_or(Value::Null),
                ),
                (
                    "endpoint_url",
                    progress.get("endpoint_url").cloned().unwrap_or(Value::Null),
                ),
                ("endpoint_name", json!(endpoint_name)),
                ("workflow_id", json!(workflow_id)),
                ("status", json!("completed")),
                (
                    "message",
                    json!(format!("Endpoint '{endpoint_name}' deployed successfully")),
                ),
            ])));
        }
        if status == "failed" {
            let reason = answer
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("budapp's deploy workflow failed");
            let message = format!("Failed to deploy model: {reason}");
            return Err(refused(message.clone(), failed(&message)));
        }
        let Some(workflow_id) = workflow_id else {
            let message = "No workflow_id returned from budapp";
            return Err(refused(message, failed(message)));
        };
        Ok(StepOutcome::AwaitEvent {
            external_id: workflow_id.clone(),
            outputs: outputs([
                ("success", json!(true)),
                ("endpoint_id", Value::Null),
                ("endpoint_url", Value::Null),
                ("endpoint_name", json!(endpoint_name)),
                ("workflow_id", json!(workflow_id)),
                ("status", json!("deploying")),
                ("message", json!("Model deployment in progress...")),
            ]),
            timeout: None,
        })
    }

    /// Smart mode. `Err((message, retryable))` when the simulation failed;
    /// a simulation that does not apply (a cloud model, no local path, a
    /// model budapp does not know) is `Ok` with nothing.
    async fn simulate(
        &self,
        ctx: &StepContext,
        model_id: &str,
        deploy_config: &Value,
        cluster_id: Option<&str>,
        hardware_mode: &str,
    ) -> Result<Simulated, (String, bool)> {
        let nothing = Simulated {
            top: None,
            simulator_id: None,
        };
        if !is_uuid(model_id) {
            return Ok(nothing);
        }
        let user = self.bud.initiator(ctx, Initiator::ExecutionOnly);
        let model = match self.bud.model_info(ctx, model_id, user.as_deref()).await {
            Ok(model) => model,
            Err(e) if e.is_retryable() => return Err((callee_message(&e), true)),
            // The original went on without a simulation when budapp could
            // not describe the model.
            Err(e) => {
                tracing::warn!(error = %callee_message(&e), "model lookup failed; deploying without a simulation");
                return Ok(nothing);
            }
        };
        let provider = model
            .get("provider_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if provider.eq_ignore_ascii_case("cloud_model") {
            return Ok(nothing);
        }
        let Some(pretrained) = pretrained_model_uri(&model) else {
            return Ok(nothing);
        };
        // Lower bound of ttft and e2e latency, upper bound of throughput;
        // 0 when shared mode gives none (budsim's "no target").
        let target = |slo: &str, index: usize| {
            deploy_config
                .get(slo)
                .and_then(|r| r.get(index))
                .cloned()
                .unwrap_or(json!(0))
        };
        let mut request = json!({
            "pretrained_model_uri": pretrained,
            "input_tokens": deploy_config["avg_context_length"],
            "output_tokens": deploy_config["avg_sequence_length"],
            "concurrency": deploy_config["concurrent_requests"],
            "target_ttft": target("ttft", 0),
            "target_throughput_per_user": target("per_session_tokens_per_sec", 1),
            "target_e2e_latency": target("e2e_latency", 0),
            "is_proprietary_model": false,
            "hardware_mode": hardware_mode,
            "debug": true,
        });
        if let Some(id) = cluster_id {
            request["cluster_id"] = json!(id);
        }
        if let Some(endpoints) = model_endpoints(&model) {
            request["model_endpoints"] = json!(endpoints);
        }
        let call = BudCall::post("/simulator/run", request).taking(120);
        let answer = self
            .bud
            .budsim(ctx, call)
            .await
            .map_err(|e: InvokeError| (callee_message(&e), e.is_retryable()))?;
        let simulator_id = answer
            .get("workflow_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let top = answer
            .get("recommendations")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_object)
            .cloned();
        if top.is_none() {
            let message = answer
                .get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or("No deployment recommendations found from simulation");
            return Err((message.to_owned(), false));
        }
        Ok(Simulated { top, simulator_id })
    }
}

/// Whether smart mode applies: a local deployment (a cluster), SLO targets
/// unless the hardware is shared, and no parser settings given.
fn needs_simulation(
    has_slos: bool,
    cluster_id: Option<&str>,
    hardware_mode: &str,
    parsers: &Map<String, Value>,
) -> bool {
    cluster_id.is_some() && (hardware_mode != "dedicated" || has_slos) && parsers.is_empty()
}

/// budsim's `model_endpoints` from budapp's `supported_endpoints` (the
/// original's `derive_model_endpoints`): chat is `LLM`; embedding,
/// classify, rerank and moderation are `EMBEDDING`.
fn model_endpoints(model: &Map<String, Value>) -> Option<String> {
    let supported = model.get("supported_endpoints")?.as_object()?;
    let mut kinds: Vec<&str> = supported
        .iter()
        .filter(|(_, v)| v.get("enabled").and_then(Value::as_bool) == Some(true))
        .filter_map(|(k, _)| match k.to_ascii_uppercase().as_str() {
            "CHAT" => Some("LLM"),
            "EMBEDDING" | "CLASSIFY" | "RERANK" | "MODERATION" => Some("EMBEDDING"),
            _ => None,
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    (!kinds.is_empty()).then(|| kinds.join(","))
}

/// What is wrong with an SLO range, said after its name.
fn range_problem(value: &Value) -> Option<&'static str> {
    let Some([min, max]) = value.as_array().map(Vec::as_slice) else {
        return Some("must be a [min, max] array");
    };
    let (Some(min), Some(max)) = (min.as_f64(), max.as_f64()) else {
        return Some("values must be numbers");
    };
    (min > max).then_some("min value cannot be greater than max value")
}

impl StepHandler for DeploymentCreate {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let mut errors = Vec::new();
        // Whether an id is given (a template counts) is a question for the
        // params as submitted, not for their values.
        let given = |name: &str| {
            params
                .get(name)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
        };
        if !given("cluster_id") && !given("credential_id") {
            errors.push(
                "Either cluster_id (for local models) or credential_id (for cloud models) is required"
                    .to_owned(),
            );
        }
        let submitted = params::submitted::<Params>(params);
        errors.extend(submitted.problems_with(&SLOS));
        let spec = submitted
            .params
            .and_then(|p| p.budaiscaler_specification)
            .map(|s| s.0);
        if let Some(spec) = spec {
            let int_at_least = |key: &str, min: i64| match spec.get(key) {
                None => true,
                Some(v) if is_template(v) => true,
                Some(v) => v.as_i64().is_some_and(|n| n >= min),
            };
            if !int_at_least("minReplicas", 0) {
                errors.push(
                    "budaiscaler_specification.minReplicas must be a non-negative integer".into(),
                );
            }
            if !int_at_least("maxReplicas", 1) {
                errors.push(
                    "budaiscaler_specification.maxReplicas must be a positive integer".into(),
                );
            }
        }
        errors
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.start(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, outputs_so_far: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "Deployment failed") {
            EventAction::Complete(result) => {
                let name = outputs_so_far
                    .get("endpoint_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                EventAction::Complete(outputs([
                    ("success", json!(true)),
                    ("endpoint_id", field(&result, "endpoint_id")),
                    ("endpoint_url", field(&result, "endpoint_url")),
                    ("status", json!("completed")),
                    (
                        "message",
                        json!(format!("Endpoint '{name}' deployed successfully")),
                    ),
                ]))
            }
            other => other,
        }
    }

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        budapp_wait_timed_out(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::params;

    fn handler() -> DeploymentCreate {
        DeploymentCreate::new(super::super::tests::bud())
    }

    fn notification(op: &str, stage: &str, status: &str, result: Value) -> Value {
        super::super::tests::notification(op, stage, status, "msg", result)
    }

    #[test]
    fn only_a_final_stage_completes_and_a_failed_one_fails() {
        let so_far = params(json!({"endpoint_name": "e1", "workflow_id": "w"}));
        let transfer = notification(
            "deploy_model",
            "transfer_model_to_cluster",
            "COMPLETED",
            Value::Null,
        );
        assert!(matches!(
            handler().on_event(&transfer, &so_far),
            EventAction::Progress(_)
        ));
        let started = notification("deploy_model", "deployment_status", "STARTED", Value::Null);
        let EventAction::Progress(report) = handler().on_event(&started, &so_far) else {
            panic!("progress");
        };
        assert_eq!(report.progress, Some(60.0));
        let results = notification(
            "deploy_model",
            "results",
            "COMPLETED",
            json!({"namespace": "ns", "endpoint_id": null}),
        );
        assert_eq!(
            handler().on_event(&results, &so_far),
            EventAction::Complete(params(json!({
                "success": true, "endpoint_id": null, "endpoint_url": null,
                "status": "completed", "message": "Endpoint 'e1' deployed successfully"
            })))
        );
        let failed = notification("deploy_model", "deploy_to_engine", "FAILED", Value::Null);
        assert_eq!(
            handler().on_event(&failed, &so_far),
            EventAction::Fail("msg".into())
        );
        let other = notification(
            "get_cluster_recommendations",
            "results",
            "COMPLETED",
            json!({}),
        );
        assert_eq!(handler().on_event(&other, &so_far), EventAction::Ignore);
    }

    #[test]
    fn validation_follows_the_originals_rules() {
        let h = handler();
        let ok = params(json!({"cluster_id": "c", "ttft": [50, 200],
                               "budaiscaler_specification": {"minReplicas": 0, "maxReplicas": 2}}));
        assert!(h.validate(&ok).is_empty());
        let bad = params(json!({"ttft": [200, 50], "e2e_latency": [1],
                                "per_session_tokens_per_sec": ["a", 2],
                                "budaiscaler_specification": {"minReplicas": -1, "maxReplicas": 0}}));
        assert_eq!(
            h.validate(&bad),
            [
                "Either cluster_id (for local models) or credential_id (for cloud models) is required",
                "ttft min value cannot be greater than max value",
                "per_session_tokens_per_sec values must be numbers",
                "e2e_latency must be a [min, max] array",
                "budaiscaler_specification.minReplicas must be a non-negative integer",
                "budaiscaler_specification.maxReplicas must be a positive integer",
            ]
        );
    }

    #[test]
    fn smart_mode_needs_a_cluster_slos_in_dedicated_mode_and_no_parsers() {
        let none = Map::new();
        assert!(needs_simulation(true, Some("c"), "dedicated", &none));
        assert!(!needs_simulation(true, None, "dedicated", &none));
        assert!(!needs_simulation(false, Some("c"), "dedicated", &none));
        assert!(needs_simulation(false, Some("c"), "shared", &none));
        let parsers = params(json!({"chat_template": "t"}));
        assert!(!needs_simulation(true, Some("c"), "dedicated", &parsers));
    }

    #[test]
    fn endpoints_map_to_budsims_kinds() {
        let model = params(json!({"supported_endpoints": {
            "chat": {"enabled": true}, "embedding": {"enabled": true},
            "rerank": {"enabled": true}, "audio_transcription": {"enabled": true},
            "classify": {"enabled": false}}}));
        assert_eq!(model_endpoints(&model).as_deref(), Some("EMBEDDING,LLM"));
        assert_eq!(model_endpoints(&Map::new()), None);
    }
}
