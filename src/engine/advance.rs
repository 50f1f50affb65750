//! Deciding what happens next in an execution, given the state of its steps.
//!
//! A pure function over the rows the engine loaded under the execution's
//! lock: it marks steps ready (up to `max_parallel_steps`), skips what
//! conditions, branches and failures rule out, and says when the execution
//! is finished. It never runs anything and never touches the database, so
//! every rule of DAG.md "Semantics" is testable here in isolation.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::model::{ExecutionStatus, SkipReason, StepRow, StepStatus};
use crate::dag::Dag;
use crate::dag::template::{self, Budget};

/// The execution reached a terminal state.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub status: ExecutionStatus,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Advance {
    /// Steps made claimable at `now` by this call, in declaration order.
    pub ready_now: Vec<usize>,
    pub finish: Option<Finish>,
}

/// `{"params": ..., "steps": {"<id>": {"outputs": ...}}}` for templates.
/// Steps without outputs are absent, so they read as undefined.
pub fn template_context(params: &Map<String, Value>, rows: &[StepRow]) -> Value {
    let steps: Map<String, Value> = rows
        .iter()
        .filter_map(|r| {
            r.outputs
                .as_ref()
                .map(|o| (r.step_id.clone(), json!({ "outputs": o })))
        })
        .collect();
    json!({ "params": params, "steps": steps })
}

/// Move the execution forward as far as the current state allows.
/// `rows` are in declaration order (`rows[i]` is `dag.steps[i]`); a
/// condition may build at most `template_max_bytes` (`TEMPLATE_MAX_BYTES`).
pub fn advance(
    dag: &Dag,
    rows: &mut [StepRow],
    params: &Map<String, Value>,
    now: DateTime<Utc>,
    template_max_bytes: usize,
) -> Advance {
    let mut result = Advance::default();
    loop {
        if let Some(failed) = hard_failure(dag, rows) {
            if dag.settings.fail_fast {
                let error = failure_message(&rows[failed]);
                stop_everything(rows, now);
                result.finish = Some(Finish {
                    status: ExecutionStatus::Failed,
                    error: Some(error),
                });
                return result;
            }
        }
        if !settle_pending(dag, rows, params, now, template_max_bytes) {
            break;
        }
    }
    release_ready(dag, rows, now, &mut result.ready_now);
    if rows.iter().all(|r| r.status.is_terminal()) {
        result.finish = Some(match hard_failure(dag, rows) {
            Some(failed) => Finish {
                status: ExecutionStatus::Failed,
                error: Some(failure_message(&rows[failed])),
            },
            None => Finish {
                status: ExecutionStatus::Completed,
                error: None,
            },
        });
    }
    result
}

/// The first step whose failure fails the execution.
fn hard_failure(dag: &Dag, rows: &[StepRow]) -> Option<usize> {
    rows.iter().enumerate().position(|(i, r)| {
        matches!(r.status, StepStatus::Failed | StepStatus::Timeout)
            && !dag.steps[i].continues_on_failure()
    })
}

fn failure_message(row: &StepRow) -> String {
    match &row.error {
        Some(e) => format!(
            "step '{}' {}: {e}",
            row.step_id,
            row.status.as_str().to_lowercase()
        ),
        None => format!(
            "step '{}' {}",
            row.step_id,
            row.status.as_str().to_lowercase()
        ),
    }
}

/// Fail-fast: pending steps are skipped, waiting ones cancelled. Steps inside
/// a handler keep their lease; their result is discarded when it arrives.
fn stop_everything(rows: &mut [StepRow], now: DateTime<Utc>) {
    for row in rows.iter_mut() {
        if row.status == StepStatus::Pending {
            skip(row, SkipReason::UpstreamFailed, now);
        } else if row.is_waiting() {
            finish_row(row, StepStatus::Cancelled, now);
        }
    }
}

/// Decide every not-yet-ready pending step whose fate is known. Returns
/// whether anything changed (a change can unblock or rule out others).
fn settle_pending(
    dag: &Dag,
    rows: &mut [StepRow],
    params: &Map<String, Value>,
    now: DateTime<Utc>,
    template_max_bytes: usize,
) -> bool {
    let mut changed = false;
    let mut context: Option<Value> = None;
    for i in 0..rows.len() {
        if rows[i].status != StepStatus::Pending || rows[i].available_at.is_some() {
            continue;
        }
        if branch_skipped(rows, &rows[i].step_id) {
            skip(&mut rows[i], SkipReason::Branch, now);
            changed = true;
            continue;
        }
        let step = &dag.steps[i];
        let mut all_satisfied = true;
        let mut blocked = false;
        for dep in &step.depends_on {
            let Some(d) = dag.step_index(dep) else {
                continue;
            };
            match dependency_state(dag, rows, d) {
                DepState::Satisfied => {}
                DepState::Waiting => all_satisfied = false,
                DepState::Blocked => blocked = true,
            }
        }
        if blocked {
            skip(&mut rows[i], SkipReason::UpstreamFailed, now);
            changed = true;
        } else if all_satisfied {
            let Some(condition) = step.condition.as_deref() else {
                continue;
            };
            let ctx = context.get_or_insert_with(|| template_context(params, rows));
            match template::condition(condition, ctx, &Budget::new(template_max_bytes)) {
                Ok(true) => {}
                Ok(false) => {
                    skip(&mut rows[i], SkipReason::Condition, now);
                    changed = true;
                }
                Err(e) => {
                    rows[i].error = Some(format!("condition: {e}"));
                    finish_row(&mut rows[i], StepStatus::Failed, now);
                    changed = true;
                }
            }
            // Outputs changed only through skips, which add no outputs, so
            // the cached context stays valid.
        }
    }
    changed
}

