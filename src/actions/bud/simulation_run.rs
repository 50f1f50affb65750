//! `simulation_run`: run a budsim simulation for a budapp model and wait for
//! its recommendations.
//!
//! `GET budapp /models/{id}?user_id=` resolves the model's path, then
//! `POST budsim /simulator/run` (asynchronous: `debug: false`,
//! `source_topic` = our topic) starts budsim's workflow, whose id the step
//! waits on. budsim publishes `workflow_metadata` (ignored), one
//! notification per stage (progress), `eta`, and `results`, which ends the
//! wait: COMPLETED with at least one recommendation completes the step,
//! COMPLETED with none fails it, as does any FAILED stage.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BudCall, BudServices, Initiator, MaxWait, SIMULATION, awaited_workflow_id, call_failed, field,
    is_uuid, max_wait_spec, outputs, refused,
};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Bool, Number, OptText};
use crate::actions::seed::{Attempt, is_template};
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};

const DEFAULT_WAIT_SECONDS: u64 = 1800;
const METHODS: &[&str] = &["regressor", "heuristic"];
const HARDWARE_MODES: &[&str] = &["dedicated", "shared"];

/// budsim's stages and the progress each stands for (the original's table;
/// a COMPLETED stage counts 5 more, at most 95).
const RULES: WaitRules = WaitRules {
    operations: &[],
    final_stages: &[],
    final_operations: &[],
    stage_progress: &[
        ("validation", 10.0),
        ("hardware_selection", 25.0),
        ("engine_configuration", 50.0),
        ("performance_estimation", 75.0),
        ("ranking", 90.0),
    ],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "simulation_run",
    name: "Run Simulation",
    category: SIMULATION,
    description: "Run a BudSim performance simulation to find optimal deployment configurations. \
                  Returns hardware recommendations, estimated metrics (TTFT, throughput, latency), \
                  and engine parser configs. Results can be chained to deployment steps.",
    params: vec![
        ParamSpec::new(
            "model_id",
            "string",
            "Model to simulate (a budapp model id).",
        )
        .required(),
        ParamSpec::new(
            "input_tokens",
            "number",
            "Average input token count per request.",
        )
        .default(json!(4096))
        .range(Some(1.0), Some(200_000.0)),
        ParamSpec::new(
            "output_tokens",
            "number",
            "Average output token count per request.",
        )
        .default(json!(512))
        .range(Some(1.0), Some(50_000.0)),
        ParamSpec::new("concurrency", "number", "Number of concurrent requests.")
            .default(json!(1))
            .range(Some(1.0), Some(1000.0)),
        // budapp's guardrail flow sends 0 for a target its profile does not
        // set, so the lower bound of the original's form (1) is not enforced.
        ParamSpec::new(
            "target_ttft",
            "number",
            "Target time to first token in milliseconds.",
        )
        .required()
        .range(Some(0.0), Some(60_000.0)),
        ParamSpec::new(
            "target_throughput_per_user",
            "number",
            "Target output tokens per second per user.",
        )
        .required()
        .range(Some(0.0), Some(1000.0)),
        ParamSpec::new(
            "target_e2e_latency",
            "number",
            "Target end-to-end latency in seconds.",
        )
        .required()
        .range(Some(0.0), Some(600.0)),
        ParamSpec::new(
            "cluster_id",
            "string",
            "Specific cluster to simulate on (omit to evaluate all clusters).",
        ),
        ParamSpec::new(
            "simulation_method",
            "string",
            "Optimization method: regressor (ML-based) or heuristic (memory-based).",
        )
        .options(METHODS),
        ParamSpec::new("hardware_mode", "string", "GPU allocation mode.")
            .default(json!("dedicated"))
            .options(HARDWARE_MODES),
        ParamSpec::new(
            "model_endpoints",
            "string",
            "Endpoint types: 'EMBEDDING', 'LLM', or 'EMBEDDING,LLM'.",
        ),
        ParamSpec::new(
            "model_max_context_length",
            "number",
            "Override maximum context length for the model.",
        )
        .range(Some(1.0), Some(1_000_000.0)),
        ParamSpec::new(
            "is_quantization",
            "boolean",
            "Enable quantized model simulation.",
        )
        .default(json!(false)),
        ParamSpec::new(
            "quantization_method",
            "string",
            "Quantization method (e.g., 'awq', 'gptq').",
        ),
        ParamSpec::new(
            "quantization_type",
            "string",
            "Quantization precision (e.g., 'int4', 'int8').",
        ),
        max_wait_spec(
            "Maximum time to wait for simulation completion.",
            DEFAULT_WAIT_SECONDS,
            [60.0, 7200.0],
        ),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether simulation completed successfully.",
        ),
        OutputSpec::new("workflow_id", "string", "BudSim workflow ID for tracking."),
        OutputSpec::new(
            "status",
            "string",
            "Simulation status: running, completed, or failed.",
        ),
        OutputSpec::new(
            "recommendations",
            "json",
            "Full array of deployment recommendations.",
        ),
        OutputSpec::new("top_recommendation", "json", "Best recommendation object."),
        OutputSpec::new(
            "cluster_id",
            "string",
            "Cluster ID from the top recommendation.",
        ),
        OutputSpec::new(
            "metrics",
            "json",
            "Estimated metrics: ttft, throughput_per_user, e2e_latency, error_rate, cost_per_million_tokens.",
        ),
        OutputSpec::new(
            "tool_calling_parser_type",
            "string",
            "Tool calling parser configuration from top recommendation.",
        ),
        OutputSpec::new(
            "reasoning_parser_type",
            "string",
            "Reasoning parser configuration from top recommendation.",
        ),
        OutputSpec::new(
            "chat_template",
            "string",
            "Chat template from top recommendation.",
        ),
        OutputSpec::new(
            "supports_lora",
            "boolean",
            "Whether LoRA adapters are supported.",
        ),
        OutputSpec::new(
            "supports_pipeline_parallelism",
            "boolean",
            "Whether pipeline parallelism is supported.",
        ),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    model_id: OptText,
    input_tokens: Option<Number>,
    output_tokens: Option<Number>,
    concurrency: Option<Number>,
    hardware_mode: OptText,
    // Sent to budsim when given.
    target_ttft: Option<Number>,
    target_throughput_per_user: Option<Number>,
    target_e2e_latency: Option<Number>,
    model_max_context_length: Option<Number>,
    cluster_id: OptText,
    simulation_method: OptText,
    model_endpoints: OptText,
    // Sent only with is_quantization.
    is_quantization: Option<Bool>,
    quantization_method: OptText,
    quantization_type: OptText,
    max_wait_seconds: Option<MaxWait>,
}

