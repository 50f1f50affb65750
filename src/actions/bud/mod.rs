//! The original budpipeline's actions that drive Bud Runtime, calling the
//! routes budapp, budsim and budcluster really serve (COMPAT.md "Actions",
//! bud-callers.md §4, original-budpipeline.md §4.2).
//!
//! Every call goes through the sidecar client (retries, circuit breaker,
//! idempotency key, trace context). Calls to budapp carry what its
//! `get_current_active_user_or_internal` needs: `?user_id=` (the step's
//! `user_id` param or the execution's, else `SYSTEM_USER_ID`) and the app
//! token as `x-app-api-token`. Bodies that start a budapp or budsim
//! workflow name this service's subscribed topic (`WORKFLOW_EVENTS_TOPIC`,
//! `budpipelineEvents` in a Bud install) as `callback_topic` /
//! `source_topic`, so the workflow's events come back here; the waiting
//! action then ends its wait by its own [`WaitRules`](super::bud_event::WaitRules).
//!
//! A callee's 4xx fails the step with the callee's own message and is never
//! retried; a 5xx, a timeout or an unreachable callee fails it retryably.

pub(crate) mod address;
mod cloud_model_add;
mod deployment_create;
mod deployment_delete;
mod deployment_ratelimit;
mod deployment_scale;
mod http_request;
mod model_add;
mod model_benchmark;
mod model_delete;
mod simulation_run;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value, json};

use super::params::Number;
use super::seed::Attempt;
use super::{ParamSpec, Registry, StepContext, StepOutcome};
use crate::config::Settings;
use crate::dapr::{CallHints, DaprClient, InvokeError, encode_segment};

pub(crate) use cloud_model_add::CloudModelAdd;
pub(crate) use deployment_create::DeploymentCreate;
pub(crate) use deployment_delete::DeploymentDelete;
pub(crate) use deployment_ratelimit::DeploymentRatelimit;
pub(crate) use deployment_scale::DeploymentScale;
pub(crate) use http_request::HttpRequest;
pub(crate) use model_add::ModelAdd;
pub(crate) use model_benchmark::ModelBenchmark;
pub(crate) use model_delete::ModelDelete;
pub(crate) use simulation_run::SimulationRun;

const MODEL_OPERATIONS: &str = "Model Operations";
const DEPLOYMENT: &str = "Deployment";
const SIMULATION: &str = "Simulation";

/// Register every Bud action.
pub(crate) fn register(registry: &mut Registry, client: DaprClient, settings: &Settings) {
    let bud = BudServices::new(client, settings);
    registry.register(ModelAdd::new(bud.clone()));
    registry.register(CloudModelAdd::new(bud.clone()));
    registry.register(ModelDelete::new(bud.clone()));
    registry.register(ModelBenchmark::new(bud.clone()));
    registry.register(SimulationRun::new(bud.clone()));
    registry.register(DeploymentCreate::new(bud.clone()));
    registry.register(DeploymentDelete::new(bud.clone()));
    registry.register(DeploymentScale::new(bud.clone()));
    registry.register(DeploymentRatelimit::new(bud));
    registry.register(HttpRequest::new(
        settings.http_request_allowed_cidrs.clone(),
    ));
}

/// What the Bud actions share: the sidecar client, the callees' app ids,
/// the topic events come back on and the user budapp calls are made for.
#[derive(Debug, Clone)]
pub(crate) struct BudServices {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: DaprClient,
    budapp: String,
    budsim: String,
    budcluster: String,
    callback_topic: String,
    system_user_id: Option<String>,
    app_token: Option<String>,
}

/// Where the user a budapp call is made for comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initiator {
    /// The step's `user_id` param, else the execution's `user_id` parameter.
    StepOrExecution,
    /// The execution's `user_id` parameter only: `deployment_create` and
    /// `simulation_run` do not let a step act as another user (as the
    /// original's `model_resolver`).
    ExecutionOnly,
}

/// One call to a Bud service: method, path (segments already encoded),
/// query, body and how long the callee is known to take.
#[derive(Debug, Clone)]
struct BudCall {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    min_timeout: Option<Duration>,
}

impl BudCall {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            min_timeout: None,
        }
    }

    fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    fn post(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::POST, path).body(body)
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// The callee may take `seconds` (the original's per-call timeout).
    fn taking(mut self, seconds: u64) -> Self {
        self.min_timeout = Some(Duration::from_secs(seconds));
        self
    }

    /// The method path with its query, values percent-encoded.
    fn method_path(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let query: Vec<String> = self
            .query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode_segment(value)))
            .collect();
        format!("{}?{}", self.path, query.join("&"))
    }
}

