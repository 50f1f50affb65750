use serde_json::json;

use super::*;
use crate::actions::{ActionSpec, BoxFuture, StepContext, StepOutcome};

/// A test action: its spec, plus an optional action-specific check.
struct TestAction {
    spec: ActionSpec,
    check: fn(&Map<String, Value>) -> Vec<String>,
}

impl StepHandler for TestAction {
    fn spec(&self) -> &ActionSpec {
        &self.spec
    }
    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        (self.check)(params)
    }
    fn run(&self, _ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async { StepOutcome::completed(Map::new()) })
    }
}

fn action(kind: &'static str, params: Vec<ParamSpec>) -> TestAction {
    TestAction {
        spec: ActionSpec {
            kind,
            name: kind,
            category: "test",
            description: "",
            params,
            outputs: Vec::new(),
            waits_for_event: false,
            default_timeout_seconds: None,
        },
        check: |_| Vec::new(),
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(action(
        "log",
        vec![
            ParamSpec::new("message", "string", "").required(),
            ParamSpec::new("level", "string", "")
                .default(json!("info"))
                .options(&["debug", "info", "warning", "error"]),
        ],
    ));
    r.register(action("noop", vec![]));
    r.register(TestAction {
        check: |p| {
            if p.contains_key("a") && p.contains_key("b") {
                vec!["'a' and 'b' are mutually exclusive".into()]
            } else {
                vec![]
            }
        },
        ..action(
            "scale",
            vec![
                ParamSpec::new("replicas", "integer", "")
                    .required()
                    .range(Some(1.0), Some(10.0)),
                ParamSpec::new("ratio", "number", "").range(Some(0.5), None),
                ParamSpec::new("zones", "array", "").options(&["a", "b"]),
            ],
        )
    });
    r.register(action(
        "conditional",
        vec![ParamSpec::new("branches", "branches", "")],
    ));
    r
}

fn check(doc: Value) -> Validation {
    validate(&doc, &registry())
}

fn errors(doc: Value) -> Vec<String> {
    let v = check(doc);
    assert!(v.dag.is_none() || v.errors.is_empty());
    v.errors
}

/// A valid document with the given steps.
fn with_steps(steps: Value) -> Value {
    json!({"name": "wf", "steps": steps})
}

fn noop(id: &str, deps: &[&str]) -> Value {
    json!({"id": id, "action": "noop", "depends_on": deps})
}

fn has(errors: &[String], expected: &str) -> bool {
    errors.iter().any(|e| e == expected)
}

#[track_caller]
fn assert_has(errors: &[String], expected: &str) {
    assert!(has(errors, expected), "missing {expected:?} in {errors:#?}");
}

// ---- accepted documents ----

#[test]
fn accepts_the_spec_example_shape() {
    let doc = json!({
        "name": "deploy-and-check",
        "version": "1.0",
        "description": "optional",
        "parameters": [
            {"name": "cluster_id", "type": "string", "required": true},
            {"name": "replicas", "type": "integer", "default": 1, "required": false}
        ],
        "settings": {"timeout_seconds": 7200, "max_parallel_steps": 10, "fail_fast": true},
        "steps": [
            {"id": "health", "action": "noop", "params": {"c": "{{ params.cluster_id }}"}},
            {"id": "deploy", "name": "Deploy", "action": "scale", "depends_on": ["health"],
             "condition": "{{ steps.health.outputs.healthy }}",
             "params": {"replicas": "{{ params.replicas }}", "config": {"r": "{{ params.replicas }}"}},
             "timeout_seconds": 1800,
             "retry": {"max_attempts": 3, "backoff_seconds": 5, "backoff_multiplier": 2.0, "max_backoff_seconds": 60},
             "on_failure": "fail"},
            {"id": "announce", "action": "log", "depends_on": ["deploy"],
             "params": {"message": "deployed {{ steps.deploy.outputs.deployment_id }} after {{ steps.health.outputs.status }}"}}
        ],
        "outputs": {"deployment_id": "{{ steps.deploy.outputs.deployment_id }}"}
    });
    let v = check(doc);
    assert_eq!(v.errors, Vec::<String>::new());
    assert_eq!(v.warnings, Vec::<String>::new());
    assert!(v.is_valid());
    let dag = v.dag.unwrap();
    assert_eq!(dag.steps.len(), 3);
    assert_eq!(dag.steps[0].name, "health", "name defaults to the id");
    assert_eq!(dag.steps[1].name, "Deploy");
    assert_eq!(dag.steps[1].retry.unwrap().max_attempts, 3);
    assert_eq!(dag.settings.max_parallel_steps, 10);
    assert_eq!(dag.parameters.len(), 2);
}

#[test]
fn minimal_document_gets_defaults() {
    let v = check(with_steps(json!([{"id": "a", "action": "noop"}])));
    let dag = v.dag.expect("valid");
    assert_eq!(dag.version, "1.0");
    assert_eq!(dag.settings, crate::dag::Settings::default());
    assert_eq!(dag.steps[0].name, "a");
    assert!(dag.steps[0].depends_on.is_empty());
}

#[test]
fn nulls_mean_not_given_and_on_failure_is_case_insensitive() {
    let doc = json!({
        "name": "wf", "description": null, "parameters": null, "settings": {"timeout_seconds": null},
        "outputs": null,
        "steps": [{"id": "a", "name": null, "action": "noop", "params": null, "depends_on": null,
                   "condition": null, "on_failure": "CONTINUE", "timeout_seconds": null,
                   "retry": {"max_attempts": null, "backoff_seconds": 1}}]
    });
    let v = check(doc);
    assert_eq!(v.errors, Vec::<String>::new());
    let dag = v.dag.unwrap();
    assert_eq!(dag.steps[0].on_failure, crate::dag::OnFailure::Continue);
    assert_eq!(dag.steps[0].retry.unwrap().max_attempts, 3);
    assert_eq!(dag.steps[0].name, "a");
}

// ---- document level ----

#[test]
fn document_must_be_an_object() {
    assert_eq!(errors(json!([])), vec!["dag: must be a JSON object"]);
    assert_eq!(errors(json!(null)), vec!["dag: must be a JSON object"]);
}

#[test]
fn name_and_steps_are_required() {
    let e = errors(json!({}));
    assert_eq!(e, vec!["name: is required", "steps: is required"]);
    let e = errors(json!({"name": 5, "steps": {}}));
    assert_eq!(
        e,
        vec!["name: must be a string", "steps: must be a list of steps"]
    );
    let e = errors(json!({"name": "  ", "steps": []}));
    assert_eq!(
        e,
        vec![
            "name: must not be empty",
            "steps: at least one step is required"
        ]
    );
    let e = errors(json!({"name": "x".repeat(256), "steps": [{"id": "a", "action": "noop"}]}));
    assert_eq!(e, vec!["name: must be at most 255 characters"]);
}

#[test]
fn header_field_types() {
    let e = errors(
        json!({"name": "wf", "version": 1.0, "description": [], "outputs": "x",
                          "steps": [{"id": "a", "action": "noop"}]}),
    );
    assert_eq!(
        e,
        vec![
            "version: must be a string",
            "description: must be a string",
            "outputs: must be an object",
        ]
    );
}

#[test]
fn outputs_do_not_pile_up_errors_when_steps_are_unusable() {
    let doc = json!({"name": "wf", "outputs": {"r": "{{ steps.a.outputs.x }} {{ params.nope }}"}});
    assert_eq!(
        errors(doc),
        vec!["steps: is required", "outputs.r: unknown parameter 'nope'"]
    );
}

#[test]
fn too_many_steps() {
    let steps: Vec<Value> = (0..=MAX_STEPS)
        .map(|i| noop(&format!("s{i}"), &[]))
        .collect();
    assert_eq!(
        errors(with_steps(Value::Array(steps))),
        vec!["steps: at most 1000 steps are allowed, got 1001"]
    );
    let steps: Vec<Value> = (0..MAX_STEPS)
        .map(|i| noop(&format!("s{i}"), &[]))
        .collect();
    assert!(check(with_steps(Value::Array(steps))).is_valid());
}

#[test]
fn a_long_chain_of_steps_is_fine() {
    let steps: Vec<Value> = (0..MAX_STEPS)
        .map(|i| {
            let deps: Vec<String> = (0..i).map(|j| format!("s{j}")).rev().take(50).collect();
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            let mut s = noop(&format!("s{i}"), &deps);
            if i > 0 {
                s["params"] = json!({"x": format!("{{{{ steps.s0.outputs.v }}}}")});
            }
            s
        })
        .collect();
    let v = check(with_steps(Value::Array(steps)));
    assert_eq!(v.errors, Vec::<String>::new());
    let order = topological_order(&v.dag.unwrap());
    assert_eq!(order, (0..MAX_STEPS).collect::<Vec<_>>());
}

// ---- parameters ----

#[test]
fn parameter_declarations() {
    let doc = json!({
        "name": "wf",
        "parameters": [
            {"name": "a"}, {"name": "a", "type": "integer"}, "x", {"type": "string"},
            {"name": "9lives"}, {"name": ""}, {"name": "n", "type": 5, "required": "yes", "description": 1},
            {"name": "i", "type": "integer", "default": "5"},
            {"name": "f", "type": "number", "default": 1.5},
            {"name": "long", "type": "cluster_ref", "default": "c-1"}
        ],
        "steps": [{"id": "s", "action": "noop"}]
    });
    assert_eq!(
        errors(doc),
        vec![
            "parameters: duplicate parameter 'a'",
            "parameters.2: must be an object",
            "parameters.3.name: is required",
            "parameters.4.name: '9lives' must start with a letter or '_'",
            "parameters.5.name: must not be empty",
            "parameters.n.type: must be a string",
            "parameters.n.description: must be a string",
            "parameters.n.required: must be a boolean",
            "parameters.i.default: expected integer, got string",
        ]
    );
    assert_eq!(
        errors(json!({"name": "wf", "parameters": {}, "steps": [{"id": "s", "action": "noop"}]})),
        vec!["parameters: must be a list"]
    );
}

// ---- settings ----

#[test]
fn settings_bounds() {
    let doc = |settings: Value| json!({"name": "wf", "settings": settings, "steps": [{"id": "a", "action": "noop"}]});
    assert_eq!(errors(doc(json!([]))), vec!["settings: must be an object"]);
    assert_eq!(
        errors(doc(
            json!({"timeout_seconds": 0, "max_parallel_steps": 101, "fail_fast": "yes"})
        )),
        vec![
            "settings.timeout_seconds: must be between 1 and 31536000",
            "settings.max_parallel_steps: must be between 1 and 100",
            "settings.fail_fast: must be a boolean",
        ]
    );
    assert_eq!(
        errors(doc(
            json!({"timeout_seconds": 1.5, "max_parallel_steps": 0})
        )),
        vec![
            "settings.timeout_seconds: must be an integer",
            "settings.max_parallel_steps: must be between 1 and 100",
        ]
    );
    assert_eq!(
        errors(doc(json!({"timeout_seconds": -1}))),
        vec!["settings.timeout_seconds: must be between 1 and 31536000"]
    );
    assert!(
        check(doc(
            json!({"timeout_seconds": 1, "max_parallel_steps": 100, "fail_fast": false})
        ))
        .is_valid()
    );
}

// ---- steps ----

#[test]
fn step_shape_errors() {
    let e = errors(with_steps(json!([
        7,
        {"action": "noop"},
        {"id": 5, "action": "noop"},
        {"id": "a"},
        {"id": "b", "action": 3, "name": 4},
        {"id": "c", "action": "  "},
        {"id": "d", "action": "noop", "params": [], "depends_on": "a", "condition": true},
        {"id": "e", "action": "noop", "depends_on": ["a", 1]},
    ])));
    assert_eq!(
        e,
        vec![
            "steps.0: must be an object",
            "steps.1.id: is required",
            "steps.2.id: must be a string",
            "steps.a.action: is required",
            "steps.b.name: must be a string",
            "steps.b.action: must be a string",
            "steps.c.action: is required",
            "steps.d.params: must be an object",
            "steps.d.depends_on: must be a list of step ids",
            "steps.d.condition: must be a string",
            "steps.e.depends_on: must be a list of step ids",
        ]
    );
}

#[test]
fn step_id_rules() {
    let long = "a".repeat(101);
    let e = errors(with_steps(json!([
        {"id": "", "action": "noop"},
        {"id": long, "action": "noop"},
        {"id": "_x", "action": "noop"},
        {"id": "a.b", "action": "noop"},
        {"id": "a b", "action": "noop"},
        {"id": "ünï", "action": "noop"},
        {"id": "1st-step_OK", "action": "noop"},
        {"id": "x".repeat(100), "action": "noop"},
    ])));
    assert_eq!(
        e,
        vec![
            "steps.0.id: must not be empty",
            "steps.1.id: must be at most 100 characters",
            "steps.2.id: '_x' must start with a letter or a digit",
            "steps.3.id: 'a.b' may only contain letters, digits, '_' and '-'",
            "steps.4.id: 'a b' may only contain letters, digits, '_' and '-'",
            "steps.5.id: 'ünï' must start with a letter or a digit",
        ]
    );
}

#[test]
fn invalid_ids_still_resolve_as_dependencies() {
    let e = errors(with_steps(json!([
        {"id": "a.b", "action": "noop"},
        {"id": "c", "action": "noop", "depends_on": ["a.b"]},
    ])));
    assert_eq!(
        e,
        vec!["steps.0.id: 'a.b' may only contain letters, digits, '_' and '-'"]
    );
}

#[test]
fn unknown_action_is_an_error() {
    let v = check(with_steps(json!([{"id": "x", "action": "foo"}])));
    assert_eq!(v.errors, vec!["steps.x.action: unknown action 'foo'"]);
    assert!(v.dag.is_none());
}

#[test]
fn step_name_length() {
    let e = errors(with_steps(
        json!([{"id": "a", "action": "noop", "name": "n".repeat(256)}]),
    ));
    assert_eq!(e, vec!["steps.a.name: must be at most 255 characters"]);
}

#[test]
fn on_failure_timeout_and_retry() {
    let e = errors(with_steps(json!([
        {"id": "a", "action": "noop", "on_failure": "explode", "timeout_seconds": 0},
        {"id": "b", "action": "noop", "on_failure": 1, "timeout_seconds": "5", "retry": 3},
        {"id": "c", "action": "noop", "timeout_seconds": 31_536_001u64,
         "retry": {"max_attempts": 11, "backoff_seconds": -1, "backoff_multiplier": 0.5, "max_backoff_seconds": "x"}},
        {"id": "d", "action": "noop", "retry": {"max_attempts": 0, "backoff_seconds": 1e12, "max_backoff_seconds": -0.5}},
        {"id": "e", "action": "noop", "retry": {"max_attempts": 2.0}},
        {"id": "f", "action": "noop", "timeout_seconds": 1, "on_failure": "Retry",
         "retry": {"max_attempts": 1, "backoff_seconds": 0, "backoff_multiplier": 1, "max_backoff_seconds": 0}},
        {"id": "g", "action": "noop", "retry": {"max_attempts": 10, "backoff_seconds": 0.5, "backoff_multiplier": 1000}},
    ])));
    assert_eq!(
        e,
        vec![
            "steps.a.on_failure: must be one of 'fail', 'continue', 'retry'",
            "steps.a.timeout_seconds: must be between 1 and 31536000",
            "steps.b.on_failure: must be one of 'fail', 'continue', 'retry'",
            "steps.b.timeout_seconds: must be an integer",
            "steps.b.retry: must be an object",
            "steps.c.timeout_seconds: must be between 1 and 31536000",
            "steps.c.retry.max_attempts: must be between 1 and 10",
            "steps.c.retry.backoff_seconds: must be between 0 and 31536000",
            "steps.c.retry.backoff_multiplier: must be at least 1",
            "steps.c.retry.max_backoff_seconds: must be a number",
            "steps.d.retry.max_attempts: must be between 1 and 10",
            "steps.d.retry.backoff_seconds: must be between 0 and 31536000",
            "steps.d.retry.max_backoff_seconds: must be between 0 and 31536000",
            "steps.e.retry.max_attempts: must be an integer",
        ]
    );
}

// ---- the graph ----

#[test]
fn duplicate_ids() {
    let e = errors(with_steps(json!([
        noop("x", &[]),
        noop("x", &[]),
        noop("x", &[]),
        noop("y", &[])
    ])));
    assert_eq!(e, vec!["steps: duplicate step id 'x'"]);
}

#[test]
fn unknown_and_self_dependencies() {
    let e = errors(with_steps(json!([
        noop("a", &["a"]),
        noop("deploy", &["ghost", "a"]),
    ])));
    assert_eq!(
        e,
        vec![
            "steps.a.depends_on: a step cannot depend on itself",
            "steps.deploy.depends_on: unknown step 'ghost'",
        ]
    );
}

#[test]
fn repeated_dependency_is_a_warning_and_dropped() {
    let v = check(with_steps(json!([noop("a", &[]), noop("b", &["a", "a"])])));
    assert_eq!(v.errors, Vec::<String>::new());
    assert_eq!(
        v.warnings,
        vec!["steps.b.depends_on: 'a' is listed more than once"]
    );
    assert_eq!(v.dag.unwrap().steps[1].depends_on, vec!["a"]);
}

#[test]
fn two_step_cycle() {
    let e = errors(with_steps(json!([noop("a", &["b"]), noop("b", &["a"])])));
    assert_eq!(e, vec!["steps: cycle detected: a -> b -> a"]);
}

#[test]
fn longer_cycle_follows_execution_order() {
    // c runs after b runs after a runs after c.
    let e = errors(with_steps(json!([
        noop("start", &[]),
        noop("a", &["start", "c"]),
        noop("b", &["a"]),
        noop("c", &["b"]),
        noop("after", &["c"]),
    ])));
    assert_eq!(e, vec!["steps: cycle detected: a -> b -> c -> a"]);
}

#[test]
fn each_separate_cycle_is_reported() {
    let e = errors(with_steps(json!([
        noop("a", &["b"]),
        noop("b", &["a"]),
        noop("c", &["d"]),
        noop("d", &["e"]),
        noop("e", &["c"]),
    ])));
    assert_eq!(
        e,
        vec![
            "steps: cycle detected: a -> b -> a",
            "steps: cycle detected: c -> e -> d -> c",
        ]
    );
}

#[test]
fn topological_order_is_stable_by_declaration() {
    let v = check(with_steps(json!([
        noop("d", &["b", "c"]),
        noop("b", &["a"]),
        noop("c", &[]),
        noop("a", &[]),
        noop("e", &[]),
    ])));
    let dag = v.dag.unwrap();
    let ids: Vec<&str> = topological_order(&dag)
        .into_iter()
        .map(|i| dag.steps[i].id.as_str())
        .collect();
    assert_eq!(ids, vec!["c", "a", "b", "d", "e"]);
}

#[test]
fn topological_order_covers_every_step_even_with_a_cycle() {
    let dag: Dag = serde_json::from_value(with_steps(json!([
        noop("a", &["b"]),
        noop("b", &["a"]),
        noop("c", &["ghost"]),
    ])))
    .unwrap();
    assert_eq!(topological_order(&dag), vec![2, 0, 1]);
}

// ---- templates ----

#[test]
fn template_that_does_not_parse() {
    let e = errors(with_steps(json!([
        {"id": "x", "action": "log", "params": {"message": "{{ oops + }}"}, "condition": "{% if %}"}
    ])));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("steps.x.params.message: template does not parse: syntax error"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("steps.x.condition: template does not parse: syntax error"),
        "{e:?}"
    );
}

#[test]
fn unknown_parameter_and_step_references() {
    let doc = json!({
        "name": "wf",
        "parameters": [{"name": "cluster_id"}],
        "steps": [
            {"id": "a", "action": "noop"},
            {"id": "x", "action": "noop", "depends_on": ["a"],
             "params": {"cluster_id": "{{ params.cid }}", "nested": {"list": ["{{ steps.nope.outputs.v }}"]},
                        "ok": "{{ params.cluster_id }} {{ steps.a.outputs.v }}"},
             "condition": "{{ steps.zz.outputs.ok }}"}
        ]
    });
    assert_eq!(
        errors(doc),
        vec![
            "steps.x.params.cluster_id: unknown parameter 'cid'",
            "steps.x.params.nested.list.0: unknown step 'nope'",
            "steps.x.condition: unknown step 'zz'",
        ]
    );
}

#[test]
fn references_must_be_upstream() {
    let e = errors(with_steps(json!([
        noop("a", &[]),
        noop("b", &[]),
        noop("c", &["a"]),
        {"id": "x", "action": "noop", "depends_on": ["c"],
         "params": {"msg": "{{ steps.b.outputs.v }}", "ok": "{{ steps.a.outputs.v }}{{ steps['c'].outputs.v }}",
                    "later": "{{ steps.y.outputs.v }}", "me": "{{ steps.x.outputs.v }}"}},
        noop("y", &["x"]),
    ])));
    assert_eq!(
        e,
        vec![
            "steps.x.params.later: step 'y' is not an upstream dependency of 'x'",
            "steps.x.params.me: step 'x' is not an upstream dependency of 'x'",
            "steps.x.params.msg: step 'b' is not an upstream dependency of 'x'",
        ]
    );
}

#[test]
fn hyphenated_ids_are_read_with_subscripts() {
    let v = check(with_steps(json!([
        noop("my-step", &[]),
        {"id": "x", "action": "noop", "depends_on": ["my-step"],
         "params": {"v": "{{ steps['my-step'].outputs.v }}"}},
    ])));
    assert_eq!(v.errors, Vec::<String>::new());
    assert_eq!(v.warnings, Vec::<String>::new());
}

#[test]
fn unknown_variables_are_warnings() {
    let v = check(with_steps(json!([
        {"id": "x", "action": "noop", "params": {"v": "{{ parms.x }}"}},
    ])));
    assert!(v.is_valid());
    assert_eq!(
        v.warnings,
        vec![
            "steps.x.params.v: unknown variable 'parms' (a template can read 'params' and 'steps')"
        ]
    );
}

#[test]
fn outputs_templates_are_checked_without_the_upstream_rule() {
    let doc = json!({
        "name": "wf",
        "steps": [noop("a", &[]), noop("b", &[])],
        "outputs": {"ok": "{{ steps.a.outputs.v }} {{ steps.b.outputs.v }}", "plain": 3,
                    "bad": "{{ steps.ghost.outputs.v }}", "p": {"deep": ["{{ params.nope }}"]},
                    "broken": "{{ x "}
    });
    let e = errors(doc);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0], "outputs.bad: unknown step 'ghost'");
    assert!(
        e[1].starts_with("outputs.broken: template does not parse:"),
        "{e:?}"
    );
    assert_eq!(e[2], "outputs.p.deep.0: unknown parameter 'nope'");
}

