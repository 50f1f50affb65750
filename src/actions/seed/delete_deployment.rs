//! `delete_deployment`: ask budcluster to delete a deployment; wait for the
//! completion event when budcluster deletes in the background.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::deploy_model::await_accepted;
use super::{Attempt, CLUSTER_OPERATIONS, DEFAULT_WAIT_SECONDS, call_failed, timed_out_waiting};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Text};
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dapr::Budcluster;
use crate::dapr::budcluster::DeleteResponse;

/// budcluster's delete workflow: `deployment_deletion_status` COMPLETED (or
/// `results`) ends the wait; `delete_namespace` and the rest are progress.
const RULES: WaitRules = WaitRules {
    operations: &[
        "delete_deployment",
        "deployment_deletion_status",
        "delete_namespace",
    ],
    final_stages: &["deployment_deletion_status"],
    final_operations: &[],
    stage_progress: &[
        ("deployment_deletion_status", 30.0),
        ("delete_namespace", 70.0),
    ],
};

const FAILURE: &str = "Deletion request failed";

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "delete_deployment",
    name: "Delete Deployment",
    category: CLUSTER_OPERATIONS,
    description: "Delete a deployment through budcluster. When budcluster deletes in the \
                  background, wait for its completion event.",
    params: vec![
        ParamSpec::new(
            "cluster_id",
            "string",
            "The cluster the deployment runs on.",
        )
        .required(),
        ParamSpec::new("deployment_id", "string", "The deployment to delete.").required(),
    ],
    outputs: vec![
        OutputSpec::new("deployment_id", "string", "The deployment being deleted."),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budcluster's workflow id while the deletion runs in the background.",
        ),
        OutputSpec::new(
            "deleted",
            "boolean",
            "True once budcluster reports the deployment deleted.",
        ),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    cluster_id: Text,
    deployment_id: Text,
}

pub struct DeleteDeployment {
    budcluster: Budcluster,
}

impl DeleteDeployment {
    pub fn new(budcluster: Budcluster) -> Self {
        Self { budcluster }
    }

    async fn delete(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let Params {
            cluster_id: Text(cluster_id),
            deployment_id: Text(deployment_id),
        } = params::read(&ctx.params)?;
        let response = self
            .budcluster
            .delete_deployment(&cluster_id, &deployment_id, &ctx.call_hints())
            .await
            .map_err(|e| call_failed(&e))?;
        outcome(response, deployment_id)
    }
}

impl StepHandler for DeleteDeployment {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.delete(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "deletion failed") {
            EventAction::Complete(mut fields) => {
                fields.insert("deleted".into(), json!(true));
                EventAction::Complete(fields)
            }
            other => other,
        }
    }

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        timed_out_waiting(outputs, "workflow_id", "budcluster workflow")
    }
}

/// `accepted`: wait; a status saying it is gone (or `"deleted": true`):
/// done; anything else: a permanent failure with the answer's error.
fn outcome(mut response: DeleteResponse, deployment_id: String) -> Attempt<StepOutcome> {
    if response.is_accepted() {
        response.deployment_id.get_or_insert(deployment_id);
        return await_accepted(response, FAILURE);
    }
    let done_status = response.status.as_deref().is_some_and(|status| {
        ["deleted", "ok", "success", "completed"]
            .iter()
            .any(|done| status.eq_ignore_ascii_case(done))
    });
    if done_status || response.extra.get("deleted") == Some(&Value::Bool(true)) {
        let mut outputs = Map::new();
        outputs.insert("deployment_id".into(), json!(deployment_id));
        outputs.insert("deleted".into(), json!(true));
        return Ok(StepOutcome::completed(outputs));
    }
    Err(StepOutcome::permanent(
        response.error_text().unwrap_or(FAILURE),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::params;
    use crate::actions::seed::test_client;

    fn decide(body: Value) -> StepOutcome {
        let response = serde_json::from_value(body).unwrap();
        outcome(response, "dep-1".into()).unwrap_or_else(|failed| failed)
    }

    #[test]
    fn accepted_deletion_waits_with_the_requested_deployment_id() {
        assert_eq!(
            decide(json!({"status": "accepted", "workflow_id": "w1"})),
            StepOutcome::AwaitEvent {
                external_id: "w1".into(),
                outputs: params(json!({"deployment_id": "dep-1", "workflow_id": "w1"})),
                timeout: None,
            }
        );
    }

    #[test]
    fn immediate_deletion_completes_at_once() {
        let done =
            StepOutcome::completed(params(json!({"deployment_id": "dep-1", "deleted": true})));
        assert_eq!(decide(json!({"status": "deleted"})), done);
        assert_eq!(decide(json!({"status": "OK"})), done);
        assert_eq!(decide(json!({"deleted": true})), done);
    }

    #[test]
    fn other_answers_fail_permanently() {
        assert_eq!(
            decide(json!({"status": "error", "error": "in use"})),
            StepOutcome::permanent("in use")
        );
        assert_eq!(decide(json!({})), StepOutcome::permanent(FAILURE));
    }

    #[test]
    fn completion_event_marks_the_deployment_deleted() {
        let handler = DeleteDeployment::new(Budcluster::new(test_client(), "budcluster"));
        let event =
            json!({"workflow_id": "w1", "status": "COMPLETED", "content": {"namespace": "ns"}});
        assert_eq!(
            handler.on_event(&event, &Map::new()),
            EventAction::Complete(params(json!({"namespace": "ns", "deleted": true})))
        );
        let failed = json!({"workflow_id": "w1", "status": "FAILED"});
        assert_eq!(
            handler.on_event(&failed, &Map::new()),
            EventAction::Fail("deletion failed".into())
        );
    }
}
