//! `conditional`: pick a branch. The engine marks the `skipped_targets` of
//! the outcome SKIPPED (`skip_reason: branch`).
//!
//! Branch conditions arrive already rendered by the engine (a template like
//! `{{ params.x > 3 }}` becomes `true`), so the action only judges the
//! resulting value's truthiness.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{CATEGORY, is_template, ready, settled};
use crate::actions::params;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, PureFn, StepContext, StepHandler, StepOutcome,
};

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "conditional",
    name: "Conditional",
    category: CATEGORY,
    description: "Choose a branch: the first of `branches` whose condition is true wins and \
                  the other branches' target steps are skipped. Without branches, the legacy \
                  `condition` picks `true_result` or `false_result`.",
    params: vec![
        ParamSpec::new(
            "branches",
            "array",
            "Branches `{id, label?, condition, target_step?}`, tried in order.",
        )
        .default(json!([])),
        ParamSpec::new(
            "condition",
            "boolean",
            "Legacy mode (no branches): the condition.",
        )
        .default(json!(true)),
        ParamSpec::new("true_result", "json", "Legacy mode: the result when true.")
            .default(json!({"branch": "true"})),
        ParamSpec::new(
            "false_result",
            "json",
            "Legacy mode: the result when false.",
        )
        .default(json!({"branch": "false"})),
    ],
    outputs: vec![
        OutputSpec::new(
            "matched_branch",
            "string",
            "Id of the matched branch, or null.",
        ),
        OutputSpec::new(
            "matched_label",
            "string",
            "Label of the matched branch, or \"none\".",
        ),
        OutputSpec::new(
            "target_step",
            "string",
            "Target step of the matched branch, or null.",
        ),
        OutputSpec::new(
            "result",
            "json",
            "The matched label (legacy: true/false_result).",
        ),
        OutputSpec::new("branch", "string", "Id of the matched branch, or \"none\"."),
        OutputSpec::new(
            "skipped_targets",
            "array",
            "Target steps of the other branches.",
        ),
    ],
    waits_for_event: false,
    default_timeout_seconds: None,
});

/// Each param as given, null included: a null condition is false, a null
/// result is the result, and null branches are no branches at run time but
/// a mistake at submit time.
#[derive(Deserialize)]
struct Params {
    #[serde(default, deserialize_with = "params::given")]
    branches: Option<Value>,
    #[serde(default, deserialize_with = "params::given")]
    condition: Option<Value>,
    #[serde(default, deserialize_with = "params::given")]
    true_result: Option<Value>,
    #[serde(default, deserialize_with = "params::given")]
    false_result: Option<Value>,
}

pub(crate) struct Conditional;

impl StepHandler for Conditional {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let p = params::submitted::<Params>(params).params;
        match p.and_then(|p| p.branches) {
            Some(branches) if !is_template(&branches) => check_branches(&branches),
            _ => Vec::new(),
        }
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(outcome(&ctx))
    }

    fn pure(&self) -> Option<PureFn> {
        Some(outcome)
    }
}

fn outcome(ctx: &StepContext) -> StepOutcome {
    settled(params::read(&ctx.params).map(decide))
}

fn decide(p: Params) -> StepOutcome {
    let branches = match &p.branches {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(branches)) => &branches[..],
        Some(other) => return StepOutcome::permanent(check_branches(other).join("; ")),
    };
    if branches.is_empty() {
        return legacy(p);
    }
    // Branches may have come from a template, so check them again.
    let errors = check_items(branches);
    if !errors.is_empty() {
        return StepOutcome::permanent(errors.join("; "));
    }
    let matched = branches.iter().find(|b| truthy(&b["condition"]));
    let target_of = |b: &Value| {
        b.get("target_step")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let matched_target = matched.and_then(target_of);
    let mut skipped: Vec<String> = Vec::new();
    // Every other branch's target, except a step the matched branch targets
    // too (it must still run).
    for target in branches.iter().filter_map(target_of) {
        if Some(&target) != matched_target.as_ref() && !skipped.contains(&target) {
            skipped.push(target);
        }
    }
    let mut outputs = Map::new();
    match matched {
        Some(branch) => {
            let id = branch["id"].clone();
            let label = match branch.get("label") {
                None | Some(Value::Null) => id.clone(),
                Some(label) => label.clone(),
            };
            outputs.insert("matched_branch".into(), id.clone());
            outputs.insert("matched_label".into(), label.clone());
            outputs.insert("target_step".into(), json!(matched_target));
            outputs.insert("result".into(), label);
            outputs.insert("branch".into(), id);
        }
        None => {
            outputs.insert("matched_branch".into(), Value::Null);
            outputs.insert("matched_label".into(), json!("none"));
            outputs.insert("target_step".into(), Value::Null);
            outputs.insert("result".into(), Value::Null);
            outputs.insert("branch".into(), json!("none"));
        }
    }
    outputs.insert("skipped_targets".into(), json!(skipped));
    StepOutcome::completed(outputs)
}