// ---- action parameters ----

#[test]
fn required_action_params() {
    let e = errors(with_steps(json!([
        {"id": "a", "action": "log"},
        {"id": "b", "action": "log", "params": {"message": null}},
        {"id": "c", "action": "log", "params": {"message": " "}},
        {"id": "d", "action": "log", "params": {"message": "{{ params.m | default('') }}"}},
        {"id": "e", "action": "log", "params": {"message": "hi"}},
    ])));
    assert_eq!(
        e,
        vec![
            "steps.a.params.message: is required",
            "steps.b.params.message: is required",
            "steps.c.params.message: is required",
            "steps.d.params.message: unknown parameter 'm'",
        ]
    );
}

#[test]
fn action_param_bounds_and_options() {
    let e = errors(with_steps(json!([
        {"id": "a", "action": "scale", "params": {"replicas": 0, "ratio": 0.25}},
        {"id": "b", "action": "scale", "params": {"replicas": 11, "zones": ["a", "c", "{{ x }}"]}},
        {"id": "c", "action": "scale", "params": {"replicas": "{{ params.n }}"}},
        {"id": "d", "action": "log", "params": {"message": "m", "level": "loud"}},
        {"id": "e", "action": "log", "params": {"message": "m", "level": "{{ 'info' }}"}},
        {"id": "f", "action": "scale", "params": {"replicas": 10, "ratio": 0.5, "zones": ["b"]}},
    ])));
    assert_eq!(
        e,
        vec![
            "steps.a.params.replicas: must be at least 1",
            "steps.a.params.ratio: must be at least 0.5",
            "steps.b.params.replicas: must be at most 10",
            "steps.b.params.zones: must be one of 'a', 'b', got 'c'",
            "steps.d.params.level: must be one of 'debug', 'info', 'warning', 'error', got 'loud'",
            // Template checks come after the structural ones.
            "steps.c.params.replicas: unknown parameter 'n'",
        ]
    );
}