impl BudServices {
    pub(crate) fn new(client: DaprClient, settings: &Settings) -> Self {
        // budapp compares `x-app-api-token` with its own APP_API_TOKEN; in a
        // Bud install every service shares that secret, so ours is the one
        // to send (the original sent DAPR_API_TOKEN, else APP_API_TOKEN).
        let app_token = settings
            .app_token()
            .map(str::to_owned)
            .or_else(|| settings.dapr_api_token.clone())
            .filter(|t| !t.is_empty());
        Self {
            inner: Arc::new(Inner {
                client,
                budapp: settings.budapp_app_id.clone(),
                budsim: settings.budsim_app_id.clone(),
                budcluster: settings.budcluster_app_id.clone(),
                callback_topic: settings.workflow_events_topic.clone(),
                system_user_id: settings.system_user_id.clone(),
                app_token,
            }),
        }
    }

    /// The topic Bud services publish this service's events to.
    fn callback_topic(&self) -> &str {
        &self.inner.callback_topic
    }

    /// The budapp user a call is made for, `None` when nobody is named
    /// (budapp then uses its own SYSTEM_USER_ID, or refuses).
    fn initiator(&self, ctx: &StepContext, from: Initiator) -> Option<String> {
        let named = |map: &Map<String, Value>| match map.get("user_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        };
        let from_step = match from {
            Initiator::StepOrExecution => named(&ctx.params),
            Initiator::ExecutionOnly => None,
        };
        from_step
            .or_else(|| named(&ctx.workflow_params))
            .or_else(|| self.inner.system_user_id.clone())
    }

    /// Call budapp for `user_id`, with the app token. A 2xx whose body is
    /// budapp's error object is that error.
    async fn budapp(
        &self,
        ctx: &StepContext,
        user_id: Option<&str>,
        mut call: BudCall,
    ) -> Result<Value, InvokeError> {
        if let Some(user_id) = user_id {
            call = call.query("user_id", user_id);
        }
        let mut hints = ctx.call_hints();
        hints.app_token = self.inner.app_token.clone();
        let app_id = &self.inner.budapp;
        let answer = self.send(app_id, hints, call).await?;
        unless_error_in_body(app_id, answer)
    }

    async fn budsim(&self, ctx: &StepContext, call: BudCall) -> Result<Value, InvokeError> {
        let app_id = &self.inner.budsim;
        let answer = self.send(app_id, ctx.call_hints(), call).await?;
        unless_error_in_body(app_id, answer)
    }

    async fn budcluster(&self, ctx: &StepContext, call: BudCall) -> Result<Value, InvokeError> {
        let app_id = self.inner.budcluster.clone();
        self.send(&app_id, ctx.call_hints(), call).await
    }

    async fn send(
        &self,
        app_id: &str,
        mut hints: CallHints,
        call: BudCall,
    ) -> Result<Value, InvokeError> {
        hints.min_timeout = call.min_timeout;
        self.inner
            .client
            .invoke(
                app_id,
                call.method.clone(),
                &call.method_path(),
                call.body.as_ref(),
                &hints,
            )
            .await
    }

    /// budapp's model, `GET models/{id}` (the original's `get_model_info`):
    /// `model` of the answer.
    async fn model_info(
        &self,
        ctx: &StepContext,
        model_id: &str,
        user_id: Option<&str>,
    ) -> Result<Map<String, Value>, InvokeError> {
        let call = BudCall::get(format!("/models/{}", encode_segment(model_id)));
        let answer = self.budapp(ctx, user_id, call).await?;
        let model = answer
            .get("model")
            .or_else(|| answer.get("data"))
            .unwrap_or(&answer);
        Ok(model.as_object().cloned().unwrap_or_default())
    }
}

/// budapp and budmicroframe answer errors as `{"object": "error", "code",
/// "message"}`, with `code` as the HTTP status; should one arrive with a
/// 2xx, it is still that error.
fn error_in_body(answer: &Value) -> Option<(reqwest::StatusCode, String)> {
    if answer.get("object").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let code = answer
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| reqwest::StatusCode::from_u16(c).ok())
        .filter(|c| c.is_client_error() || c.is_server_error())
        .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    Some((code, answer.to_string()))
}

/// `app_id`'s answer, or the error object it answered with a 2xx.
fn unless_error_in_body(app_id: &str, answer: Value) -> Result<Value, InvokeError> {
    match error_in_body(&answer) {
        Some((status, body)) => Err(InvokeError::Status {
            app_id: app_id.to_owned(),
            status,
            body,
        }),
        None => Ok(answer),
    }
}

