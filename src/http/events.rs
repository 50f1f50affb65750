//! `POST /workflow-events` (what the Dapr sidecar delivers) and
//! `GET /dapr/subscribe` (the programmatic subscription).
//!
//! The answer's `status` is what Dapr reads: `SUCCESS` once the event is
//! durably recorded (applied, duplicate, stale or kept), `DROP` for an event
//! that can never be used, `RETRY` (with a 503) for a transient failure.
//! Never a 404, which Dapr would treat as a drop.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::executions::hex;
use crate::engine::event_triggers;
use crate::engine::events::InboundEvent;
use crate::engine::storable::{MAX_WAIT_ID_BYTES, strip_nul};

/// The pub/sub subscription Dapr reads at start-up.
#[utoipa::path(get, path = "/dapr/subscribe", tag = "events",
    responses((status = 200, description = "the subscription Dapr reads at start-up")))]
pub(crate) async fn subscribe(State(state): State<AppState>) -> Json<Value> {
    let s = state.engine.settings();
    if !s.programmatic_subscription {
        // A declarative Subscription (Bud's Helm chart's) subscribes us;
        // listing the topic here too would replace its dead-letter topic.
        return Json(json!([]));
    }
    Json(json!([{
        "pubsubname": s.pubsub_name,
        "topic": s.workflow_events_topic,
        "route": "/workflow-events",
        "deadLetterTopic": format!("{}-dlq", s.workflow_events_topic),
    }]))
}

fn drop(state: &AppState, reason: &str) -> Response {
    tracing::warn!(reason, "dropping an event that can never be used");
    state.engine.metrics().event("DROP");
    (
        StatusCode::OK,
        Json(json!({ "status": "DROP", "detail": reason })),
    )
        .into_response()
}

/// Receive an event from Dapr pub/sub (what ends a waiting step).
#[utoipa::path(post, path = "/workflow-events", tag = "events", request_body = Object,
    responses((status = 200, description = "{\"status\": \"SUCCESS\" | \"DROP\"}"),
              (status = 503, description = "{\"status\": \"RETRY\"}: transient failure, redeliver")))]
pub(crate) async fn receive(State(state): State<AppState>, body: Bytes) -> Response {
    let envelope = match unwrap(&body) {
        Ok(e) => e,
        Err(reason) => return drop(&state, &reason),
    };
    // Event triggers first (each keyed by trigger and event, so a
    // redelivery after a failure below starts nothing twice).
    let is_trigger_event = envelope
        .event_type()
        .is_some_and(event_triggers::is_supported);
    let triggers = if is_trigger_event {
        let fired = state
            .engine
            .fire_event_triggers(&envelope.source, &envelope.id, &envelope.body)
            .await;
        match fired {
            Ok(fired) => fired,
            Err(e) if e.is_unstorable() => {
                tracing::error!(error = %e, event_id = %envelope.id, "the database cannot store this event");
                return drop(&state, "the event cannot be stored");
            }
            Err(e) => return retry(&state, &e, &envelope.id),
        }
    } else {
        Vec::new()
    };
    let event = match envelope.correlate() {
        Ok(e) => e,
        Err(_) if is_trigger_event => {
            // A platform event for triggers only (model.onboarded, …).
            state.engine.metrics().event("SUCCESS");
            return Json(
                json!({ "status": "SUCCESS", "outcome": "triggers", "triggers": triggers }),
            )
            .into_response();
        }
        Err(reason) => return drop(&state, &reason),
    };
    // The CloudEvent's own trace (Dapr copies the publisher's traceparent
    // into it; budcluster continues the one our deploy call sent).
    let span = tracing::info_span!("event", correlation_id = %event.correlation_id,
        event_id = %event.id, trace_id = event.trace_id.as_deref().unwrap_or(""),
        outcome = tracing::field::Empty, otel.status_code = tracing::field::Empty);
    let recorded =
        tracing::Instrument::instrument(state.engine.receive_event(&event), span.clone()).await;
    match &recorded {
        Ok(verdict) => span.record("outcome", verdict.as_str()),
        Err(_) => {
            crate::telemetry::mark_error(&span);
            span.record("outcome", "not_recorded")
        }
    };
    match recorded {
        Ok(verdict) => {
            tracing::info!(correlation_id = %event.correlation_id, event_id = %event.id,
                outcome = verdict.as_str(), "event recorded");
            let label = if verdict == crate::engine::events::EventVerdict::Duplicate {
                "duplicate"
            } else {
                "SUCCESS"
            };
            state.engine.metrics().event(label);
            let mut answer = json!({ "status": "SUCCESS", "outcome": verdict.as_str() });
            if is_trigger_event {
                answer["triggers"] = json!(triggers);
            }
            Json(answer).into_response()
        }
        Err(e) if e.is_unstorable() => {
            // Postgres refuses the event's data itself (a data exception or a
            // size limit): redelivering the same bytes can never succeed, so
            // asking for a retry would loop forever. Drop it (Dapr moves it
            // to the dead-letter topic, where an operator can look at it).
            tracing::error!(error = %e, correlation_id = %event.correlation_id, event_id = %event.id,
                "the database cannot store this event");
            drop(&state, "the event cannot be stored")
        }
        Err(e) => retry(&state, &e, &event.id),
    }
}

