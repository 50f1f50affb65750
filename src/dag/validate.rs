//! Submit-time checks of a workflow document (DAG.md "Validation").
//!
//! The document is walked as a `serde_json::Value` so that every problem is
//! reported at once (serde stops at the first one); the typed [`Dag`] is only
//! built when nothing is wrong. Each message starts with the JSON path or the
//! step it is about: `steps.deploy.depends_on: unknown step 'ghost'`. A step is
//! named by its id when the id is valid, otherwise by its index
//! (`steps.3.action: is required`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::Dag;
use super::params::type_mismatch;
use super::template::{self, Reference};
use crate::actions::{ParamSpec, Registry, StepHandler};

/// At most this many steps per document (DAG.md).
pub const MAX_STEPS: usize = 1000;
/// Step ids and parameter names: 1 to this many characters.
pub const MAX_ID_LEN: usize = 100;
/// Workflow and step names.
pub const MAX_NAME_LEN: usize = 255;
/// Upper bound of every duration in seconds (timeouts, backoffs): one year.
/// Larger values would only overflow time arithmetic further down.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;
/// `settings.max_parallel_steps` is 1 to this.
pub const MAX_PARALLEL_STEPS: u64 = 100;
/// `retry.max_attempts` is 1 to this (counting the first run).
pub const MAX_ATTEMPTS: u64 = 10;

const ON_FAILURE: [&str; 3] = ["fail", "continue", "retry"];

/// The outcome of validating a document: every problem at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    /// The typed document, when it parsed and has no errors.
    pub dag: Option<Dag>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.dag.is_some()
    }
}

/// Check a submitted document against DAG.md "Validation" and the actions in
/// `registry`; `dag` is set only when there is no error. Warnings never make
/// a document invalid.
pub fn validate(doc: &Value, registry: &Registry) -> Validation {
    let mut report = Report::default();
    let Some(root) = doc.as_object() else {
        report.error("dag: must be a JSON object");
        return report.finish(None);
    };
    check_header(root, &mut report);
    let declared = check_parameters(present(root.get("parameters")), &mut report);
    check_settings(present(root.get("settings")), &mut report);
    // `None` when `steps` is unusable: its step references cannot be judged.
    let checked = check_steps(present(root.get("steps")), registry, &mut report);
    let steps_known = checked.is_some();
    let steps = checked.unwrap_or_default();

    let graph = Graph::build(&steps, &mut report);
    let ancestors = graph.ancestors();
    let refs = RefCheck {
        declared: &declared,
        index: &graph.index,
        steps_known,
    };
    for (i, step) in steps.iter().enumerate() {
        let upstream = Upstream::Of {
            step: &step.label,
            ancestors: ancestors[i].as_ref(),
        };
        for (path, tpl) in step.templates() {
            refs.check(&path, tpl, upstream, &mut report);
        }
        check_branches(i, step, &graph.index, &ancestors, &mut report);
    }
    if let Some(outputs) = present(root.get("outputs")).and_then(Value::as_object) {
        for (key, value) in outputs {
            for (path, tpl) in template::templates_in(value, &format!("outputs.{key}")) {
                refs.check(&path, tpl, Upstream::Any, &mut report);
            }
        }
    }

    if !report.errors.is_empty() {
        return report.finish(None);
    }
    match build(doc) {
        Ok(dag) => report.finish(Some(dag)),
        Err(e) => {
            report.error(e);
            report.finish(None)
        }
    }
}

/// Step indices in an order where every step comes after its dependencies.
/// Only meaningful for a validated (acyclic) DAG.
///
/// Kahn's algorithm; among the steps that are ready, the one declared first
/// goes first, so the order is stable. Unknown dependencies are ignored, and
/// steps caught in a cycle are appended in declaration order, so every index
/// appears exactly once whatever the input.
pub fn topological_order(dag: &Dag) -> Vec<usize> {
    let mut index = HashMap::new();
    for (i, step) in dag.steps.iter().enumerate() {
        index.entry(step.id.as_str()).or_insert(i);
    }
    let mut preds = vec![Vec::new(); dag.steps.len()];
    for (i, step) in dag.steps.iter().enumerate() {
        for dep in &step.depends_on {
            if let Some(&j) = index.get(dep.as_str()) {
                if j != i && !preds[i].contains(&j) {
                    preds[i].push(j);
                }
            }
        }
    }
    let graph = Graph::from_preds(preds, HashMap::new());
    let mut order = graph.kahn();
    let mut placed = vec![false; dag.steps.len()];
    for &i in &order {
        placed[i] = true;
    }
    order.extend((0..dag.steps.len()).filter(|&i| !placed[i]));
    order
}

// ---------------------------------------------------------------------------
// Reporting and small helpers

#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    fn finish(self, dag: Option<Dag>) -> Validation {
        Validation {
            dag,
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    /// `Some(s)` for a string; reports `{path}: must be a string` otherwise.
    fn string<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a str> {
        let s = value.as_str();
        if s.is_none() {
            self.error(format!("{path}: must be a string"));
        }
        s
    }

    fn boolean(&mut self, path: &str, value: &Value) {
        if !value.is_boolean() {
            self.error(format!("{path}: must be a boolean"));
        }
    }

    fn integer(&mut self, path: &str, value: &Value, min: u64, max: u64) {
        let n = value
            .as_i64()
            .map(i128::from)
            .or_else(|| value.as_u64().map(i128::from));
        match n {
            None => self.error(format!("{path}: must be an integer")),
            Some(n) if n < i128::from(min) || n > i128::from(max) => {
                self.error(format!("{path}: must be between {min} and {max}"))
            }
            Some(_) => {}
        }
    }

    fn number(&mut self, path: &str, value: &Value, min: f64, max: Option<f64>) {
        let Some(n) = value.as_f64() else {
            self.error(format!("{path}: must be a number"));
            return;
        };
        match max {
            Some(max) if n < min || n > max => self.error(format!(
                "{path}: must be between {} and {}",
                show(min),
                show(max)
            )),
            None if n < min => self.error(format!("{path}: must be at least {}", show(min))),
            _ => {}
        }
    }

    /// A name-like string: non-blank, at most `max` characters.
    fn name(&mut self, path: &str, value: Option<&Value>, max: usize) {
        match value {
            None => self.error(format!("{path}: is required")),
            Some(v) => match self.string(path, v) {
                Some(s) if s.trim().is_empty() => self.error(format!("{path}: must not be empty")),
                Some(s) if s.chars().count() > max => {
                    self.error(format!("{path}: must be at most {max} characters"))
                }
                _ => {}
            },
        }
    }
}