/// The callee's own words from an error body: budapp's and budmicroframe's
/// `message`, else FastAPI's `detail` (a string, an object with `message` /
/// `error` and `errors`, or a list of validation errors), else `error`.
fn message_in_body(body: &str) -> Option<String> {
    let json: Value = serde_json::from_str(body).ok()?;
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // budapp's ErrorResponse and its ClientException handler carry the
    // message itself in `message` (the latter also a `detail` that repeats
    // it with the exception's class name).
    if let Some(message) = text(json.get("message")) {
        return Some(message);
    }
    match json.get("detail") {
        Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.trim().to_owned()),
        Some(Value::Object(detail)) => {
            let head = text(detail.get("message")).or_else(|| text(detail.get("error")));
            let errors: Vec<String> = match detail.get("errors") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let joined = match (head, errors.is_empty()) {
                (Some(head), true) => Some(head),
                (Some(head), false) => Some(format!("{head}: {}", errors.join("; "))),
                (None, false) => Some(errors.join("; ")),
                (None, true) => None,
            };
            if joined.is_some() {
                return joined;
            }
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let problems: Vec<String> = items
                .iter()
                .map(|item| {
                    let place: Vec<String> = match item.get("loc") {
                        Some(Value::Array(loc)) => loc
                            .iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let msg = text(item.get("msg")).unwrap_or_else(|| item.to_string());
                    if place.is_empty() {
                        msg
                    } else {
                        format!("{}: {msg}", place.join("."))
                    }
                })
                .collect();
            return Some(problems.join("; "));
        }
        _ => {}
    }
    text(json.get("error"))
}

/// What a failed call says: for an answer, the callee's status and own
/// message; otherwise why there was no answer.
pub(crate) fn callee_message(error: &InvokeError) -> String {
    match error {
        InvokeError::Status {
            app_id,
            status,
            body,
        } => {
            let message = message_in_body(body).unwrap_or_else(|| body.clone());
            format!("{app_id} answered {}: {message}", status.as_u16())
        }
        other => other.to_string(),
    }
}

/// A failed call as the step's outcome: `what` failed because of the
/// callee's message; retryable exactly when the failure may go away.
/// `outputs` builds the action's failure outputs from the message.
fn call_failed(
    what: &str,
    error: &InvokeError,
    outputs: impl FnOnce(&str) -> Map<String, Value>,
) -> StepOutcome {
    let message = format!("{what}: {}", callee_message(error));
    StepOutcome::Failed {
        outputs: outputs(&message),
        error: message,
        retryable: error.is_retryable(),
    }
}

/// A permanent failure with the action's failure outputs.
fn refused(error: impl Into<String>, outputs: Map<String, Value>) -> StepOutcome {
    StepOutcome::Failed {
        error: error.into(),
        retryable: false,
        outputs,
    }
}

/// The declared `max_wait_seconds` of a waiting action, which [`MaxWait`]
/// reads: by default the action's own default timeout.
fn max_wait_spec(description: &'static str, default_seconds: u64, range: [f64; 2]) -> ParamSpec {
    ParamSpec::new("max_wait_seconds", "number", description)
        .default(json!(default_seconds))
        .range(Some(range[0]), Some(range[1]))
}

/// A waiting step's own limit, `max_wait_seconds`: a positive number of
/// seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MaxWait(Duration);

impl<'de> Deserialize<'de> for MaxWait {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Some(Number::deserialize(d)?.as_f64())
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Self)
            .ok_or_else(|| de::Error::custom("must be a positive number"))
    }
}

/// Whether `text` is a UUID (budapp's ids); ids go into paths only then,
/// as the original's model resolver did.
fn is_uuid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok()
}

