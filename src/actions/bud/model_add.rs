//! `model_add`: add a model from Hugging Face, a URL or a disk path through
//! budapp's local-model workflow, and wait for it.
//!
//! `POST budapp /models/local-model-workflow?user_id=` starts a budapp
//! workflow; budapp hands the extraction to budmodel with our topic among
//! its `source_topic`s, so budmodel's `perform_model_extraction`
//! notifications come back here under budapp's workflow id. Its `results`
//! stage ends the wait (a FAILED stage fails it, `eta` is progress), as does
//! budapp's flat `workflow_completed` event for that workflow.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    BudCall, BudServices, Initiator, MODEL_OPERATIONS, MaxWait, budapp_wait_timed_out, call_failed,
    field, max_wait_spec, outputs, refused, workflow_id_of,
};
use crate::actions::bud_event::WaitRules;
use crate::actions::params::{self, OptText};
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, EventAction, OutputSpec, ParamSpec, StepContext, StepHandler,
    StepOutcome,
};
use crate::dag::template::is_template;

const SOURCES: &[&str] = &["hugging_face", "url", "disk"];
const DEFAULT_WAIT_SECONDS: u64 = 86_400;

/// budmodel's extraction publishes one notification per stage; `results`
/// carries the model's info and ends the wait. (The original also ended it
/// on `save_model` COMPLETED, which budmodel always follows with `results`;
/// ending on `results` lets budapp, which reads the same event, register the
/// model first.) budapp's flat `workflow_completed` names no operation and
/// ends the wait with its status.
const RULES: WaitRules = WaitRules {
    operations: &["perform_model_extraction", "model_extraction"],
    final_stages: &[],
    final_operations: &[],
    stage_progress: &[
        ("validation", 10.0),
        ("model_download", 40.0),
        ("model_extraction", 70.0),
        ("save_model", 90.0),
    ],
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "model_add",
    name: "Add Model",
    category: MODEL_OPERATIONS,
    description: "Add a new model to the model repository from HuggingFace, URL, or local disk \
                  (budapp's local-model workflow, extracted by budmodel), then wait for the \
                  extraction to finish.",
    params: vec![
        ParamSpec::new("model_source", "string", "Source of the model.")
            .default(json!("hugging_face"))
            .options(SOURCES),
        ParamSpec::new(
            "model_uri",
            "string",
            "Model location: HuggingFace ID (org/model), URL, or disk path.",
        )
        .required(),
        ParamSpec::new(
            "credential_id",
            "string",
            "Credential for accessing gated HuggingFace models (optional for public models).",
        ),
        ParamSpec::new(
            "model_name",
            "string",
            "Display name for the model (defaults to name from URI).",
        ),
        ParamSpec::new("description", "string", "Description of the model."),
        ParamSpec::new("author", "string", "Author or organization."),
        max_wait_spec(
            "Maximum time to wait for model extraction (seconds).",
            DEFAULT_WAIT_SECONDS,
            [300.0, 172_800.0],
        ),
    ],
    outputs: vec![
        OutputSpec::new(
            "success",
            "boolean",
            "Whether the model was added successfully.",
        ),
        OutputSpec::new(
            "model_id",
            "string",
            "The unique identifier of the added model (null when the completion event names none).",
        ),
        OutputSpec::new("model_name", "string", "The name of the added model."),
        OutputSpec::new(
            "workflow_id",
            "string",
            "budapp's workflow id, the correlation id of the events.",
        ),
        OutputSpec::new("status", "string", "running, completed or failed."),
        OutputSpec::new("message", "string", "Status message or error description."),
    ],
    waits_for_event: true,
    default_timeout_seconds: Some(DEFAULT_WAIT_SECONDS),
});

#[derive(Deserialize)]
struct Params {
    model_source: OptText,
    model_uri: OptText,
    model_name: OptText,
    description: OptText,
    author: OptText,
    credential_id: OptText,
    max_wait_seconds: Option<MaxWait>,
}

impl Params {
    fn source(&self) -> &str {
        self.model_source.0.as_deref().unwrap_or("hugging_face")
    }
}

pub(crate) struct ModelAdd {
    bud: BudServices,
}

impl ModelAdd {
    pub(crate) fn new(bud: BudServices) -> Self {
        Self { bud }
    }

    async fn start(&self, ctx: &StepContext) -> Attempt<StepOutcome> {
        let p: Params = params::read(&ctx.params)?;
        let source = p.source().to_owned();
        let uri = p.model_uri.or_default();
        let name = p
            .model_name
            .0
            .unwrap_or_else(|| uri.rsplit('/').next().unwrap_or_default().to_owned());
        let failed = |message: &str| {
            outputs([
                ("success", json!(false)),
                ("model_id", Value::Null),
                ("model_name", json!(name)),
                ("workflow_id", Value::Null),
                ("status", json!("failed")),
                ("message", json!(message)),
            ])
        };
        if let Some(problem) = uri_problem(&source, &uri) {
            return Err(refused(problem.clone(), failed(&problem)));
        }
        let mut body = json!({
            "workflow_total_steps": 1,
            "step_number": 1,
            "trigger_workflow": true,
            "provider_type": source,
            "name": name,
            "uri": uri,
            "description": p.description.or_default(),
            "author": p.author.or_default(),
            "callback_topic": self.bud.callback_topic(),
        });
        // budapp refuses a credential for url and disk sources (422).
        if let Some(credential) = p.credential_id.0 {
            if source == "hugging_face" {
                body["proprietary_credential_id"] = json!(credential);
            }
        }
        let timeout = p.max_wait_seconds.map(|w| w.0);
        let user = self.bud.initiator(ctx, Initiator::StepOrExecution);
        let call = BudCall::post("/models/local-model-workflow", body).taking(60);
        let answer = self
            .bud
            .budapp(ctx, user.as_deref(), call)
            .await
            .map_err(|e| call_failed("Failed to start model workflow", &e, failed))?;
        let Some(workflow_id) = workflow_id_of(&answer) else {
            let message = "No workflow_id returned from budapp";
            return Err(refused(message, failed(message)));
        };
        Ok(StepOutcome::AwaitEvent {
            external_id: workflow_id.clone(),
            outputs: outputs([
                ("success", json!(true)),
                ("model_id", Value::Null),
                ("model_name", json!(name)),
                ("workflow_id", json!(workflow_id)),
                ("status", json!("running")),
                (
                    "message",
                    json!(format!("Model workflow started: {workflow_id}")),
                ),
            ]),
            timeout,
        })
    }
}

