//! `invoke_service`: call any Dapr app, optionally waiting for an event
//! correlated by a field of its answer, so a service can be driven from a
//! DAG without new code.

use std::sync::LazyLock;

use reqwest::Method;
use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value, json};

use super::{Attempt, DEFAULT_WAIT_SECONDS, INTEGRATION, call_failed};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, AnyText, Object, Text};
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dag::template::is_template;
use crate::dapr::DaprClient;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const DEFAULT_CORRELATION_FIELD: &str = "workflow_id";

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "invoke_service",
    name: "Invoke Service",
    category: INTEGRATION,
    description: "Call a method of any Dapr app through the sidecar. With await_event, \
                  wait for the event whose correlation id is the given field of the \
                  answer (COMPLETED completes with the event's content, FAILED fails).",
    params: vec![
        ParamSpec::new("app_id", "string", "The Dapr app id to call.").required(),
        ParamSpec::new(
            "method_path",
            "string",
            "The method path, e.g. /api/v1/things (a leading / is added when missing).",
        )
        .required(),
        ParamSpec::new("http_method", "string", "The HTTP method.")
            .default(json!("POST"))
            .options(METHODS),
        ParamSpec::new("data", "object", "The JSON body to send."),
        ParamSpec::new(
            "await_event",
            "json",
            "Wait for a completion event: {\"correlation_field\": \"workflow_id\"}, or the \
             name of the answer's field (dots reach into nested objects, e.g. data.workflow_id).",
        ),
    ],
    outputs: vec![
        OutputSpec::new("response", "json", "The app's JSON answer ({} when empty)."),
        OutputSpec::new(
            "correlation_id",
            "string",
            "The id the step waited on (with await_event only).",
        ),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    app_id: Text,
    method_path: Text,
    http_method: Option<AnyText>,
    data: Option<Object>,
    await_event: Option<AwaitEvent>,
}

/// The answer's field to wait on, if any (see [`correlation_field`]).
struct AwaitEvent(Option<String>);

impl<'de> Deserialize<'de> for AwaitEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        correlation_field(Some(&value))
            .map(Self)
            .map_err(de::Error::custom)
    }
}

pub struct InvokeService {
    client: DaprClient,
}

impl InvokeService {
    pub fn new(client: DaprClient) -> Self {
        Self { client }
    }

    async fn call(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let (app_id, method_path) = (p.app_id.0, p.method_path.0);
        if let Some(problem) = app_id_problem(&app_id) {
            return Err(StepOutcome::permanent(problem));
        }
        let method = http_method(p.http_method)?;
        let data = p.data.map(|d| Value::Object(d.0));
        let correlation_field = p.await_event.and_then(|a| a.0);

        let response = self
            .client
            .invoke(
                &app_id,
                method,
                &method_path,
                data.as_ref(),
                &ctx.call_hints(),
            )
            .await
            .map_err(|e| call_failed(&e))?;

        let mut outputs = Map::new();
        let Some(field) = correlation_field else {
            outputs.insert("response".into(), response);
            return Ok(StepOutcome::completed(outputs));
        };
        let Some(correlation_id) = correlation_id(&response, &field) else {
            return Err(StepOutcome::permanent(format!(
                "{app_id}'s answer has no `{field}` to wait on"
            )));
        };
        outputs.insert("response".into(), response);
        outputs.insert("correlation_id".into(), json!(correlation_id));
        Ok(StepOutcome::AwaitEvent {
            external_id: correlation_id,
            outputs,
            timeout: None,
        })
    }
}

impl StepHandler for InvokeService {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let submitted = params::submitted::<Params>(params);
        let mut errors = Vec::new();
        if let Some(Params {
            app_id: Text(app_id),
            method_path: Text(path),
            ..
        }) = &submitted.params
        {
            if !is_template(app_id) {
                errors.extend(app_id_problem(app_id));
            }
            if !is_template(path) && path.split(['/', '?']).any(|segment| segment == "..") {
                errors.push("method_path must not contain `..` segments".into());
            }
        }
        errors.extend(submitted.problems_with(&["data", "await_event"]));
        errors
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.call(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        WaitRules::GENERIC.decide(event, "the awaited operation failed")
    }
}

/// Dapr app ids are DNS-like names (`app` or `app.namespace`); anything else
/// could not be routed and might alter the sidecar URL.
fn app_id_problem(app_id: &str) -> Option<String> {
    let valid = app_id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && app_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!valid).then(|| format!("app_id `{app_id}` is not a valid Dapr app id"))
}

fn http_method(given: Option<AnyText>) -> Attempt<Method> {
    let name = match given {
        None => "POST".to_owned(),
        Some(AnyText(Value::String(name))) => name.trim().to_ascii_uppercase(),
        Some(other) => other.text(),
    };
    if !METHODS.contains(&name.as_str()) {
        return Err(StepOutcome::permanent(format!(
            "http_method must be one of {}, not `{name}`",
            METHODS.join(", ")
        )));
    }
    Method::from_bytes(name.as_bytes()).map_err(|e| StepOutcome::permanent(e.to_string()))
}

