//! `cloud_model_add`: register a cloud model (OpenAI, Anthropic, ...)
//! through budapp's cloud-model workflow, which finishes in the request:
//! `POST budapp /models/cloud-model-workflow?user_id=`.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    BudCall, BudServices, Initiator, MODEL_OPERATIONS, call_failed, outputs, refused,
    workflow_id_of,
};
use crate::actions::params::{self, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "cloud_model_add",
    name: "Add Cloud Model",
    category: MODEL_OPERATIONS,
    description: "Add a cloud-hosted model (OpenAI, Anthropic, etc.) to the model repository \
                  (budapp's cloud-model workflow, which completes at once).",
    params: vec![
        ParamSpec::new(
            "provider_id",
            "string",
            "Cloud provider (OpenAI, Anthropic, Azure, etc.).",
        )
        .required(),
        ParamSpec::new(
            "cloud_model_id",
            "string",
            "A pre-seeded cloud model from the provider's catalog (optional).",
        ),
        ParamSpec::new("model_name", "string", "Display name for the model.").required(),
        ParamSpec::new(
            "model_uri",
            "string",
            "Model identifier on the provider (e.g. 'gpt-4o-mini', 'claude-3-opus').",
        ),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether the model was added successfully.",
        ),
        OutputSpec::new(
            "model_id",
            "string",
            "The unique identifier of the added model.",
        ),
        OutputSpec::new("model_name", "string", "The name of the added model."),
        OutputSpec::new("provider_id", "string", "The cloud provider ID."),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budapp's workflow id for the operation.",
        ),
        OutputSpec::new("status", "string", "completed or failed."),
        OutputSpec::new("message", "string", "Status message or error description."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    provider_id: OptText,
    model_name: OptText,
    cloud_model_id: OptText,
    model_uri: OptText,
}

pub(crate) struct CloudModelAdd {
    bud: BudServices,
}

impl CloudModelAdd {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn add(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let provider_id = p.provider_id.or_default();
        let model_name = p.model_name.or_default();
        let result = |success: bool, model_id: Value, workflow_id: Value, message: &str| {
            outputs([
                ("success", json!(success)),
                ("model_id", model_id),
                ("model_name", json!(model_name)),
                ("provider_id", json!(provider_id)),
                ("workflow_id", workflow_id),
                (
                    "status",
                    json!(if success { "completed" } else { "failed" }),
                ),
                ("message", json!(message)),
            ])
        };
        let failed = |message: &str| result(false, Value::Null, Value::Null, message);
        let body = json!({
            "workflow_total_steps": 1,
            "step_number": 1,
            "trigger_workflow": true,
            "provider_type": "cloud_model",
            "provider_id": provider_id,
            "cloud_model_id": p.cloud_model_id.0,
            "name": model_name,
            "uri": p.model_uri.or_default(),
            "tags": [],
            "modality": ["text_input", "text_output"],
        });
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let call = BudCall::post("/models/cloud-model-workflow", body).taking(60);
        let answer = self
            .bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to add cloud model", &e, failed))?;
        let workflow_id = workflow_id_of(&answer).map_or(Value::Null, Value::from);
        let data = answer.get("data").unwrap_or(&Value::Null);
        // budapp's RetrieveWorkflowDataResponse keeps the new model's id in
        // `workflow_steps`; the original also looked in `data` and at the top.
        let model_id = [
            answer.pointer("/workflow_steps/model_id"),
            data.get("model_id"),
            answer.get("model_id"),
            data.get("id"),
        ]
        .into_iter()
        .flatten()
        .find(|v| !v.is_null())
        .cloned();
        let message = format!("Cloud model '{model_name}' added successfully");
        if let Some(model_id) = model_id {
            return Ok(StepOutcome::completed(result(
                true,
                model_id,
                workflow_id,
                &message,
            )));
        }
        let status = data
            .get("status")
            .or_else(|| answer.get("status"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if status.eq_ignore_ascii_case("completed") {
            return Ok(StepOutcome::completed(result(
                true,
                Value::Null,
                workflow_id,
                &message,
            )));
        }
        let error = "No model_id returned from cloud-model-workflow";
        Err(refused(
            error,
            result(false, Value::Null, workflow_id, error),
        ))
    }
}

impl StepHandler for CloudModelAdd {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.add(&ctx).await.unwrap_or_else(|failed| failed) })
    }
}
