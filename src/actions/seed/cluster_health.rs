//! `cluster_health`: ask budcluster how a cluster (or budcluster itself)
//! is doing. An unhealthy answer is a result, not a failure: DAGs branch on
//! `outputs.healthy`. Only a failed call fails the step.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::{CLUSTER_OPERATIONS, call_failed, optional_str};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::budcluster::HealthResponse;
use crate::dapr::{Budcluster, CallHints};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "cluster_health",
    name: "Cluster Health",
    category: CLUSTER_OPERATIONS,
    description: "Check a cluster's health through budcluster (budcluster's own health \
                  without a cluster_id). An unhealthy cluster still completes the step \
                  with healthy = false.",
    params: vec![ParamSpec::new(
        "cluster_id",
        "string",
        "The cluster to check; omit to check budcluster itself.",
    )],
    outputs: vec![
        OutputSpec::new("healthy", "boolean", "Whether the cluster is healthy."),
        OutputSpec::new(
            "status",
            "string",
            "budcluster's status word (healthy, degraded, ...).",
        ),
        OutputSpec::new(
            "details",
            "object",
            "budcluster's details, or the rest of its answer.",
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

    async fn check(&self, ctx: &StepContext) -> StepOutcome {
        let cluster_id = match optional_str(&ctx.params, "cluster_id") {
            Ok(id) => id,
            Err(failed) => return failed,
        };
        match self
            .budcluster
            .cluster_health(cluster_id.as_deref(), &CallHints::for_step(ctx))
            .await
        {
            Ok(health) => StepOutcome::completed(health_outputs(health)),
            Err(error) => call_failed(&error),
        }
    }
}

impl StepHandler for ClusterHealth {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { super::storable(self.check(&ctx).await) })
    }
}

fn health_outputs(health: HealthResponse) -> Map<String, Value> {
    let healthy = health.is_healthy();
    let status = health
        .status
        .clone()
        .unwrap_or_else(|| if healthy { "healthy" } else { "unhealthy" }.to_owned());
    let details = health.details.unwrap_or(Value::Object(health.extra));
    let mut outputs = Map::new();
    outputs.insert("healthy".into(), json!(healthy));
    outputs.insert("status".into(), json!(status));
    outputs.insert("details".into(), details);
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::ctx;
    use crate::actions::seed::test_client;

    fn outputs(body: Value) -> Value {
        Value::Object(health_outputs(serde_json::from_value(body).unwrap()))
    }

    #[test]
    fn outputs_take_the_flag_status_and_details() {
        assert_eq!(
            outputs(json!({"healthy": true, "status": "healthy", "details": {"nodes": 3}})),
            json!({"healthy": true, "status": "healthy", "details": {"nodes": 3}})
        );
        assert_eq!(
            outputs(json!({"status": "ok", "nodes": {"ready": 2}})),
            json!({"healthy": true, "status": "ok", "details": {"nodes": {"ready": 2}}})
        );
        assert_eq!(
            outputs(json!({"healthy": false})),
            json!({"healthy": false, "status": "unhealthy", "details": {}})
        );
    }

    #[tokio::test]
    async fn unreachable_budcluster_is_a_retryable_failure() {
        let handler = ClusterHealth::new(Budcluster::new(test_client(), "budcluster"));
        let ctx = ctx(json!({"cluster_id": "c1"}));
        match handler.run(ctx).await {
            StepOutcome::Failed {
                error, retryable, ..
            } => {
                assert!(retryable);
                assert!(error.starts_with("budcluster is unreachable"), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
