//! `model_benchmark`: benchmark a model on a cluster through budapp's
//! benchmark workflow, as the original did:
//!
//! 1. `GET budapp /clusters/{id}?user_id=` finds budapp's cluster and its
//!    budcluster id (an id that is budcluster's is found in
//!    `GET budapp /clusters/clusters?limit=100` instead);
//! 2. `GET budcluster /cluster/{bud_cluster_id}/nodes` lists the nodes;
//! 3. `POST budapp /benchmark/node-configurations?user_id=` gives the
//!    device types and TP/PP options for them; the requested (or best:
//!    cuda, hpu, cpu_high, cpu) device type and TP/PP are chosen, or, when
//!    that call fails, the device type is read from the nodes' hardware;
//! 4. `POST budapp /benchmark/run-workflow?user_id=` starts the benchmark
//!    with our topic as `callback_topic`; budcluster's
//!    `performance_benchmark` notifications come back under budapp's
//!    workflow id, `results` ends the wait, a FAILED stage fails it.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BudCall, BudServices, Initiator, MODEL_OPERATIONS, MaxWait, awaited_workflow_id,
    budapp_wait_timed_out, call_failed, callee_message, field, is_uuid, max_wait_spec, outputs,
    refused,
};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Number, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dapr::encode_segment;

const DEFAULT_WAIT_SECONDS: u64 = 1200;
const HARDWARE_MODES: &[&str] = &["dedicated", "shared"];
const DEVICE_TYPES: &[&str] = &["cuda", "hpu", "cpu"];
/// Which device type wins when the step names none.
const DEVICE_PRIORITY: &[&str] = &["cuda", "hpu", "cpu_high", "cpu"];

/// budcluster runs a benchmark as its deploy workflow named
/// `performance_benchmark` (`deployment/workflows.py`): `results` ends it.
/// The original's progress table named `deploy_model` and `run_benchmark`;
/// budcluster's stages are `deploy_to_engine` and `run_performance_benchmark`.
const RULES: WaitRules = WaitRules {
    operations: &["performance_benchmark"],
    final_stages: &[],
    final_operations: &[],
    stage_progress: &[
        ("deploy_model", 20.0),
        ("deploy_to_engine", 20.0),
        ("run_benchmark", 50.0),
        ("run_performance_benchmark", 50.0),
    ],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "model_benchmark",
    name: "Model Benchmark",
    category: MODEL_OPERATIONS,
    description: "Run a performance benchmark of a model on a cluster (budapp's benchmark \
                  workflow, run by budcluster), choosing the device type and TP/PP \
                  configuration from the cluster's nodes, and wait for the results.",
    params: vec![
        ParamSpec::new("model_id", "string", "The model to benchmark.").required(),
        ParamSpec::new(
            "cluster_id",
            "string",
            "The cluster to benchmark on (budapp's or budcluster's id).",
        )
        .required(),
        ParamSpec::new(
            "benchmark_name",
            "string",
            "Name of the benchmark (at most 50 characters: it names a Kubernetes namespace).",
        )
        .default(json!("auto-benchmark")),
        ParamSpec::new(
            "concurrent_requests",
            "number",
            "Concurrent requests during the benchmark.",
        )
        .default(json!(1))
        .range(Some(1.0), Some(100.0)),
        ParamSpec::new("max_input_tokens", "number", "Input tokens per request.")
            .default(json!(1024))
            .range(Some(1.0), Some(128_000.0)),
        ParamSpec::new("max_output_tokens", "number", "Output tokens per request.")
            .default(json!(512))
            .range(Some(1.0), Some(32_000.0)),
        ParamSpec::new("num_prompts", "number", "Number of prompts to send.")
            .default(json!(10))
            .range(Some(1.0), Some(1000.0)),
        ParamSpec::new("hardware_mode", "string", "GPU allocation mode.")
            .default(json!("dedicated"))
            .options(HARDWARE_MODES),
        ParamSpec::new(
            "selected_device_type",
            "string",
            "Device type to benchmark on (default: the best available).",
        )
        .options(DEVICE_TYPES),
        ParamSpec::new("tp_size", "integer", "Tensor parallelism size.")
            .range(Some(1.0), Some(16.0)),
        ParamSpec::new("pp_size", "integer", "Pipeline parallelism size.")
            .range(Some(1.0), Some(16.0)),
        ParamSpec::new("replicas", "integer", "Number of replicas.").range(Some(1.0), Some(32.0)),
        max_wait_spec(
            "Maximum time to wait for the benchmark (seconds).",
            DEFAULT_WAIT_SECONDS,
            [60.0, 7200.0],
        ),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether the benchmark completed successfully.",
        ),
        OutputSpec::new("benchmark_id", "string", "The benchmark's id."),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budapp's workflow id, the correlation id of the events.",
        ),
        OutputSpec::new("status", "string", "running, completed or failed."),
        OutputSpec::new("results", "object", "The benchmark's results."),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    model_id: OptText,
    cluster_id: OptText,
    hardware_mode: OptText,
    concurrent_requests: Option<Number>,
    max_input_tokens: Option<Number>,
    max_output_tokens: Option<Number>,
    selected_device_type: OptText,
    tp_size: Option<Number>,
    pp_size: Option<Number>,
    replicas: Option<Number>,
    benchmark_name: OptText,
    num_prompts: Option<Number>,
    // Hidden pass-through params of the original, sent as given.
    prompt: Option<Value>,
    prompt_tokens: Option<Value>,
    max_wait_seconds: Option<MaxWait>,
}