pub(crate) struct SimulationRun {
    bud: BudServices,
}

/// The outputs of a simulation that did not produce recommendations.
fn failed_outputs(workflow_id: Value, message: &str) -> Map<String, Value> {
    outputs([
        ("success", json!(false)),
        ("workflow_id", workflow_id),
        ("status", json!("failed")),
        ("recommendations", Value::Null),
        ("top_recommendation", Value::Null),
        ("cluster_id", Value::Null),
        ("metrics", Value::Null),
        ("message", json!(message)),
    ])
}

impl SimulationRun {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn start(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let failed = |message: &str| failed_outputs(Value::Null, message);
        let model_id = p.model_id.or_default();
        let unresolved = "Could not resolve model URI from model_id";
        // Only a UUID goes into budapp's path, as in the original.
        if !is_uuid(&model_id) {
            return Err(refused(
                unresolved,
                failed(&format!("{unresolved}. Ensure the model exists in budapp.")),
            ));
        }
        let user = self.bud.initiator(ctx, Initiator::ExecutionOnly);
        let model = self
            .bud
            .model_info(ctx, &model_id, user.as_deref())
            .await
            .map_err(|e| call_failed(unresolved, &e, failed))?;
        let Some(pretrained) = pretrained_model_uri(&model) else {
            return Err(refused(
                unresolved,
                failed(&format!("{unresolved}. Ensure the model exists in budapp.")),
            ));
        };
        let number = |n: Option<Number>, default: Value| n.map_or(default, |n| n.0);
        let mut body = json!({
            "input_tokens": number(p.input_tokens, json!(4096)),
            "output_tokens": number(p.output_tokens, json!(512)),
            "concurrency": number(p.concurrency, json!(1)),
            "is_proprietary_model": false,
            "hardware_mode": p.hardware_mode.or("dedicated"),
            "debug": false,
            "source_topic": self.bud.callback_topic(),
            "pretrained_model_uri": pretrained,
        });
        if let Some(uri) = model.get("huggingface_url").filter(|v| !v.is_null()) {
            body["model_uri"] = uri.clone();
        }
        let numbers = [
            ("target_ttft", p.target_ttft),
            ("target_throughput_per_user", p.target_throughput_per_user),
            ("target_e2e_latency", p.target_e2e_latency),
            ("model_max_context_length", p.model_max_context_length),
        ];
        for (name, value) in numbers {
            if let Some(Number(value)) = value {
                body[name] = value;
            }
        }
        let quantized = p.is_quantization == Some(Bool(true));
        if quantized {
            body["is_quantization"] = json!(true);
        }
        let texts = [
            ("cluster_id", p.cluster_id.0),
            ("simulation_method", p.simulation_method.0),
            ("model_endpoints", p.model_endpoints.0),
            (
                "quantization_method",
                p.quantization_method.0.filter(|_| quantized),
            ),
            (
                "quantization_type",
                p.quantization_type.0.filter(|_| quantized),
            ),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                body[name] = json!(value);
            }
        }
        let timeout = p.max_wait_seconds.map(|w| w.0);
        let answer = self
            .bud
            .budsim(ctx, BudCall::post("/simulator/run", body).taking(120))
            .await
            .map_err(|e| call_failed("Failed to start simulation", &e, failed))?;
        let missing = "BudSim did not return a workflow_id";
        let workflow_id = awaited_workflow_id(&answer, missing, failed)?;
        Ok(StepOutcome::AwaitEvent {
            external_id: workflow_id.clone(),
            outputs: outputs([
                ("success", json!(true)),
                ("workflow_id", json!(workflow_id)),
                ("status", json!("running")),
                ("recommendations", Value::Null),
                ("top_recommendation", Value::Null),
                ("cluster_id", Value::Null),
                ("metrics", Value::Null),
                (
                    "message",
                    json!("Simulation started, waiting for results..."),
                ),
            ]),
            timeout,
        })
    }
}