/// The original's check of a URI against its source.
fn uri_problem(source: &str, uri: &str) -> Option<String> {
    let problem = match source {
        "hugging_face" if !uri.contains('/') => {
            "HuggingFace model_uri should be in format 'org/model-name'"
        }
        "url" if !(uri.starts_with("http://") || uri.starts_with("https://")) => {
            "URL model_uri should start with http:// or https://"
        }
        "disk" if !uri.starts_with('/') => {
            "Disk model_uri should be an absolute path starting with /"
        }
        _ => return None,
    };
    Some(problem.to_owned())
}

impl StepHandler for ModelAdd {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let Some(p) = params::submitted::<Params>(params).params else {
            return Vec::new();
        };
        // A templated source matches no source, so only the URI's own
        // template needs letting through.
        match &p.model_uri.0 {
            Some(uri) if !is_template(uri) => uri_problem(p.source(), uri).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async move { self.start(&ctx).await.unwrap_or_else(|failed| failed) })
    }

    fn on_event(&self, event: &Value, outputs_so_far: &Map<String, Value>) -> EventAction {
        match RULES.decide(event, "Model extraction failed") {
            EventAction::Complete(result) => {
                let name = result
                    .get("model_name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .or_else(|| {
                        outputs_so_far
                            .get("model_name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                EventAction::Complete(outputs([
                    ("success", json!(true)),
                    ("model_id", field(&result, "model_id")),
                    ("model_name", json!(name)),
                    ("status", json!("completed")),
                    (
                        "message",
                        json!(format!("Model '{name}' added successfully")),
                    ),
                ]))
            }
            other => other,
        }
    }

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        budapp_wait_timed_out(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::params;

    fn handler() -> ModelAdd {
        ModelAdd::new(super::super::tests::bud())
    }

    fn notification(stage: &str, status: &str, message: &str, result: Value) -> Value {
        let op = "perform_model_extraction";
        super::super::tests::notification(op, stage, status, message, result)
    }

    #[test]
    fn extraction_results_complete_with_the_original_outputs() {
        let so_far = params(json!({"model_name": "Llama-3.1-8B", "workflow_id": "w"}));
        let results = notification(
            "results",
            "COMPLETED",
            "ready",
            json!({"object": "model_extraction", "workflow_id": "budmodel-id",
                   "model_info": {"x": 1}, "local_path": "/m"}),
        );
        assert_eq!(
            handler().on_event(&results, &so_far),
            EventAction::Complete(params(json!({
                "success": true, "model_id": null, "model_name": "Llama-3.1-8B",
                "status": "completed", "message": "Model 'Llama-3.1-8B' added successfully"
            })))
        );
    }

    #[test]
    fn save_model_is_progress_and_a_failed_stage_fails() {
        let so_far = Map::new();
        let saved = notification("save_model", "COMPLETED", "Saved", Value::Null);
        let EventAction::Progress(report) = handler().on_event(&saved, &so_far) else {
            panic!("save_model is progress");
        };
        assert_eq!(report.progress, Some(90.0));
        let failed = notification("model_download", "FAILED", "Repo not found", Value::Null);
        assert_eq!(
            handler().on_event(&failed, &so_far),
            EventAction::Fail("Repo not found".into())
        );
    }

    #[test]
    fn budapps_workflow_completed_ends_the_wait_with_its_status() {
        let so_far = Map::new();
        let done = json!({"type": "workflow_completed", "workflow_id": "w", "status": "COMPLETED",
                          "result": {"model_id": "m1", "model_name": "qwen"}});
        let EventAction::Complete(out) = handler().on_event(&done, &so_far) else {
            panic!("completes");
        };
        assert_eq!(out["model_id"], "m1");
        assert_eq!(out["message"], "Model 'qwen' added successfully");
        let failed = json!({"type": "workflow_completed", "workflow_id": "w", "status": "FAILED",
                            "result": null, "reason": "Model already exists"});
        assert_eq!(
            handler().on_event(&failed, &so_far),
            EventAction::Fail("Model already exists".into())
        );
    }

    #[test]
    fn uris_are_checked_against_their_source() {
        let h = handler();
        assert!(
            h.validate(&params(json!({"model_uri": "org/m"})))
                .is_empty()
        );
        assert_eq!(
            h.validate(&params(json!({"model_uri": "m"}))),
            ["HuggingFace model_uri should be in format 'org/model-name'"]
        );
        assert_eq!(
            h.validate(&params(
                json!({"model_source": "url", "model_uri": "ftp://x"})
            )),
            ["URL model_uri should start with http:// or https://"]
        );
        assert_eq!(
            h.validate(&params(
                json!({"model_source": "disk", "model_uri": "rel/path"})
            )),
            ["Disk model_uri should be an absolute path starting with /"]
        );
        assert!(
            h.validate(&params(json!({"model_uri": "{{ params.uri }}"})))
                .is_empty()
        );
    }
}