pub(crate) struct ModelBenchmark {
    bud: BudServices,
}

/// The device type and parallelism the benchmark runs with.
#[derive(Debug, PartialEq)]
struct Layout {
    device_type: String,
    tp_size: Value,
    pp_size: Value,
    replicas: Value,
}

fn failed_outputs(message: &str) -> Map<String, Value> {
    outputs([
        ("success", json!(false)),
        ("benchmark_id", Value::Null),
        ("workflow_id", Value::Null),
        ("status", json!("failed")),
        ("results", json!({})),
        ("message", json!(message)),
    ])
}

impl ModelBenchmark {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn start(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let model_id = p.model_id.or_default();
        let cluster_id = p.cluster_id.or_default();
        if !is_uuid(&cluster_id) {
            let message = format!("Invalid cluster_id format: '{cluster_id}' is not a valid UUID");
            return Err(refused(message.clone(), failed_outputs(&message)));
        }
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let user = user.as_deref();
        let (app_cluster_id, bud_cluster_id) = self.find_cluster(ctx, &cluster_id, user).await?;
        let nodes = self.nodes(ctx, &cluster_id, &bud_cluster_id).await?;
        if nodes.is_empty() {
            let message = format!("No nodes found for cluster {cluster_id}");
            return Err(refused(message.clone(), failed_outputs(&message)));
        }
        let hostnames: Vec<Value> = nodes
            .iter()
            .filter_map(|n| n.get("hostname").cloned())
            .collect();
        let hardware_mode = p.hardware_mode.or("dedicated");
        let number = |n: Option<Number>, default: Value| n.map_or(default, |n| n.0);
        let concurrent = number(p.concurrent_requests, json!(1));
        let input_tokens = number(p.max_input_tokens, json!(1024));
        let output_tokens = number(p.max_output_tokens, json!(512));
        let wanted_device = p.selected_device_type.0;
        let wanted_tp = p.tp_size.map(|n| n.0);
        let wanted_pp = p.pp_size.map(|n| n.0);
        let wanted_replicas = p.replicas.map(|n| n.0);

        let asked = json!({
            "model_id": model_id, "cluster_id": app_cluster_id, "hostnames": hostnames,
            "hardware_mode": hardware_mode, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "concurrency": concurrent,
        });
        let call = BudCall::post("/benchmark/node-configurations", asked).taking(60);
        let layout = match self.bud.budapp(ctx, user, call).await {
            Ok(answer) => choose_layout(
                &answer,
                wanted_device.as_deref(),
                wanted_tp.as_ref(),
                wanted_pp.as_ref(),
                wanted_replicas.as_ref(),
            )
            .map_err(|message| refused(message.clone(), failed_outputs(&message)))?,
            // As the original: without budsim's options, read the device
            // type from the nodes and run on one device.
            Err(e) => layout_from_nodes(&nodes, wanted_device.as_deref()).map_err(|fallback| {
                let message = format!(
                    "Failed to discover node configurations: {}. Fallback also failed: {fallback}",
                    callee_message(&e)
                );
                refused(message.clone(), failed_outputs(&message))
            })?,
        };

        let mut body = json!({
            "workflow_total_steps": 1,
            "step_number": 1,
            "trigger_workflow": true,
            "model_id": model_id,
            "cluster_id": app_cluster_id,
            "bud_cluster_id": bud_cluster_id,
            "nodes": nodes,
            "name": p.benchmark_name.or("auto-benchmark"),
            "tags": [],
            "description": format!("Automated benchmark from workflow step {}", ctx.step_id),
            "eval_with": "configuration",
            "concurrent_requests": concurrent,
            "max_input_tokens": input_tokens,
            "max_output_tokens": output_tokens,
            "hardware_mode": hardware_mode,
            "selected_device_type": layout.device_type,
            "tp_size": layout.tp_size,
            "pp_size": layout.pp_size,
            "replicas": layout.replicas,
            "num_prompts": number(p.num_prompts, json!(10)),
            "user_confirmation": true,
            "run_as_simulation": false,
            "callback_topic": self.bud.callback_topic(),
        });
        for (name, value) in [("prompt", p.prompt), ("prompt_tokens", p.prompt_tokens)] {
            if let Some(value) = value {
                body[name] = value;
            }
        }
        let timeout = p.max_wait_seconds.map(|w| w.0);
        let call = BudCall::post("/benchmark/run-workflow", body).taking(60);
        let answer =
            self.bud.budapp(ctx, user, call).await.map_err(|e| {
                call_failed("Failed to start benchmark workflow", &e, failed_outputs)
            })?;
        let data = answer.get("data").unwrap_or(&answer);
        let missing = "No workflow_id returned from budapp";
        let workflow_id = awaited_workflow_id(data, missing, failed_outputs)?;
        Ok(StepOutcome::AwaitEvent {
            external_id: workflow_id.clone(),
            outputs: outputs([
                ("success", json!(true)),
                ("benchmark_id", Value::Null),
                ("workflow_id", json!(workflow_id)),
                ("status", json!("running")),
                ("results", json!({})),
                (
                    "message",
                    json!(format!("Benchmark workflow started: {workflow_id}")),
                ),
            ]),
            timeout,
        })
    }

