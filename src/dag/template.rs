//! Jinja templating of step params, conditions and DAG outputs (DAG.md "Templating").
//!
//! The context is `{"params": {...}, "steps": {"<id>": {"outputs": {...}}}}`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A variable path a template reads, for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `params.<name>`
    Param(String),
    /// `steps.<id>`
    Step(String),
}

/// Resolve every string in `value` (recursively through objects and lists).
/// A string that is exactly one expression yields the typed value; any other
/// string renders to a string; an undefined value is null in a pure
/// expression and the empty string inside text.
pub fn resolve(value: &Value, context: &Value) -> Result<Value, TemplateError> {
    let _ = (value, context);
    todo!("dag::template::resolve")
}

/// Evaluate a `condition`: Jinja truthiness plus the strings "true"/"false"
/// (any case); undefined is false; blank is true.
pub fn condition(expr: &str, context: &Value) -> Result<bool, TemplateError> {
    let _ = (expr, context);
    todo!("dag::template::condition")
}

/// Check that `template` parses and list the `params.*` / `steps.*` it reads.
pub fn references(template: &str) -> Result<Vec<Reference>, TemplateError> {
    let _ = template;
    todo!("dag::template::references")
}
