//! Execution parameters merged with the DAG's declarations (API.md "Executions").

use serde_json::{Map, Value};

use super::Dag;

/// Merge `given` over the DAG's parameter defaults and check declared types
/// (no coercion). Undeclared parameters are kept. Each error names the
/// parameter: `parameters.<name>: ...`.
///
/// An explicit `null` for a declared parameter counts as "not given": the
/// default applies, and a required parameter without one is an error.
pub(crate) fn merge(
    dag: &Dag,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut merged = given.clone();
    let mut errors = Vec::new();
    for param in &dag.parameters {
        let value = given.get(&param.name).filter(|v| !v.is_null());
        match value {
            Some(value) => {
                if let Some(problem) = type_mismatch(&param.kind, value) {
                    errors.push(format!("parameters.{}: {problem}", param.name));
                }
            }
            None => {
                // Drop an explicit null so that "missing" has one shape.
                merged.remove(&param.name);
                match param.default.as_ref().filter(|d| !d.is_null()) {
                    Some(default) => {
                        merged.insert(param.name.clone(), default.clone());
                    }
                    None if param.required => {
                        errors.push(format!("parameters.{}: is required", param.name));
                    }
                    None => {}
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(errors)
    }
}

/// The JSON type a declared parameter type name asks for.
///
/// `float` is the original service's name for `number`, kept so that its
/// definitions keep working; any other unknown name (`cluster_ref`, ...) is a
/// string.
pub(crate) fn expected_json_type(kind: &str) -> &'static str {
    match kind {
        "integer" => "integer",
        "number" | "float" => "number",
        "boolean" => "boolean",
        "object" => "object",
        "array" => "array",
        _ => "string",
    }
}

/// The JSON type name of a value, distinguishing integers from other numbers.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `Some("expected integer, got string")` when `value` does not have the
/// declared type `kind`; no coercion (`"5"` is not an integer, `5.0` is not
/// an integer either, but `5` is a number).
pub(crate) fn type_mismatch(kind: &str, value: &Value) -> Option<String> {
    let expected = expected_json_type(kind);
    let ok = match expected {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => value.is_string(),
    };
    (!ok).then(|| format!("expected {expected}, got {}", json_type_name(value)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dag::Parameter;

    fn param(name: &str, kind: &str, required: bool, default: Option<Value>) -> Parameter {
        Parameter {
            name: name.into(),
            kind: kind.into(),
            description: None,
            required,
            default,
        }
    }

    fn dag(parameters: Vec<Parameter>) -> Dag {
        serde_json::from_value::<Dag>(json!({
            "name": "d",
            "steps": [{"id": "a", "action": "log"}],
        }))
        .map(|mut d| {
            d.parameters = parameters;
            d
        })
        .unwrap()
    }

    fn given(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn given_values_override_defaults() {
        let d = dag(vec![param("replicas", "integer", false, Some(json!(1)))]);
        let out = merge(&d, &given(json!({"replicas": 3}))).unwrap();
        assert_eq!(out["replicas"], json!(3));
    }

    #[test]
    fn defaults_fill_missing_values() {
        let d = dag(vec![
            param("replicas", "integer", false, Some(json!(1))),
            param("region", "string", true, Some(json!("eu"))),
        ]);
        let out = merge(&d, &Map::new()).unwrap();
        assert_eq!(Value::Object(out), json!({"replicas": 1, "region": "eu"}));
    }

    #[test]
    fn missing_required_is_an_error() {
        let d = dag(vec![
            param("cluster_id", "string", true, None),
            param("model_id", "string", true, None),
        ]);
        let errs = merge(&d, &given(json!({"model_id": "m"}))).unwrap_err();
        assert_eq!(errs, vec!["parameters.cluster_id: is required"]);
    }

    #[test]
    fn explicit_null_counts_as_missing() {
        let d = dag(vec![
            param("a", "string", true, None),
            param("b", "integer", false, Some(json!(7))),
            param("c", "string", false, None),
        ]);
        let errs = merge(&d, &given(json!({"a": null}))).unwrap_err();
        assert_eq!(errs, vec!["parameters.a: is required"]);
        let out = merge(&d, &given(json!({"a": "x", "b": null, "c": null}))).unwrap();
        assert_eq!(Value::Object(out), json!({"a": "x", "b": 7}));
    }

    #[test]
    fn optional_without_default_stays_absent() {
        let d = dag(vec![param("note", "string", false, None)]);
        assert!(merge(&d, &Map::new()).unwrap().is_empty());
    }

    #[test]
    fn wrong_types_are_errors_without_coercion() {
        let d = dag(vec![
            param("i", "integer", true, None),
            param("n", "number", true, None),
            param("b", "boolean", true, None),
            param("o", "object", true, None),
            param("l", "array", true, None),
            param("s", "string", true, None),
            param("r", "cluster_ref", true, None),
        ]);
        let errs = merge(
            &d,
            &given(json!({"i": "5", "n": "1.5", "b": "true", "o": [], "l": {}, "s": 1, "r": true})),
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "parameters.i: expected integer, got string",
                "parameters.n: expected number, got string",
                "parameters.b: expected boolean, got string",
                "parameters.o: expected object, got array",
                "parameters.l: expected array, got object",
                "parameters.s: expected string, got integer",
                "parameters.r: expected string, got boolean",
            ]
        );
    }

    #[test]
    fn integer_means_a_json_integer() {
        let d = dag(vec![param("i", "integer", true, None)]);
        assert_eq!(
            merge(&d, &given(json!({"i": 5.5}))).unwrap_err(),
            vec!["parameters.i: expected integer, got number"]
        );
        assert_eq!(
            merge(&d, &given(json!({"i": 5.0}))).unwrap_err(),
            vec!["parameters.i: expected integer, got number"]
        );
        assert!(merge(&d, &given(json!({"i": -5}))).is_ok());
    }

    #[test]
    fn number_accepts_integers_and_float_is_an_alias() {
        let d = dag(vec![
            param("n", "number", true, None),
            param("f", "float", true, None),
        ]);
        assert!(merge(&d, &given(json!({"n": 5, "f": 2.5}))).is_ok());
        assert_eq!(
            merge(&d, &given(json!({"n": 1, "f": "2.5"}))).unwrap_err(),
            vec!["parameters.f: expected number, got string"]
        );
    }

    #[test]
    fn undeclared_parameters_are_kept() {
        let d = dag(vec![param("a", "string", true, None)]);
        let out = merge(&d, &given(json!({"a": "x", "extra": {"k": 1}, "n": null}))).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"a": "x", "extra": {"k": 1}, "n": null})
        );
    }

    #[test]
    fn all_errors_are_reported() {
        let d = dag(vec![
            param("a", "string", true, None),
            param("b", "integer", true, None),
        ]);
        let errs = merge(&d, &given(json!({"b": true}))).unwrap_err();
        assert_eq!(
            errs,
            vec![
                "parameters.a: is required",
                "parameters.b: expected integer, got boolean"
            ]
        );
    }
}
