//! `model_delete`: delete a model from budapp's repository,
//! `DELETE budapp /models/{id}?force=&user_id=`.

use std::sync::LazyLock;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{BudCall, BudServices, Initiator, MODEL_OPERATIONS, call_failed, outputs};
use crate::actions::params::{self, Bool, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::encode_segment;

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "model_delete",
    name: "Delete Model",
    category: MODEL_OPERATIONS,
    description: "Delete a model from the model repository.",
    params: vec![
        ParamSpec::new(
            "model_id",
            "string",
            "The unique identifier of the model to delete.",
        )
        .required(),
        ParamSpec::new(
            "force",
            "boolean",
            "Force deletion even if model is in use.",
        )
        .default(json!(false)),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether the model was deleted successfully.",
        ),
        OutputSpec::new("model_id", "string", "The deleted model's id."),
        OutputSpec::new("message", "string", "Status message or error description."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    model_id: OptText,
    force: Option<Bool>,
}

pub(crate) struct ModelDelete {
    bud: BudServices,
}

impl ModelDelete {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn delete(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let model_id = p.model_id.or_default();
        let force = p.force.is_some_and(|f| f.0);
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("model_id", json!(model_id)),
                ("message", json!(message)),
            ])
        };
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let call = BudCall::new(
            Method::DELETE,
            format!("/models/{}", encode_segment(&model_id)),
        )
        .query("force", force.to_string());
        self.bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to delete model", &e, failed))?;
        Ok(StepOutcome::completed(outputs([
            ("success", json!(true)),
            ("model_id", json!(model_id)),
            (
                "message",
                json!(format!("Model {model_id} deleted successfully")),
            ),
        ])))
    }
}

impl StepHandler for ModelDelete {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.delete(&ctx).await.unwrap_or_else(|failed| failed) })
    }
}
