//! `transform`: apply one simple operation to a value.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    CATEGORY, invalid_operation, json_type, ready, settled, sort_values, validate_operation,
};
use crate::actions::params::{self, AnyText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

const OPERATIONS: &[&str] = &[
    "passthrough",
    "uppercase",
    "lowercase",
    "keys",
    "values",
    "count",
    "flatten",
    "unique",
    "sort",
    "reverse",
];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "transform",
    name: "Transform",
    category: CATEGORY,
    description: "Transform a value: passthrough, uppercase/lowercase (a string or an \
                  object's string values), keys, values, count, flatten (one level), \
                  unique (order kept), sort, reverse (a list or a string).",
    params: vec![
        ParamSpec::new("input", "json", "The value to transform.").default(json!({})),
        ParamSpec::new("operation", "string", "The operation to apply.")
            .default(json!("passthrough"))
            .options(OPERATIONS),
    ],
    outputs: vec![
        OutputSpec::new("result", "json", "The transformed value."),
        OutputSpec::new("operation", "string", "The operation applied."),
        OutputSpec::new("input_type", "string", "JSON type of the input."),
        OutputSpec::new("output_type", "string", "JSON type of the result."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    /// Null is a value to transform like any other.
    #[serde(default = "empty_object")]
    input: Value,
    operation: Option<AnyText>,
}

fn empty_object() -> Value {
    json!({})
}

pub(crate) struct Transform;

impl StepHandler for Transform {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let p = params::submitted::<Params>(params).params;
        validate_operation(p.and_then(|p| p.operation), OPERATIONS)
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(outcome(&ctx))
    }

    fn pure(&self) -> Option<PureFn> {
        Some(outcome)
    }
}

fn outcome(ctx: &StepContext) -> StepOutcome {
    settled(transform(ctx))
}

fn transform(ctx: &StepContext) -> Attempt<StepOutcome> {
    let Params { input, operation } = params::read(&ctx.params)?;
    let operation = AnyText::or(operation, "passthrough");
    let input_type = json_type(&input);
    // The original passed unknown operations through silently, which hides
    // typos; fail instead.
    let result = apply(&operation, input)
        .ok_or_else(|| StepOutcome::permanent(invalid_operation(&operation, OPERATIONS)))?;
    let mut outputs = Map::new();
    outputs.insert("input_type".into(), json!(input_type));
    outputs.insert("output_type".into(), json!(json_type(&result)));
    outputs.insert("result".into(), result);
    outputs.insert("operation".into(), Value::String(operation));
    Ok(StepOutcome::completed(outputs))
}

/// The result of `operation` on `input`; `None` for an unknown operation.
/// Operations that do not apply to the input's type return it unchanged,
/// except `keys`/`values` ([]) and `count` (0), whose result type is fixed.
fn apply(operation: &str, input: Value) -> Option<Value> {
    Some(match (operation, input) {
        ("passthrough", input) => input,
        ("uppercase", input) => map_strings(input, str::to_uppercase),
        ("lowercase", input) => map_strings(input, str::to_lowercase),
        ("keys", Value::Object(map)) => map.keys().map(|k| json!(k)).collect(),
        ("values", Value::Object(map)) => map.into_iter().map(|(_, v)| v).collect(),
        ("keys" | "values", _) => json!([]),
        ("count", input) => json!(match &input {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            Value::String(s) => s.chars().count(),
            _ => 0,
        }),
        ("flatten", Value::Array(items)) => Value::Array(flatten(items)),
        ("unique", Value::Array(items)) => {
            let mut seen: Vec<Value> = Vec::new();
            for item in items {
                if !seen.contains(&item) {
                    seen.push(item);
                }
            }
            Value::Array(seen)
        }
        ("sort", Value::Array(mut items)) => {
            sort_values(&mut items);
            Value::Array(items)
        }
        ("reverse", Value::Array(mut items)) => {
            items.reverse();
            Value::Array(items)
        }
        ("reverse", Value::String(s)) => Value::String(s.chars().rev().collect()),
        (op, input) if OPERATIONS.contains(&op) => input,
        _ => return None,
    })
}

/// Apply `f` to a string, or to every string value of an object.
fn map_strings(input: Value, f: fn(&str) -> String) -> Value {
    match input {
        Value::String(s) => Value::String(f(&s)),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, Value::String(f(&s))),
                other => (k, other),
            })
            .collect(),
        other => other,
    }
}

