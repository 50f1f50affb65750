//! `fail`: fail the step on purpose, permanently (never retried), e.g. at
//! the end of a `conditional` branch that must stop the workflow.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{CATEGORY, ready, settled};
use crate::actions::params::{self, AnyText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

const DEFAULT_MESSAGE: &str = "Intentional failure";
const DEFAULT_CODE: &str = "INTENTIONAL_FAILURE";

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "fail",
    name: "Fail",
    category: CATEGORY,
    description: "Fail the step with the given message; the failure is permanent (not retried).",
    params: vec![
        ParamSpec::new("message", "template", "The error message.").default(json!(DEFAULT_MESSAGE)),
        ParamSpec::new("error_code", "string", "A machine-readable error code.")
            .default(json!(DEFAULT_CODE)),
    ],
    outputs: vec![
        OutputSpec::new("error_code", "string", "The error code."),
        OutputSpec::new("message", "string", "The error message."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    message: Option<AnyText>,
    error_code: Option<AnyText>,
}

pub(crate) struct Fail;

impl StepHandler for Fail {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(outcome(&ctx))
    }

    fn pure(&self) -> Option<PureFn> {
        Some(outcome)
    }
}

fn outcome(ctx: &StepContext) -> StepOutcome {
    settled(fail(ctx))
}

fn fail(ctx: &StepContext) -> Attempt<StepOutcome> {
    let p: Params = params::read(&ctx.params)?;
    let message = AnyText::or(p.message, DEFAULT_MESSAGE);
    let error_code = AnyText::or(p.error_code, DEFAULT_CODE);
    let mut outputs = Map::new();
    outputs.insert("error_code".into(), Value::String(error_code));
    outputs.insert("message".into(), Value::String(message.clone()));
    Ok(StepOutcome::Failed {
        error: message,
        retryable: false,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, failed};

    #[tokio::test]
    async fn fails_permanently_with_defaults() {
        let outcome = Fail.run(ctx(json!({}))).await;
        let mut outputs = Map::new();
        outputs.insert("error_code".into(), json!("INTENTIONAL_FAILURE"));
        outputs.insert("message".into(), json!("Intentional failure"));
        assert_eq!(
            outcome,
            StepOutcome::Failed {
                error: "Intentional failure".into(),
                retryable: false,
                outputs
            }
        );
    }

    #[tokio::test]
    async fn uses_given_message_and_code() {
        let outcome = Fail
            .run(ctx(json!({"message": "no GPUs", "error_code": "NO_GPU"})))
            .await;
        let (error, retryable, outputs) = failed(outcome);
        assert_eq!(error, "no GPUs");
        assert!(!retryable);
        assert_eq!(
            Value::Object(outputs),
            json!({"error_code": "NO_GPU", "message": "no GPUs"})
        );
    }
}