#[test]
fn action_specific_checks_are_prefixed() {
    let e = errors(with_steps(json!([
        {"id": "a", "action": "scale", "params": {"replicas": 1, "a": 1, "b": 2}},
    ])));
    assert_eq!(
        e,
        vec!["steps.a.params: 'a' and 'b' are mutually exclusive"]
    );
}

// ---- conditional branches ----

#[test]
fn branch_targets() {
    let v = check(with_steps(json!([
        {"id": "pick", "action": "conditional", "params": {"branches": [
            {"id": "1", "condition": "true", "target_step": "yes"},
            {"id": "2", "condition": "true", "target_step": "loose"},
            {"id": "3", "condition": "true", "target_step": "ghost"},
            {"id": "4", "condition": "true", "target_step": null},
            {"id": "5", "condition": "true", "target_step": "later"},
        ]}},
        noop("yes", &["pick"]),
        noop("loose", &[]),
        noop("later", &["yes"]),
    ])));
    assert_eq!(
        v.errors,
        vec!["steps.pick.params.branches.2.target_step: unknown step 'ghost'"]
    );
    assert_eq!(
        v.warnings,
        vec![
            "steps.pick.params.branches.1.target_step: step 'loose' does not depend on 'pick', so it may run before the branch is chosen"
        ]
    );
}

// ---- all at once ----

#[test]
fn reports_every_problem_at_once() {
    let doc = json!({
        "steps": [
            {"id": "a", "action": "nope", "depends_on": ["b"]},
            {"id": "b", "action": "noop", "depends_on": ["a", "ghost"], "params": {"x": "{{ params.p }}"}},
            {"id": "b", "action": "log"},
        ]
    });
    let e = errors(doc);
    for expected in [
        "name: is required",
        "steps.a.action: unknown action 'nope'",
        "steps.b.params.message: is required",
        "steps: duplicate step id 'b'",
        "steps.b.depends_on: unknown step 'ghost'",
        "steps: cycle detected: a -> b -> a",
        "steps.b.params.x: unknown parameter 'p'",
    ] {
        assert_has(&e, expected);
    }
    assert_eq!(e.len(), 7, "{e:#?}");
}
