//! Document-level fields: the header, `parameters`, `settings`.

use super::*;

pub(super) fn check_header(root: &Map<String, Value>, report: &mut Report) {
    report.name("name", present(root.get("name")), MAX_NAME_LEN);
    for field in ["version", "description"] {
        if let Some(v) = present(root.get(field)) {
            report.string(field, v);
        }
    }
    if let Some(v) = present(root.get("outputs")) {
        if !v.is_object() {
            report.error("outputs: must be an object");
        }
    }
}

/// Checks `parameters`; returns every declared name (valid or not, so that a
/// bad declaration does not also make each use of it an error).
pub(super) fn check_parameters(value: Option<&Value>, report: &mut Report) -> HashSet<String> {
    let mut declared = HashSet::new();
    let Some(value) = value else {
        return declared;
    };
    let Some(list) = value.as_array() else {
        report.error("parameters: must be a list");
        return declared;
    };
    for (i, item) in list.iter().enumerate() {
        let Some(param) = item.as_object() else {
            report.error(format!("parameters.{i}: must be an object"));
            continue;
        };
        let name = present(param.get("name"));
        let label = match name.and_then(Value::as_str) {
            Some(n) if parameter_name_ok(n) => n.to_owned(),
            _ => i.to_string(),
        };
        check_parameter_name(i, name, report);
        if let Some(n) = name.and_then(Value::as_str) {
            if !declared.insert(n.to_owned()) {
                report.error(format!("parameters: duplicate parameter '{n}'"));
            }
        }
        let kind = match present(param.get("type")) {
            Some(v) => report.string(&format!("parameters.{label}.type"), v),
            None => Some("string"),
        };
        if let Some(v) = present(param.get("description")) {
            report.string(&format!("parameters.{label}.description"), v);
        }
        if let Some(v) = present(param.get("required")) {
            report.boolean(&format!("parameters.{label}.required"), v);
        }
        if let (Some(kind), Some(default)) = (kind, present(param.get("default"))) {
            if let Some(problem) = type_mismatch(kind, default) {
                report.error(format!("parameters.{label}.default: {problem}"));
            }
        }
    }
    declared
}

/// 1..100 characters, starting with a letter or `_` (the original's rule).
pub(super) fn parameter_name_ok(name: &str) -> bool {
    let first = name.chars().next();
    first.is_some_and(|c| c.is_alphabetic() || c == '_') && name.chars().count() <= MAX_ID_LEN
}

pub(super) fn check_parameter_name(i: usize, name: Option<&Value>, report: &mut Report) {
    let path = format!("parameters.{i}.name");
    let Some(name) = name else {
        report.error(format!("{path}: is required"));
        return;
    };
    let Some(name) = report.string(&path, name) else {
        return;
    };
    if name.is_empty() {
        report.error(format!("{path}: must not be empty"));
    } else if name.chars().count() > MAX_ID_LEN {
        report.error(format!("{path}: must be at most {MAX_ID_LEN} characters"));
    } else if !parameter_name_ok(name) {
        report.error(format!("{path}: '{name}' must start with a letter or '_'"));
    }
}

pub(super) fn check_settings(value: Option<&Value>, report: &mut Report) {
    let Some(value) = value else {
        return;
    };
    let Some(settings) = value.as_object() else {
        report.error("settings: must be an object");
        return;
    };
    if let Some(v) = present(settings.get("timeout_seconds")) {
        report.integer("settings.timeout_seconds", v, 1, MAX_SECONDS);
    }
    if let Some(v) = present(settings.get("max_parallel_steps")) {
        report.integer("settings.max_parallel_steps", v, 1, MAX_PARALLEL_STEPS);
    }
    if let Some(v) = present(settings.get("fail_fast")) {
        report.boolean("settings.fail_fast", v);
    }
}