/// The event could not be recorded now: Dapr redelivers.
fn retry(state: &AppState, e: &crate::engine::Error, event_id: &str) -> Response {
    tracing::warn!(error = %e, event_id, "event not recorded; asking for redelivery");
    state.engine.metrics().event("RETRY");
    let body =
        json!({ "status": "RETRY", "detail": "the event could not be recorded now; redeliver" });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// A correlation id longer than this can never be waited on (see
/// [`MAX_WAIT_ID_BYTES`]), so such an event can never be used.
const MAX_CORRELATION_ID_BYTES: usize = MAX_WAIT_ID_BYTES;
/// A CloudEvent `source` or `id` longer than this (or holding NUL, which
/// Postgres text cannot store) is deduplicated on its SHA-256 instead.
const MAX_KEY_BYTES: usize = 256;

/// `key` as stored in the (source, id) dedupe key: itself, or its hash
/// when Postgres could not index it as is. The same input always gives the
/// same key, so redeliveries are still recognised.
fn storable_key(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES && !key.contains('\0') {
        return key;
    }
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

/// An event as delivered, unwrapped: its dedupe key and its body.
pub(crate) struct Envelope {
    pub source: String,
    pub id: String,
    /// The event itself (the CloudEvent's `data`, or the flat CloudEvent).
    pub body: Value,
    pub trace_id: Option<String>,
}

impl Envelope {
    /// The event's own `type` (what event triggers match on).
    pub(crate) fn event_type(&self) -> Option<&str> {
        self.body.get("type").and_then(Value::as_str)
    }

    /// The event as the engine's waits see it: `Err` when it names no
    /// correlation id a step could wait on.
    pub(crate) fn correlate(self) -> Result<InboundEvent, String> {
        let correlation_id =
            correlation_id(&self.body).ok_or("the event has no correlation id (workflow_id)")?;
        if correlation_id.len() > MAX_CORRELATION_ID_BYTES {
            return Err(format!(
                "the correlation id is longer than {MAX_CORRELATION_ID_BYTES} bytes: no step can wait on it"
            ));
        }
        Ok(InboundEvent {
            source: self.source,
            id: self.id,
            correlation_id,
            body: self.body,
            trace_id: self.trace_id,
        })
    }
}

/// Unwrap a CloudEvent envelope (or take a bare event, or an envelope
/// without `data`, which is the event itself) and find its correlation id.
/// `Err` is the reason to drop it.
#[cfg(test)]
pub(crate) fn parse(raw: &[u8]) -> Result<InboundEvent, String> {
    unwrap(raw)?.correlate()
}

/// Unwrap an event as [`parse`] does, without asking for a correlation id.
pub(crate) fn unwrap(raw: &[u8]) -> Result<Envelope, String> {
    let body: Value = serde_json::from_slice(raw).map_err(|e| {
        if super::extract::too_deep(&e) {
            format!(
                "body is nested too deeply (at most {} levels)",
                super::extract::MAX_JSON_DEPTH
            )
        } else {
            "body is not JSON".to_owned()
        }
    })?;
    let Value::Object(envelope) = &body else {
        return Err("body is not a JSON object".into());
    };
    let (source, id, data) = if envelope.contains_key("specversion") {
        let data = if let Some(encoded) = envelope.get("data_base64") {
            let text = encoded.as_str().ok_or("data_base64 is not a string")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "data_base64 is not base64".to_owned())?;
            serde_json::from_slice(&bytes)
                .map_err(|_| "data_base64 does not hold JSON".to_owned())?
        } else {
            match envelope.get("data") {
                Some(Value::String(text)) => serde_json::from_str(text)
                    .map_err(|_| "data is a string that does not hold JSON".to_owned())?,
                Some(other) => other.clone(),
                // How every Bud service publishes: its flat event as its own
                // CloudEvent, which Dapr delivers with its attributes added
                // beside the publisher's fields and no `data`.
                None => body.clone(),
            }
        };
        let source = envelope
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let id = match envelope.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => hex(&Sha256::digest(raw)),
        };
        (source, id, data)
    } else {
        ("bare".to_owned(), hex(&Sha256::digest(raw)), body.clone())
    };
    if !data.is_object() {
        return Err("the event (data) is not a JSON object".into());
    }
    // Postgres cannot store U+0000; replaced the way the seed actions replace
    // it in the ids they wait on, so such an event still matches its step.
    let mut data = data;
    strip_nul(&mut data);
    let trace_id = envelope
        .get("traceparent")
        .and_then(Value::as_str)
        .and_then(crate::engine::model::trace_id_of);
    Ok(Envelope {
        source: storable_key(source),
        id: storable_key(id),
        body: data,
        trace_id,
    })
}

