//! Typed views of the execution document (`GET /executions/{id}`, and the
//! answers of `POST /executions/{id}/cancel` and `/retry`), for assertions.
//!
//! Read as `serde_json::Value`, a misspelt or renamed field reads `Null`
//! and a comparison with it can pass for the wrong reason. Here every
//! field the API always sends is required, nullable ones included (see
//! [`nullable`]): a document without one fails to deserialize, naming the
//! field. Statuses and skip reasons are enums, so a misspelt one in a test
//! does not compile and an unknown one from the service fails to
//! deserialize. Free-form parts (`outputs`, `parameters`, `stage`) stay
//! `Value`.
//!
//! Each view keeps the JSON it was read from in `raw`: for the messages of
//! failed assertions (`{done:#}` prints it, as it printed the `Value`) and
//! for the few checks of the JSON shape itself (that a field is absent).
//! Assert on the typed fields otherwise.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use uuid::Uuid;

/// An execution's status (API.md "Executions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ExecutionStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum StepStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Timeout,
    Cancelled,
}

/// Why a step was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SkipReason {
    Condition,
    Branch,
    UpstreamFailed,
}

/// The execution document.
#[derive(Debug, Deserialize)]
pub(crate) struct Execution {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub status: ExecutionStatus,
    pub parameters: Value,
    pub outputs: Value,
    #[serde(deserialize_with = "nullable")]
    pub error: Option<String>,
    pub progress_percentage: f64,
    pub callback_topics: Vec<String>,
    pub initiator: String,
    #[serde(deserialize_with = "nullable")]
    pub subscriber_ids: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub payload_type: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub notification_workflow_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub workflow_name: Option<String>,
    pub params: Value,
    pub created_at: DateTime<Utc>,
    #[serde(deserialize_with = "nullable")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub completed_at: Option<DateTime<Utc>>,
    /// In the DAG's declaration order.
    pub steps: Vec<Step>,
    /// The document this was read from (see the module's comment).
    #[serde(skip)]
    pub raw: Value,
}

/// One step of an execution document.
#[derive(Debug, Deserialize)]
pub(crate) struct Step {
    pub step_id: String,
    pub name: String,
    pub action: String,
    pub status: StepStatus,
    pub awaiting_event: bool,
    #[serde(deserialize_with = "nullable")]
    pub external_workflow_id: Option<String>,
    pub attempt: i32,
    pub outputs: Value,
    #[serde(deserialize_with = "nullable")]
    pub error: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub timeout_at: Option<DateTime<Utc>>,
    // Sent only when set.
    #[serde(default)]
    pub skip_reason: Option<SkipReason>,
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub progress: Option<f64>,
    #[serde(default)]
    pub crashes: Option<i32>,
    #[serde(default)]
    pub stage: Option<Value>,
    /// The step's JSON in the document (see the module's comment).
    #[serde(skip)]
    pub raw: Value,
}

/// A field that is always sent but may be `null`. (Serde lets an `Option`
/// field be absent unless it has a `deserialize_with`: this one makes the
/// field required.)
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

impl Execution {
    /// The execution read from its JSON document; panics with the document
    /// and serde's message (which names the field) when it does not fit.
    pub(crate) fn from_value(document: &Value) -> Self {
        let mut execution: Self = serde_json::from_value(document.clone())
            .unwrap_or_else(|e| panic!("not an execution document ({e}): {document:#}"));
        for (i, step) in execution.steps.iter_mut().enumerate() {
            step.raw = document["steps"][i].clone();
        }
        execution.raw = document.clone();
        execution
    }

    /// The step named `id`; panics naming it when there is none.
    pub(crate) fn step(&self, id: &str) -> &Step {
        self.steps
            .iter()
            .find(|s| s.step_id == id)
            .unwrap_or_else(|| panic!("no step {id} in execution {}: {self:#}", self.execution_id))
    }

    /// From `started_at` to `completed_at`; panics unless both are set.
    pub(crate) fn duration(&self) -> TimeDelta {
        duration(self.started_at, self.completed_at, self)
    }

    /// The step ids, in the document's order.
    pub(crate) fn step_ids(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.step_id.as_str()).collect()
    }
}

impl Step {
    /// From `started_at` to `completed_at`; panics unless both are set.
    pub(crate) fn duration(&self) -> TimeDelta {
        duration(self.started_at, self.completed_at, self)
    }
}

fn duration(
    started: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
    of: &dyn fmt::Display,
) -> TimeDelta {
    match (started, completed) {
        (Some(started), Some(completed)) => completed - started,
        _ => panic!("not both started and completed: {of:#}"),
    }
}

impl fmt::Display for Execution {
    /// The JSON document (`{:#}` pretty-prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.raw, f)
    }
}

impl fmt::Display for Step {
    /// The step's JSON (`{:#}` pretty-prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.raw, f)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document() -> Value {
        json!({
            "execution_id": "0190a0a0-0000-7000-8000-000000000001",
            "workflow_id": "0190a0a0-0000-7000-8000-000000000002",
            "workflow_version": 1, "status": "RUNNING", "parameters": {}, "outputs": {},
            "error": null, "progress_percentage": 50.0, "callback_topics": [], "initiator": "api",
            "subscriber_ids": null, "payload_type": null, "notification_workflow_id": null,
            "workflow_name": "w", "params": {}, "created_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T00:00:00.5Z", "completed_at": null,
            "steps": [{
                "step_id": "a", "name": "a", "action": "log", "status": "SKIPPED",
                "awaiting_event": false, "external_workflow_id": null, "attempt": 0,
                "outputs": {}, "error": null, "started_at": null, "completed_at": null,
                "timeout_at": null, "skip_reason": "upstream_failed"
            }]
        })
    }

    fn read(document: Value) -> Result<Execution, String> {
        serde_json::from_value::<Execution>(document).map_err(|e| e.to_string())
    }

    #[test]
    fn a_document_reads_with_its_steps_and_their_json() {
        let e = Execution::from_value(&document());
        assert_eq!(e.status, ExecutionStatus::Running);
        assert_eq!(e.completed_at, None);
        let a = e.step("a");
        assert_eq!(a.status, StepStatus::Skipped);
        assert_eq!(a.skip_reason, Some(SkipReason::UpstreamFailed));
        assert_eq!(a.next_attempt_at, None);
        assert_eq!(a.raw["step_id"], "a");
        assert_eq!(e.raw, document());
    }

    /// The point of the views: a field the API always sends (null or not)
    /// may not be missing, and a status must be one the API knows.
    #[test]
    fn a_missing_field_or_an_unknown_status_is_an_error_naming_it() {
        for field in ["completed_at", "error", "status", "progress_percentage"] {
            let mut doc = document();
            doc.as_object_mut().unwrap().remove(field);
            let err = read(doc).expect_err(field);
            assert!(err.contains(&format!("missing field `{field}`")), "{err}");
        }
        for field in ["timeout_at", "external_workflow_id", "attempt"] {
            let mut doc = document();
            doc["steps"][0].as_object_mut().unwrap().remove(field);
            let err = read(doc).expect_err(field);
            assert!(err.contains(&format!("missing field `{field}`")), "{err}");
        }
        let mut doc = document();
        doc["status"] = json!("COMPLETE");
        let err = read(doc).expect_err("unknown status");
        assert!(err.contains("COMPLETE"), "{err}");
    }

    #[test]
    #[should_panic(expected = "no step b in execution")]
    fn an_absent_step_panics_naming_it() {
        Execution::from_value(&document()).step("b");
    }
}
