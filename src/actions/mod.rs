//! Step actions: what a step *does*.
//!
//! A handler is a value behind the [`StepHandler`] trait, looked up by the
//! step's `action` in a [`Registry`] built once at start-up. Handlers never
//! touch the database: they get a [`StepContext`] and return a
//! [`StepOutcome`]; the engine makes the outcome durable. Event-driven
//! handlers also map an incoming event to an [`EventAction`].

pub(crate) mod bud;
pub(crate) mod bud_event;
pub(crate) mod builtin;
pub(crate) mod params;
pub mod seed;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a pure action computes an attempt's outcome ([`StepHandler::pure`]).
pub type PureFn = fn(&StepContext) -> StepOutcome;

/// What one run (attempt) of a step is given.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub execution_id: Uuid,
    pub step_id: String,
    /// 1 on the first run; the fencing token and the idempotency hint.
    pub attempt: i32,
    /// The step's `params`, templates already resolved.
    pub params: Map<String, Value>,
    /// The execution's merged parameters.
    pub workflow_params: Map<String, Value>,
    /// W3C trace context to continue on outbound calls, when known.
    pub traceparent: Option<String>,
}

impl StepContext {
    /// `"{execution_id}:{step_id}:{attempt}"`, sent downstream so callees can dedupe.
    pub fn idempotency_hint(&self) -> String {
        format!("{}:{}:{}", self.execution_id, self.step_id, self.attempt)
    }

    /// The hints for a call this run of the step makes: the same
    /// idempotency key on every retry of the call, and the step's trace.
    pub fn call_hints(&self) -> crate::dapr::CallHints {
        crate::dapr::CallHints {
            idempotency_key: Some(self.idempotency_hint()),
            traceparent: self.traceparent.clone(),
            ..Default::default()
        }
    }
}

/// The result of one run of a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Completed {
        outputs: Map<String, Value>,
    },
    /// The step now waits for an event correlated by `external_id`.
    /// `timeout`, when set, overrides the step's own timeout (used by
    /// `wait_until`, whose "timeout" is its wake-up time).
    AwaitEvent {
        external_id: String,
        outputs: Map<String, Value>,
        timeout: Option<Duration>,
    },
    Failed {
        error: String,
        /// Permanent failures (bad parameters, a 4xx, the `fail` action) are
        /// not retried whatever the retry policy says.
        retryable: bool,
        outputs: Map<String, Value>,
    },
}

impl StepOutcome {
    pub fn completed(outputs: Map<String, Value>) -> Self {
        Self::Completed { outputs }
    }
    pub fn permanent(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retryable: false,
            outputs: Map::new(),
        }
    }
    pub fn transient(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retryable: true,
            outputs: Map::new(),
        }
    }
}

/// What an incoming event means for the step waiting on it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAction {
    /// Complete the step; these outputs are merged over the step's outputs.
    Complete(Map<String, Value>),
    /// Fail this attempt (retryable, like every FAILED event).
    Fail(String),
    /// Keep waiting: a stage of the operation (or its estimate) to record
    /// on the step and republish to the execution's callback topics.
    Progress(bud_event::StageReport),
    Ignore,
}

/// One declared parameter of an action (for validation and for UIs).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ParamSpec {
    pub name: &'static str,
    /// `string`, `number`, `integer`, `boolean`, `object`, `array`, `json`, `template`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<&'static str>>,
}

impl ParamSpec {
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
            description,
            min: None,
            max: None,
            options: None,
        }
    }
    /// Required unless it has a default (whichever of the two comes first):
    /// a parameter with a default can always be left out, and `GET /actions`
    /// says so.
    pub fn required(mut self) -> Self {
        self.required = self.default.is_none();
        self
    }
    pub fn default(mut self, value: Value) -> Self {
        self.required = false;
        self.default = Some(value);
        self
    }
    pub const fn range(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min = min;
        self.max = max;
        self
    }
    pub fn options(mut self, options: &[&'static str]) -> Self {
        self.options = Some(options.to_vec());
        self
    }
}

/// One declared output of an action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputSpec {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: &'static str,
}

impl OutputSpec {
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            description,
        }
    }
}

/// What `GET /actions` shows about an action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionSpec {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub params: Vec<ParamSpec>,
    pub outputs: Vec<OutputSpec>,
    /// The step waits for an external event (or a timer) after it runs.
    pub waits_for_event: bool,
    /// Default timeout in seconds of one attempt, waiting included, when the
    /// step sets none. `None`: only the execution timeout bounds it.
    pub default_timeout_seconds: Option<u64>,
}

/// The contract every action implements.
pub trait StepHandler: Send + Sync + 'static {
    fn spec(&self) -> &ActionSpec;

    /// Action-specific checks on the step's *unresolved* params at submit
    /// time, beyond the generic ones derived from [`ActionSpec::params`]
    /// (required, numeric bounds, options). Values that are templates
    /// ([`crate::dag::template::is_template`]) cannot be checked yet and must
    /// be let through.
    /// Each message is a sentence without the step prefix.
    fn validate(&self, _params: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    /// Run one attempt.
    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome>;

    /// For a pure action, the function `run` computes its outcome with.
    /// Pure means: the outcome depends on the context alone, at once, with
    /// no I/O, no waiting and no clock. The engine runs such a step inside
    /// the transition that made it ready (`INLINE_STEPS`), with no claim of
    /// its own; see `engine::inline`.
    fn pure(&self) -> Option<PureFn> {
        None
    }

    /// Map an event delivered for a step waiting on this action.
    /// `outputs` are the step's outputs so far.
    fn on_event(&self, _event: &Value, _outputs: &Map<String, Value>) -> EventAction {
        EventAction::Ignore
    }

    /// The waiting attempt reached its `timeout_at`. Most actions time out;
    /// `wait_until` completes.
    fn on_timeout(&self, _outputs: &Map<String, Value>) -> StepOutcome {
        StepOutcome::Failed {
            error: "step timed out".into(),
            retryable: true,
            outputs: Map::new(),
        }
    }
}

/// The actions known to this process, by `type`.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn StepHandler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The control actions that need nothing outside the process.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        builtin::register(&mut registry);
        registry
    }

    pub fn register(&mut self, handler: impl StepHandler) {
        let kind = handler.spec().kind;
        self.handlers.insert(kind, Arc::new(handler));
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn StepHandler>> {
        self.handlers.get(kind)
    }

    pub fn specs(&self) -> impl Iterator<Item = &ActionSpec> {
        self.handlers.values().map(|h| h.spec())
    }
}
