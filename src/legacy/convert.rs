//! From the original's rows to this service's: statuses, errors, DAGs and
//! steps. Pure functions, so every rule is testable without a database.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::actions::Registry;
use crate::dag::Dag;
use crate::dag::validate::{MAX_NAME_LEN, validate};
use crate::db::original as source;
use crate::engine::model::{ExecutionStatus, SkipReason, StepStatus};

/// A pipeline status of the original (member name, or the lowercase server
/// default) as this service stores it.
pub(super) fn pipeline_status(raw: &str) -> Option<&'static str> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "DRAFT" => Some("draft"),
        "ACTIVE" => Some("active"),
        "ARCHIVED" => Some("archived"),
        _ => None,
    }
}

/// A DAG as it will be stored: the validator's typed document when it
/// passes (what `POST /pipelines` stores), else the document as the
/// original kept it, with the validator's errors.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub stored: Value,
    /// `stored` as the engine will read it, when it can: the engine pairs
    /// step rows with these steps by position.
    pub dag: Option<Dag>,
    pub errors: Vec<String>,
    pub step_count: i32,
}

impl Prepared {
    pub(super) fn valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The first errors, for one line of output.
    pub(super) fn first_errors(&self) -> String {
        let mut text = self
            .errors
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if self.errors.len() > 3 {
            text.push_str(&format!(" (and {} more)", self.errors.len() - 3));
        }
        text
    }
}

pub(super) fn prepare(doc: &Value, registry: &Registry) -> Prepared {
    let report = validate(doc, registry);
    if let Some(dag) = report.dag.filter(|_| report.errors.is_empty()) {
        if let Ok(stored) = serde_json::to_value(&dag) {
            return Prepared {
                stored,
                step_count: dag.steps.len() as i32,
                dag: Some(dag),
                errors: Vec::new(),
            };
        }
    }
    let errors = if report.errors.is_empty() {
        vec!["dag: cannot be read".to_owned()]
    } else {
        report.errors
    };
    as_stored(doc, errors)
}

/// The document kept as it is (a draft).
pub(super) fn as_stored(doc: &Value, errors: Vec<String>) -> Prepared {
    Prepared {
        stored: doc.clone(),
        dag: serde_json::from_value(doc.clone()).ok(),
        errors,
        step_count: raw_steps(doc).len() as i32,
    }
}

fn raw_steps(doc: &Value) -> &[Value] {
    doc.get("steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The name to try first, then the renamed ones when it is taken:
/// `name (imported)`, `name (imported 2)`, … each within the name limit.
pub(super) fn names(name: &str) -> impl Iterator<Item = String> + '_ {
    (0..100u32).map(move |n| {
        if n == 0 {
            return name.to_owned();
        }
        let suffix = if n == 1 {
            " (imported)".to_owned()
        } else {
            format!(" (imported {n})")
        };
        let room = MAX_NAME_LEN.saturating_sub(suffix.chars().count());
        let base: String = name.chars().take(room).collect();
        format!("{}{suffix}", base.trim_end())
    })
}

/// An execution's snapshot (`pipeline_definition`): `{workflow_id,
/// workflow_name, dag, params}`.
pub(super) struct Snapshot<'a> {
    pub workflow_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub dag: Option<&'a Value>,
    pub params: Map<String, Value>,
}

impl<'a> Snapshot<'a> {
    pub(super) fn of(doc: &'a Value) -> Self {
        let text = |key: &str| {
            doc.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        Self {
            workflow_id: text("workflow_id"),
            name: text("workflow_name"),
            dag: doc.get("dag").filter(|d| d.is_object()),
            params: match doc.get("params") {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            },
        }
    }

    /// The owner of an ephemeral run: the `user_id` the original added to
    /// its params.
    pub(super) fn user_id(&self) -> Option<&str> {
        self.params
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_NAME_LEN)
    }

    /// The name of the definition kept for a run without a stored pipeline.
    pub(super) fn definition_name(&self) -> String {
        let name = self.name.unwrap_or("Ephemeral Pipeline");
        name.chars().take(MAX_NAME_LEN).collect()
    }
}

