//! Typed calls to budcluster through the sidecar (the design note's
//! "BudPipeline → BudCluster"). Responses are read leniently: every field
//! has a default and unknown fields are kept in `extra`, because budcluster
//! evolves separately from this service.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::encode_segment;
use super::invoke::{CallHints, DaprClient, InvokeError};

/// budcluster reached through the sidecar as `app_id`.
#[derive(Debug, Clone)]
pub struct Budcluster {
    client: DaprClient,
    app_id: String,
}

/// Answer to a deployment or deletion request. `"status": "accepted"` means
/// the work goes on in budcluster workflow `workflow_id`, whose completion
/// arrives later as an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployResponse {
    pub status: Option<String>,
    pub workflow_id: Option<String>,
    pub deployment_id: Option<String>,
    pub error: Option<String>,
    pub message: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Deletion answers have the same shape as deployment answers.
pub type DeleteResponse = DeployResponse;

impl DeployResponse {
    pub fn is_accepted(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("accepted"))
    }

    /// The answer's own error text, if it carries one.
    pub fn error_text(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or(self.message.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// Answer to a health check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthResponse {
    pub healthy: Option<bool>,
    pub status: Option<String>,
    pub details: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HealthResponse {
    /// `healthy` when given, else whether `status` is `healthy` or `ok`.
    pub fn is_healthy(&self) -> bool {
        self.healthy.unwrap_or_else(|| {
            self.status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("healthy") || s.eq_ignore_ascii_case("ok"))
        })
    }
}

impl Budcluster {
    pub fn new(client: DaprClient, app_id: impl Into<String>) -> Self {
        Self {
            client,
            app_id: app_id.into(),
        }
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// `POST /api/v1/clusters/{cluster_id}/deployments` with `{"model_id", "config"}`.
    pub async fn deploy_model(
        &self,
        cluster_id: &str,
        model_id: &str,
        config: &Value,
        hints: &CallHints,
    ) -> Result<DeployResponse, InvokeError> {
        let path = format!("/api/v1/clusters/{}/deployments", self.segment(cluster_id)?);
        let body = json!({"model_id": model_id, "config": config});
        self.call(Method::POST, &path, Some(&body), hints).await
    }

    /// `GET /api/v1/clusters/{cluster_id}/health`, or `GET /api/v1/health`
    /// for budcluster itself.
    pub async fn cluster_health(
        &self,
        cluster_id: Option<&str>,
        hints: &CallHints,
    ) -> Result<HealthResponse, InvokeError> {
        let path = match cluster_id {
            Some(id) => format!("/api/v1/clusters/{}/health", self.segment(id)?),
            None => "/api/v1/health".to_owned(),
        };
        self.call(Method::GET, &path, None, hints).await
    }

    /// `GET /cluster/{cluster_id}/health?checks=a,b`, the route budcluster
    /// serves (`cluster_ops/routes.py`): its `ClusterHealthResponse`
    /// carries one `{healthy, message, count?, details?}` per check under
    /// `data`.
    pub async fn cluster_checks(
        &self,
        cluster_id: &str,
        checks: &[String],
        hints: &CallHints,
    ) -> Result<Value, InvokeError> {
        let mut path = format!("/cluster/{}/health", self.segment(cluster_id)?);
        if !checks.is_empty() {
            let list: Vec<String> = checks.iter().map(|c| encode_segment(c)).collect();
            path = format!("{path}?checks={}", list.join(","));
        }
        self.client
            .invoke(&self.app_id, Method::GET, &path, None, hints)
            .await
    }

    /// `DELETE /api/v1/clusters/{cluster_id}/deployments/{deployment_id}`.
    pub async fn delete_deployment(
        &self,
        cluster_id: &str,
        deployment_id: &str,
        hints: &CallHints,
    ) -> Result<DeleteResponse, InvokeError> {
        let path = format!(
            "/api/v1/clusters/{}/deployments/{}",
            self.segment(cluster_id)?,
            self.segment(deployment_id)?
        );
        self.call(Method::DELETE, &path, None, hints).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        hints: &CallHints,
    ) -> Result<T, InvokeError> {
        let answer = self
            .client
            .invoke(&self.app_id, method, path, body, hints)
            .await?;
        serde_json::from_value(answer).map_err(|e| InvokeError::BadResponse {
            app_id: self.app_id.clone(),
            reason: format!("unexpected answer shape: {e}"),
        })
    }

    /// An id as one path segment; `.` and `..` would be resolved away by
    /// URL parsing, so they are refused rather than encoded.
    fn segment(&self, id: &str) -> Result<String, InvokeError> {
        if id.is_empty() || id == "." || id == ".." {
            return Err(InvokeError::InvalidRequest {
                app_id: self.app_id.clone(),
                reason: format!("`{id}` is not a valid id"),
            });
        }
        Ok(encode_segment(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_read_leniently_and_keep_unknown_fields() {
        let answer: DeployResponse = serde_json::from_value(json!({
            "status": "Accepted", "workflow_id": "w1", "namespace": "ns"
        }))
        .unwrap();
        assert!(answer.is_accepted());
        assert_eq!(answer.workflow_id.as_deref(), Some("w1"));
        assert_eq!(answer.extra["namespace"], "ns");

        let empty: DeployResponse = serde_json::from_value(json!({})).unwrap();
        assert!(!empty.is_accepted());
        assert_eq!(empty.error_text(), None);
    }

    #[test]
    fn health_comes_from_the_flag_or_the_status() {
        let cases = [
            (json!({"healthy": true}), true),
            (json!({"healthy": false, "status": "ok"}), false),
            (json!({"status": "OK"}), true),
            (json!({"status": "healthy"}), true),
            (json!({"status": "degraded"}), false),
            (json!({}), false),
        ];
        for (body, expected) in cases {
            let health: HealthResponse = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(health.is_healthy(), expected, "{body}");
        }
    }
}
