//! Steps, one at a time: id, name, action, retry, timeouts, params.

use super::*;

/// What the cross-step checks need to know about one step.
pub(super) struct StepDoc<'a> {
    /// `steps.<label>` in messages: the id when valid, else the index.
    pub(super) label: String,
    /// The id when it is a string (even an invalid one).
    pub(super) id: Option<&'a str>,
    pub(super) action: Option<&'a str>,
    pub(super) params: Option<&'a Map<String, Value>>,
    pub(super) depends_on: Vec<&'a str>,
    pub(super) condition: Option<&'a str>,
}

impl<'a> StepDoc<'a> {
    /// Every template string of the step with its JSON path.
    pub(super) fn templates(&self) -> Vec<(String, &'a str)> {
        let mut out = Vec::new();
        for (key, value) in self.params.into_iter().flatten() {
            let path = format!("steps.{}.params.{key}", self.label);
            out.extend(template::templates_in(value, &path));
        }
        if let Some(cond) = self.condition.filter(|c| template::is_template(c)) {
            out.push((format!("steps.{}.condition", self.label), cond));
        }
        out
    }
}

pub(super) fn check_steps<'a>(
    value: Option<&'a Value>,
    registry: &Registry,
    report: &mut Report,
) -> Option<Vec<StepDoc<'a>>> {
    let Some(value) = value else {
        report.error("steps: is required");
        return None;
    };
    let Some(list) = value.as_array() else {
        report.error("steps: must be a list of steps");
        return None;
    };
    if list.is_empty() {
        report.error("steps: at least one step is required");
    }
    if list.len() > MAX_STEPS {
        // Checking each one would only bury this message.
        report.error(format!(
            "steps: at most {MAX_STEPS} steps are allowed, got {}",
            list.len()
        ));
        return None;
    }
    let steps = list
        .iter()
        .enumerate()
        .filter_map(|(i, item)| check_step(i, item, registry, report))
        .collect();
    Some(steps)
}

pub(super) fn check_step<'a>(
    i: usize,
    value: &'a Value,
    registry: &Registry,
    report: &mut Report,
) -> Option<StepDoc<'a>> {
    let Some(step) = value.as_object() else {
        report.error(format!("steps.{i}: must be an object"));
        return None;
    };
    let id = match present(step.get("id")) {
        None => {
            report.error(format!("steps.{i}.id: is required"));
            None
        }
        Some(v) => report.string(&format!("steps.{i}.id"), v),
    };
    let label = match id {
        Some(id) if check_step_id(i, id, report) => id.to_owned(),
        _ => i.to_string(),
    };
    let at = |field: &str| format!("steps.{label}.{field}");

    if let Some(name) = present(step.get("name")) {
        if let Some(name) = report.string(&at("name"), name) {
            if name.chars().count() > MAX_NAME_LEN {
                report.error(format!(
                    "{}: must be at most {MAX_NAME_LEN} characters",
                    at("name")
                ));
            }
        }
    }

    let action = check_action(&at("action"), present(step.get("action")), registry, report);

    let params = match present(step.get("params")) {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            report.error(format!("{}: must be an object", at("params")));
            None
        }
    };
    if let Some(handler) = action.and_then(|a| registry.get(a)) {
        let empty = Map::new();
        let prefix = format!("steps.{label}.params");
        check_action_params(&prefix, handler.as_ref(), params.unwrap_or(&empty), report);
    }

    let depends_on = match present(step.get("depends_on")) {
        None => Vec::new(),
        Some(v) => {
            let list = v.as_array().map(|l| l.iter().map(Value::as_str).collect());
            match list {
                Some(Some(deps)) => deps,
                Some(None) | None => {
                    report.error(format!("{}: must be a list of step ids", at("depends_on")));
                    // Keep the ids that are there, to check them as well.
                    v.as_array()
                        .map(|l| l.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default()
                }
            }
        }
    };

    let condition = present(step.get("condition")).and_then(|v| report.string(&at("condition"), v));

    if let Some(v) = present(step.get("on_failure")) {
        let ok = v
            .as_str()
            .is_some_and(|s| ON_FAILURE.contains(&s.to_ascii_lowercase().as_str()));
        if !ok {
            report.error(format!(
                "{}: must be one of {}",
                at("on_failure"),
                quoted(&ON_FAILURE)
            ));
        }
    }
    if let Some(v) = present(step.get("timeout_seconds")) {
        report.integer(&at("timeout_seconds"), v, 1, MAX_SECONDS);
    }
    if let Some(v) = present(step.get("retry")) {
        check_retry(&at("retry"), v, report);
    }

    Some(StepDoc {
        label,
        id,
        action,
        params,
        depends_on,
        condition,
    })
}

