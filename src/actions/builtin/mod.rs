//! Control actions that need nothing outside the process (DAG.md "Actions",
//! reference section 4.2 items 1-7).
//!
//! Each handler is a unit struct whose [`ActionSpec`] lives in a static, and
//! every synchronous one computes its outcome with a plain function so tests
//! need no runtime tricks. Params arrive with templates already resolved.

mod aggregate;
mod conditional;
mod fail;
mod log;
mod set_output;
mod transform;
mod wait_until;

use std::cmp::Ordering;

use serde_json::Value;

use super::params::AnyText;
use super::seed::Attempt;
use super::{BoxFuture, Registry, StepOutcome};
use crate::dag::template::is_template_value as is_template;

pub(crate) use aggregate::Aggregate;
pub(crate) use conditional::Conditional;
pub(crate) use fail::Fail;
pub(crate) use log::Log;
pub(crate) use set_output::SetOutput;
pub(crate) use transform::Transform;
pub(crate) use wait_until::WaitUntil;

/// The category every built-in control action is listed under.
const CATEGORY: &str = "Control Flow";

pub(crate) fn register(registry: &mut Registry) {
    registry.register(Log);
    registry.register(WaitUntil);
    registry.register(Conditional);
    registry.register(Transform);
    registry.register(Aggregate);
    registry.register(SetOutput);
    registry.register(Fail);
}

/// A synchronous handler's outcome as the future `StepHandler::run` wants.
fn ready(outcome: StepOutcome) -> BoxFuture<'static, StepOutcome> {
    Box::pin(std::future::ready(outcome))
}

/// A synchronous handler's outcome, a failure included (such as params it
/// could not read).
fn settled(outcome: Attempt<StepOutcome>) -> StepOutcome {
    outcome.unwrap_or_else(|failed| failed)
}

/// A value as text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The JSON type name of a value, as reported in outputs and errors.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Sort values: all numbers numerically, all strings lexically, anything
/// mixed by JSON text, so the order is total and deterministic. Shared by
/// `transform` (sort) and `aggregate` (min/max) so they agree.
fn sort_values(values: &mut [Value]) {
    if values.iter().all(Value::is_number) {
        values.sort_by(|a, b| num(a).total_cmp(&num(b)));
    } else if values.iter().all(Value::is_string) {
        values.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else {
        values.sort_by(cmp_text);
    }
}

fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn cmp_text(a: &Value, b: &Value) -> Ordering {
    a.to_string().cmp(&b.to_string())
}

/// An "Invalid operation" message listing the valid ones.
fn invalid_operation(op: &str, valid: &[&str]) -> String {
    format!("Invalid operation: {op}. Valid: {}", valid.join(", "))
}

/// `validate`'s check of a select-like `operation` param: only a literal,
/// non-template string can be judged at submit time (the generic checks
/// refuse any other literal).
fn validate_operation(operation: Option<AnyText>, valid: &[&str]) -> Vec<String> {
    match operation {
        Some(AnyText(Value::String(op)))
            if !crate::dag::template::is_template(&op) && !valid.contains(&op.as_str()) =>
        {
            vec![invalid_operation(&op, valid)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use serde_json::{Map, Value};
    use uuid::Uuid;

    use crate::actions::{StepContext, StepOutcome};

    pub(crate) fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("params must be an object, got {other}"),
        }
    }

    pub(crate) fn ctx(value: Value) -> StepContext {
        StepContext {
            execution_id: Uuid::nil(),
            step_id: "step".into(),
            attempt: 1,
            params: params(value),
            workflow_params: Map::new(),
            traceparent: None,
        }
    }

    /// The outputs of a Completed outcome; panics on anything else.
    pub(crate) fn completed(outcome: StepOutcome) -> Map<String, Value> {
        match outcome {
            StepOutcome::Completed { outputs } => outputs,
            other => panic!("expected Completed, got {other:?}"),
        }
    }

    /// The error, retryability and outputs of a failure; panics on anything
    /// else.
    pub(crate) fn failed(outcome: StepOutcome) -> (String, bool, Map<String, Value>) {
        match outcome {
            StepOutcome::Failed {
                error,
                retryable,
                outputs,
            } => (error, retryable, outputs),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    /// The error of a permanent failure; panics on anything else.
    pub(crate) fn permanent(outcome: StepOutcome) -> String {
        match outcome {
            StepOutcome::Failed {
                error,
                retryable: false,
                ..
            } => error,
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn registers_all_seven_with_sane_specs() {
        let mut registry = Registry::new();
        register(&mut registry);
        let kinds: Vec<_> = registry.specs().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                "aggregate",
                "conditional",
                "fail",
                "log",
                "set_output",
                "transform",
                "wait_until"
            ]
        );
        for spec in registry.specs() {
            assert_eq!(spec.category, CATEGORY);
            assert!(!spec.name.is_empty() && !spec.description.is_empty());
            assert!(
                !spec.outputs.is_empty(),
                "{} declares no outputs",
                spec.kind
            );
            assert_eq!(spec.waits_for_event, spec.kind == "wait_until");
            assert_eq!(
                spec.default_timeout_seconds.is_some(),
                spec.kind == "wait_until"
            );
        }
    }

    #[test]
    fn json_type_names() {
        assert_eq!(json_type(&json!(null)), "null");
        assert_eq!(json_type(&json!(true)), "boolean");
        assert_eq!(json_type(&json!(1)), "integer");
        assert_eq!(json_type(&json!(-1)), "integer");
        assert_eq!(json_type(&json!(1.5)), "number");
        assert_eq!(json_type(&json!("x")), "string");
        assert_eq!(json_type(&json!([])), "array");
        assert_eq!(json_type(&json!({})), "object");
    }

    #[test]
    fn sorts_numbers_strings_and_mixed() {
        let mut v = vec![json!(10), json!(2.5), json!(-1)];
        sort_values(&mut v);
        assert_eq!(v, [json!(-1), json!(2.5), json!(10)]);
        let mut v = vec![json!("b"), json!("B"), json!("a")];
        sort_values(&mut v);
        assert_eq!(v, [json!("B"), json!("a"), json!("b")]);
        // Mixed: by JSON text, where `"` sorts before digits.
        let mut v = vec![json!(2), json!("a"), json!(null)];
        sort_values(&mut v);
        assert_eq!(v, [json!("a"), json!(2), json!(null)]);
    }
}
