//! What the database can record. Postgres' text and jsonb refuse U+0000,
//! and the index of waiting steps refuses very long keys: a value refused
//! once is refused on every retry, so it is made storable before it is
//! written, never after a failed write.

use serde_json::{Map, Value};

use crate::actions::StepOutcome;

/// Longest correlation id a step can wait on: the waiting step's id is
/// indexed, and a Postgres btree row holds about 2.7 kB. `/workflow-events`
/// drops events whose correlation id is longer.
pub(crate) const MAX_WAIT_ID_BYTES: usize = 2048;

const NUL: char = '\0';

/// Replace U+0000 in every string and object key with U+FFFD. JSON allows
/// NUL; Postgres' text and jsonb do not, and a value it refuses can never be
/// recorded however often it is retried.
pub(crate) fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) => *s = strip_nul_str(std::mem::take(s)),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                let entries = std::mem::take(map);
                for (k, v) in entries {
                    map.insert(strip_nul_str(k), v);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

fn strip_nul_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut value = Value::Object(map);
    strip_nul(&mut value);
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `text` with U+0000 replaced by U+FFFD: the one replacement [`strip_nul`]
/// makes in strings and keys.
fn strip_nul_str(text: String) -> String {
    if text.contains(NUL) {
        text.replace(NUL, "\u{FFFD}")
    } else {
        text
    }
}

/// Make a handler's outcome one the database can record: NUL characters
/// replaced the way `/workflow-events` replaces them (so the event still
/// matches), and a correlation id too long to wait on turned into a
/// permanent failure. Without this, recording the outcome fails on every try
/// and the step never leaves RUNNING. The dispatcher applies it to every
/// outcome, so no action can forget it.
pub(crate) fn storable(outcome: StepOutcome) -> StepOutcome {
    match outcome {
        StepOutcome::Completed { outputs } => StepOutcome::Completed {
            outputs: strip_nul_map(outputs),
        },
        StepOutcome::AwaitEvent { external_id, .. } if external_id.len() > MAX_WAIT_ID_BYTES => {
            StepOutcome::permanent(format!(
                "the correlation id to wait on is longer than {MAX_WAIT_ID_BYTES} bytes"
            ))
        }
        StepOutcome::AwaitEvent {
            external_id,
            outputs,
            timeout,
        } => StepOutcome::AwaitEvent {
            external_id: strip_nul_str(external_id),
            outputs: strip_nul_map(outputs),
            timeout,
        },
        StepOutcome::Failed {
            error,
            retryable,
            outputs,
        } => StepOutcome::Failed {
            error: strip_nul_str(error),
            retryable,
            outputs: strip_nul_map(outputs),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actions::builtin::test_util::params;

    #[test]
    fn outcomes_from_other_services_are_made_storable() {
        let outcome = storable(StepOutcome::AwaitEvent {
            external_id: "w\u{0}1".into(),
            outputs: params(json!({"d\0": ["x\0"]})),
            timeout: None,
        });
        assert_eq!(
            outcome,
            StepOutcome::AwaitEvent {
                external_id: "w\u{FFFD}1".into(),
                outputs: params(json!({"d\u{FFFD}": ["x\u{FFFD}"]})),
                timeout: None,
            }
        );
        assert_eq!(
            storable(StepOutcome::permanent("bad\0")),
            StepOutcome::permanent("bad\u{FFFD}")
        );
        let long = storable(StepOutcome::AwaitEvent {
            external_id: "w".repeat(MAX_WAIT_ID_BYTES + 1),
            outputs: Map::new(),
            timeout: None,
        });
        assert!(matches!(
            long,
            StepOutcome::Failed {
                retryable: false,
                ..
            }
        ));
    }
}