/// Legacy single-condition mode: no targets, nothing skipped.
fn legacy(p: Params) -> StepOutcome {
    let taken = p.condition.as_ref().is_none_or(truthy);
    let (name, result) = if taken {
        ("true", p.true_result)
    } else {
        ("false", p.false_result)
    };
    let mut outputs = Map::new();
    outputs.insert(
        "result".into(),
        result.unwrap_or_else(|| json!({ "branch": name })),
    );
    outputs.insert("branch".into(), json!(name));
    outputs.insert("matched_branch".into(), json!(name));
    outputs.insert("matched_label".into(), json!(name));
    outputs.insert("target_step".into(), Value::Null);
    outputs.insert("skipped_targets".into(), json!([]));
    StepOutcome::completed(outputs)
}

/// Problems with a `branches` value: it must be a list of objects, each with
/// a non-empty string `id` (unique) and a `condition`; `label` and
/// `target_step` are strings when given. Template ids are not compared.
fn check_branches(branches: &Value) -> Vec<String> {
    match branches {
        Value::Array(items) => check_items(items),
        other => vec![format!(
            "branches must be an array, got {}",
            super::json_type(other)
        )],
    }
}

fn check_items(branches: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    for (i, branch) in branches.iter().enumerate() {
        let Value::Object(branch) = branch else {
            errors.push(format!("branches[{i}] must be an object"));
            continue;
        };
        match branch.get("id") {
            Some(Value::String(id)) if !id.is_empty() => {
                if ids.contains(&id.as_str()) {
                    errors.push(format!("branches[{i}]: duplicate branch id '{id}'"));
                } else if !crate::dag::template::is_template(id) {
                    ids.push(id);
                }
            }
            _ => errors.push(format!("branches[{i}] must have a non-empty string id")),
        }
        if !branch.contains_key("condition") {
            errors.push(format!("branches[{i}] must have a condition"));
        }
        for key in ["label", "target_step"] {
            if branch
                .get(key)
                .is_some_and(|v| !v.is_string() && !v.is_null())
            {
                errors.push(format!("branches[{i}].{key} must be a string"));
            }
        }
    }
    errors
}