/// API.md's lookup order.
fn correlation_id(event: &Value) -> Option<String> {
    const PATHS: [&str; 4] = [
        "/workflow_id",
        "/payload/workflow_id",
        "/notification_metadata/workflow_id",
        "/payload/content/result/workflow_id",
    ];
    PATHS.iter().find_map(|p| match event.pointer(p) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cloudevent_trace_is_kept_when_well_formed() {
        let traced = br#"{"specversion":"1.0","id":"e1","source":"budcluster","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"workflow_id":"w1"}}"#;
        assert_eq!(
            parse(traced).unwrap().trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        let garbled = br#"{"specversion":"1.0","id":"e1","source":"s","traceparent":"nope","data":{"workflow_id":"w1"}}"#;
        assert_eq!(parse(garbled).unwrap().trace_id, None);
        let bare = br#"{"workflow_id":"w1"}"#;
        assert_eq!(parse(bare).unwrap().trace_id, None);
    }

    #[test]
    fn envelope_bare_and_nested_ids() {
        let ce = br#"{"specversion":"1.0","id":"e1","source":"budcluster","data":{"workflow_id":"w1","status":"COMPLETED"}}"#;
        let e = parse(ce).unwrap();
        assert_eq!(
            (e.source.as_str(), e.id.as_str(), e.correlation_id.as_str()),
            ("budcluster", "e1", "w1")
        );
        let stringly = br#"{"specversion":"1.0","id":"e2","source":"s","data":"{\"payload\":{\"workflow_id\":\"w2\"}}"}"#;
        assert_eq!(parse(stringly).unwrap().correlation_id, "w2");
        let b64 = format!(
            r#"{{"specversion":"1.0","id":"e3","source":"s","data_base64":"{}"}}"#,
            base64::engine::general_purpose::STANDARD
                .encode(br#"{"notification_metadata":{"workflow_id":"w3"}}"#)
        );
        assert_eq!(parse(b64.as_bytes()).unwrap().correlation_id, "w3");
        let bare = br#"{"payload":{"content":{"result":{"workflow_id":"w4"}}}}"#;
        let e = parse(bare).unwrap();
        assert_eq!(
            (e.source.as_str(), e.correlation_id.as_str()),
            ("bare", "w4")
        );
        assert_eq!(
            parse(bare).unwrap().id,
            e.id,
            "bare events dedupe on a hash of the body"
        );
    }

    #[test]
    fn nul_characters_and_oversized_keys_are_made_storable() {
        let raw = br#"{"specversion":"1.0","id":"e\u0000","source":"s","data":{"workflow_id":"w\u0000","content":{"m\u0000":"a\u0000b","l":["\u0000"]}}}"#;
        let e = parse(raw).unwrap();
        assert_eq!(e.correlation_id, "w\u{FFFD}");
        assert_eq!(
            e.body["content"],
            json!({"m\u{FFFD}": "a\u{FFFD}b", "l": ["\u{FFFD}"]})
        );
        assert!(e.id.starts_with("sha256:") && !e.id.contains('\0'));
        assert_eq!(parse(raw).unwrap().id, e.id, "the same id hashes alike");

        let long_id = "i".repeat(MAX_KEY_BYTES + 1);
        let ce = json!({"specversion": "1.0", "id": long_id, "source": "s",
                        "data": {"workflow_id": "w"}});
        let e = parse(ce.to_string().as_bytes()).unwrap();
        assert_eq!(e.id.len(), "sha256:".len() + 64);

        let too_long = json!({"workflow_id": "w".repeat(MAX_CORRELATION_ID_BYTES + 1)});
        assert!(parse(too_long.to_string().as_bytes()).is_err());
        let longest = json!({"workflow_id": "w".repeat(MAX_CORRELATION_ID_BYTES)});
        assert!(parse(longest.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn an_envelope_without_data_is_the_event() {
        // budcluster's notification as Dapr delivers it to a subscriber.
        let raw = br#"{"specversion":"1.0","id":"ce-1","source":"budcluster","type":"deploy_model",
            "topic":"budpipelineEvents","pubsubname":"pubsub","datacontenttype":"application/cloudevents+json",
            "notification_type":"event","name":"bud-notification",
            "payload":{"type":"deploy_model","event":"results","workflow_id":"wf-7",
                       "content":{"status":"COMPLETED","result":{"endpoint_id":"e1"}}}}"#;
        let e = parse(raw).unwrap();
        assert_eq!(
            (e.source.as_str(), e.id.as_str(), e.correlation_id.as_str()),
            ("budcluster", "ce-1", "wf-7")
        );
        assert_eq!(e.body["payload"]["content"]["result"]["endpoint_id"], "e1");
    }

    #[test]
    fn unusable_events_are_dropped() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(br#"{"specversion":"1.0","id":"x","data":42}"#).is_err());
        assert!(parse(br#"{"status":"COMPLETED"}"#).is_err());
        let no_id = br#"{"specversion":"1.0","id":"x","source":"s","status":"COMPLETED"}"#;
        assert!(parse(no_id).is_err());
        assert!(parse(br#"{"workflow_id":""}"#).is_err());
    }
}
