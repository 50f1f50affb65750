//! Seed actions that drive other services through the Dapr sidecar
//! (DAG.md "Actions", the design note's "BudPipeline → BudCluster").
//!
//! Long operations follow one pattern: `run` makes the request and, when the
//! callee answers `"status": "accepted"`, parks the step on the callee's
//! workflow id; the completion event that budcluster later publishes is
//! mapped by `on_event` through the action's [`WaitRules`]. Failures of the call
//! itself are retryable exactly when [`InvokeError::is_retryable`] says so.

mod cluster_health;
mod delete_deployment;
mod deploy_model;
mod invoke_service;
mod notification;

use serde_json::{Map, Value};

use super::{Registry, StepOutcome};
use crate::config::Settings;
use crate::dapr::{Budcluster, DaprClient, InvokeError};

pub use cluster_health::ClusterHealth;
pub use delete_deployment::DeleteDeployment;
pub use deploy_model::DeployModel;
pub use invoke_service::InvokeService;
pub use notification::Notification;

pub(crate) const CLUSTER_OPERATIONS: &str = "Cluster Operations";
pub(crate) const INTEGRATION: &str = "Integration";

/// How long a step waits for a completion event when it sets no timeout.
const DEFAULT_WAIT_SECONDS: u64 = 1800;

pub fn register(registry: &mut Registry, client: DaprClient, settings: &Settings) {
    let budcluster = Budcluster::new(client.clone(), settings.budcluster_app_id.clone());
    registry.register(DeployModel::new(budcluster.clone()));
    registry.register(ClusterHealth::new(budcluster.clone()));
    registry.register(DeleteDeployment::new(budcluster));
    registry.register(InvokeService::new(client.clone()));
    registry.register(Notification::new(client));
}

/// Inside `run`, a failure is already the step's outcome.
pub(crate) type Attempt<T> = Result<T, StepOutcome>;

/// Longest correlation id a step can wait on: the waiting step's id is
/// indexed, and a Postgres btree row holds about 2.7 kB. `/workflow-events`
/// drops events whose correlation id is longer.
pub const MAX_WAIT_ID_BYTES: usize = 2048;

/// Replace U+0000 in every string and object key with U+FFFD. JSON allows
/// NUL; Postgres' text and jsonb do not, and a value it refuses can never be
/// recorded however often it is retried.
pub fn strip_nul(value: &mut Value) {
    const NUL: char = '\0';
    const REPLACEMENT: &str = "\u{FFFD}";
    match value {
        Value::String(s) if s.contains(NUL) => *s = s.replace(NUL, REPLACEMENT),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                let entries = std::mem::take(map);
                for (k, v) in entries {
                    map.insert(k.replace(NUL, REPLACEMENT), v);
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

fn strip_nul_str(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// Make an outcome built from another service's answer one the database
/// can record: NUL characters replaced the way `/workflow-events` replaces
/// them (so the event still matches), and a correlation id too long to wait
/// on turned into a permanent failure. Without this, recording the outcome
/// fails on every try and the step never leaves RUNNING.
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

/// A failed call as a step outcome: retryable when the call may succeed later.
pub(crate) fn call_failed(error: &InvokeError) -> StepOutcome {
    StepOutcome::Failed {
        error: error.to_string(),
        retryable: error.is_retryable(),
        outputs: Map::new(),
    }
}

/// A required text param after templating. Numbers and booleans are taken
/// as their text (a pure template can yield one); null, `""` and
/// objects are permanent failures.
pub(crate) fn required_str(params: &Map<String, Value>, name: &str) -> Attempt<String> {
    optional_str(params, name)?.ok_or_else(|| StepOutcome::permanent(format!("{name} is required")))
}

pub(crate) fn optional_str(params: &Map<String, Value>, name: &str) -> Attempt<Option<String>> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(value @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(value.to_string())),
        Some(_) => Err(StepOutcome::permanent(format!("{name} must be a string"))),
    }
}

/// An optional object param after templating; null is absent.
pub(crate) fn optional_object(
    params: &Map<String, Value>,
    name: &str,
) -> Attempt<Option<Map<String, Value>>> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(StepOutcome::permanent(format!("{name} must be an object"))),
    }
}

/// Whether a raw param is still a template; `validate` must let it through.
pub(crate) fn is_template(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.contains("{{"))
}

/// Submit-time check that a literal param is an object.
pub(crate) fn check_object(params: &Map<String, Value>, name: &str, errors: &mut Vec<String>) {
    match params.get(name) {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(value) if is_template(value) => {}
        Some(_) => errors.push(format!("{name} must be an object")),
    }
}

/// The outcome of a waiting step whose timeout passed, naming what it
/// waited for.
pub(crate) fn timed_out_waiting(outputs: &Map<String, Value>, key: &str, on: &str) -> StepOutcome {
    let error = match outputs.get(key).and_then(Value::as_str) {
        Some(id) => format!("step timed out waiting for {on} {id}"),
        None => "step timed out".to_owned(),
    };
    StepOutcome::transient(error)
}

/// A client whose sidecar does not exist and that tries once: a test
/// handler built on it proves it makes no call, or fails fast when it does.
#[cfg(test)]
pub(crate) fn test_client() -> DaprClient {
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://x/y".into()),
        "DAPR_HTTP_ENDPOINT" => Some("http://127.0.0.1:9".into()),
        "SERVICE_INVOKE_MAX_RETRIES" => Some("1".into()),
        _ => None,
    })
    .expect("test settings");
    DaprClient::new(&settings)
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

    #[test]
    fn text_params_accept_scalars_and_refuse_structures() {
        let p = params(json!({"a": "x", "n": 5, "empty": " ", "null": null, "obj": {}}));
        assert_eq!(required_str(&p, "a").unwrap(), "x");
        assert_eq!(required_str(&p, "n").unwrap(), "5");
        for missing in ["empty", "null", "absent"] {
            let outcome = required_str(&p, missing).unwrap_err();
            assert_eq!(
                outcome,
                StepOutcome::permanent(format!("{missing} is required"))
            );
        }
        assert_eq!(
            required_str(&p, "obj").unwrap_err(),
            StepOutcome::permanent("obj must be a string")
        );
    }
}
