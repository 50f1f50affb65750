//! What a Bud service's event means for the step waiting on it.
//!
//! A long operation of budcluster, budmodel or budsim publishes a *series*
//! of notifications for one correlation id: one per stage of its workflow
//! (`payload.event`), each with a status (`payload.content.status`). Some
//! intermediate stages already say `COMPLETED` (budcluster's
//! `transfer_model_to_cluster`), so the first `COMPLETED` must not end a
//! wait. Each waiting action therefore names, in a [`WaitRules`], which
//! stages end its wait; everything else is progress.
//!
//! Two shapes are read (the decision is made on the event's own fields,
//! never on the CloudEvent `type`, which differs between publishers):
//! - the NotificationPayload every Bud service publishes:
//!   `{"payload": {"type": <operation>, "event": <stage>, "workflow_id",
//!     "content": {"status", "message", "result"}}}`;
//! - the design note's flat event:
//!   `{"event_type": <operation>, "event": <stage>, "workflow_id", "status",
//!     "content" | "result"}`.

use serde_json::{Map, Value, json};

use super::EventAction;

/// The stage every Bud workflow publishes last, with the workflow's outcome.
pub(crate) const RESULTS_STAGE: &str = "results";
/// The stage that carries the estimated minutes left in `content.message`.
pub(crate) const ETA_STAGE: &str = "eta";

/// One stage report of a long operation that does not end the wait; kept on
/// the step (`stage` in the execution document) and republished to the
/// execution's callback topics.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The operation (`payload.type` / `event_type`), when the event names it.
    pub operation: Option<String>,
    /// The stage (`payload.event` / `event`); `eta` for an estimate.
    pub stage: Option<String>,
    /// The stage's status, upper-cased.
    pub status: Option<String>,
    pub message: Option<String>,
    /// The step's progress (0-100) when the event or the stage implies one.
    pub progress: Option<f64>,
    /// Minutes left, from an `eta` stage.
    pub eta_minutes: Option<i64>,
}

impl StageReport {
    /// What the step row keeps (`step_executions.stage`).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                map.insert(key.to_owned(), v);
            }
        };
        put("operation", self.operation.clone().map(Value::from));
        put("stage", self.stage.clone().map(Value::from));
        put("status", self.status.clone().map(Value::from));
        put("message", self.message.clone().map(Value::from));
        put("progress", self.progress.map(|p| json!(p)));
        put("eta_minutes", self.eta_minutes.map(Value::from));
        Value::Object(map)
    }
}

/// The fields of a Bud event that decide what it means, from either shape.
#[derive(Debug)]
pub(crate) struct BudEvent<'a> {
    pub operation: Option<&'a str>,
    pub stage: Option<&'a str>,
    /// Upper-cased; `None` when the event carries no status.
    pub status: Option<String>,
    /// The design note's flat shape: one event per operation, so final.
    flat: bool,
    /// The object that carries the status (and usually the message).
    holder: &'a Map<String, Value>,
    /// The result data: `content`/`result` of the flat shape, `content.result`
    /// of the NotificationPayload shape.
    result: Option<&'a Value>,
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

impl<'a> BudEvent<'a> {
    /// `None` for an event with neither a status nor a stage: nothing in it
    /// can say what happened to the operation.
    pub(crate) fn read(event: &'a Value) -> Option<Self> {
        let event = event.as_object()?;
        if let Some(payload) = event.get("payload").and_then(Value::as_object) {
            if let Some(content) = payload.get("content").and_then(Value::as_object) {
                let parsed = Self {
                    operation: text(payload, "type"),
                    stage: text(payload, "event"),
                    status: text(content, "status").map(str::to_ascii_uppercase),
                    holder: content,
                    result: present(content, "result"),
                    flat: false,
                };
                if parsed.status.is_some() || parsed.stage.is_some() {
                    return Some(parsed);
                }
            }
        }
        // The first event of every budmicroframe workflow announces its steps
        // (`object: "workflow_metadata"`, `status: "PENDING"`): nothing has
        // happened yet, and its `workflow_id` is the publisher's own.
        if text(event, "object") == Some("workflow_metadata") {
            return None;
        }
        let parsed = Self {
            operation: text(event, "event_type"),
            stage: text(event, "event"),
            status: text(event, "status").map(str::to_ascii_uppercase),
            holder: event,
            result: present(event, "content").or_else(|| present(event, "result")),
            flat: true,
        };
        (parsed.status.is_some() || parsed.stage.is_some()).then_some(parsed)
    }

    /// The result's fields, merged into the step's outputs on completion.
    pub(crate) fn result_fields(&self) -> Map<String, Value> {
        match self.result {
            Some(Value::Object(map)) => map.clone(),
            Some(other) => Map::from_iter([("result".to_owned(), other.clone())]),
            None => Map::new(),
        }
    }

