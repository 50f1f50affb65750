//! Event triggers (COMPAT.md "Triggers"): an event delivered to
//! `/workflow-events` whose `type` is one a trigger listens for and whose
//! fields match the trigger's `filters` starts the trigger's pipeline, once
//! per event. The firing row, keyed by (trigger, event source, event id),
//! commits with the execution it starts: a redelivered event (Dapr delivers
//! at least once) finds the row and starts nothing.

use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Engine;
use super::control::{ControlError, NewExecution};
use crate::db;

/// The original's supported event types (`EventTriggerService.SUPPORTED_EVENTS`):
/// (type, source, description).
pub(crate) const SUPPORTED_EVENTS: &[(&str, &str, &str)] = &[
    ("model.onboarded", "budapp", "Model successfully onboarded"),
    ("model.deleted", "budapp", "Model deleted"),
    ("benchmark.completed", "budapp", "Benchmark run completed"),
    ("benchmark.failed", "budapp", "Benchmark run failed"),
    (
        "cluster.healthy",
        "budcluster",
        "Cluster health check passed",
    ),
    (
        "cluster.unhealthy",
        "budcluster",
        "Cluster health check failed",
    ),
    ("deployment.created", "budcluster", "New deployment created"),
    ("deployment.failed", "budcluster", "Deployment failed"),
];

pub(crate) fn is_supported(event_type: &str) -> bool {
    SUPPORTED_EVENTS.iter().any(|(t, _, _)| *t == event_type)
}

pub(crate) use crate::db::triggers::EventTriggerRow;

/// What one trigger did with one event (the original's `triggers[]` item).
#[derive(Debug, Clone, Serialize)]
pub struct TriggerFiring {
    pub trigger_id: Uuid,
    pub trigger_name: String,
    pub workflow_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
    /// `triggered`, `duplicate` (this event already fired it) or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether every `filters` entry (a dot path into the event, and the value
/// expected there) holds; numbers compare by value (`1` equals `1.0`).
pub(crate) fn filters_match(event: &Value, filters: &Value) -> bool {
    let Some(filters) = filters.as_object() else {
        return true;
    };
    filters.iter().all(|(path, expected)| {
        let mut at = Some(event);
        for part in path.split('.') {
            at = at.and_then(|v| v.get(part));
        }
        let actual = at.unwrap_or(&Value::Null);
        match (actual, expected) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        }
    })
}

impl Engine {
    /// Start the pipeline of every enabled trigger whose type and filters
    /// match this event, each at most once for (source, id).
    pub async fn fire_event_triggers(
        &self,
        source: &str,
        event_id: &str,
        event: &Value,
    ) -> Result<Vec<TriggerFiring>, crate::engine::Error> {
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            return Ok(Vec::new());
        };
        let triggers = db::firings::event_triggers_for(self.pool(), kind).await?;
        let mut out = Vec::new();
        for t in triggers.iter().filter(|t| filters_match(event, &t.filters)) {
            out.push(self.fire_event_trigger(t, source, event_id, event).await?);
        }
        Ok(out)
    }

    async fn fire_event_trigger(
        &self,
        t: &EventTriggerRow,
        source: &str,
        event_id: &str,
        event: &Value,
    ) -> Result<TriggerFiring, crate::engine::Error> {
        let mut firing = TriggerFiring {
            trigger_id: t.id,
            trigger_name: t.name.clone(),
            workflow_id: t.workflow_id,
            execution_id: None,
            status: "triggered",
            error: None,
        };
        let mut tx = self.pool().begin().await?;
        // A concurrent delivery of the same event waits here for this one's
        // transaction, then finds the row.
        let claimed = db::firings::claim_event_firing(&mut tx, t.id, source, event_id).await?;
        if !claimed {
            tx.rollback().await?;
            firing.status = "duplicate";
            return Ok(firing);
        }
        // The original's parameters: the trigger's, the event, `_trigger`.
        let new = NewExecution::triggered(
            t.workflow_id,
            &t.params,
            Map::from_iter([("event".to_owned(), event.clone())]),
            json!({
                "type": "event",
                "trigger_id": t.id,
                "trigger_name": t.name,
                "event_type": t.event_type,
                "event_source": source,
                "event_id": event_id,
                "triggered_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }),
            format!("event-trigger:{}", t.id),
        );
        let prepared = match self.prepare(new).await {
            Ok(p) => p,
            Err(ControlError::Engine(e)) => return Err(e),
            Err(e) => {
                // It cannot start: say why, once for this event.
                let why = e.trigger_refusal(t.workflow_id);
                db::firings::fail_event_firing(&mut tx, t.id, source, event_id, &why).await?;
                tx.commit().await?;
                tracing::warn!(trigger_id = %t.id, event_id, error = %why, "an event trigger could not start its pipeline");
                firing.status = "failed";
                firing.error = Some(why);
                return Ok(firing);
            }
        };
        let (mut tx, started, launch) = self.record_triggered(tx, prepared).await?;
        db::firings::record_event_run(&mut tx, t.id, source, event_id, started.execution_id)
            .await?;
        tx.commit().await?;
        launch.go(self);
        self.metrics().event_triggers_fired.inc();
        tracing::info!(trigger_id = %t.id, event_id, execution_id = %started.execution_id, "event trigger fired");
        firing.execution_id = Some(started.execution_id);
        Ok(firing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_dot_paths_compared_for_equality() {
        let event = json!({"type": "model.onboarded", "model": {"provider": "hf", "size": 7},
                           "status": "COMPLETED"});
        assert!(filters_match(&event, &json!({})));
        assert!(filters_match(
            &event,
            &json!({"model.provider": "hf", "status": "COMPLETED"})
        ));
        assert!(filters_match(&event, &json!({"model.size": 7.0})));
        assert!(!filters_match(&event, &json!({"model.provider": "local"})));
        assert!(!filters_match(&event, &json!({"model.missing": "x"})));
        assert!(filters_match(&event, &json!({"model.missing": null})));
        assert!(is_supported("deployment.failed") && !is_supported("notification"));
    }
}
