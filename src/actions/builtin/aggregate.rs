//! `aggregate`: combine a list of values (typically other steps' outputs).

use std::sync::LazyLock;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value, json};

use super::transform::flatten;
use super::{
    CATEGORY, invalid_operation, json_type, ready, settled, sort_values, text, validate_operation,
};
use crate::actions::params::{self, AnyText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

const OPERATIONS: &[&str] = &[
    "list", "sum", "join", "merge", "first", "last", "min", "max", "average", "count", "flatten",
];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "aggregate",
    name: "Aggregate",
    category: CATEGORY,
    description: "Combine a list of values: list, sum, join (with separator), merge \
                  (objects, later keys win), first, last, min, max, average, count, \
                  flatten (one level). A single non-list input is treated as a list of one.",
    params: vec![
        ParamSpec::new("inputs", "array", "The values to combine.").default(json!([])),
        ParamSpec::new("operation", "string", "How to combine them.")
            .default(json!("list"))
            .options(OPERATIONS),
        ParamSpec::new("separator", "string", "Separator for `join`.").default(json!(", ")),
    ],
    outputs: vec![
        OutputSpec::new("result", "json", "The combined value."),
        OutputSpec::new("count", "integer", "How many inputs there were."),
        OutputSpec::new("operation", "string", "The operation applied."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    inputs: Inputs,
    operation: Option<AnyText>,
    separator: Option<AnyText>,
}

/// The values to combine: a list, or any single value (null included) as
/// a list of one.
#[derive(Default)]
struct Inputs(Vec<Value>);

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match Value::deserialize(d)? {
            Value::Array(items) => items,
            other => vec![other],
        }))
    }
}

pub(crate) struct Aggregate;

impl StepHandler for Aggregate {
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
    settled(aggregate(ctx))
}

fn aggregate(ctx: &StepContext) -> Attempt<StepOutcome> {
    let p: Params = params::read(&ctx.params)?;
    let inputs = p.inputs.0;
    let operation = AnyText::or(p.operation, "list");
    let separator = AnyText::or(p.separator, ", ");
    let count = inputs.len();
    let result = combine(&operation, inputs, &separator).map_err(StepOutcome::permanent)?;
    let mut outputs = Map::new();
    outputs.insert("result".into(), result);
    outputs.insert("count".into(), json!(count));
    outputs.insert("operation".into(), Value::String(operation));
    Ok(StepOutcome::completed(outputs))
}

fn combine(operation: &str, inputs: Vec<Value>, separator: &str) -> Result<Value, String> {
    Ok(match operation {
        "list" => Value::Array(inputs),
        "sum" => sum(&inputs)?,
        "join" => inputs
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(separator)
            .into(),
        "merge" => {
            let mut merged = Map::new();
            for (i, item) in inputs.into_iter().enumerate() {
                match item {
                    Value::Object(map) => merged.extend(map),
                    other => {
                        return Err(format!(
                            "merge needs objects, got {} at index {i}",
                            json_type(&other)
                        ));
                    }
                }
            }
            Value::Object(merged)
        }
        "first" => inputs.into_iter().next().unwrap_or(Value::Null),
        "last" => inputs.into_iter().next_back().unwrap_or(Value::Null),
        // Same order as `transform`'s sort, so mixed lists still have a min/max.
        "min" | "max" => {
            let mut sorted = inputs;
            sort_values(&mut sorted);
            let pick = if operation == "min" {
                sorted.into_iter().next()
            } else {
                sorted.pop()
            };
            pick.unwrap_or(Value::Null)
        }
        "average" if !inputs.is_empty() && inputs.iter().all(Value::is_number) => {
            let total: f64 = inputs.iter().filter_map(Value::as_f64).sum();
            float(total / inputs.len() as f64)
        }
        "average" => Value::Null,
        "count" => json!(inputs.len()),
        "flatten" => Value::Array(flatten(inputs)),
        _ => return Err(invalid_operation(operation, OPERATIONS)),
    })
}

/// The sum, exact for integers (falling back to floating point if it
/// overflows); 0 for no inputs.
fn sum(inputs: &[Value]) -> Result<Value, String> {
    if let Some((i, bad)) = inputs.iter().enumerate().find(|(_, v)| !v.is_number()) {
        return Err(format!(
            "sum needs numbers, got {} at index {i}",
            json_type(bad)
        ));
    }
    let exact = inputs
        .iter()
        .try_fold(0i64, |acc, v| v.as_i64().and_then(|n| acc.checked_add(n)));
    Ok(match exact {
        Some(total) => json!(total),
        None => float(inputs.iter().filter_map(Value::as_f64).sum()),
    })
}