/// Truthiness of an already-rendered condition: Jinja's rules plus the
/// words a rendered template or a hand-written value commonly uses.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim().to_lowercase();
            !matches!(s.as_str(), "" | "false" | "no" | "0" | "none")
        }
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::{completed, ctx, params, permanent};

    async fn run(value: Value) -> Value {
        Value::Object(completed(Conditional.run(ctx(value)).await))
    }

    fn branches(conditions: [Value; 3]) -> Value {
        let [a, b, c] = conditions;
        json!({"branches": [
            {"id": "small", "label": "Small", "condition": a, "target_step": "deploy_small"},
            {"id": "large", "condition": b, "target_step": "deploy_large"},
            {"id": "other", "condition": c},
        ]})
    }

    #[test]
    fn truthiness() {
        for v in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("yes"),
            json!("True"),
            json!("anything"),
            json!([0]),
            json!({"a": 1}),
        ] {
            assert!(truthy(&v), "{v} should be truthy");
        }
        for v in [
            json!(false),
            json!(null),
            json!(0),
            json!(0.0),
            json!(""),
            json!("FALSE"),
            json!("no"),
            json!("0"),
            json!("None"),
            json!(" false "),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&v), "{v} should be falsy");
        }
    }

    #[tokio::test]
    async fn first_true_branch_wins_and_others_targets_are_skipped() {
        let out = run(branches([json!("false"), json!(true), json!(true)])).await;
        assert_eq!(
            out,
            json!({"matched_branch": "large", "matched_label": "large",
                   "target_step": "deploy_large", "result": "large", "branch": "large",
                   "skipped_targets": ["deploy_small"]})
        );
        let out = run(branches([json!(1), json!(true), json!(true)])).await;
        assert_eq!(out["matched_label"], json!("Small"));
        assert_eq!(out["result"], json!("Small"));
        assert_eq!(out["skipped_targets"], json!(["deploy_large"]));
    }

    #[tokio::test]
    async fn branch_without_target_skips_all_targets() {
        let out = run(branches([json!(false), json!(0), json!("yes")])).await;
        assert_eq!(out["matched_branch"], json!("other"));
        assert_eq!(out["target_step"], json!(null));
        assert_eq!(
            out["skipped_targets"],
            json!(["deploy_small", "deploy_large"])
        );
    }

    #[tokio::test]
    async fn no_match() {
        let out = run(branches([json!(false), json!("no"), json!(null)])).await;
        assert_eq!(
            out,
            json!({"matched_branch": null, "matched_label": "none", "target_step": null,
                   "result": null, "branch": "none",
                   "skipped_targets": ["deploy_small", "deploy_large"]})
        );
    }

    #[tokio::test]
    async fn shared_target_is_not_skipped() {
        let out = run(json!({"branches": [
            {"id": "a", "condition": false, "target_step": "x"},
            {"id": "b", "condition": true, "target_step": "x"},
            {"id": "c", "condition": false, "target_step": "y"},
            {"id": "d", "condition": false, "target_step": "y"},
        ]}))
        .await;
        assert_eq!(out["skipped_targets"], json!(["y"]));
    }

    #[tokio::test]
    async fn legacy_mode() {
        assert_eq!(
            run(json!({})).await,
            json!({"result": {"branch": "true"}, "branch": "true", "matched_branch": "true",
                   "matched_label": "true", "target_step": null, "skipped_targets": []})
        );
        let out = run(json!({"branches": [], "condition": "false",
                             "true_result": 1, "false_result": {"go": "no"}}))
        .await;
        assert_eq!(out["result"], json!({"go": "no"}));
        assert_eq!(out["branch"], json!("false"));
        assert_eq!(out["matched_label"], json!("false"));
        let out = run(json!({"condition": 5, "true_result": "yes"})).await;
        assert_eq!(out["result"], json!("yes"));
    }

    #[tokio::test]
    async fn malformed_branches_fail_permanently() {
        let err = permanent(
            Conditional
                .run(ctx(json!({"branches": [{"condition": true}]})))
                .await,
        );
        assert_eq!(err, "branches[0] must have a non-empty string id");
        let err = permanent(Conditional.run(ctx(json!({"branches": "x"}))).await);
        assert_eq!(err, "branches must be an array, got string");
    }

    #[test]
    fn validate_checks_branches() {
        let errors = Conditional.validate(&params(json!({"branches": [
            {"id": "a", "condition": "{{ params.x }}"},
            "b",
            {"id": "a", "condition": true},
            {"condition": true, "label": 3},
            {"id": "c"},
        ]})));
        assert_eq!(
            errors,
            [
                "branches[1] must be an object",
                "branches[2]: duplicate branch id 'a'",
                "branches[3] must have a non-empty string id",
                "branches[3].label must be a string",
                "branches[4] must have a condition",
            ]
        );
        assert!(
            Conditional
                .validate(&params(json!({"branches": "{{ params.branches }}"})))
                .is_empty()
        );
        assert!(
            Conditional
                .validate(&params(json!({"condition": true})))
                .is_empty()
        );
        assert_eq!(
            Conditional.validate(&params(json!({"branches": 1}))),
            ["branches must be an array, got integer"]
        );
    }
}
