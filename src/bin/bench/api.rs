//! A thin client for the service's HTTP API.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Result, fail};

#[derive(Clone)]
pub(crate) struct Api {
    pub http: reqwest::Client,
    pub base: String,
    token: String,
}

impl Api {
    pub(crate) fn new(base: &str, token: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("dapr-api-token", &self.token)
    }

    async fn call(&self, request: RequestBuilder, expect: StatusCode, what: &str) -> Result<Value> {
        let answer = request.send().await?;
        let status = answer.status();
        let text = answer.text().await?;
        if status != expect {
            let mut text = text;
            text.truncate(500);
            return Err(fail(format!("{what} answered {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("{what}: unreadable answer: {e}")))
    }

    pub(crate) async fn create_workflow(&self, dag: &Value) -> Result<Uuid> {
        let body = self
            .call(
                self.request(Method::POST, "/workflows")
                    .json(&json!({ "dag": dag })),
                StatusCode::CREATED,
                "POST /workflows",
            )
            .await?;
        uuid_field(&body, "id")
    }

    pub(crate) async fn execute(&self, workflow: Uuid) -> Result<Uuid> {
        let body = self
            .call(
                self.request(Method::POST, &format!("/workflows/{workflow}/execute"))
                    .json(&json!({})),
                StatusCode::ACCEPTED,
                "POST /workflows/{id}/execute",
            )
            .await?;
        uuid_field(&body, "execution_id")
    }

    pub(crate) async fn execution(&self, id: Uuid) -> Result<Value> {
        self.call(
            self.request(Method::GET, &format!("/executions/{id}")),
            StatusCode::OK,
            "GET /executions/{id}",
        )
        .await
    }

    /// POST a CloudEvent to /workflow-events; the answer's `status`.
    pub(crate) async fn post_event(&self, envelope: &Value) -> Result<String> {
        let body = self
            .call(
                self.request(Method::POST, "/workflow-events")
                    .header("content-type", "application/cloudevents+json")
                    .body(serde_json::to_vec(envelope)?),
                StatusCode::OK,
                "POST /workflow-events",
            )
            .await?;
        Ok(body["status"].as_str().unwrap_or("").to_owned())
    }
}

fn uuid_field(body: &Value, field: &str) -> Result<Uuid> {
    body[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("answer without a `{field}`: {body}")))
}