/// Where the model's weights are: `local_path`, else `uri`, else
/// `huggingface_url` (the original's `resolve_pretrained_model_uri`).
pub(super) fn pretrained_model_uri(model: &Map<String, Value>) -> Option<String> {
    ["local_path", "uri", "huggingface_url"]
        .iter()
        .find_map(|key| model.get(*key).and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// budsim's final result as the original's outputs, or why it is a failure.
fn completion(result: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let recommendations = match result.get("recommendations") {
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        _ => return Err("Simulation completed but returned no recommendations".into()),
    };
    let top = recommendations[0].as_object().cloned().unwrap_or_default();
    let metrics = top
        .get("metrics")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let picked: Map<String, Value> = [
        "ttft",
        "throughput_per_user",
        "e2e_latency",
        "error_rate",
        "cost_per_million_tokens",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), field(&metrics, k)))
    .collect();
    let count = recommendations.len();
    Ok(outputs([
        ("success", json!(true)),
        ("status", json!("completed")),
        ("top_recommendation", Value::Object(top.clone())),
        ("recommendations", Value::Array(recommendations)),
        ("cluster_id", field(&top, "cluster_id")),
        ("metrics", Value::Object(picked)),
        (
            "tool_calling_parser_type",
            field(&top, "tool_calling_parser_type"),
        ),
        (
            "reasoning_parser_type",
            field(&top, "reasoning_parser_type"),
        ),
        ("chat_template", field(&top, "chat_template")),
        ("supports_lora", field(&top, "supports_lora")),
        (
            "supports_pipeline_parallelism",
            field(&top, "supports_pipeline_parallelism"),
        ),
        (
            "message",
            json!(format!(
                "Simulation completed with {count} recommendation(s)"
            )),
        ),
    ]))
}