/// 1..100 characters, starting with a letter or digit, only `[A-Za-z0-9_-]`
/// (so that the id can be used in templates and paths).
pub(super) fn check_step_id(i: usize, id: &str, report: &mut Report) -> bool {
    let path = format!("steps.{i}.id");
    let problem = if id.is_empty() {
        "must not be empty".to_owned()
    } else if id.chars().count() > MAX_ID_LEN {
        format!("must be at most {MAX_ID_LEN} characters")
    } else if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!("'{id}' must start with a letter or a digit")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!("'{id}' may only contain letters, digits, '_' and '-'")
    } else {
        return true;
    };
    report.error(format!("{path}: {problem}"));
    false
}

pub(super) fn check_action<'a>(
    path: &str,
    value: Option<&'a Value>,
    registry: &Registry,
    report: &mut Report,
) -> Option<&'a str> {
    let Some(value) = value else {
        report.error(format!("{path}: is required"));
        return None;
    };
    let action = report.string(path, value)?;
    if action.trim().is_empty() {
        report.error(format!("{path}: is required"));
        return None;
    }
    if registry.get(action).is_none() {
        report.error(format!("{path}: unknown action '{action}'"));
    }
    Some(action)
}

pub(super) fn check_retry(path: &str, value: &Value, report: &mut Report) {
    let Some(retry) = value.as_object() else {
        report.error(format!("{path}: must be an object"));
        return;
    };
    let max_seconds = MAX_SECONDS as f64;
    if let Some(v) = present(retry.get("max_attempts")) {
        report.integer(&format!("{path}.max_attempts"), v, 1, MAX_ATTEMPTS);
    }
    if let Some(v) = present(retry.get("backoff_seconds")) {
        report.number(
            &format!("{path}.backoff_seconds"),
            v,
            0.0,
            Some(max_seconds),
        );
    }
    if let Some(v) = present(retry.get("backoff_multiplier")) {
        report.number(&format!("{path}.backoff_multiplier"), v, 1.0, None);
    }
    if let Some(v) = present(retry.get("max_backoff_seconds")) {
        report.number(
            &format!("{path}.max_backoff_seconds"),
            v,
            0.0,
            Some(max_seconds),
        );
    }
}

/// The generic checks derived from the action's declared parameters, then the
/// action's own. Values that are templates cannot be judged before they are
/// resolved and pass.
/// One action's params on their own (`POST /actions/validate`): the checks a
/// step of a DAG gets, each message starting `params.<name>`.
pub fn action_params(handler: &dyn StepHandler, params: &Map<String, Value>) -> Vec<String> {
    let mut report = Report::default();
    check_action_params("params", handler, params, &mut report);
    report.errors
}

pub(super) fn check_action_params(
    prefix: &str,
    handler: &dyn StepHandler,
    params: &Map<String, Value>,
    report: &mut Report,
) {
    for spec in &handler.spec().params {
        let path = format!("{prefix}.{}", spec.name);
        match present(params.get(spec.name)) {
            None => {
                if spec.required && spec.default.is_none() {
                    report.error(format!("{path}: is required"));
                }
            }
            Some(Value::String(s)) if template::is_template(s) => {}
            Some(Value::String(s)) if s.trim().is_empty() && spec.required => {
                report.error(format!("{path}: is required"));
            }
            Some(value) => check_param_value(&path, spec, value, report),
        }
    }
    for message in handler.validate(params) {
        report.error(format!("{prefix}: {message}"));
    }
}

/// What a literal value of a parameter declared `kind` must be, when it is
/// not: the declared types are checked (no coercion, as for execution
/// parameters), except that a number stands for text (a step may name an id
/// by a number) and `json`, `template` and other kinds take anything.
pub(super) fn param_type_mismatch(kind: &str, value: &Value) -> Option<&'static str> {
    let ok = match kind {
        "string" => matches!(value, Value::String(_) | Value::Number(_)),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    if ok {
        return None;
    }
    Some(match kind {
        "string" => "a string",
        "number" => "a number",
        "integer" => "an integer",
        "boolean" => "a boolean",
        "object" => "an object",
        _ => "an array",
    })
}

pub(super) fn check_param_value(path: &str, spec: &ParamSpec, value: &Value, report: &mut Report) {
    if let Some(expected) = param_type_mismatch(spec.kind, value) {
        report.error(format!(
            "{path}: must be {expected}, got {}",
            crate::dag::params::json_type_name(value)
        ));
        return;
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = spec.min.filter(|min| n < *min) {
            report.error(format!("{path}: must be at least {}", show(min)));
        }
        if let Some(max) = spec.max.filter(|max| n > *max) {
            report.error(format!("{path}: must be at most {}", show(max)));
        }
    }
    if let Some(options) = &spec.options {
        // A list (a multi-select) is checked item by item.
        let items = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            let text = match item {
                Value::String(s) if template::is_template(s) => continue,
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => item.to_string(),
                _ => continue,
            };
            if !options.contains(&text.as_str()) {
                report.error(format!(
                    "{path}: must be one of {}, got '{text}'",
                    quoted(options)
                ));
            }
        }
    }
}