/// One level of flattening: list items are spliced in, others kept.
pub(super) fn flatten(items: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Array(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{completed, ctx, params, permanent};

    async fn run(input: Value, operation: &str) -> Map<String, Value> {
        completed(
            Transform
                .run(ctx(json!({"input": input, "operation": operation})))
                .await,
        )
    }

    async fn result(input: Value, operation: &str) -> Value {
        run(input, operation).await["result"].clone()
    }

    #[tokio::test]
    async fn outputs_and_defaults() {
        let out = completed(Transform.run(ctx(json!({}))).await);
        assert_eq!(
            Value::Object(out),
            json!({"result": {}, "operation": "passthrough",
                   "input_type": "object", "output_type": "object"})
        );
        let out = run(json!({"a": 1, "b": 2}), "keys").await;
        assert_eq!(out["input_type"], json!("object"));
        assert_eq!(out["output_type"], json!("array"));
        assert_eq!(
            run(json!(1.5), "count").await["input_type"],
            json!("number")
        );
    }

    #[tokio::test]
    async fn case_operations() {
        assert_eq!(result(json!("Abc"), "uppercase").await, json!("ABC"));
        assert_eq!(
            result(json!({"a": "X", "n": 1}), "lowercase").await,
            json!({"a": "x", "n": 1})
        );
        assert_eq!(result(json!([1]), "uppercase").await, json!([1]));
    }

    #[tokio::test]
    async fn keys_values_count() {
        assert_eq!(
            result(json!({"a": 1, "b": 2}), "values").await,
            json!([1, 2])
        );
        assert_eq!(result(json!([1]), "keys").await, json!([]));
        assert_eq!(result(json!("héllo"), "count").await, json!(5));
        assert_eq!(result(json!([1, 2, 3]), "count").await, json!(3));
        assert_eq!(result(json!(7), "count").await, json!(0));
    }

    #[tokio::test]
    async fn list_operations() {
        assert_eq!(
            result(json!([[1, 2], 3, [[4]]]), "flatten").await,
            json!([1, 2, 3, [4]])
        );
        assert_eq!(
            result(json!([3, 1, 3, {"a": 1}, {"a": 1}]), "unique").await,
            json!([3, 1, {"a": 1}])
        );
        assert_eq!(result(json!([3, 1.5, 2]), "sort").await, json!([1.5, 2, 3]));
        assert_eq!(result(json!(["b", "a"]), "sort").await, json!(["a", "b"]));
        assert_eq!(result(json!([1, 2, 3]), "reverse").await, json!([3, 2, 1]));
        assert_eq!(result(json!("abc"), "reverse").await, json!("cba"));
        assert_eq!(result(json!("abc"), "sort").await, json!("abc"));
    }

    #[tokio::test]
    async fn unknown_operation_fails_permanently() {
        let err = permanent(
            Transform
                .run(ctx(json!({"input": 1, "operation": "explode"})))
                .await,
        );
        assert!(err.starts_with("Invalid operation: explode. Valid: passthrough, uppercase"));
    }

    #[test]
    fn validate_rejects_unknown_literal_operation() {
        assert_eq!(
            Transform.validate(&params(json!({"operation": "nope"}))),
            [invalid_operation("nope", OPERATIONS)]
        );
        for ok in ["sort", "{{ params.op }}"] {
            assert!(
                Transform
                    .validate(&params(json!({"operation": ok})))
                    .is_empty()
            );
        }
        assert!(Transform.validate(&params(json!({}))).is_empty());
    }
}
