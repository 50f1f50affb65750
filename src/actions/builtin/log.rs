//! `log`: write a message to the service log.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{CATEGORY, ready, settled};
use crate::actions::params::{self, AnyText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

const LEVELS: &[&str] = &["debug", "info", "warning", "error"];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "log",
    name: "Log",
    category: CATEGORY,
    description: "Write a message to the service log at the given level.",
    params: vec![
        ParamSpec::new("message", "template", "The message to log.").default(json!("")),
        ParamSpec::new(
            "level",
            "string",
            "Log level; an unknown level logs as info.",
        )
        .default(json!("info"))
        .options(LEVELS),
    ],
    outputs: vec![
        OutputSpec::new("logged", "boolean", "Always true."),
        OutputSpec::new("message", "string", "The message as logged."),
        OutputSpec::new("level", "string", "The level it was logged at."),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

/// A message that rendered to a non-string (a pure expression yields a
/// typed value) is logged as its JSON text; null (undefined) as "".
#[derive(Deserialize)]
struct Params {
    message: Option<AnyText>,
    level: Option<AnyText>,
}

pub(crate) struct Log;

impl StepHandler for Log {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(outcome(&ctx))
    }

    fn pure(&self) -> Option<PureFn> {
        Some(outcome)
    }
}

fn outcome(ctx: &StepContext) -> StepOutcome {
    settled(log(ctx))
}

fn log(ctx: &StepContext) -> Attempt<StepOutcome> {
    let p: Params = params::read(&ctx.params)?;
    let message = AnyText::or(p.message, "");
    let level = effective_level(&AnyText::or(p.level, "info"));
    let (execution_id, step_id) = (ctx.execution_id, &ctx.step_id);
    match level {
        "debug" => tracing::debug!(%execution_id, step_id, "{message}"),
        "warning" => tracing::warn!(%execution_id, step_id, "{message}"),
        "error" => tracing::error!(%execution_id, step_id, "{message}"),
        _ => tracing::info!(%execution_id, step_id, "{message}"),
    }
    let mut outputs = Map::new();
    outputs.insert("logged".into(), Value::Bool(true));
    outputs.insert("message".into(), Value::String(message));
    outputs.insert("level".into(), Value::String(level.into()));
    Ok(StepOutcome::completed(outputs))
}

/// The lower-cased level, or "info" for one we do not know: the output then
/// says the level the message really went out at.
fn effective_level(level: &str) -> &'static str {
    let level = level.to_lowercase();
    LEVELS
        .iter()
        .find(|known| **known == level)
        .copied()
        .unwrap_or("info")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{completed, ctx};

    #[tokio::test]
    async fn logs_message_at_level() {
        let out = completed(
            Log.run(ctx(json!({"message": "hello", "level": "WARNING"})))
                .await,
        );
        assert_eq!(
            Value::Object(out),
            json!({"logged": true, "message": "hello", "level": "warning"})
        );
    }

    #[tokio::test]
    async fn defaults_to_empty_message_at_info() {
        let out = completed(Log.run(ctx(json!({}))).await);
        assert_eq!(
            Value::Object(out),
            json!({"logged": true, "message": "", "level": "info"})
        );
    }

    #[tokio::test]
    async fn unknown_level_is_info_and_non_string_message_is_json() {
        let out = completed(
            Log.run(ctx(json!({"message": {"a": [1, 2]}, "level": "trace"})))
                .await,
        );
        assert_eq!(out["message"], json!(r#"{"a":[1,2]}"#));
        assert_eq!(out["level"], json!("info"));
    }
}
