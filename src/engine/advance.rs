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
pub(crate) struct Advance {
    /// Steps made claimable at `now` by this call, in declaration order.
    pub ready_now: Vec<usize>,
    pub finish: Option<Finish>,
}

/// `{"params": ..., "steps": {"<id>": {"outputs": ...}}}` for templates.
/// Steps without outputs are absent, so they read as undefined.
pub(crate) fn rows_context(params: &Map<String, Value>, rows: &[StepRow]) -> Value {
    let steps: Map<String, Value> = rows
        .iter()
        .filter_map(|r| {
            r.outputs
                .as_ref()
                .map(|o| (r.step_id.clone(), step_context(o.clone())))
        })
        .collect();
    template_context(params, steps)
}

/// The template context (DAG.md "Templating"): `params`, and `steps.<id>`
/// for every step that has outputs.
pub(crate) fn template_context(params: &Map<String, Value>, steps: Map<String, Value>) -> Value {
    json!({ "params": params, "steps": steps })
}

/// What `steps.<id>` holds for a step with `outputs`.
pub(crate) fn step_context(outputs: Value) -> Value {
    json!({ "outputs": outputs })
}

/// Move the execution forward as far as the current state allows.
/// `rows` are in declaration order (`rows[i]` is `dag.steps[i]`); a
/// condition may build at most `template_max_bytes` (`TEMPLATE_MAX_BYTES`).
pub(crate) fn advance(
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
            row.skip(SkipReason::UpstreamFailed, now);
        } else if row.is_waiting() {
            row.finish(StepStatus::Cancelled, now);
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
    // Skips complete no `conditional` step, so this holds for the whole pass.
    let untaken = untaken_branches(rows);
    for i in 0..rows.len() {
        if rows[i].status != StepStatus::Pending || rows[i].available_at.is_some() {
            continue;
        }
        if !untaken.is_empty() && untaken.contains(rows[i].step_id.as_str()) {
            rows[i].skip(SkipReason::Branch, now);
            changed = true;
            continue;
        }
        let step = &dag.steps[i];
        let mut all_satisfied = true;
        let mut blocked = false;
        for &d in dag.dependencies(i) {
            match dependency_state(dag, rows, d) {
                DepState::Satisfied => {}
                DepState::Waiting => all_satisfied = false,
                DepState::Blocked => blocked = true,
            }
        }
        if blocked {
            rows[i].skip(SkipReason::UpstreamFailed, now);
            changed = true;
        } else if all_satisfied {
            let Some(condition) = step.condition.as_deref() else {
                continue;
            };
            let ctx = context.get_or_insert_with(|| rows_context(params, rows));
            match template::condition(condition, ctx, &Budget::new(template_max_bytes)) {
                Ok(true) => {}
                Ok(false) => {
                    rows[i].skip(SkipReason::Condition, now);
                    changed = true;
                }
                Err(e) => {
                    rows[i].error = Some(format!("condition: {e}"));
                    rows[i].finish(StepStatus::Failed, now);
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

/// The branch targets completed `conditional` steps did not take (they
/// list them as `skipped_targets`). Gathered once per pass, not once per
/// pending step: a pass over a big DAG stays linear.
fn untaken_branches(rows: &[StepRow]) -> std::collections::HashSet<String> {
    rows.iter()
        .filter(|r| r.status == StepStatus::Completed && r.action == "conditional")
        .filter_map(|r| r.outputs.as_ref()?.get("skipped_targets")?.as_array())
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
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
        let satisfied = dag
            .dependencies(i)
            .iter()
            .all(|&d| matches!(dependency_state(dag, rows, d), DepState::Satisfied));
        if satisfied {
            rows[i].make_ready(now);
            ready.push(i);
            room -= 1;
        }
    }
}

/// The execution's `outputs`: the DAG's templates resolved, or every step's
/// outputs by id when it declares none. All of them together may build at
/// most `template_max_bytes`: they are kept together.
pub(crate) fn final_outputs(
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
    let ctx = rows_context(params, rows);
    let budget = Budget::new(template_max_bytes);
    let mut out = Map::new();
    for (key, tmpl) in &dag.outputs {
        let value = template::resolve(tmpl, &ctx, &budget).unwrap_or(Value::Null);
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    //! One test per rule of DAG.md "Semantics" the planner decides, on rows
    //! built by hand in the states the engine would load them in.

    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;
    use crate::actions::Registry;
    use crate::dag::validate::validate;

    const MAX_BYTES: usize = 1 << 20;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    /// A validated DAG from a compact document: `steps` plus optional
    /// top-level fields (`settings`, `parameters`, `outputs`) in `extra`.
    fn dag_with(steps: Value, extra: Value) -> Dag {
        let mut doc = json!({"name": "planner", "steps": steps});
        if let Value::Object(fields) = extra {
            doc.as_object_mut().unwrap().extend(fields);
        }
        let validation = validate(&doc, &Registry::with_builtins());
        assert!(validation.errors.is_empty(), "{:?}", validation.errors);
        validation.dag.expect("a valid DAG")
    }

    fn dag(steps: Value) -> Dag {
        dag_with(steps, json!({}))
    }

    /// `{"id", "action": "log", "depends_on"}` for the common case.
    fn log(id: &str, deps: &[&str]) -> Value {
        json!({"id": id, "action": "log", "params": {"message": id}, "depends_on": deps})
    }

    /// Fresh rows for `dag`: every step PENDING, never released.
    fn rows(dag: &Dag) -> Vec<StepRow> {
        dag.steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRow::fresh(&s.id, i, &s.name, &s.action))
            .collect()
    }

    fn row<'a>(rows: &'a mut [StepRow], id: &str) -> &'a mut StepRow {
        rows.iter_mut().find(|r| r.step_id == id).expect(id)
    }

    /// A step inside its handler, leased.
    fn running(rows: &mut [StepRow], id: &str) {
        let r = row(rows, id);
        r.status = StepStatus::Running;
        r.attempt = 1;
        r.available_at = None;
        r.lease_owner = Some(Uuid::nil());
        r.lease_expires_at = Some(now() + Duration::seconds(30));
        r.started_at = Some(now() - Duration::seconds(5));
    }

    /// A step RUNNING while it waits for its event (no lease).
    fn waiting(rows: &mut [StepRow], id: &str) {
        running(rows, id);
        let r = row(rows, id);
        r.lease_owner = None;
        r.lease_expires_at = None;
        r.awaiting_event = true;
        r.timeout_at = Some(now() + Duration::minutes(30));
    }

    /// A step ended in `status`, with `outputs` when it completed.
    fn ended(rows: &mut [StepRow], id: &str, status: StepStatus) {
        let r = row(rows, id);
        r.status = status;
        r.attempt = 1;
        r.available_at = None;
        r.started_at = Some(now() - Duration::seconds(5));
        r.completed_at = Some(now() - Duration::seconds(1));
        if status == StepStatus::Completed && r.outputs.is_none() {
            r.outputs = Some(json!({"logged": true, "message": id}));
        }
    }

    fn skipped(rows: &mut [StepRow], id: &str, reason: SkipReason) {
        ended(rows, id, StepStatus::Skipped);
        row(rows, id).skip_reason = Some(reason.as_str().to_owned());
    }

    fn run(dag: &Dag, rows: &mut [StepRow]) -> Advance {
        run_with(dag, rows, &Map::new())
    }

    fn run_with(dag: &Dag, rows: &mut [StepRow], params: &Map<String, Value>) -> Advance {
        advance(dag, rows, params, now(), MAX_BYTES)
    }

    fn statuses(rows: &[StepRow]) -> Vec<(&str, StepStatus, Option<&str>)> {
        rows.iter()
            .map(|r| (r.step_id.as_str(), r.status, r.skip_reason.as_deref()))
            .collect()
    }

    fn failed(error: &str) -> Option<Finish> {
        Some(Finish {
            status: ExecutionStatus::Failed,
            error: Some(error.to_owned()),
        })
    }

    fn completed() -> Option<Finish> {
        Some(Finish {
            status: ExecutionStatus::Completed,
            error: None,
        })
    }

    #[test]
    fn root_steps_are_ready_at_once() {
        let dag = dag(json!([log("a", &[]), log("b", &[]), log("c", &["a", "b"])]));
        let mut rows = rows(&dag);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [0, 1]);
        assert_eq!(plan.finish, None);
        for r in &rows[..2] {
            assert_eq!(
                (r.status, r.available_at, r.dirty),
                (StepStatus::Pending, Some(now()), true)
            );
        }
        assert_eq!((rows[2].available_at, rows[2].dirty), (None, false));
        // Already released: a second call releases nothing again.
        assert!(run(&dag, &mut rows).ready_now.is_empty());
    }

    #[test]
    fn a_dependent_waits_for_all_its_dependencies() {
        let dag = dag(json!([log("a", &[]), log("b", &[]), log("c", &["a", "b"])]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        running(&mut rows, "b");
        let plan = run(&dag, &mut rows);
        assert!(plan.ready_now.is_empty(), "{:?}", plan.ready_now);
        assert_eq!(
            (rows[2].status, rows[2].available_at),
            (StepStatus::Pending, None)
        );
        assert_eq!(plan.finish, None);

        ended(&mut rows, "b", StepStatus::Completed);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [2]);
        assert_eq!(rows[2].available_at, Some(now()));
    }

    #[test]
    fn completed_and_skipped_dependencies_are_satisfied() {
        let dag = dag(json!([
            log("a", &[]),
            log("b", &[]),
            log("c", &[]),
            log("d", &["a", "b", "c"])
        ]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        skipped(&mut rows, "b", SkipReason::Condition);
        skipped(&mut rows, "c", SkipReason::Branch);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [3]);
        assert_eq!(plan.finish, None);
    }

    #[test]
    fn failed_or_timed_out_steps_that_continue_satisfy_their_dependents() {
        let dag = dag(json!([
            {"id": "a", "action": "log", "on_failure": "continue"},
            {"id": "b", "action": "log", "on_failure": "continue"},
            log("c", &["a", "b"])
        ]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Failed);
        row(&mut rows, "a").error = Some("boom".into());
        ended(&mut rows, "b", StepStatus::Timeout);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [2]);
        assert_eq!(plan.finish, None, "a failure that continues fails nothing");
        assert_eq!(rows[2].status, StepStatus::Pending);

        // ...and the execution still finishes COMPLETED.
        ended(&mut rows, "c", StepStatus::Completed);
        assert_eq!(run(&dag, &mut rows).finish, completed());
    }

    #[test]
    fn with_fail_fast_a_failure_stops_everything_at_once() {
        let dag = dag(json!([
            log("a", &[]),
            log("b", &["a"]),
            log("c", &[]),
            log("d", &[]),
            {"id": "w", "action": "wait_until", "params": {"duration_seconds": 60}},
            log("e", &["d"])
        ]));
        assert!(dag.settings.fail_fast, "the default");
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Failed);
        row(&mut rows, "a").error = Some("boom".into());
        // `d` was released but not claimed yet; `w` waits for its event.
        row(&mut rows, "d").available_at = Some(now() - Duration::seconds(1));
        waiting(&mut rows, "w");
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.finish, failed("step 'a' failed: boom"));
        assert!(plan.ready_now.is_empty(), "{:?}", plan.ready_now);
        let upstream = Some("upstream_failed");
        assert_eq!(
            statuses(&rows),
            [
                ("a", StepStatus::Failed, None),
                ("b", StepStatus::Skipped, upstream),
                ("c", StepStatus::Skipped, upstream),
                ("d", StepStatus::Skipped, upstream),
                ("w", StepStatus::Cancelled, None),
                ("e", StepStatus::Skipped, upstream),
            ]
        );
        let w = &rows[4];
        assert!(!w.awaiting_event && w.timeout_at.is_none());
        assert_eq!((w.completed_at, w.dirty), (Some(now()), true));
        assert_eq!(rows[3].available_at, None, "no longer claimable");
    }

    #[test]
    fn a_timeout_without_continue_fails_the_execution() {
        let dag = dag(json!([log("a", &[]), log("b", &["a"])]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Timeout);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.finish, failed("step 'a' timeout"));
        assert_eq!(
            statuses(&rows)[1],
            ("b", StepStatus::Skipped, Some("upstream_failed"))
        );
    }

    #[test]
    fn without_fail_fast_independent_branches_finish_first() {
        let dag = dag_with(
            json!([
                log("a", &[]),
                log("b", &["a"]),
                log("c", &["b"]),
                log("x", &[]),
                log("y", &["x"])
            ]),
            json!({"settings": {"fail_fast": false}}),
        );
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Failed);
        ended(&mut rows, "x", StepStatus::Completed);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.finish, None, "y has yet to run");
        assert_eq!(plan.ready_now, [4]);
        let upstream = Some("upstream_failed");
        assert_eq!(
            statuses(&rows),
            [
                ("a", StepStatus::Failed, None),
                ("b", StepStatus::Skipped, upstream),
                ("c", StepStatus::Skipped, upstream),
                ("x", StepStatus::Completed, None),
                ("y", StepStatus::Pending, None),
            ]
        );

        running(&mut rows, "y");
        assert_eq!(run(&dag, &mut rows).finish, None);
        ended(&mut rows, "y", StepStatus::Completed);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.finish, failed("step 'a' failed"));
    }

    #[test]
    fn a_false_condition_skips_the_step_and_its_dependents_still_run() {
        let dag = dag_with(
            json!([
                log("a", &[]),
                {"id": "b", "action": "log", "depends_on": ["a"],
                 "condition": "{{ params.go }}"},
                log("c", &["b"]),
                {"id": "d", "action": "log", "depends_on": ["b"],
                 "condition": "{{ steps.b.outputs.logged }}"}
            ]),
            json!({"parameters": [{"name": "go", "type": "boolean", "default": false}]}),
        );
        let params: Map<String, Value> = json!({"go": false}).as_object().unwrap().clone();
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        let plan = run_with(&dag, &mut rows, &params);
        assert_eq!(plan.ready_now, [2], "c runs after the skipped b");
        assert_eq!(plan.finish, None);
        assert_eq!(
            statuses(&rows)[1..],
            [
                ("b", StepStatus::Skipped, Some("condition")),
                ("c", StepStatus::Pending, None),
                // b's outputs are undefined, and undefined is false.
                ("d", StepStatus::Skipped, Some("condition")),
            ]
        );
        assert_eq!(
            (rows[1].completed_at, rows[1].outputs.as_ref()),
            (Some(now()), None)
        );

        // The same DAG with the condition true runs b.
        let params: Map<String, Value> = json!({"go": true}).as_object().unwrap().clone();
        let mut rows = self::rows(&dag); // the helper, not the local
        ended(&mut rows, "a", StepStatus::Completed);
        let plan = run_with(&dag, &mut rows, &params);
        assert_eq!(plan.ready_now, [1]);
        assert_eq!(rows[1].status, StepStatus::Pending);
    }

    #[test]
    fn unmatched_conditional_branch_targets_are_skipped_with_reason_branch() {
        let dag = dag(json!([
            {"id": "pick", "action": "conditional", "params": {"branches": [
                {"id": "big", "condition": "true", "target_step": "large"},
                {"id": "small", "condition": "true", "target_step": "tiny"}
            ]}},
            log("large", &["pick"]),
            log("tiny", &["pick"]),
            log("after", &["tiny"])
        ]));
        let mut rows = rows(&dag);
        ended(&mut rows, "pick", StepStatus::Completed);
        row(&mut rows, "pick").outputs = Some(json!({
            "matched_branch": "big", "target_step": "large", "skipped_targets": ["tiny"]
        }));
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [1, 3]);
        assert_eq!(
            statuses(&rows)[1..],
            [
                ("large", StepStatus::Pending, None),
                ("tiny", StepStatus::Skipped, Some("branch")),
                ("after", StepStatus::Pending, None),
            ]
        );
        assert!(rows[2].dirty, "written back: the skip is durable");
    }

    #[test]
    fn max_parallel_steps_bounds_ready_and_running_steps() {
        let dag = dag_with(
            json!([log("a", &[]), log("b", &[]), log("c", &[]), log("d", &[])]),
            json!({"settings": {"max_parallel_steps": 2}}),
        );
        let mut rows = rows(&dag);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [0, 1]);
        assert_eq!((rows[2].available_at, rows[3].available_at), (None, None));

        // a is claimed, b is ready but not claimed: both hold a place.
        running(&mut rows, "a");
        assert!(run(&dag, &mut rows).ready_now.is_empty());

        ended(&mut rows, "a", StepStatus::Completed);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [2]);
        assert_eq!(rows[3].available_at, None);
    }

    #[test]
    fn a_waiting_step_holds_its_place_among_max_parallel_steps() {
        let dag = dag_with(
            json!([
                {"id": "w", "action": "wait_until", "params": {"duration_seconds": 60}},
                log("b", &[])
            ]),
            json!({"settings": {"max_parallel_steps": 1}}),
        );
        let mut rows = rows(&dag);
        waiting(&mut rows, "w");
        let plan = run(&dag, &mut rows);
        assert!(plan.ready_now.is_empty(), "{:?}", plan.ready_now);
        assert_eq!((plan.finish, rows[1].available_at), (None, None));

        ended(&mut rows, "w", StepStatus::Completed);
        assert_eq!(run(&dag, &mut rows).ready_now, [1]);
    }

    #[test]
    fn a_step_in_retry_backoff_is_not_released_again() {
        let dag = dag(json!([
            {"id": "a", "action": "log", "on_failure": "retry"},
            log("b", &["a"]),
            log("c", &[])
        ]));
        let due = now() + Duration::seconds(30);
        let mut rows = rows(&dag);
        {
            let a = row(&mut rows, "a");
            a.attempt = 1;
            a.failures = 1;
            a.error = Some("503".into());
            a.available_at = Some(due);
        }
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.ready_now, [2]);
        assert_eq!(plan.finish, None);
        assert_eq!(
            (rows[0].status, rows[0].available_at, rows[0].dirty),
            (StepStatus::Pending, Some(due), false)
        );
        assert_eq!(
            (rows[1].status, rows[1].available_at),
            (StepStatus::Pending, None)
        );
    }

    #[test]
    fn the_execution_completes_when_every_step_is_terminal_and_none_failed() {
        let dag = dag(json!([log("a", &[]), log("b", &["a"]), log("c", &["a"])]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        skipped(&mut rows, "b", SkipReason::Condition);
        running(&mut rows, "c");
        assert_eq!(run(&dag, &mut rows).finish, None, "c still runs");

        ended(&mut rows, "c", StepStatus::Completed);
        let plan = run(&dag, &mut rows);
        assert_eq!(plan.finish, completed());
        assert!(plan.ready_now.is_empty());
    }

    #[test]
    fn final_outputs_resolves_the_dag_outputs_templates() {
        let dag = dag_with(
            json!([log("a", &[]), log("b", &["a"])]),
            json!({
                "parameters": [{"name": "n", "type": "integer", "default": 1}],
                "outputs": {
                    "message": "{{ steps.a.outputs.message }}",
                    "n": "{{ params.n }}",
                    "text": "n={{ params.n }}",
                    "missing": "{{ steps.b.outputs.message }}"
                }
            }),
        );
        let params: Map<String, Value> = json!({"n": 3}).as_object().unwrap().clone();
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        skipped(&mut rows, "b", SkipReason::Condition);
        assert_eq!(
            final_outputs(&dag, &rows, &params, MAX_BYTES),
            json!({"message": "a", "n": 3, "text": "n=3", "missing": null})
        );
    }

    #[test]
    fn final_outputs_without_templates_are_every_steps_outputs_by_id() {
        let dag = dag(json!([log("a", &[]), log("b", &["a"]), log("c", &["a"])]));
        let mut rows = rows(&dag);
        ended(&mut rows, "a", StepStatus::Completed);
        skipped(&mut rows, "b", SkipReason::Condition);
        ended(&mut rows, "c", StepStatus::Completed);
        row(&mut rows, "c").outputs = Some(json!({"n": 2}));
        assert_eq!(
            final_outputs(&dag, &rows, &Map::new(), MAX_BYTES),
            json!({"a": {"logged": true, "message": "a"}, "c": {"n": 2}})
        );
    }

    #[test]
    fn finish_ends_the_row_and_drops_what_kept_it_alive() {
        let dag = dag(json!([log("a", &[])]));
        let mut rows = rows(&dag);
        waiting(&mut rows, "a");
        let r = &mut rows[0];
        r.available_at = Some(now());
        r.lease_owner = Some(Uuid::nil());
        r.lease_expires_at = Some(now());
        r.outputs = Some(json!({"deployment_id": "d1"}));
        r.finish(StepStatus::Timeout, now());
        assert_eq!(r.status, StepStatus::Timeout);
        assert_eq!(
            (
                r.available_at,
                r.lease_owner,
                r.lease_expires_at,
                r.timeout_at
            ),
            (None, None, None, None)
        );
        assert!(!r.awaiting_event && r.dirty);
        assert_eq!(r.completed_at, Some(now()));
        // What the step already produced stays.
        assert_eq!(r.outputs, Some(json!({"deployment_id": "d1"})));
        assert_eq!((r.attempt, r.skip_reason.as_deref()), (1, None));
    }

    #[test]
    fn skip_records_the_reason_and_ends_the_row() {
        let dag = dag(json!([log("a", &[])]));
        let mut rows = rows(&dag);
        rows[0].available_at = Some(now());
        for reason in [
            SkipReason::Condition,
            SkipReason::Branch,
            SkipReason::UpstreamFailed,
        ] {
            let r = &mut rows[0];
            r.skip(reason, now());
            assert_eq!(r.status, StepStatus::Skipped);
            assert_eq!(r.skip_reason.as_deref(), Some(reason.as_str()));
            assert_eq!(
                (r.available_at, r.completed_at, r.dirty),
                (None, Some(now()), true)
            );
        }
    }
}
