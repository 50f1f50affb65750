//! Execution parameters merged with the DAG's declarations (API.md "Executions").

use serde_json::{Map, Value};

use super::Dag;

/// Merge `given` over the DAG's parameter defaults and check declared types
/// (no coercion). Undeclared parameters are kept. Each error names the
/// parameter: `parameters.<name>: ...`.
pub fn merge(dag: &Dag, given: &Map<String, Value>) -> Result<Map<String, Value>, Vec<String>> {
    let _ = (dag, given);
    todo!("dag::params::merge")
}
