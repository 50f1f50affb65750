//! `deploy_model`: ask budcluster to deploy a model and wait for its
//! completion event.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Attempt, CLUSTER_OPERATIONS, DEFAULT_WAIT_SECONDS, call_failed, timed_out_waiting};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Object, Text};
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dapr::Budcluster;
use crate::dapr::budcluster::DeployResponse;

/// budcluster's deploy workflow publishes one notification per stage
/// (`payload.type` `deploy_model`); only `results` ends the wait, a FAILED
/// stage fails it. The design note's flat `deployment_status` event is its
/// operation's only event, so it ends the wait too.
pub(super) const RULES: WaitRules = WaitRules {
    operations: &["deploy_model", "perform_deployment"],
    final_stages: &[],
    final_operations: &["deployment_status"],
    stage_progress: &[],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "deploy_model",
    name: "Deploy Model",
    category: CLUSTER_OPERATIONS,
    description: "Deploy a model to a cluster through budcluster, then wait for budcluster's \
                  completion event. The event's content is merged into the outputs.",
    params: vec![
        ParamSpec::new(
            "cluster_id",
            "string",
            "The budcluster cluster to deploy to.",
        )
        .required(),
        ParamSpec::new("model_id", "string", "The model to deploy.").required(),
        ParamSpec::new(
            "config",
            "object",
            "Deployment configuration passed to budcluster as is (replicas, resources, ...).",
        )
        .default(json!({})),
    ],
    outputs: vec![
        OutputSpec::new(
            "deployment_id",
            "string",
            "budcluster's deployment id (null if budcluster sent none).",
        ),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budcluster's workflow id, the correlation id of the completion event.",
        ),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    cluster_id: Text,
    model_id: Text,
    /// Passed to budcluster as is.
    config: Option<Object>,
}

pub struct DeployModel {
    budcluster: Budcluster,
}

impl DeployModel {
    pub fn new(budcluster: Budcluster) -> Self {
        Self { budcluster }
    }

    async fn deploy(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let config = Value::Object(p.config.unwrap_or_default().0);
        let response = self
            .budcluster
            .deploy_model(&p.cluster_id.0, &p.model_id.0, &config, &ctx.call_hints())
            .await
            .map_err(|e| call_failed(&e))?;
        await_accepted(response, "Deployment request failed")
    }
}

impl StepHandler for DeployModel {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        params::submitted::<Params>(params).problems_with(&["config"])
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.deploy(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        RULES.decide(event, "deployment failed")
    }

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        timed_out_waiting(outputs, "workflow_id", "budcluster workflow")
    }
}

/// An `accepted` answer parks the step on budcluster's workflow id; any
/// other answer is a permanent failure with the answer's own error.
/// Shared with `delete_deployment`, whose answers have the same shape.
pub(super) fn await_accepted(response: DeployResponse, failure: &str) -> Attempt<StepOutcome> {
    if !response.is_accepted() {
        return Err(StepOutcome::permanent(
            response.error_text().unwrap_or(failure),
        ));
    }
    let Some(workflow_id) = response.workflow_id.filter(|id| !id.is_empty()) else {
        return Err(StepOutcome::permanent(
            "budcluster accepted the request but sent no workflow_id to wait on",
        ));
    };
    let mut outputs = Map::new();
    outputs.insert("deployment_id".into(), json!(response.deployment_id));
    outputs.insert("workflow_id".into(), json!(workflow_id));
    Ok(StepOutcome::AwaitEvent {
        external_id: workflow_id,
        outputs,
        timeout: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    fn response(body: Value) -> DeployResponse {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn accepted_answer_waits_on_the_budcluster_workflow() {
        let outcome = await_accepted(
            response(json!({"status": "accepted", "workflow_id": "w1", "deployment_id": "d1"})),
            "x",
        )
        .unwrap();
        assert_eq!(
            outcome,
            StepOutcome::AwaitEvent {
                external_id: "w1".into(),
                outputs: params(json!({"deployment_id": "d1", "workflow_id": "w1"})),
                timeout: None,
            }
        );
    }

    #[test]
    fn other_answers_fail_permanently_with_their_error() {
        let cases = [
            (
                json!({"status": "rejected", "error": "no capacity"}),
                "no capacity",
            ),
            (json!({"status": "error"}), "Deployment request failed"),
            (json!({}), "Deployment request failed"),
            (
                json!({"status": "accepted"}),
                "budcluster accepted the request but sent no workflow_id to wait on",
            ),
        ];
        for (body, expected) in cases {
            let outcome = await_accepted(response(body.clone()), "Deployment request failed");
            assert_eq!(outcome, Err(StepOutcome::permanent(expected)), "{body}");
        }
    }

    #[test]
    fn config_must_be_an_object_unless_templated() {
        let handler = DeployModel::new(Budcluster::new(test_client(), "budcluster"));
        assert!(handler.validate(&params(json!({"config": {}}))).is_empty());
        assert!(
            handler
                .validate(&params(json!({"config": "{{ params.c }}"})))
                .is_empty()
        );
        assert_eq!(
            handler.validate(&params(json!({"config": [1]}))),
            ["config must be an object"]
        );
    }

    #[test]
    fn timeout_names_the_workflow_waited_on() {
        let handler = DeployModel::new(Budcluster::new(test_client(), "budcluster"));
        assert_eq!(
            handler.on_timeout(&params(json!({"workflow_id": "w9"}))),
            StepOutcome::transient("step timed out waiting for budcluster workflow w9")
        );
    }

    #[tokio::test]
    async fn missing_ids_fail_permanently_without_a_call() {
        let handler = DeployModel::new(Budcluster::new(test_client(), "budcluster"));
        let mut ctx = ctx(json!({"cluster_id": "c1"}));
        assert_eq!(
            handler.run(ctx.clone()).await,
            StepOutcome::permanent("model_id is required")
        );
        ctx.params = params(json!({"cluster_id": "c1", "model_id": "m", "config": "x"}));
        assert_eq!(
            handler.run(ctx).await,
            StepOutcome::permanent("config must be an object")
        );
    }
}