/// What becomes of an execution, by its status in the original.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fate {
    Copy {
        status: ExecutionStatus,
        /// `INTERRUPTED` in the original (copied as FAILED).
        interrupted: bool,
    },
    Skip(String),
}

pub(super) fn fate(status: &str) -> Fate {
    let copy = |status, interrupted| Fate::Copy {
        status,
        interrupted,
    };
    match status.trim().to_ascii_uppercase().as_str() {
        "COMPLETED" => copy(ExecutionStatus::Completed, false),
        "FAILED" => copy(ExecutionStatus::Failed, false),
        "INTERRUPTED" => copy(ExecutionStatus::Failed, true),
        s @ ("PENDING" | "RUNNING") => Fate::Skip(format!(
            "{s} in the original: only finished executions are copied \
             (the original cannot resume it either)"
        )),
        other => Fate::Skip(format!("unknown status '{other}' in the original")),
    }
}

/// The original's `error_info` as one sentence: `{"error": "…"}`,
/// `{"message": "…"}`, `{"failed_steps": n, "total_steps": m}`, or its JSON.
pub(super) fn error_text(info: Option<&Value>) -> Option<String> {
    let info = info?;
    let text = match info {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            let field = |key: &str| match map.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Object(inner)) => inner
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            if let Some(text) = field("error").or_else(|| field("message")) {
                text
            } else if let Some(failed) = map.get("failed_steps").and_then(Value::as_i64) {
                match map.get("total_steps").and_then(Value::as_i64) {
                    Some(total) => format!("{failed} of {total} steps failed"),
                    None => format!("{failed} steps failed"),
                }
            } else {
                info.to_string()
            }
        }
        other => other.to_string(),
    };
    Some(text)
}

/// The execution's `error`: the original's, or the first failed step's
/// (as the engine words it); an interruption says so.
pub(super) fn execution_error(
    status: ExecutionStatus,
    interrupted: bool,
    info: Option<&Value>,
    steps: &[NewStep],
) -> Option<String> {
    let own = error_text(info).or_else(|| {
        if status != ExecutionStatus::Failed {
            return None;
        }
        steps
            .iter()
            .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::Timeout))
            .map(|s| {
                let how = s.status.as_str().to_lowercase();
                match &s.error {
                    Some(e) => format!("step '{}' {how}: {e}", s.step_id),
                    None => format!("step '{}' {how}", s.step_id),
                }
            })
    });
    if interrupted {
        let head = "interrupted in the original budpipeline (INTERRUPTED)";
        return Some(match own {
            Some(e) => format!("{head}: {e}"),
            None => head.to_owned(),
        });
    }
    match (status, own) {
        (ExecutionStatus::Failed, None) => Some("failed in the original budpipeline".to_owned()),
        (_, own) => own,
    }
}

pub(super) use crate::db::legacy::NewStep;

/// The facts about the execution the step rows depend on.
pub(super) struct Ending {
    /// FAILED (or INTERRUPTED): steps that never ran were skipped because of
    /// it, and a retry runs them.
    pub failed: bool,
    pub at: DateTime<Utc>,
}