/// A float as JSON; an infinite result (overflow) becomes null.
fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{completed, ctx, params, permanent};

    async fn result(inputs: Value, operation: &str) -> Value {
        let out = completed(
            Aggregate
                .run(ctx(json!({"inputs": inputs, "operation": operation})))
                .await,
        );
        out["result"].clone()
    }

    #[tokio::test]
    async fn outputs_and_defaults() {
        let out = completed(Aggregate.run(ctx(json!({}))).await);
        assert_eq!(
            Value::Object(out),
            json!({"result": [], "count": 0, "operation": "list"})
        );
        // A single value is a list of one.
        let out = completed(Aggregate.run(ctx(json!({"inputs": {"a": 1}}))).await);
        assert_eq!(
            Value::Object(out),
            json!({"result": [{"a": 1}], "count": 1, "operation": "list"})
        );
    }

    #[tokio::test]
    async fn sums_and_averages() {
        assert_eq!(result(json!([1, 2, 3]), "sum").await, json!(6));
        assert_eq!(result(json!([1, 2.5]), "sum").await, json!(3.5));
        assert_eq!(result(json!([]), "sum").await, json!(0));
        assert_eq!(result(json!([1, 2]), "average").await, json!(1.5));
        assert_eq!(result(json!([]), "average").await, json!(null));
        assert_eq!(result(json!([1, "2"]), "average").await, json!(null));
    }

    #[tokio::test]
    async fn sum_of_non_numbers_fails_permanently() {
        let err = permanent(
            Aggregate
                .run(ctx(json!({"inputs": [1, "x"], "operation": "sum"})))
                .await,
        );
        assert_eq!(err, "sum needs numbers, got string at index 1");
    }

    #[tokio::test]
    async fn join_with_separator() {
        let out = completed(
            Aggregate
                .run(ctx(
                    json!({"inputs": ["a", 1, {"b": 2}], "operation": "join",
                                "separator": "|"}),
                ))
                .await,
        );
        assert_eq!(out["result"], json!(r#"a|1|{"b":2}"#));
        assert_eq!(result(json!(["a", "b"]), "join").await, json!("a, b"));
    }

    #[tokio::test]
    async fn merge_first_last_min_max_count_flatten() {
        assert_eq!(
            result(json!([{"a": 1, "b": 1}, {"b": 2}]), "merge").await,
            json!({"a": 1, "b": 2})
        );
        let err = permanent(
            Aggregate
                .run(ctx(json!({"inputs": [{}, 1], "operation": "merge"})))
                .await,
        );
        assert_eq!(err, "merge needs objects, got integer at index 1");
        assert_eq!(result(json!([1, 2]), "first").await, json!(1));
        assert_eq!(result(json!([1, 2]), "last").await, json!(2));
        assert_eq!(result(json!([]), "first").await, json!(null));
        assert_eq!(result(json!([3, -1, 2.5]), "min").await, json!(-1));
        assert_eq!(result(json!(["b", "c", "a"]), "max").await, json!("c"));
        assert_eq!(result(json!([]), "max").await, json!(null));
        assert_eq!(result(json!([1, 1, 1]), "count").await, json!(3));
        assert_eq!(
            result(json!([[1], 2, [3, [4]]]), "flatten").await,
            json!([1, 2, 3, [4]])
        );
    }

    #[tokio::test]
    async fn unknown_operation_fails_permanently() {
        let err = permanent(Aggregate.run(ctx(json!({"operation": "median"}))).await);
        assert_eq!(err, invalid_operation("median", OPERATIONS));
    }

    #[test]
    fn validate_rejects_unknown_literal_operation() {
        assert_eq!(
            Aggregate.validate(&params(json!({"operation": "median"}))),
            [
                "Invalid operation: median. Valid: list, sum, join, merge, first, last, \
              min, max, average, count, flatten"
            ]
        );
        assert!(
            Aggregate
                .validate(&params(json!({"operation": "{{ params.op }}"})))
                .is_empty()
        );
    }
}