    /// budapp's cluster id and budcluster's for `cluster_id`, which may be
    /// either.
    async fn find_cluster(
        &self,
        ctx: &StepContext,
        cluster_id: &str,
        user: Option<&str>,
    ) -> Attempt<(String, String)> {
        let by_id = BudCall::get(format!("/clusters/{}", encode_segment(cluster_id)));
        if let Ok(answer) = self.bud.budapp(ctx, user, by_id).await {
            let cluster = answer.get("cluster").unwrap_or(&answer);
            let app_id = cluster
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or(cluster_id);
            return match cluster.get("cluster_id").and_then(Value::as_str) {
                Some(bud_id) => Ok((app_id.to_owned(), bud_id.to_owned())),
                None => {
                    let message = format!("Cluster {cluster_id} has no associated bud_cluster_id");
                    Err(refused(message.clone(), failed_outputs(&message)))
                }
            };
        }
        // The id may be budcluster's (what the pipeline editor stores).
        let list = BudCall::get("/clusters/clusters").query("limit", "100");
        let answer = self.bud.budapp(ctx, user, list).await.map_err(|e| {
            call_failed(
                &format!("Failed to fetch cluster info for cluster {cluster_id}"),
                &e,
                failed_outputs,
            )
        })?;
        let found = answer
            .get("clusters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.get("cluster_id").and_then(Value::as_str) == Some(cluster_id))
            .and_then(|c| c.get("id").and_then(Value::as_str));
        match found {
            Some(app_id) => Ok((app_id.to_owned(), cluster_id.to_owned())),
            None => {
                let message = format!(
                    "Cluster not found: no cluster with id or cluster_id matching '{cluster_id}'"
                );
                Err(refused(message.clone(), failed_outputs(&message)))
            }
        }
    }

    /// budcluster's nodes of the cluster, as the benchmark request lists them.
    async fn nodes(
        &self,
        ctx: &StepContext,
        cluster_id: &str,
        bud_cluster_id: &str,
    ) -> Attempt<Vec<Value>> {
        let call = BudCall::get(format!("/cluster/{}/nodes", encode_segment(bud_cluster_id)));
        let answer = self.bud.budcluster(ctx, call).await.map_err(|e| {
            call_failed(
                &format!("Failed to fetch cluster info for cluster {cluster_id}"),
                &e,
                failed_outputs,
            )
        })?;
        let data = answer.get("param").unwrap_or(&answer);
        Ok(data
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|node| {
                let name = node.get("name").and_then(Value::as_str)?;
                (!name.is_empty()).then(|| {
                    json!({
                        "hostname": name,
                        "type": node.get("type").cloned().unwrap_or(json!("")),
                        "total_workers": node.get("total_workers").cloned().unwrap_or(json!(0)),
                        "available_workers": node.get("available_workers").cloned().unwrap_or(json!(0)),
                        "hardware_info": node.get("hardware_info").cloned().unwrap_or(json!([])),
                    })
                })
            })
            .collect())
    }
}

