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

mod build;
mod document;
mod graph;
mod refs;
mod report;
mod steps;
#[cfg(test)]
mod tests;

use build::*;
use document::*;
use graph::*;
use refs::*;
use report::*;
use steps::*;

pub use steps::action_params;

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
