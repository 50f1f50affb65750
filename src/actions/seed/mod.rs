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

/// Whether a raw param is still a template; submit-time checks let these through.
pub(crate) use crate::dag::template::is_template_value as is_template;

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

/// A failed call as a step outcome: retryable when the call may succeed later.
pub(crate) fn call_failed(error: &InvokeError) -> StepOutcome {
    StepOutcome::Failed {
        error: error.to_string(),
        retryable: error.is_retryable(),
        outputs: Map::new(),
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
