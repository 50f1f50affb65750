//! `notification`: publish a notification to budnotify's topic
//! (`NOTIFY_TOPIC`) in the NotificationPayload shape budnotify and budadmin
//! read (API.md "Outbound calls").

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::{Attempt, INTEGRATION, check_object, optional_object, optional_str, required_str};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::DaprClient;

const SEVERITIES: &[&str] = &["info", "warning", "error", "critical"];
const DEFAULT_TITLE: &str = "Workflow Notification";

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "notification",
    name: "Notification",
    category: INTEGRATION,
    description: "Publish a notification to budnotify (the NOTIFY_TOPIC pub/sub topic). \
                  Fails permanently when NOTIFY_TOPIC is not configured.",
    params: vec![
        ParamSpec::new("message", "template", "The notification text.").required(),
        ParamSpec::new("title", "string", "The notification title.").default(json!(DEFAULT_TITLE)),
        ParamSpec::new("severity", "string", "How serious it is.")
            .default(json!("info"))
            .options(SEVERITIES),
        ParamSpec::new(
            "channel",
            "string",
            "Delivery channel; notifications go through pub/sub to budnotify, which routes them.",
        )
        .default(json!("pubsub")),
        ParamSpec::new(
            "recipients",
            "json",
            "budnotify subscriber ids; without them budnotify uses its defaults.",
        ),
        ParamSpec::new(
            "metadata",
            "object",
            "Extra data, sent as the notification's result.",
        ),
    ],
    outputs: vec![
        OutputSpec::new(
            "sent",
            "boolean",
            "True once the sidecar accepted the event.",
        ),
        OutputSpec::new(
            "notification_id",
            "string",
            "The event's CloudEvent id: {execution_id}:{step_id}:{attempt}.",
        ),
        OutputSpec::new("topic", "string", "The topic it was published to."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

pub struct Notification {
    client: DaprClient,
    topic: Option<String>,
}

impl Notification {
    pub fn new(client: DaprClient, topic: Option<String>) -> Self {
        Self { client, topic }
    }

    async fn send(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let Some(topic) = self.topic.as_deref().filter(|t| !t.is_empty()) else {
            return Err(StepOutcome::permanent("NOTIFY_TOPIC is not configured"));
        };
        let body = notification_body(ctx)?;
        let notification_id = ctx.idempotency_hint();
        self.client
            .publish(topic, &notification_id, &body, ctx.traceparent.as_deref())
            .await
            .map_err(|e| StepOutcome::Failed {
                error: e.to_string(),
                retryable: e.is_retryable(),
                outputs: Map::new(),
            })?;
        let mut outputs = Map::new();
        outputs.insert("sent".into(), json!(true));
        outputs.insert("notification_id".into(), json!(notification_id));
        outputs.insert("topic".into(), json!(topic));
        Ok(StepOutcome::completed(outputs))
    }
}

impl StepHandler for Notification {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let mut errors = Vec::new();
        check_object(params, "metadata", &mut errors);
        errors
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(
            async move { super::storable(self.send(&ctx).await.unwrap_or_else(|failed| failed)) },
        )
    }
}

/// The event as budnotify expects it (the `notification` shape of API.md,
/// with `type` `pipeline_notification`).
fn notification_body(ctx: &StepContext) -> Attempt<Value> {
    let params = &ctx.params;
    let message = required_str(params, "message")?;
    let title = optional_str(params, "title")?.unwrap_or_else(|| DEFAULT_TITLE.to_owned());
    let severity = optional_str(params, "severity")?
        .unwrap_or_else(|| "info".to_owned())
        .to_ascii_lowercase();
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(StepOutcome::permanent(format!(
            "severity must be one of {}, not `{severity}`",
            SEVERITIES.join(", ")
        )));
    }
    let metadata = optional_object(params, "metadata")?.unwrap_or_default();
    let recipients = params.get("recipients").cloned().unwrap_or(Value::Null);
    let execution_id = ctx.execution_id.to_string();
    Ok(json!({
        "notification_type": "event",
        "name": "bud-notification",
        "subscriber_ids": recipients,
        "payload": {
            "category": "internal",
            "type": "pipeline_notification",
            "event": "notification",
            "workflow_id": execution_id,
            "source": "budpipeline",
            "content": {
                "title": title,
                "message": message,
                "status": "COMPLETED",
                "severity": severity,
                "result": metadata,
            },
        },
        "source": "budpipeline",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    #[test]
    fn body_has_the_budnotify_shape_with_defaults() {
        let body =
            notification_body(&ctx(json!({"message": "hi", "severity": "WARNING"}))).unwrap();
        assert_eq!(
            body,
            json!({
                "notification_type": "event", "name": "bud-notification", "subscriber_ids": null,
                "payload": {"category": "internal", "type": "pipeline_notification",
                            "event": "notification", "workflow_id": uuid::Uuid::nil().to_string(),
                            "source": "budpipeline",
                            "content": {"title": "Workflow Notification", "message": "hi",
                                        "status": "COMPLETED", "severity": "warning", "result": {}}},
                "source": "budpipeline"
            })
        );
        let body = notification_body(&ctx(json!({"message": "hi", "recipients": "u1,u2",
                                                  "metadata": {"k": "v"}, "title": "T"})))
        .unwrap();
        assert_eq!(body["subscriber_ids"], "u1,u2");
        assert_eq!(body["payload"]["content"]["result"], json!({"k": "v"}));
        assert_eq!(body["payload"]["content"]["title"], "T");
    }

    #[test]
    fn bad_values_are_permanent_failures() {
        assert_eq!(
            notification_body(&ctx(json!({}))).unwrap_err(),
            StepOutcome::permanent("message is required")
        );
        assert_eq!(
            notification_body(&ctx(json!({"message": "m", "severity": "fatal"}))).unwrap_err(),
            StepOutcome::permanent(
                "severity must be one of info, warning, error, critical, not `fatal`"
            )
        );
        let handler = Notification::new(test_client(), Some("t".into()));
        assert_eq!(
            handler.validate(&params(json!({"metadata": "x"}))),
            ["metadata must be an object"]
        );
    }

    #[tokio::test]
    async fn unset_topic_fails_permanently() {
        let handler = Notification::new(test_client(), None);
        assert_eq!(
            handler.run(ctx(json!({"message": "m"}))).await,
            StepOutcome::permanent("NOTIFY_TOPIC is not configured")
        );
    }
}