/// The id of the workflow a call started, a non-empty string `workflow_id`
/// of `answer`: the id the step waits on. Without one the step fails
/// permanently with `missing` (the call itself succeeded).
fn awaited_workflow_id(
    answer: &Value,
    missing: &str,
    failed: impl FnOnce(&str) -> Map<String, Value>,
) -> Attempt<String> {
    answer
        .get("workflow_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| refused(missing, failed(missing)))
}

/// A step waiting on a budapp workflow timed out: say which one.
fn budapp_wait_timed_out(outputs: &Map<String, Value>) -> StepOutcome {
    super::seed::timed_out_waiting(outputs, "workflow_id", "budapp workflow")
}

/// The workflow id of a budapp workflow answer (`RetrieveWorkflowDataResponse`
/// carries it at the top; the original also looked in `data`).
fn workflow_id_of(answer: &Value) -> Option<String> {
    let id = answer
        .get("data")
        .and_then(|d| d.get("workflow_id"))
        .filter(|v| !v.is_null())
        .or_else(|| answer.get("workflow_id"))?;
    match id {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A text field of an event result or answer, `Null` when absent.
fn field(map: &Map<String, Value>, key: &str) -> Value {
    map.get(key).cloned().unwrap_or(Value::Null)
}

/// Build an outputs map from pairs.
fn outputs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;
    use crate::actions::builtin::test_util::{ctx, params};
    use crate::actions::seed::test_client;

    /// Bud services behind a sidecar that does not exist.
    pub(super) fn bud() -> BudServices {
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://x/y".into()),
            _ => None,
        })
        .unwrap();
        BudServices::new(test_client(), &settings)
    }

    /// A stage notification of operation `op` for workflow `w`, as budcluster
    /// and budmodel publish it.
    pub(super) fn notification(
        op: &str,
        stage: &str,
        status: &str,
        message: &str,
        result: Value,
    ) -> Value {
        json!({"type": "notification", "payload": {"type": op, "event": stage, "workflow_id": "w",
               "content": {"status": status, "message": message, "result": result}}})
    }

    fn status(status: u16, body: Value) -> InvokeError {
        InvokeError::Status {
            app_id: "budapp".into(),
            status: StatusCode::from_u16(status).unwrap(),
            body: body.to_string(),
        }
    }

    #[test]
    fn a_callees_own_message_is_what_the_step_says() {
        let cases = [
            (
                json!({"object": "error", "message": "Model not found", "type": "NotFound", "code": 404}),
                "budapp answered 404: Model not found",
            ),
            (
                json!({"detail": "Inactive user"}),
                "budapp answered 404: Inactive user",
            ),
            (
                json!({"detail": {"error": "Validation failed", "errors": ["name: Field required"]}}),
                "budapp answered 404: Validation failed: name: Field required",
            ),
            (
                json!({"detail": [{"loc": ["body", "step_number"], "msg": "Field required", "type": "missing"}]}),
                "budapp answered 404: body.step_number: Field required",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                callee_message(&status(404, body.clone())),
                expected,
                "{body}"
            );
        }
        let odd = InvokeError::Status {
            app_id: "budsim".into(),
            status: StatusCode::BAD_REQUEST,
            body: "plain text".into(),
        };
        assert_eq!(callee_message(&odd), "budsim answered 400: plain text");
    }

    #[test]
    fn an_error_object_in_a_2xx_is_an_error() {
        let (code, _) =
            error_in_body(&json!({"object": "error", "code": 400, "message": "bad"})).unwrap();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        let (code, _) = error_in_body(&json!({"object": "error", "code": 200})).unwrap();
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error_in_body(&json!({"object": "workflow.get", "code": 400})).is_none());
    }

    #[test]
    fn queries_are_encoded() {
        let call = BudCall::new(Method::DELETE, "/models/m1")
            .query("force", "false")
            .query("user_id", "a b&c");
        assert_eq!(
            call.method_path(),
            "/models/m1?force=false&user_id=a%20b%26c"
        );
        assert_eq!(BudCall::get("/x").method_path(), "/x");
    }

    #[test]
    fn the_initiator_comes_from_the_step_then_the_execution_then_the_system() {
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://x/y".into()),
            "SYSTEM_USER_ID" => Some("system".into()),
            _ => None,
        })
        .unwrap();
        let bud = BudServices::new(test_client(), &settings);
        let mut c = ctx(json!({"user_id": "step-user"}));
        c.workflow_params = params(json!({"user_id": "exec-user"}));
        assert_eq!(
            bud.initiator(&c, Initiator::StepOrExecution).as_deref(),
            Some("step-user")
        );
        assert_eq!(
            bud.initiator(&c, Initiator::ExecutionOnly).as_deref(),
            Some("exec-user")
        );
        c.workflow_params = Map::new();
        assert_eq!(
            bud.initiator(&c, Initiator::ExecutionOnly).as_deref(),
            Some("system")
        );
    }

    #[test]
    fn workflow_ids_are_read_where_budapp_puts_them() {
        assert_eq!(
            workflow_id_of(&json!({"workflow_id": "w1", "status": "in_progress"})).as_deref(),
            Some("w1")
        );
        assert_eq!(
            workflow_id_of(&json!({"data": {"workflow_id": "w2"}})).as_deref(),
            Some("w2")
        );
        assert_eq!(workflow_id_of(&json!({"workflow_id": ""})), None);
    }
}
