//! Submit-time checks of a workflow document (DAG.md "Validation").

use serde_json::Value;

use super::Dag;
use crate::actions::Registry;

/// The outcome of validating a document: every problem at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    /// The typed document, when it parsed and has no errors.
    pub dag: Option<Dag>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn validate(doc: &Value, registry: &Registry) -> Validation {
    let _ = (doc, registry);
    todo!("dag::validate::validate")
}

/// Step indices in an order where every step comes after its dependencies.
/// Only meaningful for a validated (acyclic) DAG.
pub fn topological_order(dag: &Dag) -> Vec<usize> {
    let _ = dag;
    todo!("dag::validate::topological_order")
}
