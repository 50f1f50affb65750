//! Progress events for callback topics, written to the `outbox` table in the
//! transaction that caused them (ENGINE.md guarantee 5) and drained by
//! [`publisher`].

pub(crate) mod publisher;

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::ExecutionRow;

/// Longest callback topic (API.md; Kafka's limit, the strictest broker's).
pub(crate) const MAX_TOPIC_CHARS: usize = 249;

/// A topic every broker Dapr fronts can take: `^[A-Za-z][A-Za-z0-9._-]*$`,
/// at most [`MAX_TOPIC_CHARS`] characters.
pub(crate) fn valid_topic(topic: &str) -> bool {
    if topic.len() > MAX_TOPIC_CHARS {
        return false;
    }
    let mut chars = topic.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// One row for the outbox: a body bound for one topic, with a stable id.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutboxEvent {
    pub event_id: String,
    pub topic: String,
    pub body: Value,
    /// The execution's W3C trace id, continued by the publish.
    pub trace_id: Option<String>,
    /// The execution's id: its publish span is a child of the execution's.
    pub execution_id: Uuid,
}

/// Where an execution's events go: its callback topics, plus `NOTIFY_TOPIC`
/// when the execution names subscribers.
pub(crate) struct Audience<'a> {
    pub topics: &'a [String],
    pub notify_topic: Option<&'a str>,
    pub subscriber_ids: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub route: Route<'a>,
}

/// Which flow of the caller the events belong to: `payload.type` and
/// `payload.workflow_id` of every event published for the execution.
/// budapp's `SubscriberHandler` dispatches on exactly these (its guardrail
/// flows send `payload_type` and `notification_workflow_id` on execute);
/// without them, `pipeline_execution` and the execution id.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route<'a> {
    pub payload_type: Option<&'a str>,
    pub workflow_id: Option<&'a str>,
}

impl<'a> Route<'a> {
    pub(crate) fn new(payload_type: &'a Option<String>, workflow_id: &'a Option<String>) -> Self {
        let set = |v: &'a Option<String>| v.as_deref().filter(|s| !s.is_empty());
        Self {
            payload_type: set(payload_type),
            workflow_id: set(workflow_id),
        }
    }
}

impl<'a> Audience<'a> {
    pub(crate) fn of(exec: &'a ExecutionRow, notify_topic: Option<&'a str>) -> Self {
        Self {
            topics: &exec.callback_topics,
            notify_topic,
            subscriber_ids: exec.subscriber_ids.as_deref().filter(|s| !s.is_empty()),
            trace_id: exec.trace_id.as_deref(),
            route: Route::new(&exec.payload_type, &exec.notification_workflow_id),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.notify_target().is_none()
    }

    fn notify_target(&self) -> Option<(&str, &str)> {
        Some((self.notify_topic?, self.subscriber_ids?))
    }

    /// One outbox row per topic for this event.
    pub(crate) fn rows(
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
                body: body(execution_id, self.route, event, &content, topic, None),
                trace_id: self.trace_id.map(str::to_owned),
                execution_id,
            });
        }
        if let Some((topic, ids)) = self.notify_target() {
            out.push(OutboxEvent {
                event_id: format!("{event_id}:{topic}"),
                topic: topic.to_owned(),
                body: body(execution_id, self.route, event, &content, topic, Some(ids)),
                trace_id: self.trace_id.map(str::to_owned),
                execution_id,
            });
        }
    }
}

/// The budnotify / budadmin notification shape of API.md.
fn body(
    execution_id: Uuid,
    route: Route<'_>,
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
            "type": route.payload_type.unwrap_or("pipeline_execution"),
            "event": event,
            "workflow_id": route.workflow_id.map_or_else(|| json!(execution_id), |id| json!(id)),
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

pub(crate) fn content(title: &str, message: &str, status: &str, result: Value) -> Value {
    json!({ "title": title, "message": message, "status": status, "result": result })
}

/// The STARTED event of a step's attempt: the same whether the step was
/// claimed by a transition or by the dispatcher's batch claim.
pub(crate) fn step_started(name: &str, attempt: i32) -> Value {
    let message = format!("Step '{name}' started");
    content(name, &message, "STARTED", json!({ "attempt": attempt }))
}