/// A field that is set: absent and `null` both mean "not given".
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// A number as people write it: `5`, not `5.0`.
fn show(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Document-level fields

fn check_header(root: &Map<String, Value>, report: &mut Report) {
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
fn check_parameters(value: Option<&Value>, report: &mut Report) -> HashSet<String> {
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
fn parameter_name_ok(name: &str) -> bool {
    let first = name.chars().next();
    first.is_some_and(|c| c.is_alphabetic() || c == '_') && name.chars().count() <= MAX_ID_LEN
}

fn check_parameter_name(i: usize, name: Option<&Value>, report: &mut Report) {
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

fn check_settings(value: Option<&Value>, report: &mut Report) {
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

// ---------------------------------------------------------------------------
// Steps, one at a time

/// What the cross-step checks need to know about one step.
struct StepDoc<'a> {
    /// `steps.<label>` in messages: the id when valid, else the index.
    label: String,
    /// The id when it is a string (even an invalid one).
    id: Option<&'a str>,
    action: Option<&'a str>,
    params: Option<&'a Map<String, Value>>,
    depends_on: Vec<&'a str>,
    condition: Option<&'a str>,
}

impl<'a> StepDoc<'a> {
    /// Every template string of the step with its JSON path.
    fn templates(&self) -> Vec<(String, &'a str)> {
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

fn check_steps<'a>(
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

fn check_step<'a>(
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
fn check_step_id(i: usize, id: &str, report: &mut Report) -> bool {
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

fn check_action<'a>(
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

fn check_retry(path: &str, value: &Value, report: &mut Report) {
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

fn check_action_params(
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
fn param_type_mismatch(kind: &str, value: &Value) -> Option<&'static str> {
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

fn check_param_value(path: &str, spec: &ParamSpec, value: &Value, report: &mut Report) {
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

// ---------------------------------------------------------------------------
// The dependency graph

/// Edges run from a dependency to its dependents (the order of execution).
struct Graph<'a> {
    preds: Vec<Vec<usize>>,
    succs: Vec<Vec<usize>>,
    /// Step id -> index of the first step with that id.
    index: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    fn from_preds(preds: Vec<Vec<usize>>, index: HashMap<&'a str, usize>) -> Self {
        let mut succs = vec![Vec::new(); preds.len()];
        for (i, ps) in preds.iter().enumerate() {
            for &p in ps {
                succs[p].push(i);
            }
        }
        Self {
            preds,
            succs,
            index,
        }
    }

    /// Builds the graph and reports duplicate ids, unknown and self
    /// dependencies, repeated dependencies (a warning) and cycles.
    fn build(steps: &[StepDoc<'a>], report: &mut Report) -> Self {
        let mut index = HashMap::new();
        let mut reported = HashSet::new();
        for (i, step) in steps.iter().enumerate() {
            let Some(id) = step.id else { continue };
            if index.contains_key(id) {
                if reported.insert(id) {
                    report.error(format!("steps: duplicate step id '{id}'"));
                }
            } else {
                index.insert(id, i);
            }
        }
        let mut preds = vec![Vec::new(); steps.len()];
        for (i, step) in steps.iter().enumerate() {
            let path = format!("steps.{}.depends_on", step.label);
            let mut seen = HashSet::new();
            for &dep in &step.depends_on {
                if !seen.insert(dep) {
                    report.warn(format!("{path}: '{dep}' is listed more than once"));
                    continue;
                }
                if Some(dep) == step.id {
                    report.error(format!("{path}: a step cannot depend on itself"));
                    continue;
                }
                match index.get(dep) {
                    // `j == i` only for a duplicate id, already reported.
                    Some(&j) if j != i => preds[i].push(j),
                    Some(_) => {}
                    None => report.error(format!("{path}: unknown step '{dep}'")),
                }
            }
        }
        let graph = Self::from_preds(preds, index);
        for cycle in graph.cycles() {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| steps[i].id.unwrap_or(&steps[i].label))
                .collect();
            report.error(format!("steps: cycle detected: {}", names.join(" -> ")));
        }
        graph
    }

    fn len(&self) -> usize {
        self.preds.len()
    }

    /// Kahn's algorithm, the earliest declared ready step first. Steps in or
    /// after a cycle are left out.
    fn kahn(&self) -> Vec<usize> {
        let mut pending: Vec<usize> = self.preds.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..self.len())
            .filter(|&i| pending[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &s in &self.succs[i] {
                pending[s] -= 1;
                if pending[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        order
    }

    /// For each step, the set of its transitive dependencies; `None` for
    /// steps in or after a cycle (already an error).
    fn ancestors(&self) -> Vec<Option<BitSet>> {
        let mut out: Vec<Option<BitSet>> = vec![None; self.len()];
        for i in self.kahn() {
            let mut set = BitSet::new(self.len());
            for &p in &self.preds[i] {
                set.insert(p);
                if let Some(of_p) = &out[p] {
                    set.union_with(of_p);
                }
            }
            out[i] = Some(set);
        }
        out
    }

    /// One cycle per strongly connected component that has one, as a path
    /// that starts and ends at the component's earliest declared step.
    fn cycles(&self) -> Vec<Vec<usize>> {
        let component = self.components();
        let mut starts: Vec<usize> = Vec::new();
        let mut size: HashMap<usize, usize> = HashMap::new();
        for &c in &component {
            *size.entry(c).or_default() += 1;
        }
        let mut seen = HashSet::new();
        for (i, &c) in component.iter().enumerate() {
            if size[&c] > 1 && seen.insert(c) {
                starts.push(i);
            }
        }
        starts
            .into_iter()
            .map(|s| self.cycle_through(s, &component))
            .collect()
    }

    /// Shortest path from `start` back to itself inside its component (BFS).
    fn cycle_through(&self, start: usize, component: &[usize]) -> Vec<usize> {
        let mut parent: Vec<Option<usize>> = vec![None; self.len()];
        let mut queue = std::collections::VecDeque::from([start]);
        let mut visited = vec![false; self.len()];
        visited[start] = true;
        while let Some(v) = queue.pop_front() {
            for &s in &self.succs[v] {
                if s == start {
                    return Self::ordered_cycle(start, v, &parent);
                }
                if component[s] == component[start] && !visited[s] {
                    visited[s] = true;
                    parent[s] = Some(v);
                    queue.push_back(s);
                }
            }
        }
        vec![start, start]
    }

    /// `start -> ... -> last -> start` from BFS parents.
    fn ordered_cycle(start: usize, last: usize, parent: &[Option<usize>]) -> Vec<usize> {
        let mut back = vec![last];
        let mut at = last;
        while at != start {
            at = parent[at].unwrap_or(start);
            back.push(at);
        }
        back.reverse();
        back.push(start);
        back
    }

    /// Strongly connected components (Kosaraju, iterative): a component id
    /// per step.
    fn components(&self) -> Vec<usize> {
        let n = self.len();
        // 1. Finish order of a depth-first search along `succs`.
        let mut finished = Vec::with_capacity(n);
        let mut visited = vec![false; n];
        for root in 0..n {
            if visited[root] {
                continue;
            }
            visited[root] = true;
            let mut stack = vec![(root, 0usize)];
            while let Some((v, next)) = stack.pop() {
                if let Some(&s) = self.succs[v].get(next) {
                    stack.push((v, next + 1));
                    if !visited[s] {
                        visited[s] = true;
                        stack.push((s, 0));
                    }
                } else {
                    finished.push(v);
                }
            }
        }
        // 2. Search along `preds` in reverse finish order.
        let mut component = vec![usize::MAX; n];
        for (c, &root) in finished.iter().rev().enumerate() {
            if component[root] != usize::MAX {
                continue;
            }
            component[root] = c;
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                for &p in &self.preds[v] {
                    if component[p] == usize::MAX {
                        component[p] = c;
                        stack.push(p);
                    }
                }
            }
        }
        component
    }
}

#[derive(Clone)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}

// ---------------------------------------------------------------------------
// Templates

/// Which steps a template may read.
#[derive(Clone, Copy)]
enum Upstream<'a> {
    /// Any step (DAG `outputs`, resolved when the execution is over).
    Any,
    /// Only the ancestors of `step` (its params and condition); `None` when
    /// they are unknown because of a cycle.
    Of {
        step: &'a str,
        ancestors: Option<&'a BitSet>,
    },
}

struct RefCheck<'a> {
    declared: &'a HashSet<String>,
    index: &'a HashMap<&'a str, usize>,
    /// False when `steps` itself is missing or unusable (already an error):
    /// then every step reference would be "unknown", which is only noise.
    steps_known: bool,
}

impl RefCheck<'_> {
    fn check(&self, path: &str, tpl: &str, upstream: Upstream<'_>, report: &mut Report) {
        let analysis = match template::analyze(tpl) {
            Ok(a) => a,
            Err(e) => {
                report.error(format!("{path}: {e}"));
                return;
            }
        };
        for reference in &analysis.references {
            match reference {
                Reference::Param(name) if !self.declared.contains(name) => {
                    report.error(format!("{path}: unknown parameter '{name}'"));
                }
                Reference::Param(_) => {}
                Reference::Step(_) if !self.steps_known => {}
                Reference::Step(id) => match (self.index.get(id.as_str()), upstream) {
                    (None, _) => report.error(format!("{path}: unknown step '{id}'")),
                    (
                        Some(&j),
                        Upstream::Of {
                            step,
                            ancestors: Some(ancestors),
                        },
                    ) if !ancestors.contains(j) => {
                        report.error(format!(
                            "{path}: step '{id}' is not an upstream dependency of '{step}'"
                        ));
                    }
                    _ => {}
                },
            }
        }
        for name in &analysis.unknown_variables {
            report.warn(format!(
                "{path}: unknown variable '{name}' (a template can read 'params' and 'steps')"
            ));
        }
    }
}

/// A `conditional` step's branch targets: an unknown step is an error; a
/// target that does not depend on the conditional step may run (or have run)
/// before the branch is chosen, so skipping it would not take effect.
fn check_branches(
    i: usize,
    step: &StepDoc<'_>,
    index: &HashMap<&str, usize>,
    ancestors: &[Option<BitSet>],
    report: &mut Report,
) {
    if step.action != Some("conditional") {
        return;
    }
    let branches = step
        .params
        .and_then(|p| p.get("branches"))
        .and_then(Value::as_array);
    for (k, branch) in branches.into_iter().flatten().enumerate() {
        let target = branch.get("target_step").and_then(Value::as_str);
        let Some(target) = target.filter(|t| !t.is_empty() && !template::is_template(t)) else {
            continue;
        };
        let path = format!("steps.{}.params.branches.{k}.target_step", step.label);
        match index.get(target) {
            None => report.error(format!("{path}: unknown step '{target}'")),
            Some(&j) => {
                if ancestors[j].as_ref().is_some_and(|a| !a.contains(i)) {
                    report.warn(format!(
                        "{path}: step '{target}' does not depend on '{}', so it may run before the branch is chosen",
                        step.label
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The typed document

/// The typed DAG of a document that passed every check. `null` fields are
/// dropped (they mean "not given"), `on_failure` is lower-cased (the original
/// accepted any case), a step's `name` defaults to its id and repeated
/// dependencies are dropped.
fn build(doc: &Value) -> Result<Dag, String> {
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

fn normalize(doc: &mut Value) {
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
fn drop_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actions::{ActionSpec, BoxFuture, StepContext, StepOutcome};

    /// A test action: its spec, plus an optional action-specific check.
    struct TestAction {
        spec: ActionSpec,
        check: fn(&Map<String, Value>) -> Vec<String>,
    }

    impl StepHandler for TestAction {
        fn spec(&self) -> &ActionSpec {
            &self.spec
        }
        fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
            (self.check)(params)
        }
        fn run(&self, _ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
            Box::pin(async { StepOutcome::completed(Map::new()) })
        }
    }

    fn action(kind: &'static str, params: Vec<ParamSpec>) -> TestAction {
        TestAction {
            spec: ActionSpec {
                kind,
                name: kind,
                category: "test",
                description: "",
                params,
                outputs: Vec::new(),
                waits_for_event: false,
                default_timeout_seconds: None,
            },
            check: |_| Vec::new(),
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(action(
            "log",
            vec![
                ParamSpec::new("message", "string", "").required(),
                ParamSpec::new("level", "string", "")
                    .default(json!("info"))
                    .options(&["debug", "info", "warning", "error"]),
            ],
        ));
        r.register(action("noop", vec![]));
        r.register(TestAction {
            check: |p| {
                if p.contains_key("a") && p.contains_key("b") {
                    vec!["'a' and 'b' are mutually exclusive".into()]
                } else {
                    vec![]
                }
            },
            ..action(
                "scale",
                vec![
                    ParamSpec::new("replicas", "integer", "")
                        .required()
                        .range(Some(1.0), Some(10.0)),
                    ParamSpec::new("ratio", "number", "").range(Some(0.5), None),
                    ParamSpec::new("zones", "array", "").options(&["a", "b"]),
                ],
            )
        });
        r.register(action(
            "conditional",
            vec![ParamSpec::new("branches", "branches", "")],
        ));
        r
    }

    fn check(doc: Value) -> Validation {
        validate(&doc, &registry())
    }

    fn errors(doc: Value) -> Vec<String> {
        let v = check(doc);
        assert!(v.dag.is_none() || v.errors.is_empty());
        v.errors
    }

    /// A valid document with the given steps.
    fn with_steps(steps: Value) -> Value {
        json!({"name": "wf", "steps": steps})
    }

    fn noop(id: &str, deps: &[&str]) -> Value {
        json!({"id": id, "action": "noop", "depends_on": deps})
    }

    fn has(errors: &[String], expected: &str) -> bool {
        errors.iter().any(|e| e == expected)
    }

    #[track_caller]
    fn assert_has(errors: &[String], expected: &str) {
        assert!(has(errors, expected), "missing {expected:?} in {errors:#?}");
    }

    // ---- accepted documents ----

    #[test]
    fn accepts_the_spec_example_shape() {
        let doc = json!({
            "name": "deploy-and-check",
            "version": "1.0",
            "description": "optional",
            "parameters": [
                {"name": "cluster_id", "type": "string", "required": true},
                {"name": "replicas", "type": "integer", "default": 1, "required": false}
            ],
            "settings": {"timeout_seconds": 7200, "max_parallel_steps": 10, "fail_fast": true},
            "steps": [
                {"id": "health", "action": "noop", "params": {"c": "{{ params.cluster_id }}"}},
                {"id": "deploy", "name": "Deploy", "action": "scale", "depends_on": ["health"],
                 "condition": "{{ steps.health.outputs.healthy }}",
                 "params": {"replicas": "{{ params.replicas }}", "config": {"r": "{{ params.replicas }}"}},
                 "timeout_seconds": 1800,
                 "retry": {"max_attempts": 3, "backoff_seconds": 5, "backoff_multiplier": 2.0, "max_backoff_seconds": 60},
                 "on_failure": "fail"},
                {"id": "announce", "action": "log", "depends_on": ["deploy"],
                 "params": {"message": "deployed {{ steps.deploy.outputs.deployment_id }} after {{ steps.health.outputs.status }}"}}
            ],
            "outputs": {"deployment_id": "{{ steps.deploy.outputs.deployment_id }}"}
        });
        let v = check(doc);
        assert_eq!(v.errors, Vec::<String>::new());
        assert_eq!(v.warnings, Vec::<String>::new());
        assert!(v.is_valid());
        let dag = v.dag.unwrap();
        assert_eq!(dag.steps.len(), 3);
        assert_eq!(dag.steps[0].name, "health", "name defaults to the id");
        assert_eq!(dag.steps[1].name, "Deploy");
        assert_eq!(dag.steps[1].retry.unwrap().max_attempts, 3);
        assert_eq!(dag.settings.max_parallel_steps, 10);
        assert_eq!(dag.parameters.len(), 2);
    }

    #[test]
    fn minimal_document_gets_defaults() {
        let v = check(with_steps(json!([{"id": "a", "action": "noop"}])));
        let dag = v.dag.expect("valid");
        assert_eq!(dag.version, "1.0");
        assert_eq!(dag.settings, crate::dag::Settings::default());
        assert_eq!(dag.steps[0].name, "a");
        assert!(dag.steps[0].depends_on.is_empty());
    }

    #[test]
    fn nulls_mean_not_given_and_on_failure_is_case_insensitive() {
        let doc = json!({
            "name": "wf", "description": null, "parameters": null, "settings": {"timeout_seconds": null},
            "outputs": null,
            "steps": [{"id": "a", "name": null, "action": "noop", "params": null, "depends_on": null,
                       "condition": null, "on_failure": "CONTINUE", "timeout_seconds": null,
                       "retry": {"max_attempts": null, "backoff_seconds": 1}}]
        });
        let v = check(doc);
        assert_eq!(v.errors, Vec::<String>::new());
        let dag = v.dag.unwrap();
        assert_eq!(dag.steps[0].on_failure, crate::dag::OnFailure::Continue);
        assert_eq!(dag.steps[0].retry.unwrap().max_attempts, 3);
        assert_eq!(dag.steps[0].name, "a");
    }

    // ---- document level ----

    #[test]
    fn document_must_be_an_object() {
        assert_eq!(errors(json!([])), vec!["dag: must be a JSON object"]);
        assert_eq!(errors(json!(null)), vec!["dag: must be a JSON object"]);
    }

    #[test]
    fn name_and_steps_are_required() {
        let e = errors(json!({}));
        assert_eq!(e, vec!["name: is required", "steps: is required"]);
        let e = errors(json!({"name": 5, "steps": {}}));
        assert_eq!(
            e,
            vec!["name: must be a string", "steps: must be a list of steps"]
        );
        let e = errors(json!({"name": "  ", "steps": []}));
        assert_eq!(
            e,
            vec![
                "name: must not be empty",
                "steps: at least one step is required"
            ]
        );
        let e = errors(json!({"name": "x".repeat(256), "steps": [{"id": "a", "action": "noop"}]}));
        assert_eq!(e, vec!["name: must be at most 255 characters"]);
    }

    #[test]
    fn header_field_types() {
        let e = errors(
            json!({"name": "wf", "version": 1.0, "description": [], "outputs": "x",
                              "steps": [{"id": "a", "action": "noop"}]}),
        );
        assert_eq!(
            e,
            vec![
                "version: must be a string",
                "description: must be a string",
                "outputs: must be an object",
            ]
        );
    }

    #[test]
    fn outputs_do_not_pile_up_errors_when_steps_are_unusable() {
        let doc =
            json!({"name": "wf", "outputs": {"r": "{{ steps.a.outputs.x }} {{ params.nope }}"}});
        assert_eq!(
            errors(doc),
            vec!["steps: is required", "outputs.r: unknown parameter 'nope'"]
        );
    }

    #[test]
    fn too_many_steps() {
        let steps: Vec<Value> = (0..=MAX_STEPS)
            .map(|i| noop(&format!("s{i}"), &[]))
            .collect();
        assert_eq!(
            errors(with_steps(Value::Array(steps))),
            vec!["steps: at most 1000 steps are allowed, got 1001"]
        );
        let steps: Vec<Value> = (0..MAX_STEPS)
            .map(|i| noop(&format!("s{i}"), &[]))
            .collect();
        assert!(check(with_steps(Value::Array(steps))).is_valid());
    }

    #[test]
    fn a_long_chain_of_steps_is_fine() {
        let steps: Vec<Value> = (0..MAX_STEPS)
            .map(|i| {
                let deps: Vec<String> = (0..i).map(|j| format!("s{j}")).rev().take(50).collect();
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                let mut s = noop(&format!("s{i}"), &deps);
                if i > 0 {
                    s["params"] = json!({"x": format!("{{{{ steps.s0.outputs.v }}}}")});
                }
                s
            })
            .collect();
        let v = check(with_steps(Value::Array(steps)));
        assert_eq!(v.errors, Vec::<String>::new());
        let order = topological_order(&v.dag.unwrap());
        assert_eq!(order, (0..MAX_STEPS).collect::<Vec<_>>());
    }

    // ---- parameters ----

    #[test]
    fn parameter_declarations() {
        let doc = json!({
            "name": "wf",
            "parameters": [
                {"name": "a"}, {"name": "a", "type": "integer"}, "x", {"type": "string"},
                {"name": "9lives"}, {"name": ""}, {"name": "n", "type": 5, "required": "yes", "description": 1},
                {"name": "i", "type": "integer", "default": "5"},
                {"name": "f", "type": "number", "default": 1.5},
                {"name": "long", "type": "cluster_ref", "default": "c-1"}
            ],
            "steps": [{"id": "s", "action": "noop"}]
        });
        assert_eq!(
            errors(doc),
            vec![
                "parameters: duplicate parameter 'a'",
                "parameters.2: must be an object",
                "parameters.3.name: is required",
                "parameters.4.name: '9lives' must start with a letter or '_'",
                "parameters.5.name: must not be empty",
                "parameters.n.type: must be a string",
                "parameters.n.description: must be a string",
                "parameters.n.required: must be a boolean",
                "parameters.i.default: expected integer, got string",
            ]
        );
        assert_eq!(
            errors(
                json!({"name": "wf", "parameters": {}, "steps": [{"id": "s", "action": "noop"}]})
            ),
            vec!["parameters: must be a list"]
        );
    }

    // ---- settings ----

    #[test]
    fn settings_bounds() {
        let doc = |settings: Value| json!({"name": "wf", "settings": settings, "steps": [{"id": "a", "action": "noop"}]});
        assert_eq!(errors(doc(json!([]))), vec!["settings: must be an object"]);
        assert_eq!(
            errors(doc(
                json!({"timeout_seconds": 0, "max_parallel_steps": 101, "fail_fast": "yes"})
            )),
            vec![
                "settings.timeout_seconds: must be between 1 and 31536000",
                "settings.max_parallel_steps: must be between 1 and 100",
                "settings.fail_fast: must be a boolean",
            ]
        );
        assert_eq!(
            errors(doc(
                json!({"timeout_seconds": 1.5, "max_parallel_steps": 0})
            )),
            vec![
                "settings.timeout_seconds: must be an integer",
                "settings.max_parallel_steps: must be between 1 and 100",
            ]
        );
        assert_eq!(
            errors(doc(json!({"timeout_seconds": -1}))),
            vec!["settings.timeout_seconds: must be between 1 and 31536000"]
        );
        assert!(
            check(doc(
                json!({"timeout_seconds": 1, "max_parallel_steps": 100, "fail_fast": false})
            ))
            .is_valid()
        );
    }

    // ---- steps ----

    #[test]
    fn step_shape_errors() {
        let e = errors(with_steps(json!([
            7,
            {"action": "noop"},
            {"id": 5, "action": "noop"},
            {"id": "a"},
            {"id": "b", "action": 3, "name": 4},
            {"id": "c", "action": "  "},
            {"id": "d", "action": "noop", "params": [], "depends_on": "a", "condition": true},
            {"id": "e", "action": "noop", "depends_on": ["a", 1]},
        ])));
        assert_eq!(
            e,
            vec![
                "steps.0: must be an object",
                "steps.1.id: is required",
                "steps.2.id: must be a string",
                "steps.a.action: is required",
                "steps.b.name: must be a string",
                "steps.b.action: must be a string",
                "steps.c.action: is required",
                "steps.d.params: must be an object",
                "steps.d.depends_on: must be a list of step ids",
                "steps.d.condition: must be a string",
                "steps.e.depends_on: must be a list of step ids",
            ]
        );
    }

    #[test]
    fn step_id_rules() {
        let long = "a".repeat(101);
        let e = errors(with_steps(json!([
            {"id": "", "action": "noop"},
            {"id": long, "action": "noop"},
            {"id": "_x", "action": "noop"},
            {"id": "a.b", "action": "noop"},
            {"id": "a b", "action": "noop"},
            {"id": "ünï", "action": "noop"},
            {"id": "1st-step_OK", "action": "noop"},
            {"id": "x".repeat(100), "action": "noop"},
        ])));
        assert_eq!(
            e,
            vec![
                "steps.0.id: must not be empty",
                "steps.1.id: must be at most 100 characters",
                "steps.2.id: '_x' must start with a letter or a digit",
                "steps.3.id: 'a.b' may only contain letters, digits, '_' and '-'",
                "steps.4.id: 'a b' may only contain letters, digits, '_' and '-'",
                "steps.5.id: 'ünï' must start with a letter or a digit",
            ]
        );
    }

    #[test]
    fn invalid_ids_still_resolve_as_dependencies() {
        let e = errors(with_steps(json!([
            {"id": "a.b", "action": "noop"},
            {"id": "c", "action": "noop", "depends_on": ["a.b"]},
        ])));
        assert_eq!(
            e,
            vec!["steps.0.id: 'a.b' may only contain letters, digits, '_' and '-'"]
        );
    }

    #[test]
    fn unknown_action_is_an_error() {
        let v = check(with_steps(json!([{"id": "x", "action": "foo"}])));
        assert_eq!(v.errors, vec!["steps.x.action: unknown action 'foo'"]);
        assert!(v.dag.is_none());
    }

    #[test]
    fn step_name_length() {
        let e = errors(with_steps(
            json!([{"id": "a", "action": "noop", "name": "n".repeat(256)}]),
        ));
        assert_eq!(e, vec!["steps.a.name: must be at most 255 characters"]);
    }

    #[test]
    fn on_failure_timeout_and_retry() {
        let e = errors(with_steps(json!([
            {"id": "a", "action": "noop", "on_failure": "explode", "timeout_seconds": 0},
            {"id": "b", "action": "noop", "on_failure": 1, "timeout_seconds": "5", "retry": 3},
            {"id": "c", "action": "noop", "timeout_seconds": 31_536_001u64,
             "retry": {"max_attempts": 11, "backoff_seconds": -1, "backoff_multiplier": 0.5, "max_backoff_seconds": "x"}},
            {"id": "d", "action": "noop", "retry": {"max_attempts": 0, "backoff_seconds": 1e12, "max_backoff_seconds": -0.5}},
            {"id": "e", "action": "noop", "retry": {"max_attempts": 2.0}},
            {"id": "f", "action": "noop", "timeout_seconds": 1, "on_failure": "Retry",
             "retry": {"max_attempts": 1, "backoff_seconds": 0, "backoff_multiplier": 1, "max_backoff_seconds": 0}},
            {"id": "g", "action": "noop", "retry": {"max_attempts": 10, "backoff_seconds": 0.5, "backoff_multiplier": 1000}},
        ])));
        assert_eq!(
            e,
            vec![
                "steps.a.on_failure: must be one of 'fail', 'continue', 'retry'",
                "steps.a.timeout_seconds: must be between 1 and 31536000",
                "steps.b.on_failure: must be one of 'fail', 'continue', 'retry'",
                "steps.b.timeout_seconds: must be an integer",
                "steps.b.retry: must be an object",
                "steps.c.timeout_seconds: must be between 1 and 31536000",
                "steps.c.retry.max_attempts: must be between 1 and 10",
                "steps.c.retry.backoff_seconds: must be between 0 and 31536000",
                "steps.c.retry.backoff_multiplier: must be at least 1",
                "steps.c.retry.max_backoff_seconds: must be a number",
                "steps.d.retry.max_attempts: must be between 1 and 10",
                "steps.d.retry.backoff_seconds: must be between 0 and 31536000",
                "steps.d.retry.max_backoff_seconds: must be between 0 and 31536000",
                "steps.e.retry.max_attempts: must be an integer",
            ]
        );
    }

    // ---- the graph ----

    #[test]
    fn duplicate_ids() {
        let e = errors(with_steps(json!([
            noop("x", &[]),
            noop("x", &[]),
            noop("x", &[]),
            noop("y", &[])
        ])));
        assert_eq!(e, vec!["steps: duplicate step id 'x'"]);
    }

    #[test]
    fn unknown_and_self_dependencies() {
        let e = errors(with_steps(json!([
            noop("a", &["a"]),
            noop("deploy", &["ghost", "a"]),
        ])));
        assert_eq!(
            e,
            vec![
                "steps.a.depends_on: a step cannot depend on itself",
                "steps.deploy.depends_on: unknown step 'ghost'",
            ]
        );
    }

    #[test]
    fn repeated_dependency_is_a_warning_and_dropped() {
        let v = check(with_steps(json!([noop("a", &[]), noop("b", &["a", "a"])])));
        assert_eq!(v.errors, Vec::<String>::new());
        assert_eq!(
            v.warnings,
            vec!["steps.b.depends_on: 'a' is listed more than once"]
        );
        assert_eq!(v.dag.unwrap().steps[1].depends_on, vec!["a"]);
    }

    #[test]
    fn two_step_cycle() {
        let e = errors(with_steps(json!([noop("a", &["b"]), noop("b", &["a"])])));
        assert_eq!(e, vec!["steps: cycle detected: a -> b -> a"]);
    }

    #[test]
    fn longer_cycle_follows_execution_order() {
        // c runs after b runs after a runs after c.
        let e = errors(with_steps(json!([
            noop("start", &[]),
            noop("a", &["start", "c"]),
            noop("b", &["a"]),
            noop("c", &["b"]),
            noop("after", &["c"]),
        ])));
        assert_eq!(e, vec!["steps: cycle detected: a -> b -> c -> a"]);
    }

    #[test]
    fn each_separate_cycle_is_reported() {
        let e = errors(with_steps(json!([
            noop("a", &["b"]),
            noop("b", &["a"]),
            noop("c", &["d"]),
            noop("d", &["e"]),
            noop("e", &["c"]),
        ])));
        assert_eq!(
            e,
            vec![
                "steps: cycle detected: a -> b -> a",
                "steps: cycle detected: c -> e -> d -> c",
            ]
        );
    }

    #[test]
    fn topological_order_is_stable_by_declaration() {
        let v = check(with_steps(json!([
            noop("d", &["b", "c"]),
            noop("b", &["a"]),
            noop("c", &[]),
            noop("a", &[]),
            noop("e", &[]),
        ])));
        let dag = v.dag.unwrap();
        let ids: Vec<&str> = topological_order(&dag)
            .into_iter()
            .map(|i| dag.steps[i].id.as_str())
            .collect();
        assert_eq!(ids, vec!["c", "a", "b", "d", "e"]);
    }

    #[test]
    fn topological_order_covers_every_step_even_with_a_cycle() {
        let dag: Dag = serde_json::from_value(with_steps(json!([
            noop("a", &["b"]),
            noop("b", &["a"]),
            noop("c", &["ghost"]),
        ])))
        .unwrap();
        assert_eq!(topological_order(&dag), vec![2, 0, 1]);
    }

    // ---- templates ----

    #[test]
    fn template_that_does_not_parse() {
        let e = errors(with_steps(json!([
            {"id": "x", "action": "log", "params": {"message": "{{ oops + }}"}, "condition": "{% if %}"}
        ])));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("steps.x.params.message: template does not parse: syntax error"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("steps.x.condition: template does not parse: syntax error"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_parameter_and_step_references() {
        let doc = json!({
            "name": "wf",
            "parameters": [{"name": "cluster_id"}],
            "steps": [
                {"id": "a", "action": "noop"},
                {"id": "x", "action": "noop", "depends_on": ["a"],
                 "params": {"cluster_id": "{{ params.cid }}", "nested": {"list": ["{{ steps.nope.outputs.v }}"]},
                            "ok": "{{ params.cluster_id }} {{ steps.a.outputs.v }}"},
                 "condition": "{{ steps.zz.outputs.ok }}"}
            ]
        });
        assert_eq!(
            errors(doc),
            vec![
                "steps.x.params.cluster_id: unknown parameter 'cid'",
                "steps.x.params.nested.list.0: unknown step 'nope'",
                "steps.x.condition: unknown step 'zz'",
            ]
        );
    }

    #[test]
    fn references_must_be_upstream() {
        let e = errors(with_steps(json!([
            noop("a", &[]),
            noop("b", &[]),
            noop("c", &["a"]),
            {"id": "x", "action": "noop", "depends_on": ["c"],
             "params": {"msg": "{{ steps.b.outputs.v }}", "ok": "{{ steps.a.outputs.v }}{{ steps['c'].outputs.v }}",
                        "later": "{{ steps.y.outputs.v }}", "me": "{{ steps.x.outputs.v }}"}},
            noop("y", &["x"]),
        ])));
        assert_eq!(
            e,
            vec![
                "steps.x.params.later: step 'y' is not an upstream dependency of 'x'",
                "steps.x.params.me: step 'x' is not an upstream dependency of 'x'",
                "steps.x.params.msg: step 'b' is not an upstream dependency of 'x'",
            ]
        );
    }

    #[test]
    fn hyphenated_ids_are_read_with_subscripts() {
        let v = check(with_steps(json!([
            noop("my-step", &[]),
            {"id": "x", "action": "noop", "depends_on": ["my-step"],
             "params": {"v": "{{ steps['my-step'].outputs.v }}"}},
        ])));
        assert_eq!(v.errors, Vec::<String>::new());
        assert_eq!(v.warnings, Vec::<String>::new());
    }

    #[test]
    fn unknown_variables_are_warnings() {
        let v = check(with_steps(json!([
            {"id": "x", "action": "noop", "params": {"v": "{{ parms.x }}"}},
        ])));
        assert!(v.is_valid());
        assert_eq!(
            v.warnings,
            vec![
                "steps.x.params.v: unknown variable 'parms' (a template can read 'params' and 'steps')"
            ]
        );
    }

    #[test]
    fn outputs_templates_are_checked_without_the_upstream_rule() {
        let doc = json!({
            "name": "wf",
            "steps": [noop("a", &[]), noop("b", &[])],
            "outputs": {"ok": "{{ steps.a.outputs.v }} {{ steps.b.outputs.v }}", "plain": 3,
                        "bad": "{{ steps.ghost.outputs.v }}", "p": {"deep": ["{{ params.nope }}"]},
                        "broken": "{{ x "}
        });
        let e = errors(doc);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0], "outputs.bad: unknown step 'ghost'");
        assert!(
            e[1].starts_with("outputs.broken: template does not parse:"),
            "{e:?}"
        );
        assert_eq!(e[2], "outputs.p.deep.0: unknown parameter 'nope'");
    }

    // ---- action parameters ----

    #[test]
    fn required_action_params() {
        let e = errors(with_steps(json!([
            {"id": "a", "action": "log"},
            {"id": "b", "action": "log", "params": {"message": null}},
            {"id": "c", "action": "log", "params": {"message": " "}},
            {"id": "d", "action": "log", "params": {"message": "{{ params.m | default('') }}"}},
            {"id": "e", "action": "log", "params": {"message": "hi"}},
        ])));
        assert_eq!(
            e,
            vec![
                "steps.a.params.message: is required",
                "steps.b.params.message: is required",
                "steps.c.params.message: is required",
                "steps.d.params.message: unknown parameter 'm'",
            ]
        );
    }

    #[test]
    fn action_param_bounds_and_options() {
        let e = errors(with_steps(json!([
            {"id": "a", "action": "scale", "params": {"replicas": 0, "ratio": 0.25}},
            {"id": "b", "action": "scale", "params": {"replicas": 11, "zones": ["a", "c", "{{ x }}"]}},
            {"id": "c", "action": "scale", "params": {"replicas": "{{ params.n }}"}},
            {"id": "d", "action": "log", "params": {"message": "m", "level": "loud"}},
            {"id": "e", "action": "log", "params": {"message": "m", "level": "{{ 'info' }}"}},
            {"id": "f", "action": "scale", "params": {"replicas": 10, "ratio": 0.5, "zones": ["b"]}},
        ])));
        assert_eq!(
            e,
            vec![
                "steps.a.params.replicas: must be at least 1",
                "steps.a.params.ratio: must be at least 0.5",
                "steps.b.params.replicas: must be at most 10",
                "steps.b.params.zones: must be one of 'a', 'b', got 'c'",
                "steps.d.params.level: must be one of 'debug', 'info', 'warning', 'error', got 'loud'",
                // Template checks come after the structural ones.
                "steps.c.params.replicas: unknown parameter 'n'",
            ]
        );
    }

    #[test]
    fn action_specific_checks_are_prefixed() {
        let e = errors(with_steps(json!([
            {"id": "a", "action": "scale", "params": {"replicas": 1, "a": 1, "b": 2}},
        ])));
        assert_eq!(
            e,
            vec!["steps.a.params: 'a' and 'b' are mutually exclusive"]
        );
    }

    // ---- conditional branches ----

    #[test]
    fn branch_targets() {
        let v = check(with_steps(json!([
            {"id": "pick", "action": "conditional", "params": {"branches": [
                {"id": "1", "condition": "true", "target_step": "yes"},
                {"id": "2", "condition": "true", "target_step": "loose"},
                {"id": "3", "condition": "true", "target_step": "ghost"},
                {"id": "4", "condition": "true", "target_step": null},
                {"id": "5", "condition": "true", "target_step": "later"},
            ]}},
            noop("yes", &["pick"]),
            noop("loose", &[]),
            noop("later", &["yes"]),
        ])));
        assert_eq!(
            v.errors,
            vec!["steps.pick.params.branches.2.target_step: unknown step 'ghost'"]
        );
        assert_eq!(
            v.warnings,
            vec![
                "steps.pick.params.branches.1.target_step: step 'loose' does not depend on 'pick', so it may run before the branch is chosen"
            ]
        );
    }

    // ---- all at once ----

    #[test]
    fn reports_every_problem_at_once() {
        let doc = json!({
            "steps": [
                {"id": "a", "action": "nope", "depends_on": ["b"]},
                {"id": "b", "action": "noop", "depends_on": ["a", "ghost"], "params": {"x": "{{ params.p }}"}},
                {"id": "b", "action": "log"},
            ]
        });
        let e = errors(doc);
        for expected in [
            "name: is required",
            "steps.a.action: unknown action 'nope'",
            "steps.b.params.message: is required",
            "steps: duplicate step id 'b'",
            "steps.b.depends_on: unknown step 'ghost'",
            "steps: cycle detected: a -> b -> a",
            "steps.b.params.x: unknown parameter 'p'",
        ] {
            assert_has(&e, expected);
        }
        assert_eq!(e.len(), 7, "{e:#?}");
    }
}
