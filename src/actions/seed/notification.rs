//! `notification`: publish a notification as the original did: to the
//! `notifications` topic of the pub/sub component, with the original's body
//! `{notification_id, channel, title, message, severity, metadata,
//! recipients}` (`actions/integration/notification.py`). The event's
//! CloudEvent id is the notification id, the same on every retry, so a
//! subscriber can drop a repeat.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Attempt, INTEGRATION};
use crate::actions::params::{self, Object, OptText, Text};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::DaprClient;

/// The topic the original published to.
pub(super) const NOTIFICATIONS_TOPIC: &str = "notifications";
const CHANNELS: &[&str] = &["email", "slack", "teams", "webhook"];
const SEVERITIES: &[&str] = &["info", "warning", "error", "critical"];
const DEFAULT_TITLE: &str = "Workflow Notification";

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "notification",
    name: "Send Notification",
    category: INTEGRATION,
    description: "Publish a notification (email, Slack, Teams or webhook) to the \
                  `notifications` pub/sub topic, as the original budpipeline did.",
    params: vec![
        ParamSpec::new("channel", "string", "Notification channel.")
            .required()
            .options(CHANNELS),
        ParamSpec::new("title", "string", "Notification title.").default(json!(DEFAULT_TITLE)),
        ParamSpec::new("message", "template", "Notification message.").required(),
        ParamSpec::new("severity", "string", "Notification severity.")
            .default(json!("info"))
            .options(SEVERITIES),
        ParamSpec::new(
            "recipients",
            "json",
            "Recipients (email addresses, user ids, channel names, ...).",
        ),
        ParamSpec::new(
            "metadata",
            "object",
            "Extra data for the notification; the source, execution and step are added.",
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
            "{execution_id}-{step_id}, also the event's CloudEvent id.",
        ),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    channel: Text,
    message: Text,
    title: OptText,
    severity: OptText,
    metadata: Option<Object>,
    recipients: Option<Value>,
}

pub struct Notification {
    client: DaprClient,
}

impl Notification {
    pub fn new(client: DaprClient) -> Self {
        Self { client }
    }

    async fn send(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let body = notification_body(ctx)?;
        let notification_id = notification_id(ctx);
        self.client
            .publish(
                NOTIFICATIONS_TOPIC,
                &notification_id,
                &body,
                ctx.traceparent.as_deref(),
            )
            .await
            .map_err(|e| StepOutcome::Failed {
                error: format!("Failed to publish notification: {e}"),
                retryable: e.is_retryable(),
                outputs: Map::from_iter([
                    ("sent".to_owned(), json!(false)),
                    ("notification_id".to_owned(), json!(notification_id)),
                ]),
            })?;
        let mut outputs = Map::new();
        outputs.insert("sent".into(), json!(true));
        outputs.insert("notification_id".into(), json!(notification_id));
        Ok(StepOutcome::completed(outputs))
    }
}

impl StepHandler for Notification {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        params::submitted::<Params>(params).problems_with(&["metadata"])
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.send(&ctx).await.unwrap_or_else(|failed| failed) })
    }
}

fn notification_id(ctx: &StepContext) -> String {
    format!("{}-{}", ctx.execution_id, ctx.step_id)
}

/// The original's body.
fn notification_body(ctx: &StepContext) -> Attempt<Value> {
    let p: Params = params::read(&ctx.params)?;
    let channel = p.channel.0.to_ascii_lowercase();
    if !CHANNELS.contains(&channel.as_str()) {
        return Err(StepOutcome::permanent(format!(
            "channel must be one of {}, not `{channel}`",
            CHANNELS.join(", ")
        )));
    }
    let message = p.message.0;
    let title = p.title.or(DEFAULT_TITLE);
    let severity = p.severity.or("info").to_ascii_lowercase();
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(StepOutcome::permanent(format!(
            "severity must be one of {}, not `{severity}`",
            SEVERITIES.join(", ")
        )));
    }
    let mut metadata = p.metadata.unwrap_or_default().0;
    metadata.insert("source".into(), json!("budpipeline"));
    metadata.insert(
        "workflow_execution_id".into(),
        json!(ctx.execution_id.to_string()),
    );
    metadata.insert("step_id".into(), json!(ctx.step_id));
    let recipients = p.recipients.unwrap_or_else(|| json!([]));
    Ok(json!({
        "notification_id": notification_id(ctx),
        "channel": channel,
        "title": title,
        "message": message,
        "severity": severity,
        "metadata": metadata,
        "recipients": recipients,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    #[test]
    fn body_is_the_originals_with_defaults() {
        let nil = uuid::Uuid::nil().to_string();
        let body = notification_body(&ctx(
            json!({"channel": "slack", "message": "hi", "severity": "WARNING"}),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "notification_id": format!("{nil}-step"), "channel": "slack",
                "title": "Workflow Notification", "message": "hi", "severity": "warning",
                "metadata": {"source": "budpipeline", "workflow_execution_id": nil,
                             "step_id": "step"},
                "recipients": []
            })
        );
        let body = notification_body(&ctx(json!({"channel": "email", "message": "hi",
                                                  "recipients": ["a@b.c"],
                                                  "metadata": {"k": "v"}, "title": "T"})))
        .unwrap();
        assert_eq!(body["recipients"], json!(["a@b.c"]));
        assert_eq!(body["metadata"]["k"], "v");
        assert_eq!(body["title"], "T");
    }

    #[test]
    fn bad_values_are_permanent_failures() {
        assert_eq!(
            notification_body(&ctx(json!({"channel": "email"}))).unwrap_err(),
            StepOutcome::permanent("message is required")
        );
        assert_eq!(
            notification_body(&ctx(json!({"channel": "pigeon", "message": "m"}))).unwrap_err(),
            StepOutcome::permanent(
                "channel must be one of email, slack, teams, webhook, not `pigeon`"
            )
        );
        assert_eq!(
            notification_body(&ctx(json!({"channel": "email", "message": "m",
                                           "severity": "fatal"})))
            .unwrap_err(),
            StepOutcome::permanent(
                "severity must be one of info, warning, error, critical, not `fatal`"
            )
        );
        let handler = Notification::new(test_client());
        assert_eq!(
            handler.validate(&params(json!({"metadata": "x"}))),
            ["metadata must be an object"]
        );
    }
}