impl StepHandler for SimulationRun {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    /// Whether a quantization detail is given (a template counts) is a
    /// question for the params as submitted, not for their values.
    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let quantized = match params.get("is_quantization") {
            Some(Value::Bool(b)) => *b,
            Some(v) if is_template(v) => return Vec::new(),
            _ => false,
        };
        let named = |name: &str| {
            params
                .get(name)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
        };
        if !quantized && (named("quantization_method") || named("quantization_type")) {
            return vec![
                "quantization_method/quantization_type require is_quantization=true".into(),
            ];
        }
        Vec::new()
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.start(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "Simulation failed") {
            EventAction::Complete(result) => match completion(&result) {
                Ok(outputs) => EventAction::Complete(outputs),
                Err(message) => EventAction::Fail(message),
            },
            EventAction::Progress(mut report) => {
                // A finished stage is a little further than a started one.
                if report.status.as_deref() == Some("COMPLETED") {
                    report.progress = report.progress.map(|p| (p + 5.0).min(95.0));
                }
                EventAction::Progress(report)
            }
            other => other,
        }
    }

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        crate::actions::seed::timed_out_waiting(outputs, "workflow_id", "budsim workflow")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, failed, params};

    fn handler() -> SimulationRun {
        SimulationRun::new(super::super::tests::bud())
    }

    fn stage(stage: &str, status: &str, result: Value) -> Value {
        json!({"type": "get_cluster_recommendations",
               "payload": {"type": "get_cluster_recommendations", "event": stage,
                           "workflow_id": "w", "content": {"status": status, "message": "m",
                                                           "result": result}}})
    }

    #[test]
    fn results_complete_with_the_top_recommendation() {
        let rec = json!({"cluster_id": "c1", "tool_calling_parser_type": "hermes",
                         "supports_lora": true,
                         "metrics": {"ttft": 180.5, "throughput_per_user": 45.2, "e2e_latency": 11.9,
                                     "error_rate": 0.0, "cost_per_million_tokens": 0.42,
                                     "replica": 1}});
        let event = stage(
            "results",
            "completed",
            json!({"object": "cluster_recommendations", "recommendations": [rec.clone()]}),
        );
        let EventAction::Complete(out) = handler().on_event(&event, &Map::new()) else {
            panic!("completes");
        };
        assert_eq!(out["cluster_id"], "c1");
        assert_eq!(out["top_recommendation"], rec);
        assert_eq!(out["recommendations"], json!([rec]));
        assert_eq!(
            out["metrics"],
            json!({"ttft": 180.5, "throughput_per_user": 45.2, "e2e_latency": 11.9,
                   "error_rate": 0.0, "cost_per_million_tokens": 0.42})
        );
        assert_eq!(out["tool_calling_parser_type"], "hermes");
        assert_eq!(out["reasoning_parser_type"], Value::Null);
        assert_eq!(
            out["message"],
            "Simulation completed with 1 recommendation(s)"
        );
        assert_eq!(out["success"], true);
    }

    #[test]
    fn no_recommendations_is_a_failure() {
        let event = stage("results", "COMPLETED", json!({"recommendations": []}));
        assert_eq!(
            handler().on_event(&event, &Map::new()),
            EventAction::Fail("Simulation completed but returned no recommendations".into())
        );
    }

    #[test]
    fn stages_are_progress_with_the_originals_percentages() {
        let cases = [
            ("validation", "STARTED", 10.0),
            ("validation", "COMPLETED", 15.0),
            ("hardware_selection", "STARTED", 25.0),
            ("engine_configuration", "STARTED", 50.0),
            ("performance_estimation", "COMPLETED", 80.0),
            ("ranking", "STARTED", 90.0),
            ("ranking", "COMPLETED", 95.0),
        ];
        for (name, status, expected) in cases {
            let EventAction::Progress(report) =
                handler().on_event(&stage(name, status, Value::Null), &Map::new())
            else {
                panic!("{name} {status} is progress");
            };
            assert_eq!(report.progress, Some(expected), "{name} {status}");
        }
        let failed = stage("validation", "FAILED", Value::Null);
        assert_eq!(
            handler().on_event(&failed, &Map::new()),
            EventAction::Fail("m".into())
        );
        let metadata = json!({"type": "workflow_metadata", "object": "workflow_metadata",
                              "workflow_id": "w", "status": "PENDING"});
        assert_eq!(
            handler().on_event(&metadata, &Map::new()),
            EventAction::Ignore
        );
    }

    #[test]
    fn quantization_details_need_quantization() {
        let h = handler();
        assert_eq!(
            h.validate(&params(json!({"quantization_method": "awq"}))),
            ["quantization_method/quantization_type require is_quantization=true"]
        );
        assert!(
            h.validate(&params(
                json!({"is_quantization": true, "quantization_method": "awq"})
            ))
            .is_empty()
        );
    }

    #[tokio::test]
    async fn a_model_id_that_is_not_a_uuid_fails_without_a_call() {
        let outcome = handler().run(ctx(json!({"model_id": "../etc"}))).await;
        let (error, retryable, outputs) = failed(outcome);
        assert_eq!(error, "Could not resolve model URI from model_id");
        assert!(!retryable);
        assert_eq!(outputs["status"], "failed");
    }

    #[test]
    fn the_pretrained_uri_prefers_the_local_path() {
        let model = params(json!({"local_path": "/m", "uri": "org/m", "huggingface_url": "h"}));
        assert_eq!(pretrained_model_uri(&model).as_deref(), Some("/m"));
        let model = params(json!({"local_path": null, "uri": "org/m"}));
        assert_eq!(pretrained_model_uri(&model).as_deref(), Some("org/m"));
        assert_eq!(pretrained_model_uri(&Map::new()), None);
    }
}