/// The device configuration and TP/PP option to use from budsim's answer
/// (through budapp), or why none fits.
fn choose_layout(
    answer: &Value,
    device: Option<&str>,
    tp: Option<&Value>,
    pp: Option<&Value>,
    replicas: Option<&Value>,
) -> Result<Layout, String> {
    let configs: Vec<&Value> = answer
        .get("device_configurations")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    if configs.is_empty() {
        return Err("No valid device configurations found for selected nodes".into());
    }
    let type_of = |c: &Value| {
        c.get("device_type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let config = match device {
        Some(wanted) => configs
            .iter()
            .find(|c| type_of(c).as_deref() == Some(wanted))
            .ok_or_else(|| {
                let available: Vec<String> = configs.iter().filter_map(|c| type_of(c)).collect();
                format!("Device type '{wanted}' not available. Available: {available:?}")
            })?,
        None => DEVICE_PRIORITY
            .iter()
            .find_map(|p| configs.iter().find(|c| type_of(c).as_deref() == Some(*p)))
            .unwrap_or(&configs[0]),
    };
    let options: Vec<&Value> = config
        .get("tp_pp_options")
        .and_then(Value::as_array)
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    if options.is_empty() {
        return Err("No valid TP/PP configurations available".into());
    }
    let as_i64 = |v: Option<&Value>| v.and_then(Value::as_f64).map(|f| f as i64);
    let option = match (as_i64(tp), as_i64(pp)) {
        (Some(tp), Some(pp)) => options
            .iter()
            .find(|o| as_i64(o.get("tp_size")) == Some(tp) && as_i64(o.get("pp_size")) == Some(pp))
            .ok_or_else(|| {
                let valid: Vec<(i64, i64)> = options
                    .iter()
                    .map(|o| {
                        (
                            as_i64(o.get("tp_size")).unwrap_or(0),
                            as_i64(o.get("pp_size")).unwrap_or(0),
                        )
                    })
                    .collect();
                format!("TP={tp}, PP={pp} not valid. Options: {valid:?}")
            })?,
        _ => options[0],
    };
    Ok(Layout {
        device_type: type_of(config).unwrap_or_default(),
        tp_size: option.get("tp_size").cloned().unwrap_or(json!(1)),
        pp_size: option.get("pp_size").cloned().unwrap_or(json!(1)),
        replicas: replicas
            .cloned()
            .or_else(|| option.get("max_replicas").cloned())
            .unwrap_or(json!(1)),
    })
}

/// The original's fallback: the best device type the nodes' hardware has
/// available, on one device, one replica.
fn layout_from_nodes(nodes: &[Value], device: Option<&str>) -> Result<Layout, String> {
    let mut found: Vec<String> = Vec::new();
    for hw in nodes
        .iter()
        .filter_map(|n| n.get("hardware_info").and_then(Value::as_array))
        .flatten()
    {
        let kind = hw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let available = hw
            .get("available_count")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if !kind.is_empty() && available > 0.0 && !found.contains(&kind) {
            found.push(kind);
        }
    }
    if found.is_empty() {
        return Err("No devices found in nodes' hardware_info".into());
    }
    let device_type = match device {
        Some(wanted) => {
            let wanted = wanted.to_lowercase();
            if !found.contains(&wanted) {
                return Err(format!(
                    "Device type '{wanted}' not found. Available: {found:?}"
                ));
            }
            wanted
        }
        None => DEVICE_PRIORITY
            .iter()
            .find(|p| found.iter().any(|f| f == *p))
            .map_or_else(|| found[0].clone(), |p| (*p).to_owned()),
    };
    Ok(Layout {
        device_type,
        tp_size: json!(1),
        pp_size: json!(1),
        replicas: json!(1),
    })
}

impl StepHandler for ModelBenchmark {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let p = params::submitted::<Params>(params).params;
        match p.and_then(|p| p.benchmark_name.0) {
            Some(name)
                if !crate::dag::template::is_template(&name) && name.chars().count() > 50 =>
            {
                vec!["benchmark_name must be at most 50 characters".into()]
            }
            _ => Vec::new(),
        }
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.start(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "Benchmark failed") {
            EventAction::Complete(result) => {
                let name = result
                    .get("benchmark_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let id = match field(&result, "benchmark_id") {
                    Value::Null => field(&result, "bud_cluster_benchmark_id"),
                    id => id,
                };
                EventAction::Complete(outputs([
                    ("success", json!(true)),
                    ("benchmark_id", id),
                    ("status", json!("completed")),
                    ("results", Value::Object(result)),
                    (
                        "message",
                        json!(format!("Benchmark '{name}' completed successfully")),
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

    fn options(configs: Value) -> Value {
        json!({"device_configurations": configs})
    }

    #[test]
    fn the_best_device_and_the_first_option_win_unless_named() {
        let answer = options(json!([
            {"device_type": "cpu", "tp_pp_options": [{"tp_size": 1, "pp_size": 1, "max_replicas": 2}]},
            {"device_type": "cuda", "tp_pp_options": [
                {"tp_size": 1, "pp_size": 1, "max_replicas": 4},
                {"tp_size": 2, "pp_size": 1, "max_replicas": 2}]}
        ]));
        assert_eq!(
            choose_layout(&answer, None, None, None, None).unwrap(),
            Layout {
                device_type: "cuda".into(),
                tp_size: json!(1),
                pp_size: json!(1),
                replicas: json!(4)
            }
        );
        assert_eq!(
            choose_layout(
                &answer,
                Some("cuda"),
                Some(&json!(2)),
                Some(&json!(1)),
                Some(&json!(3))
            )
            .unwrap()
            .replicas,
            json!(3)
        );
        assert_eq!(
            choose_layout(&answer, Some("hpu"), None, None, None).unwrap_err(),
            "Device type 'hpu' not available. Available: [\"cpu\", \"cuda\"]"
        );
        assert_eq!(
            choose_layout(&answer, None, Some(&json!(4)), Some(&json!(2)), None).unwrap_err(),
            "TP=4, PP=2 not valid. Options: [(1, 1), (2, 1)]"
        );
        assert!(choose_layout(&options(json!([])), None, None, None, None).is_err());
    }

    #[test]
    fn the_fallback_reads_the_nodes_hardware() {
        let nodes = [json!({"hostname": "n1", "hardware_info": [
            {"type": "CPU", "available_count": 2}, {"type": "cuda", "available_count": 0},
            {"type": "hpu", "available_count": 8}]})];
        assert_eq!(layout_from_nodes(&nodes, None).unwrap().device_type, "hpu");
        assert_eq!(
            layout_from_nodes(&nodes, Some("cuda")).unwrap_err(),
            "Device type 'cuda' not found. Available: [\"cpu\", \"hpu\"]"
        );
        assert!(layout_from_nodes(&[json!({"hostname": "n"})], None).is_err());
    }
}
