//! Progress events for callback topics, written to the `outbox` table in the
//! transaction that caused them (ENGINE.md guarantee 5) and drained by
//! [`publisher`].

pub mod publisher;

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::ExecutionRow;

/// One row for the outbox: a body bound for one topic, with a stable id.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    pub event_id: String,
    pub topic: String,
    pub body: Value,
    /// The execution's W3C trace id, continued by the publish.
    pub trace_id: Option<String>,
}

/// Where an execution's events go: its callback topics, plus `NOTIFY_TOPIC`
/// when the execution names subscribers.
pub struct Audience<'a> {
    pub topics: &'a [String],
    pub notify_topic: Option<&'a str>,
    pub subscriber_ids: Option<&'a str>,
    pub trace_id: Option<&'a str>,
}

impl<'a> Audience<'a> {
    pub fn of(exec: &'a ExecutionRow, notify_topic: Option<&'a str>) -> Self {
        Self {
            topics: &exec.callback_topics,
            notify_topic,
            subscriber_ids: exec.subscriber_ids.as_deref().filter(|s| !s.is_empty()),
            trace_id: exec.trace_id.as_deref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.notify_target().is_none()
    }

    fn notify_target(&self) -> Option<(&str, &str)> {
        Some((self.notify_topic?, self.subscriber_ids?))
    }

    /// One outbox row per topic for this event.
    pub fn rows(
        &self,
        execution_id: Uuid,
        event: &str,
        content: Value,
        out: &mut Vec<OutboxEvent>,
    ) {
        let event_id = Uuid::now_v7().to_string();
        for topic in self.topics {
            out.push(OutboxEvent {
                event_id: format!("{event_id}:{topic}"),
                topic: topic.clone(),
                body: body(execution_id, event, &content, topic, None),
                trace_id: self.trace_id.map(str::to_owned),
            });
        }
        if let Some((topic, ids)) = self.notify_target() {
            out.push(OutboxEvent {
                event_id: format!("{event_id}:{topic}"),
                topic: topic.to_owned(),
                body: body(execution_id, event, &content, topic, Some(ids)),
                trace_id: self.trace_id.map(str::to_owned),
            });
        }
    }
}

/// The budnotify / budadmin notification shape of API.md.
fn body(
    execution_id: Uuid,
    event: &str,
    content: &Value,
    topic: &str,
    subscribers: Option<&str>,
) -> Value {
    let mut body = json!({
        "notification_type": "event",
        "name": "bud-notification",
        "payload": {
            "category": "internal",
            "type": "pipeline_execution",
            "event": event,
            "workflow_id": execution_id,
            "source": "budpipeline",
            "content": content,
        },
        "source": "budpipeline",
        "source_topic": topic,
    });
    if let Some(ids) = subscribers {
        body["subscriber_ids"] = Value::String(ids.to_owned());
    }
    body
}

pub fn content(title: &str, message: &str, status: &str, result: Value) -> Value {
    json!({ "title": title, "message": message, "status": status, "result": result })
}
