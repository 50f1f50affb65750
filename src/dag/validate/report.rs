//! Reporting problems, and small helpers every check uses.

use super::*;

#[derive(Default)]
pub(super) struct Report {
    pub(super) errors: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Report {
    pub(super) fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    pub(super) fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    pub(super) fn finish(self, dag: Option<Dag>) -> Validation {
        Validation {
            dag,
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    /// `Some(s)` for a string; reports `{path}: must be a string` otherwise.
    pub(super) fn string<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a str> {
        let s = value.as_str();
        if s.is_none() {
            self.error(format!("{path}: must be a string"));
        }
        s
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) {
        if !value.is_boolean() {
            self.error(format!("{path}: must be a boolean"));
        }
    }

    pub(super) fn integer(&mut self, path: &str, value: &Value, min: u64, max: u64) {
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

    pub(super) fn number(&mut self, path: &str, value: &Value, min: f64, max: Option<f64>) {
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
    pub(super) fn name(&mut self, path: &str, value: Option<&Value>, max: usize) {
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
pub(super) fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// A number as people write it: `5`, not `5.0`.
pub(super) fn show(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

pub(super) fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
