//! `deployment_ratelimit`: set an endpoint's rate limits,
//! `PUT budapp /endpoints/{id}/deployment-settings?user_id=` with
//! `{"rate_limits": ...}`.
//!
//! budapp at 3b8a3f9 serves this route to signed-in users only
//! (`get_current_active_user`, not `..._or_internal`): an internal call is
//! refused with a 4xx, which fails the step with budapp's message.

use std::sync::LazyLock;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{BudCall, BudServices, DEPLOYMENT, Initiator, call_failed, outputs};
use crate::actions::params::{self, Bool, Number, OptText};
use crate::actions::seed::{Attempt, is_template};
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};
use crate::dapr::encode_segment;

const ALGORITHMS: &[&str] = &["token_bucket", "fixed_window", "sliding_window"];
const RATES: [&str; 3] = [
    "requests_per_second",
    "requests_per_minute",
    "requests_per_hour",
];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "deployment_ratelimit",
    name: "Configure Rate Limiting",
    category: DEPLOYMENT,
    description: "Configure rate limiting for an existing deployment endpoint. Supports token \
                  bucket, fixed window, and sliding window algorithms with per-second, \
                  per-minute, or per-hour limits.",
    params: vec![
        ParamSpec::new(
            "endpoint_id",
            "string",
            "The deployment endpoint to configure rate limiting for.",
        )
        .required(),
        ParamSpec::new("algorithm", "string", "Rate limiting algorithm to use.")
            .default(json!("token_bucket"))
            .options(ALGORITHMS),
        ParamSpec::new(
            "requests_per_second",
            "number",
            "Maximum requests per second allowed (leave empty to skip).",
        )
        .range(Some(1.0), Some(100_000.0)),
        ParamSpec::new(
            "requests_per_minute",
            "number",
            "Maximum requests per minute allowed (leave empty to skip).",
        )
        .range(Some(1.0), Some(1_000_000.0)),
        ParamSpec::new(
            "requests_per_hour",
            "number",
            "Maximum requests per hour allowed (leave empty to skip).",
        )
        .range(Some(1.0), Some(10_000_000.0)),
        ParamSpec::new(
            "burst_size",
            "number",
            "Maximum burst size for rate limiting (token bucket algorithm).",
        )
        .default(json!(100))
        .range(Some(1.0), Some(10_000.0)),
        ParamSpec::new("enabled", "boolean", "Whether rate limiting is enabled.")
            .default(json!(true)),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether configuration was successful.",
        ),
        OutputSpec::new("endpoint_id", "string", "ID of the configured endpoint."),
        OutputSpec::new("config", "object", "Applied rate limiting configuration."),
        OutputSpec::new("message", "string", "Status message or error details."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

#[derive(Deserialize)]
struct Params {
    endpoint_id: OptText,
    enabled: Option<Bool>,
    algorithm: OptText,
    requests_per_second: Option<Number>,
    requests_per_minute: Option<Number>,
    requests_per_hour: Option<Number>,
    burst_size: Option<Number>,
}

pub(crate) struct DeploymentRatelimit {
    bud: BudServices,
}

impl DeploymentRatelimit {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn configure(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let endpoint_id = p.endpoint_id.or_default();
        let enabled = p.enabled.is_none_or(|e| e.0);
        let mut config = outputs([
            ("algorithm", json!(p.algorithm.or("token_bucket"))),
            ("enabled", json!(enabled)),
        ]);
        let limits = [
            p.requests_per_second,
            p.requests_per_minute,
            p.requests_per_hour,
            p.burst_size,
        ];
        // budapp takes whole numbers (the original sent int(value)).
        for (name, n) in RATES.iter().chain(&["burst_size"]).zip(limits) {
            if let Some(n) = n.and_then(|n| n.0.as_f64()) {
                config.insert((*name).to_owned(), json!(n.trunc() as i64));
            }
        }
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("endpoint_id", json!(endpoint_id)),
                ("config", Value::Null),
                ("message", json!(message)),
            ])
        };
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let call = BudCall::new(
            Method::PUT,
            format!(
                "/endpoints/{}/deployment-settings",
                encode_segment(&endpoint_id)
            ),
        )
        .body(json!({"rate_limits": config}));
        let answer = self
            .bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to configure rate limiting", &e, failed))?;
        let applied = answer
            .pointer("/deployment_settings/rate_limits")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Object(config));
        let state = if enabled { "enabled" } else { "disabled" };
        Ok(StepOutcome::completed(outputs([
            ("success", json!(true)),
            ("endpoint_id", json!(endpoint_id)),
            ("config", applied),
            (
                "message",
                json!(format!("Rate limiting {state} for endpoint")),
            ),
        ])))
    }
}

impl StepHandler for DeploymentRatelimit {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    /// Whether a rate is given (a template counts) is a question for the
    /// params as submitted, not for their values.
    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let given = |name: &str| params.get(name).is_some_and(|v| !v.is_null());
        if RATES
            .iter()
            .any(|r| params.get(*r).is_some_and(is_template))
        {
            return Vec::new();
        }
        if !RATES.iter().any(|r| given(r)) {
            return vec![
                "At least one rate limit must be specified: requests_per_second, \
                 requests_per_minute, or requests_per_hour"
                    .into(),
            ];
        }
        Vec::new()
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.configure(&ctx).await.unwrap_or_else(|failed| failed) })
    }
}