enum DepState {
    Satisfied,
    Waiting,
    Blocked,
}

fn dependency_state(dag: &Dag, rows: &[StepRow], d: usize) -> DepState {
    let row = &rows[d];
    match row.status {
        StepStatus::Completed => DepState::Satisfied,
        StepStatus::Skipped
            if row.skip_reason.as_deref() == Some(SkipReason::UpstreamFailed.as_str()) =>
        {
            DepState::Blocked
        }
        StepStatus::Skipped => DepState::Satisfied,
        StepStatus::Failed | StepStatus::Timeout if dag.steps[d].continues_on_failure() => {
            DepState::Satisfied
        }
        StepStatus::Failed | StepStatus::Timeout | StepStatus::Cancelled => DepState::Blocked,
        StepStatus::Pending | StepStatus::Running => DepState::Waiting,
    }
}

/// A completed `conditional` step lists the branch targets it did not take.
fn branch_skipped(rows: &[StepRow], step_id: &str) -> bool {
    rows.iter().any(|r| {
        r.status == StepStatus::Completed
            && r.action == "conditional"
            && r.outputs
                .as_ref()
                .and_then(|o| o.get("skipped_targets"))
                .and_then(Value::as_array)
                .is_some_and(|targets| targets.iter().any(|t| t.as_str() == Some(step_id)))
    })
}

/// Make satisfied pending steps claimable while the execution has room.
fn release_ready(dag: &Dag, rows: &mut [StepRow], now: DateTime<Utc>, ready: &mut Vec<usize>) {
    let active = rows
        .iter()
        .filter(|r| {
            r.status == StepStatus::Running
                || (r.status == StepStatus::Pending && r.available_at.is_some())
        })
        .count();
    let mut room = (dag.settings.max_parallel_steps as usize).saturating_sub(active);
    for i in 0..rows.len() {
        if room == 0 {
            break;
        }
        if rows[i].status != StepStatus::Pending || rows[i].available_at.is_some() {
            continue;
        }
        let satisfied = dag.steps[i].depends_on.iter().all(|dep| {
            dag.step_index(dep)
                .is_none_or(|d| matches!(dependency_state(dag, rows, d), DepState::Satisfied))
        });
        if satisfied {
            rows[i].available_at = Some(now);
            rows[i].dirty = true;
            ready.push(i);
            room -= 1;
        }
    }
}

pub fn skip(row: &mut StepRow, reason: SkipReason, now: DateTime<Utc>) {
    row.skip_reason = Some(reason.as_str().to_owned());
    finish_row(row, StepStatus::Skipped, now);
}

/// Put a row in a terminal status and drop everything that keeps it alive.
pub fn finish_row(row: &mut StepRow, status: StepStatus, now: DateTime<Utc>) {
    row.status = status;
    row.available_at = None;
    row.lease_owner = None;
    row.lease_expires_at = None;
    row.awaiting_event = false;
    row.timeout_at = None;
    row.completed_at = Some(now);
    row.dirty = true;
}

/// The execution's `outputs`: the DAG's templates resolved, or every step's
/// outputs by id when it declares none. All of them together may build at
/// most `template_max_bytes`: they are kept together.
pub fn final_outputs(
    dag: &Dag,
    rows: &[StepRow],
    params: &Map<String, Value>,
    template_max_bytes: usize,
) -> Value {
    if dag.outputs.is_empty() {
        let map: Map<String, Value> = rows
            .iter()
            .filter_map(|r| r.outputs.as_ref().map(|o| (r.step_id.clone(), o.clone())))
            .collect();
        return Value::Object(map);
    }
    let ctx = template_context(params, rows);
    let budget = Budget::new(template_max_bytes);
    let mut out = Map::new();
    for (key, tmpl) in &dag.outputs {
        let value = template::resolve(tmpl, &ctx, &budget).unwrap_or(Value::Null);
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}