/// Which answer field to wait on, if any: `await_event` is absent/false,
/// `true` (the default field), a field name, or `{"correlation_field": name}`.
/// The problem reads after the param's name.
fn correlation_field(await_event: Option<&Value>) -> Result<Option<String>, String> {
    const SHAPE: &str = "must be {\"correlation_field\": \"<answer field>\"} \
                         or the name of an answer field";
    match await_event {
        None | Some(Value::Null | Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(DEFAULT_CORRELATION_FIELD.to_owned())),
        Some(Value::String(field)) if !field.trim().is_empty() => Ok(Some(field.trim().to_owned())),
        Some(Value::Object(spec)) => match spec.get("correlation_field") {
            None | Some(Value::Null) => Ok(Some(DEFAULT_CORRELATION_FIELD.to_owned())),
            Some(Value::String(field)) if !field.trim().is_empty() => {
                Ok(Some(field.trim().to_owned()))
            }
            Some(_) => Err(SHAPE.to_owned()),
        },
        Some(_) => Err(SHAPE.to_owned()),
    }
}

/// The answer's `field` (a key, or a dotted path into nested objects) as
/// a correlation id: a non-empty string, or a number as text.
fn correlation_id(response: &Value, field: &str) -> Option<String> {
    let value = response.get(field).or_else(|| {
        field
            .split('.')
            .try_fold(response, |value, key| value.get(key))
    })?;
    match value {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    fn handler() -> InvokeService {
        InvokeService::new(test_client())
    }

    #[test]
    fn validation_checks_literal_values_and_lets_templates_through() {
        let ok = params(json!({"app_id": "budapp.ns", "method_path": "/api/x",
                               "data": {"a": 1}, "await_event": {"correlation_field": "workflow_id"}}));
        assert!(handler().validate(&ok).is_empty());
        let templated = params(
            json!({"app_id": "{{ params.app }}", "method_path": "{{ params.p }}",
                                      "data": "{{ params.d }}", "await_event": "{{ params.f }}"}),
        );
        assert!(handler().validate(&templated).is_empty());
        let bad = params(json!({"app_id": "bud/app", "method_path": "/a/../b",
                                "data": [1], "await_event": 5}));
        let errors = handler().validate(&bad);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("not a valid Dapr app id"), "{errors:?}");
        assert!(errors[1].contains(".."), "{errors:?}");
        assert_eq!(errors[2], "data must be an object");
        assert!(errors[3].starts_with("await_event must be"), "{errors:?}");
    }

    #[test]
    fn await_event_forms() {
        let cases = [
            (None, Ok(None)),
            (Some(json!(false)), Ok(None)),
            (Some(json!(true)), Ok(Some("workflow_id".to_owned()))),
            (Some(json!("data.id")), Ok(Some("data.id".to_owned()))),
            (Some(json!({})), Ok(Some("workflow_id".to_owned()))),
            (
                Some(json!({"correlation_field": "job"})),
                Ok(Some("job".to_owned())),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(correlation_field(value.as_ref()), expected, "{value:?}");
        }
        assert!(correlation_field(Some(&json!(""))).is_err());
        assert!(correlation_field(Some(&json!({"correlation_field": 1}))).is_err());
    }

    #[test]
    fn correlation_id_reads_keys_dotted_paths_and_numbers() {
        let answer = json!({"workflow_id": "w1", "data": {"workflow_id": 42}, "a.b": "dotted-key"});
        assert_eq!(
            correlation_id(&answer, "workflow_id").as_deref(),
            Some("w1")
        );
        assert_eq!(
            correlation_id(&answer, "data.workflow_id").as_deref(),
            Some("42")
        );
        assert_eq!(
            correlation_id(&answer, "a.b").as_deref(),
            Some("dotted-key")
        );
        assert_eq!(correlation_id(&answer, "data"), None);
        assert_eq!(correlation_id(&answer, "missing"), None);
    }

    #[tokio::test]
    async fn bad_params_fail_permanently_before_any_call() {
        let cases = [
            (json!({"method_path": "/x"}), "app_id is required"),
            (
                json!({"app_id": "a", "method_path": "/x", "http_method": "TRACE"}),
                "http_method must be one of GET, POST, PUT, PATCH, DELETE, not `TRACE`",
            ),
            (
                json!({"app_id": "a", "method_path": "/x", "data": 3}),
                "data must be an object",
            ),
        ];
        for (p, expected) in cases {
            assert_eq!(
                handler().run(ctx(p.clone())).await,
                StepOutcome::permanent(expected),
                "{p}"
            );
        }
    }

    #[test]
    fn events_map_like_the_other_waiting_actions() {
        let done = json!({"workflow_id": "w", "status": "COMPLETED", "result": {"id": 1}});
        assert_eq!(
            handler().on_event(&done, &Map::new()),
            EventAction::Complete(params(json!({"id": 1})))
        );
        assert_eq!(
            handler().on_event(&json!({"status": "FAILED"}), &Map::new()),
            EventAction::Fail("the awaited operation failed".into())
        );
    }
}
