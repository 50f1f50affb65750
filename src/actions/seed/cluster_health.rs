//! `cluster_health`: ask budcluster how a cluster is doing, as the original
//! did: `GET budcluster /cluster/{id}/health?checks=nodes,api`. Each
//! requested check's verdict goes into `details`, the unhealthy ones'
//! messages into `issues`. An unhealthy cluster is a result, not a
//! failure: DAGs branch on `outputs.healthy`. A check budcluster could not
//! run, or a call that failed, makes that check unhealthy with the reason.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Attempt, CLUSTER_OPERATIONS, required_str};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::Budcluster;

const CHECKS: &[&str] = &["nodes", "api", "storage", "network", "gpu"];
const DEFAULT_CHECKS: &[&str] = &["nodes", "api"];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "cluster_health",
    name: "Cluster Health Check",
    category: CLUSTER_OPERATIONS,
    description: "Check a cluster's health through budcluster (nodes, API server, storage, \
                  network, GPUs). An unhealthy cluster still completes the step with \
                  healthy = false and the problems in issues.",
    params: vec![
        ParamSpec::new("cluster_id", "string", "The budcluster cluster to check.").required(),
        ParamSpec::new("checks", "array", "Which health checks to run.")
            .default(json!(DEFAULT_CHECKS))
            .options(CHECKS),
        ParamSpec::new(
            "timeout_seconds",
            "number",
            "How long the checks may take (seconds).",
        )
        .default(json!(30))
        .range(Some(5.0), Some(300.0)),
    ],
    outputs: vec![
        OutputSpec::new(
            "healthy",
            "boolean",
            "Whether every requested check is healthy.",
        ),
        OutputSpec::new(
            "status",
            "string",
            "healthy, degraded, or unknown when budcluster returned no result.",
        ),
        OutputSpec::new(
            "issues",
            "array",
            "The messages of the checks that are not healthy.",
        ),
        OutputSpec::new(
            "details",
            "object",
            "Each check's result: {healthy, message, count?, details?}.",
        ),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

pub struct ClusterHealth {
    budcluster: Budcluster,
}

impl ClusterHealth {
    pub fn new(budcluster: Budcluster) -> Self {
        Self { budcluster }
    }

    async fn check(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let cluster_id = required_str(&ctx.params, "cluster_id")?;
        let checks = checks_param(ctx.params.get("checks"))?;
        let seconds = match ctx.params.get("timeout_seconds") {
            None | Some(Value::Null) => 30.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| StepOutcome::permanent("timeout_seconds must be a number"))?,
        };
        let mut hints = ctx.call_hints();
        hints.min_timeout = Duration::try_from_secs_f64(seconds.clamp(5.0, 300.0)).ok();
        let answer = self
            .budcluster
            .cluster_checks(&cluster_id, &checks, &hints)
            .await;
        let results = match answer {
            Ok(answer) => {
                let data = answer.get("data").and_then(Value::as_object);
                checks
                    .iter()
                    .map(|check| {
                        let result = data.and_then(|d| d.get(check)).cloned().unwrap_or_else(|| {
                            json!({"healthy": false, "message": format!("{check} check not available")})
                        });
                        (check.clone(), result)
                    })
                    .collect()
            }
            Err(error) => {
                let reason = crate::actions::bud::callee_message(&error);
                checks
                    .iter()
                    .map(|check| {
                        let message = format!("Failed to check {check}: {reason}");
                        (check.clone(), json!({"healthy": false, "message": message}))
                    })
                    .collect()
            }
        };
        Ok(StepOutcome::completed(health_outputs(results)))
    }
}

/// `checks` as a list of check names; a comma list is accepted too.
fn checks_param(value: Option<&Value>) -> Attempt<Vec<String>> {
    let names: Vec<String> = match value {
        None | Some(Value::Null) => DEFAULT_CHECKS.iter().map(|c| (*c).to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|s| s.trim().to_ascii_lowercase())
                    .ok_or_else(|| StepOutcome::permanent("checks must be a list of names"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(list)) => list
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect(),
        Some(_) => return Err(StepOutcome::permanent("checks must be a list of names")),
    };
    if let Some(unknown) = names.iter().find(|c| !CHECKS.contains(&c.as_str())) {
        return Err(StepOutcome::permanent(format!(
            "checks: `{unknown}` is not one of {}",
            CHECKS.join(", ")
        )));
    }
    Ok(names)
}

impl StepHandler for ClusterHealth {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.check(&ctx).await.unwrap_or_else(|f| f) })
    }
}

/// The original's outputs from each check's result.
fn health_outputs(results: Map<String, Value>) -> Map<String, Value> {
    let healthy_check = |r: &Value| r.get("healthy").and_then(Value::as_bool) == Some(true);
    let issues: Vec<Value> = results
        .iter()
        .filter(|(_, r)| !healthy_check(r))
        .map(|(name, r)| {
            r.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| json!(format!("Check {name} failed")), |m| json!(m))
        })
        .collect();
    let (healthy, status, issues) = if results.is_empty() {
        (
            false,
            "unknown",
            vec![json!("No health check results returned")],
        )
    } else if issues.is_empty() {
        (true, "healthy", issues)
    } else {
        (false, "degraded", issues)
    };
    let mut outputs = Map::new();
    outputs.insert("healthy".into(), json!(healthy));
    outputs.insert("status".into(), json!(status));
    outputs.insert("issues".into(), Value::Array(issues));
    outputs.insert("details".into(), Value::Object(results));
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    #[test]
    fn outputs_name_every_unhealthy_check() {
        let results = params(json!({
            "nodes": {"healthy": false, "message": "2/3 nodes ready", "count": 3},
            "api": {"healthy": true, "message": "API server responding"},
        }));
        assert_eq!(
            Value::Object(health_outputs(results.clone())),
            json!({"healthy": false, "status": "degraded", "issues": ["2/3 nodes ready"],
                   "details": results})
        );
        assert_eq!(
            Value::Object(health_outputs(Map::new())),
            json!({"healthy": false, "status": "unknown",
                   "issues": ["No health check results returned"], "details": {}})
        );
    }

    #[test]
    fn checks_are_names_from_the_list() {
        assert_eq!(checks_param(None).unwrap(), ["nodes", "api"]);
        assert_eq!(
            checks_param(Some(&json!("GPU, storage"))).unwrap(),
            ["gpu", "storage"]
        );
        assert_eq!(
            checks_param(Some(&json!(["disk"]))).unwrap_err(),
            StepOutcome::permanent(
                "checks: `disk` is not one of nodes, api, storage, network, gpu"
            )
        );
    }

    #[tokio::test]
    async fn an_unreachable_budcluster_makes_every_check_unhealthy() {
        let handler = ClusterHealth::new(Budcluster::new(test_client(), "budcluster"));
        let ctx = ctx(json!({"cluster_id": "c1", "checks": ["nodes"]}));
        let StepOutcome::Completed { outputs } = handler.run(ctx).await else {
            panic!("a failed call is a result");
        };
        assert_eq!(outputs["healthy"], false);
        assert_eq!(outputs["status"], "degraded");
        let issue = outputs["issues"][0].as_str().unwrap();
        assert!(
            issue.starts_with("Failed to check nodes: budcluster is unreachable"),
            "{issue}"
        );
    }
}
