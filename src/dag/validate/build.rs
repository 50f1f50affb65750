//! The typed document built from a document that passed every check.

use super::*;

/// The typed DAG of a document that passed every check. `null` fields are
/// dropped (they mean "not given"), `on_failure` is lower-cased (the original
/// accepted any case), a step's `name` defaults to its id and repeated
/// dependencies are dropped.
pub(super) fn build(doc: &Value) -> Result<Dag, String> {
    let mut doc = doc.clone();
    normalize(&mut doc);
    let mut dag: Dag = serde_json::from_value(doc).map_err(|e| format!("dag: {e}"))?;
    for step in &mut dag.steps {
        if step.name.trim().is_empty() {
            step.name = step.id.clone();
        }
        let mut seen = HashSet::new();
        step.depends_on.retain(|d| seen.insert(d.clone()));
    }
    Ok(dag)
}

pub(super) fn normalize(doc: &mut Value) {
    let Some(root) = doc.as_object_mut() else {
        return;
    };
    drop_nulls(root);
    if let Some(Value::Object(settings)) = root.get_mut("settings") {
        drop_nulls(settings);
    }
    if let Some(Value::Array(parameters)) = root.get_mut("parameters") {
        for param in parameters.iter_mut().filter_map(Value::as_object_mut) {
            drop_nulls(param);
        }
    }
    if let Some(Value::Array(steps)) = root.get_mut("steps") {
        for step in steps.iter_mut().filter_map(Value::as_object_mut) {
            drop_nulls(step);
            if let Some(Value::String(s)) = step.get_mut("on_failure") {
                *s = s.to_ascii_lowercase();
            }
            if let Some(Value::Object(retry)) = step.get_mut("retry") {
                drop_nulls(retry);
            }
        }
    }
}

/// Drops the `null` fields of a structural object (never of `params`,
/// `outputs` or a `default`, whose nulls are data).
pub(super) fn drop_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
}