    /// The most specific message: the result's, else the status holder's.
    pub(crate) fn message(&self) -> Option<&'a str> {
        let pick = |map: &'a Map<String, Value>| {
            ["message", "error", "reason"]
                .iter()
                .find_map(|key| text(map, key))
        };
        self.result
            .and_then(Value::as_object)
            .and_then(pick)
            .or_else(|| pick(self.holder))
    }

    /// The message of the status holder only (an `eta` stage's minutes).
    fn own_message(&self) -> Option<&'a str> {
        text(self.holder, "message")
    }

    fn progress(&self) -> Option<f64> {
        self.result
            .and_then(|c| c.get("progress_percentage"))
            .or_else(|| self.holder.get("progress_percentage"))
            .and_then(Value::as_f64)
            .filter(|p| p.is_finite())
            .map(|p| p.clamp(0.0, 100.0))
    }

    fn report(&self, progress: Option<f64>, eta_minutes: Option<i64>) -> StageReport {
        StageReport {
            operation: self.operation.map(str::to_owned),
            stage: self.stage.map(str::to_owned),
            status: self.status.clone(),
            message: self.own_message().map(str::to_owned),
            progress: progress.or_else(|| self.progress()),
            eta_minutes,
        }
    }
}

/// Which events end a waiting action's wait, and how far each stage is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitRules {
    /// Operations (`payload.type` / `event_type`) this wait listens to; an
    /// event naming another operation is not for it and is ignored. Empty:
    /// any operation.
    pub operations: &'static [&'static str],
    /// Stages besides `results` that end the wait with their status (the
    /// operation's own final stage).
    pub final_stages: &'static [&'static str],
    /// Operations whose every event is final: the design note's flat
    /// `deployment_status` event is the one event of its operation.
    pub final_operations: &'static [&'static str],
    /// Progress (0-100) a stage stands for, for operations that report none.
    pub stage_progress: &'static [(&'static str, f64)],
}

impl WaitRules {
    /// The rules of a generic wait: `results` (or a flat status event with
    /// no stage) ends it, a FAILED stage fails it, the rest is progress.
    pub(crate) const GENERIC: Self = Self {
        operations: &[],
        final_stages: &[],
        final_operations: &[],
        stage_progress: &[],
    };

    fn is_final(&self, event: &BudEvent<'_>) -> bool {
        match event.stage {
            // The design note's flat event (and any status event without a
            // stage) is the operation's one completion event.
            _ if event.flat => true,
            None => true,
            Some(stage) => {
                stage == RESULTS_STAGE
                    || self.final_stages.contains(&stage)
                    || event
                        .operation
                        .is_some_and(|op| self.final_operations.contains(&op))
            }
        }
    }

    fn listens_to(&self, event: &BudEvent<'_>) -> bool {
        match event.operation {
            Some(op) if !self.operations.is_empty() => {
                self.operations.contains(&op) || self.final_operations.contains(&op)
            }
            _ => true,
        }
    }

