//! The event sequences of `tests/fixtures/events/`: what Bud services
//! really publish for one run of a workflow, in order.

use serde_json::Value;

/// One fixture: the correlation id its events carry, and the events.
pub(crate) struct Fixture {
    pub correlation_id: String,
    pub events: Vec<Value>,
}

/// `tests/fixtures/events/{name}.json`.
pub(crate) fn fixture(name: &str) -> Fixture {
    let path = format!("tests/fixtures/events/{name}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    Fixture {
        correlation_id: doc["correlation_id"].as_str().unwrap().to_owned(),
        events: doc["events"].as_array().unwrap().clone(),
    }
}

impl Fixture {
    /// The same sequence for another correlation id (a second model).
    pub(crate) fn for_id(&self, id: &str) -> Self {
        let text = Value::Array(self.events.clone())
            .to_string()
            .replace(&self.correlation_id, id);
        Self {
            correlation_id: id.to_owned(),
            events: serde_json::from_str(&text).unwrap(),
        }
    }
}

/// The stage an event reports (`payload.event`), or its `object` or `type`:
/// what an assertion names it by.
pub(crate) fn stage_of(event: &Value) -> String {
    event["payload"]["event"]
        .as_str()
        .or_else(|| event["object"].as_str())
        .or_else(|| event["type"].as_str())
        .unwrap_or("?")
        .to_owned()
}
