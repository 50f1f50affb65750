//! `deployment_delete`: delete an endpoint through budapp's delete
//! workflow and wait for budcluster to remove the deployment.
//!
//! `POST budapp /endpoints/{id}/delete-workflow?user_id=` with our topic as
//! `callback_topic` answers budapp's workflow id; budcluster's
//! `delete_deployment` notifications come back under it. `results` (or the
//! final `deployment_deletion_status`) ends the wait, a FAILED stage fails
//! it. Without a workflow id, an answer that says the deletion was
//! initiated waits on the endpoint id (the original's fallback); any other
//! answer means the endpoint is already gone.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BudCall, BudServices, DEPLOYMENT, Initiator, MaxWait, budapp_wait_timed_out, call_failed,
    field, max_wait_spec, outputs, workflow_id_of,
};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, Bool, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dapr::encode_segment;

const DEFAULT_WAIT_SECONDS: u64 = 300;

/// budcluster's deletion: `results` is final, so is a COMPLETED
/// `deployment_deletion_status` (the original's table).
const RULES: WaitRules = WaitRules {
    operations: &["delete_deployment"],
    final_stages: &["deployment_deletion_status"],
    final_operations: &[],
    stage_progress: &[
        ("deployment_deletion_status", 30.0),
        ("delete_namespace", 70.0),
    ],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "deployment_delete",
    name: "Delete Deployment",
    category: DEPLOYMENT,
    description: "Deletes an existing model deployment from a cluster (budapp's delete \
                  workflow). Removes the endpoint and releases all associated resources \
                  including pods, services, and storage.",
    params: vec![
        ParamSpec::new(
            "endpoint_id",
            "string",
            "The deployment endpoint to delete.",
        )
        .required(),
        ParamSpec::new(
            "force",
            "boolean",
            "Force deletion even if deployment is serving traffic (not yet implemented by budapp).",
        )
        .default(json!(false)),
        max_wait_spec(
            "Maximum time to wait for deletion to complete (seconds).",
            DEFAULT_WAIT_SECONDS,
            [30.0, 600.0],
        ),
    ],
    outputs: vec![
        OutputSpec::new("success", "boolean", "Whether deletion was successful."),
        OutputSpec::new("endpoint_id", "string", "ID of the deleted deployment."),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budapp's workflow id, the correlation id of the events.",
        ),
        OutputSpec::new(
            "namespace",
            "string",
            "Kubernetes namespace that was deleted.",
        ),
        OutputSpec::new(
            "cluster_id",
            "string",
            "ID of the cluster the deployment was removed from.",
        ),
        OutputSpec::new(
            "status",
            "string",
            "Current status of the deletion (deleting, deleted, failed).",
        ),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    endpoint_id: OptText,
    force: Option<Bool>,
    max_wait_seconds: Option<MaxWait>,
}

pub(crate) struct DeploymentDelete {
    bud: BudServices,
}

impl DeploymentDelete {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn delete(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let endpoint_id = p.endpoint_id.or_default();
        let force = p.force.is_some_and(|f| f.0);
        let timeout = p.max_wait_seconds.map(|w| w.0);
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("endpoint_id", json!(endpoint_id)),
                ("status", json!("failed")),
                ("message", json!(message)),
            ])
        };
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let call = BudCall::post(
            format!(
                "/endpoints/{}/delete-workflow",
                encode_segment(&endpoint_id)
            ),
            json!({"callback_topic": self.bud.callback_topic(), "force": force}),
        )
        .taking(60);
        let answer = self
            .bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to delete deployment", &e, failed))?;
        let message = answer
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let waiting =
            |external_id: String, workflow_id: Value, message: &str| StepOutcome::AwaitEvent {
                external_id,
                outputs: outputs([
                    ("success", json!(true)),
                    ("endpoint_id", json!(endpoint_id)),
                    ("workflow_id", workflow_id),
                    ("status", json!("deleting")),
                    ("message", json!(message)),
                ]),
                timeout,
            };
        if let Some(workflow_id) = workflow_id_of(&answer) {
            return Ok(waiting(
                workflow_id.clone(),
                json!(workflow_id),
                "Deployment deletion in progress...",
            ));
        }
        if message.to_lowercase().contains("initiated") {
            return Ok(waiting(endpoint_id.clone(), Value::Null, &message));
        }
        let message = if message.is_empty() {
            "Deployment deleted successfully".to_owned()
        } else {
            message
        };
        Ok(StepOutcome::completed(outputs([
            ("success", json!(true)),
            ("endpoint_id", json!(endpoint_id)),
            ("workflow_id", Value::Null),
            ("status", json!("deleted")),
            ("message", json!(message)),
        ])))
    }
}

impl StepHandler for DeploymentDelete {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.delete(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "Deployment deletion failed") {
            EventAction::Complete(result) => {
                let namespace = field(&result, "namespace");
                let message = match namespace.as_str() {
                    Some(ns) if !ns.is_empty() => format!("Deployment '{ns}' deleted successfully"),
                    _ => "Deployment deleted successfully".to_owned(),
                };
                EventAction::Complete(outputs([
                    ("success", json!(true)),
                    ("namespace", namespace),
                    ("cluster_id", field(&result, "cluster_id")),
                    ("status", json!("deleted")),
                    ("message", json!(message)),
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

    fn handler() -> DeploymentDelete {
        DeploymentDelete::new(super::super::tests::bud())
    }

    fn notification(stage: &str, status: &str, result: Value) -> Value {
        super::super::tests::notification("delete_deployment", stage, status, "m", result)
    }

    #[test]
    fn deletion_stages_follow_the_originals_table() {
        let so_far = Map::new();
        let started = notification("deployment_deletion_status", "STARTED", Value::Null);
        let EventAction::Progress(report) = handler().on_event(&started, &so_far) else {
            panic!("progress");
        };
        assert_eq!(report.progress, Some(30.0));
        let namespace = notification("delete_namespace", "COMPLETED", Value::Null);
        assert!(matches!(
            handler().on_event(&namespace, &so_far),
            EventAction::Progress(_)
        ));
        let results = notification(
            "results",
            "COMPLETED",
            json!({"namespace": "ns-1", "cluster_id": "c1"}),
        );
        assert_eq!(
            handler().on_event(&results, &so_far),
            EventAction::Complete(params(json!({
                "success": true, "namespace": "ns-1", "cluster_id": "c1",
                "status": "deleted", "message": "Deployment 'ns-1' deleted successfully"
            })))
        );
        let done = notification("deployment_deletion_status", "COMPLETED", Value::Null);
        assert!(matches!(
            handler().on_event(&done, &so_far),
            EventAction::Complete(_)
        ));
        let failed = notification("delete_namespace", "FAILED", Value::Null);
        assert_eq!(
            handler().on_event(&failed, &so_far),
            EventAction::Fail("m".into())
        );
    }
}
