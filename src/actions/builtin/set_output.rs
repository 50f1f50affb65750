//! `set_output`: publish an object as the step's outputs, so later steps
//! (and the DAG's `outputs`) can refer to computed values by name.

use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value, json};

use super::{CATEGORY, json_type, ready, settled};
use crate::actions::params;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "set_output",
    name: "Set Output",
    category: CATEGORY,
    description: "Set the step's outputs to the given object (templates resolved).",
    params: vec![
        ParamSpec::new("outputs", "object", "The outputs to set, by name.").default(json!({})),
    ],
    outputs: vec![OutputSpec::new(
        "*",
        "json",
        "Every key of the `outputs` param.",
    )],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    outputs: Outputs,
}

/// An object; anything else (null included) is refused, naming its type.
#[derive(Default)]
struct Outputs(Map<String, Value>);

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(outputs) => Ok(Self(outputs)),
            other => Err(de::Error::custom(format!(
                "must be an object, got {}",
                json_type(&other)
            ))),
        }
    }
}

pub(crate) struct SetOutput;

impl StepHandler for SetOutput {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        params::submitted::<Params>(params).problems_with(&["outputs"])
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(outcome(&ctx))
    }

    fn pure(&self) -> Option<PureFn> {
        Some(outcome)
    }
}

fn outcome(ctx: &StepContext) -> StepOutcome {
    settled(params::read(&ctx.params).map(|p: Params| StepOutcome::completed(p.outputs.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{completed, ctx, params, permanent};

    #[tokio::test]
    async fn outputs_are_the_object() {
        let out = completed(
            SetOutput
                .run(ctx(json!({"outputs": {"a": 1, "b": [true]}})))
                .await,
        );
        assert_eq!(Value::Object(out), json!({"a": 1, "b": [true]}));
    }

    #[tokio::test]
    async fn defaults_to_no_outputs() {
        assert!(completed(SetOutput.run(ctx(json!({}))).await).is_empty());
    }

    #[tokio::test]
    async fn non_object_fails_permanently() {
        let err = permanent(SetOutput.run(ctx(json!({"outputs": [1]}))).await);
        assert_eq!(err, "outputs must be an object, got array");
    }

    #[test]
    fn validate_rejects_literal_non_object_only() {
        assert_eq!(
            SetOutput.validate(&params(json!({"outputs": 3}))),
            ["outputs must be an object, got integer"]
        );
        assert!(
            SetOutput
                .validate(&params(json!({"outputs": "{{ steps.a.outputs }}"})))
                .is_empty()
        );
        assert!(
            SetOutput
                .validate(&params(json!({"outputs": {}})))
                .is_empty()
        );
    }
}
