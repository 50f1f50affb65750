//! `cluster_health`: ask budcluster how a cluster is doing, as the original
//! did: `GET budcluster /cluster/{id}/health?checks=nodes,api`. Each
//! requested check's verdict goes into `details`, the unhealthy ones'
//! messages into `issues`. An unhealthy cluster is a result, not a
//! failure: DAGs branch on `outputs.healthy`. A check budcluster could not
//! run, or a call that failed, makes that check unhealthy with the reason.

use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value, json};

use super::{Attempt, CLUSTER_OPERATIONS};
use crate::actions::params::{self, Text};
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

#[derive(Deserialize)]
struct Params {
    cluster_id: Text,
    checks: Option<Checks>,
    timeout_seconds: Option<Seconds>,
}

/// Check names: a list, or a comma list in one string.
struct Checks(Vec<String>);

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let not_names = || de::Error::custom("must be a list of names");
        let names = match Value::deserialize(d)? {
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(|s| s.trim().to_ascii_lowercase()))
                .collect::<Option<_>>()
                .ok_or_else(not_names)?,
            Value::String(list) => list
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect(),
            _ => return Err(not_names()),
        };
        Ok(Self(names))
    }
}

/// A JSON number of seconds (a numeric string is not taken here).
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d)?
            .as_f64()
            .map(Self)
            .ok_or_else(|| de::Error::custom("must be a number"))
    }
}

pub struct ClusterHealth {
    budcluster: Budcluster,
}

impl ClusterHealth {
    pub fn new(budcluster: Budcluster) -> Self {
        Self { budcluster }
    }

    async fn check(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let cluster_id = p.cluster_id.0;
        let checks = known_checks(p.checks)?;
        let seconds = p.timeout_seconds.map_or(30.0, |s| s.0);
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

/// The checks to run: the given ones, each one we know, or the default ones.
fn known_checks(given: Option<Checks>) -> Attempt<Vec<String>> {
    let names = match given {
        Some(Checks(names)) => names,
        None => DEFAULT_CHECKS.iter().map(|c| (*c).to_owned()).collect(),
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

    fn checks_param(value: Option<Value>) -> Attempt<Vec<String>> {
        let mut p = params(json!({"cluster_id": "c"}));
        if let Some(value) = value {
            p.insert("checks".into(), value);
        }
        known_checks(params::read::<Params>(&p)?.checks)
    }

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
            checks_param(Some(json!("GPU, storage"))).unwrap(),
            ["gpu", "storage"]
        );
        assert_eq!(
            checks_param(Some(json!([1]))).unwrap_err(),
            StepOutcome::permanent("checks must be a list of names")
        );
        assert_eq!(
            checks_param(Some(json!(["disk"]))).unwrap_err(),
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