/// The step rows of a finished execution. When the DAG it ran can be read
/// by the engine, the rows follow its steps one to one, in order (the
/// engine pairs `rows[i]` with `dag.steps[i]`, e.g. on a retry): a step the
/// original kept no row for gets one (skipped), and a row for a step the
/// DAG does not have refuses the execution. Otherwise rows follow
/// `sequence_number`.
pub(super) fn steps(
    dag: Option<&Dag>,
    doc: &Value,
    legacy: &[source::Step],
    ending: &Ending,
    registry: &Registry,
) -> Result<Vec<NewStep>, String> {
    let Some(dag) = dag else {
        let mut ordered: Vec<&source::Step> = legacy.iter().collect();
        ordered.sort_by_key(|s| s.sequence_number);
        let actions: HashMap<&str, &str> = raw_steps(doc)
            .iter()
            .filter_map(|s| Some((s.get("id")?.as_str()?, s.get("action")?.as_str()?)))
            .collect();
        return ordered
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let action = s
                    .handler_type
                    .as_deref()
                    .filter(|a| !a.is_empty())
                    .or_else(|| actions.get(s.step_id.as_str()).copied())
                    .unwrap_or("unknown");
                from_row(s, i, action, None, ending)
            })
            .collect();
    };
    let mut seen = HashSet::new();
    if let Some(twice) = dag.steps.iter().find(|s| !seen.insert(s.id.as_str())) {
        return Err(format!("its DAG names step '{}' twice", twice.id));
    }
    let mut rows: HashMap<&str, &source::Step> =
        legacy.iter().map(|s| (s.step_id.as_str(), s)).collect();
    let mut out = Vec::with_capacity(dag.steps.len());
    for (i, step) in dag.steps.iter().enumerate() {
        let timeout = step
            .timeout_seconds
            .or_else(|| {
                registry
                    .get(&step.action)
                    .and_then(|h| h.spec().default_timeout_seconds)
            })
            .map(|t| t as f64);
        out.push(match rows.remove(step.id.as_str()) {
            Some(row) => from_row(row, i, &step.action, timeout, ending)?,
            None => NewStep {
                step_id: step.id.clone(),
                position: i as i32,
                name: if step.name.is_empty() {
                    step.id.clone()
                } else {
                    step.name.clone()
                },
                action: step.action.clone(),
                status: StepStatus::Skipped,
                attempt: 0,
                failures: 0,
                external_workflow_id: None,
                timeout_at: None,
                timeout_seconds: timeout,
                outputs: None,
                error: Some("the original budpipeline kept no record of this step".into()),
                skip_reason: ending.failed.then_some(SkipReason::UpstreamFailed.as_str()),
                progress: None,
                started_at: None,
                completed_at: Some(ending.at),
            },
        });
    }
    if let Some(extra) = rows.keys().min() {
        return Err(format!(
            "the original recorded step '{extra}', which its DAG does not have"
        ));
    }
    Ok(out)
}