    /// What `event` means for a step waiting under these rules; `failure`
    /// is the error when a failed event says nothing.
    pub(crate) fn decide(&self, event: &Value, failure: &str) -> EventAction {
        let Some(event) = BudEvent::read(event) else {
            return EventAction::Ignore;
        };
        if !self.listens_to(&event) {
            return EventAction::Ignore;
        }
        if event.stage == Some(ETA_STAGE) {
            // budmicroframe sends the minutes left as the message text.
            let minutes = event
                .own_message()
                .and_then(|m| m.parse::<f64>().ok())
                .filter(|m| m.is_finite() && *m >= 0.0)
                .map(|m| m.round() as i64);
            return EventAction::Progress(event.report(None, minutes));
        }
        let status = event.status.as_deref();
        if status == Some("FAILED") {
            return EventAction::Fail(event.message().unwrap_or(failure).to_owned());
        }
        if self.is_final(&event) && status == Some("COMPLETED") {
            return EventAction::Complete(event.result_fields());
        }
        if status.is_none() && event.stage.is_none() {
            return EventAction::Ignore;
        }
        let stage_progress = event.stage.and_then(|stage| {
            self.stage_progress
                .iter()
                .find(|(s, _)| *s == stage)
                .map(|(_, p)| *p)
        });
        EventAction::Progress(event.report(stage_progress, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::params;

    fn notification(op: &str, stage: &str, status: &str, message: &str, result: Value) -> Value {
        json!({"notification_type": "event", "name": "bud-notification",
               "payload": {"category": "internal", "type": op, "event": stage,
                           "workflow_id": "w", "source": "budcluster",
                           "content": {"title": "t", "message": message, "status": status,
                                       "result": result}}})
    }

    const DEPLOY: WaitRules = WaitRules {
        operations: &["deploy_model"],
        final_stages: &[],
        final_operations: &["deployment_status"],
        stage_progress: &[("deploy_model", 50.0)],
    };

    #[test]
    fn an_intermediate_completed_stage_is_progress_not_completion() {
        let transfer = notification(
            "deploy_model",
            "transfer_model_to_cluster",
            "COMPLETED",
            "Model transferred",
            Value::Null,
        );
        let EventAction::Progress(report) = DEPLOY.decide(&transfer, "x") else {
            panic!("expected progress");
        };
        assert_eq!(report.stage.as_deref(), Some("transfer_model_to_cluster"));
        assert_eq!(report.status.as_deref(), Some("COMPLETED"));
        assert_eq!(report.message.as_deref(), Some("Model transferred"));
        let results = notification(
            "deploy_model",
            "results",
            "completed",
            "done",
            json!({"endpoint_id": "e1"}),
        );
        assert_eq!(
            DEPLOY.decide(&results, "x"),
            EventAction::Complete(params(json!({"endpoint_id": "e1"})))
        );
    }

    #[test]
    fn eta_is_progress_with_minutes_and_stage_tables_give_percentages() {
        let eta = notification("deploy_model", "eta", "RUNNING", "12", Value::Null);
        let EventAction::Progress(report) = DEPLOY.decide(&eta, "x") else {
            panic!("expected progress");
        };
        assert_eq!(report.eta_minutes, Some(12));
        let garbled = notification("deploy_model", "eta", "RUNNING", "soon", Value::Null);
        let EventAction::Progress(report) = DEPLOY.decide(&garbled, "x") else {
            panic!("expected progress");
        };
        assert_eq!(report.eta_minutes, None);
        let staged = notification("deploy_model", "deploy_model", "STARTED", "m", Value::Null);
        let EventAction::Progress(report) = DEPLOY.decide(&staged, "x") else {
            panic!("expected progress");
        };
        assert_eq!(report.progress, Some(50.0));
    }

    #[test]
    fn a_failed_stage_fails_with_its_message() {
        let failed = notification(
            "deploy_model",
            "deploy_to_engine",
            "FAILED",
            "no GPU",
            Value::Null,
        );
        assert_eq!(
            DEPLOY.decide(&failed, "x"),
            EventAction::Fail("no GPU".into())
        );
        let silent = notification("deploy_model", "results", "FAILED", "", Value::Null);
        assert_eq!(
            DEPLOY.decide(&silent, "deploy failed"),
            EventAction::Fail("deploy failed".into())
        );
    }

    #[test]
    fn other_operations_and_shapeless_events_are_ignored() {
        let other = notification(
            "perform_model_extraction",
            "results",
            "COMPLETED",
            "",
            json!({}),
        );
        assert_eq!(DEPLOY.decide(&other, "x"), EventAction::Ignore);
        assert_eq!(
            WaitRules::GENERIC.decide(&other, "x"),
            EventAction::Complete(Map::new())
        );
        for shapeless in [json!({"workflow_id": "w"}), json!([1]), json!("COMPLETED")] {
            assert_eq!(DEPLOY.decide(&shapeless, "x"), EventAction::Ignore);
        }
        // budsim's metadata event names no status.
        let metadata = json!({"type": "workflow_metadata", "payload": {"workflow_id": "w"},
                              "workflow_id": "w", "total_steps": 5});
        assert_eq!(
            WaitRules::GENERIC.decide(&metadata, "x"),
            EventAction::Ignore
        );
    }

    #[test]
    fn the_design_notes_flat_event_ends_a_wait() {
        let flat = json!({"event_type": "deployment_status", "event": "verify_deployment_status",
                          "workflow_id": "w", "status": "COMPLETED",
                          "content": {"deployment_id": "d1"}});
        assert_eq!(
            DEPLOY.decide(&flat, "x"),
            EventAction::Complete(params(json!({"deployment_id": "d1"})))
        );
        let bare = json!({"workflow_id": "w", "status": "COMPLETED", "result": 7});
        assert_eq!(
            WaitRules::GENERIC.decide(&bare, "x"),
            EventAction::Complete(params(json!({"result": 7})))
        );
        let running = json!({"workflow_id": "w", "status": "RUNNING",
                             "content": {"progress_percentage": 250}});
        let EventAction::Progress(report) = WaitRules::GENERIC.decide(&running, "x") else {
            panic!("expected progress");
        };
        assert_eq!(report.progress, Some(100.0));
    }
}
