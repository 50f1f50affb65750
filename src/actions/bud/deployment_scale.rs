//! `deployment_scale`: fix a deployment's replica count through budapp's
//! autoscale settings: `GET budapp /endpoints/{id}/autoscale` (the current
//! BudAIScaler configuration, kept where it is not the replica count), then
//! `PUT budapp /endpoints/{id}/autoscale` with min = max = the target.

use std::sync::LazyLock;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BudCall, BudServices, DEPLOYMENT, Initiator, call_failed, callee_message, field, outputs,
};
use crate::actions::params::{self, Number, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::encode_segment;

/// Settings of the current specification that a scale keeps.
const PRESERVED: &[&str] = &[
    "scalingStrategy",
    "metricsSources",
    "gpuConfig",
    "costConfig",
    "predictionConfig",
    "scheduleHints",
    "multiCluster",
    "behavior",
];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "deployment_scale",
    name: "Scale Deployment",
    category: DEPLOYMENT,
    description: "Scale a deployment to a specific number of replicas. This sets both minimum \
                  and maximum replicas to the target value, effectively fixing the replica \
                  count. Existing scaling strategy and other autoscale settings are preserved.",
    params: vec![
        ParamSpec::new("endpoint_id", "string", "The deployment endpoint to scale.").required(),
        ParamSpec::new(
            "target_replicas",
            "integer",
            "Number of replicas to scale to (0 to scale down completely).",
        )
        .required()
        .default(json!(1))
        .range(Some(0.0), Some(100.0)),
    ],
    outputs: vec![
        OutputSpec::new("success", "boolean", "Whether scaling was successful."),
        OutputSpec::new("endpoint_id", "string", "ID of the scaled deployment."),
        OutputSpec::new("target_replicas", "number", "Target number of replicas."),
        OutputSpec::new(
            "previous_min_replicas",
            "number",
            "Minimum replicas before scaling.",
        ),
        OutputSpec::new(
            "previous_max_replicas",
            "number",
            "Maximum replicas before scaling.",
        ),
        OutputSpec::new(
            "scaling_strategy",
            "string",
            "The scaling strategy kept from the current configuration.",
        ),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    endpoint_id: OptText,
    target_replicas: Option<Number>,
}

pub(crate) struct DeploymentScale {
    bud: BudServices,
}

impl DeploymentScale {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn scale(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let endpoint_id = p.endpoint_id.or_default();
        let target = Some(p.target_replicas.map_or(1.0, |n| n.as_f64()))
            .filter(|n| n.fract() == 0.0 && (0.0..=100.0).contains(n))
            .map(|n| n as i64)
            .ok_or_else(|| {
                StepOutcome::permanent("target_replicas must be a whole number from 0 to 100")
            })?;
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("endpoint_id", json!(endpoint_id)),
                ("target_replicas", json!(target)),
                ("message", json!(message)),
            ])
        };
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let path = format!("/endpoints/{}/autoscale", encode_segment(&endpoint_id));
        // The current configuration is a nicety: without it the scale
        // proceeds with a minimal specification, as the original did.
        let current = match self
            .bud
            .budapp(ctx, user.as_deref(), BudCall::get(path.clone()))
            .await
        {
            Ok(answer) => answer
                .get("budaiscaler_config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %callee_message(&e), "reading the autoscale config failed; scaling without it");
                Map::new()
            }
        };
        let mut spec = outputs([
            ("enabled", json!(true)),
            ("minReplicas", json!(target)),
            ("maxReplicas", json!(target)),
        ]);
        for key in PRESERVED {
            if let Some(value) = current.get(*key).filter(|v| truthy(v)) {
                spec.insert((*key).to_owned(), value.clone());
            }
        }
        let strategy = field(&spec, "scalingStrategy");
        let call = BudCall::new(Method::PUT, path)
            .body(json!({"budaiscaler_specification": spec}))
            .taking(60);
        self.bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to scale deployment", &e, failed))?;
        Ok(StepOutcome::completed(outputs([
            ("success", json!(true)),
            ("endpoint_id", json!(endpoint_id)),
            ("target_replicas", json!(target)),
            ("previous_min_replicas", field(&current, "minReplicas")),
            ("previous_max_replicas", field(&current, "maxReplicas")),
            ("scaling_strategy", strategy),
            (
                "message",
                json!(format!("Scaled deployment to {target} replicas")),
            ),
        ])))
    }
}

/// Python's truthiness, which decided what the original kept.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl StepHandler for DeploymentScale {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.scale(&ctx).await.unwrap_or_else(|failed| failed) })
    }
}