/// One of the original's step rows, its status made final: a step still
/// PENDING in a finished execution never ran (skipped), one still RUNNING
/// was cut off (cancelled), as the engine leaves them when an execution
/// fails.
fn from_row(
    s: &source::Step,
    position: usize,
    action: &str,
    timeout_seconds: Option<f64>,
    ending: &Ending,
) -> Result<NewStep, String> {
    let upstream = ending.failed.then_some(SkipReason::UpstreamFailed.as_str());
    let mut error = s.error_message.clone().filter(|e| !e.is_empty());
    let (status, skip_reason) = match s.status.trim().to_ascii_uppercase().as_str() {
        "COMPLETED" => (StepStatus::Completed, None),
        "FAILED" | "RETRYING" => (StepStatus::Failed, None),
        "TIMEOUT" => (StepStatus::Timeout, None),
        // The original marks what an aborted run never reached this way.
        "SKIPPED" if error.as_deref() == Some("Workflow aborted") => {
            (StepStatus::Skipped, upstream)
        }
        "SKIPPED" => (StepStatus::Skipped, None),
        "PENDING" => {
            if !ending.failed && error.is_none() {
                error = Some("never started in the original budpipeline".into());
            }
            (StepStatus::Skipped, upstream)
        }
        "RUNNING" => {
            if error.is_none() {
                error =
                    Some("still running when the original budpipeline ended the execution".into());
            }
            (StepStatus::Cancelled, None)
        }
        other => {
            return Err(format!(
                "step '{}' has a status this service does not know: '{other}'",
                s.step_id
            ));
        }
    };
    let ran = s.start_time.is_some()
        || matches!(
            status,
            StepStatus::Completed | StepStatus::Failed | StepStatus::Timeout
        );
    let failed = matches!(status, StepStatus::Failed | StepStatus::Timeout);
    Ok(NewStep {
        step_id: s.step_id.clone(),
        position: position as i32,
        name: if s.step_name.trim().is_empty() {
            s.step_id.clone()
        } else {
            s.step_name.clone()
        },
        action: action.to_owned(),
        status,
        attempt: if ran { 1 + s.retry_count.max(0) } else { 0 },
        failures: i32::from(failed),
        external_workflow_id: s.external_workflow_id.clone(),
        timeout_at: s.timeout_at,
        timeout_seconds,
        outputs: s.outputs.clone().filter(|o| !o.is_null()),
        error,
        skip_reason,
        progress: (s.progress > 0.0 && status != StepStatus::Completed).then_some(s.progress),
        started_at: s.start_time,
        completed_at: s.end_time.or(Some(ending.at)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn row(id: &str, seq: i32, status: &str) -> source::Step {
        source::Step {
            execution_id: Uuid::nil(),
            step_id: id.into(),
            step_name: format!("Step {id}"),
            status: status.into(),
            start_time: None,
            end_time: None,
            progress: 0.0,
            outputs: None,
            error_message: None,
            retry_count: 0,
            sequence_number: seq,
            external_workflow_id: None,
            handler_type: None,
            timeout_at: None,
        }
    }

    fn ending(failed: bool) -> Ending {
        Ending {
            failed,
            at: Utc::now(),
        }
    }

    fn doc() -> Value {
        json!({"name": "p", "steps": [
            {"id": "a", "name": "A", "action": "log", "params": {"message": "hi"}},
            {"id": "b", "action": "log", "depends_on": ["a"]},
            {"id": "c", "action": "log", "depends_on": ["b"]}
        ]})
    }

    #[test]
    fn pipeline_statuses_are_read_by_member_name_or_value() {
        assert_eq!(pipeline_status("ACTIVE"), Some("active"));
        assert_eq!(pipeline_status("draft"), Some("draft"));
        assert_eq!(pipeline_status("ARCHIVED"), Some("archived"));
        assert_eq!(pipeline_status("DELETED"), None);
    }

    #[test]
    fn only_finished_executions_are_copied() {
        assert_eq!(
            fate("COMPLETED"),
            Fate::Copy {
                status: ExecutionStatus::Completed,
                interrupted: false
            }
        );
        assert_eq!(
            fate("INTERRUPTED"),
            Fate::Copy {
                status: ExecutionStatus::Failed,
                interrupted: true
            }
        );
        assert!(
            matches!(fate("RUNNING"), Fate::Skip(r) if r.starts_with("RUNNING in the original"))
        );
        assert!(matches!(fate("PENDING"), Fate::Skip(_)));
        assert!(matches!(fate("WEIRD"), Fate::Skip(r) if r.contains("unknown status 'WEIRD'")));
    }

    #[test]
    fn error_info_shapes_become_one_sentence() {
        assert_eq!(error_text(None), None);
        assert_eq!(error_text(Some(&json!({"error": "boom"}))).unwrap(), "boom");
        assert_eq!(
            error_text(Some(&json!({"message": "bad input"}))).unwrap(),
            "bad input"
        );
        assert_eq!(
            error_text(Some(&json!({"failed_steps": 1, "total_steps": 3}))).unwrap(),
            "1 of 3 steps failed"
        );
        assert_eq!(
            error_text(Some(&json!({"odd": true}))).unwrap(),
            r#"{"odd":true}"#
        );
    }

    #[test]
    fn interrupted_executions_say_so() {
        let e = execution_error(
            ExecutionStatus::Failed,
            true,
            Some(&json!({"error": "pod evicted"})),
            &[],
        );
        assert_eq!(
            e.unwrap(),
            "interrupted in the original budpipeline (INTERRUPTED): pod evicted"
        );
        assert!(execution_error(ExecutionStatus::Completed, false, None, &[]).is_none());
    }

    #[test]
    fn renamed_names_stay_within_the_limit() {
        let mut n = names("Deploy");
        assert_eq!(n.next().unwrap(), "Deploy");
        assert_eq!(n.next().unwrap(), "Deploy (imported)");
        assert_eq!(n.next().unwrap(), "Deploy (imported 2)");
        let long = "x".repeat(MAX_NAME_LEN);
        for name in names(&long).take(5) {
            assert!(name.chars().count() <= MAX_NAME_LEN, "{name}");
        }
    }

    #[test]
    fn rows_follow_the_dag_and_missing_ones_are_filled_in() {
        let registry = Registry::with_builtins();
        let prepared = prepare(&doc(), &registry);
        assert!(prepared.valid(), "{:?}", prepared.errors);
        let mut a = row("a", 1, "COMPLETED");
        a.start_time = Some(Utc::now());
        a.end_time = a.start_time;
        a.outputs = Some(json!({"logged": true}));
        let mut b = row("b", 2, "FAILED");
        b.start_time = Some(Utc::now());
        b.error_message = Some("boom".into());
        // The original kept no row for `c`.
        let rows = steps(
            prepared.dag.as_ref(),
            &doc(),
            &[b, a],
            &ending(true),
            &registry,
        )
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.step_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(rows[0].status, StepStatus::Completed);
        assert_eq!(rows[0].attempt, 1);
        assert_eq!(rows[0].name, "Step a");
        assert_eq!(rows[1].status, StepStatus::Failed);
        assert_eq!(rows[1].failures, 1);
        assert_eq!(rows[2].status, StepStatus::Skipped);
        assert_eq!(rows[2].attempt, 0);
        assert_eq!(rows[2].skip_reason, Some("upstream_failed"));
        assert_eq!(
            execution_error(ExecutionStatus::Failed, false, None, &rows).unwrap(),
            "step 'b' failed: boom"
        );
    }

    #[test]
    fn unfinished_steps_of_finished_executions_are_made_final() {
        let registry = Registry::with_builtins();
        let prepared = prepare(&doc(), &registry);
        let mut aborted = row("b", 2, "SKIPPED");
        aborted.error_message = Some("Workflow aborted".into());
        let rows = steps(
            prepared.dag.as_ref(),
            &doc(),
            &[row("a", 1, "RUNNING"), aborted, row("c", 3, "PENDING")],
            &ending(true),
            &registry,
        )
        .unwrap();
        assert_eq!(rows[0].status, StepStatus::Cancelled);
        assert!(rows[0].completed_at.is_some());
        assert_eq!(rows[1].skip_reason, Some("upstream_failed"));
        assert_eq!(rows[2].status, StepStatus::Skipped);
        assert_eq!(rows[2].skip_reason, Some("upstream_failed"));
    }

    #[test]
    fn a_row_for_a_step_the_dag_lacks_refuses_the_execution() {
        let registry = Registry::with_builtins();
        let prepared = prepare(&doc(), &registry);
        let err = steps(
            prepared.dag.as_ref(),
            &doc(),
            &[row("a", 1, "COMPLETED"), row("zz", 4, "COMPLETED")],
            &ending(false),
            &registry,
        )
        .unwrap_err();
        assert!(err.contains("'zz'"), "{err}");
    }

    #[test]
    fn without_a_readable_dag_rows_follow_the_sequence() {
        let registry = Registry::with_builtins();
        let raw =
            json!({"steps": [{"id": "x", "action": "model_add"}, {"id": "y", "action": "log"}]});
        let mut y = row("y", 2, "COMPLETED");
        y.handler_type = Some("log".into());
        let rows = steps(
            None,
            &raw,
            &[y, row("x", 1, "COMPLETED")],
            &ending(false),
            &registry,
        )
        .unwrap();
        assert_eq!(rows[0].step_id, "x");
        assert_eq!(rows[0].action, "model_add");
        assert_eq!(rows[0].position, 0);
        assert_eq!(rows[1].action, "log");
        assert_eq!(rows[1].position, 1);
    }

    #[test]
    fn invalid_dags_are_kept_as_the_original_stored_them() {
        let registry = Registry::with_builtins();
        let raw = json!({"name": "p", "steps": [{"id": "x", "action": "no_such_action"}]});
        let prepared = prepare(&raw, &registry);
        assert!(!prepared.valid());
        assert_eq!(prepared.stored, raw);
        assert_eq!(prepared.step_count, 1);
        assert!(prepared.first_errors().contains("no_such_action"));
    }
}
