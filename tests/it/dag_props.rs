//! Property tests of DAG validation and templating: random documents never
//! panic the validator, accepted documents have a topological order that
//! respects every edge, generated acyclic documents are accepted, and the
//! template functions never panic whatever the text.

use std::collections::HashMap;

use budpipeline::actions::{
    ActionSpec, BoxFuture, ParamSpec, Registry, StepContext, StepHandler, StepOutcome,
};
use budpipeline::dag::template;
use budpipeline::dag::validate::{topological_order, validate};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// A test action with the given parameters (the registry's builtins are
/// written elsewhere; these tests do not depend on them).
struct TestAction(ActionSpec);

impl StepHandler for TestAction {
    fn spec(&self) -> &ActionSpec {
        &self.0
    }
    fn run(&self, _ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        Box::pin(async { StepOutcome::completed(Map::new()) })
    }
}

fn action(kind: &'static str, params: Vec<ParamSpec>) -> TestAction {
    TestAction(ActionSpec {
        kind,
        name: kind,
        category: "test",
        description: "",
        params,
        outputs: Vec::new(),
        waits_for_event: false,
        default_timeout_seconds: None,
    })
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(action(
        "log",
        vec![
            ParamSpec::new("message", "string", "").required(),
            ParamSpec::new("level", "string", "").options(&["info", "error"]),
        ],
    ));
    r.register(action(
        "fail",
        vec![ParamSpec::new("code", "integer", "").range(Some(1.0), Some(5.0))],
    ));
    r
}

// ---------------------------------------------------------------------------
// Strategies

/// Text built from Jinja-ish pieces, so that odd but plausible templates
/// (unbalanced tags, braces inside expressions, strings) come up often.
fn jinja_text() -> impl Strategy<Value = String> {
    let pieces = select(vec![
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "{{-",
        "-}}",
        " params.p ",
        " params.q ",
        "steps.a.outputs.x",
        "steps['b'].outputs",
        "steps.ghost.outputs.v",
        "'",
        "\"",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "|",
        " | default(1)",
        " | tojson",
        "-",
        "+",
        " if ",
        " else ",
        " endif ",
        " for i in [1, 2] ",
        " endfor ",
        " set v = 1 ",
        "x",
        " ",
        "1",
        "\\",
        "~",
        ".",
        ",",
        ":",
        "=",
        " not ",
        " is defined ",
        " none ",
        " true ",
        "loop.index",
        "\n",
        "é",
    ]);
    prop_oneof![
        4 => proptest::collection::vec(pieces, 0..14).prop_map(|p| p.concat()),
        1 => ".{0,40}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..20).prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        jinja_text().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Step ids: mostly valid ones that collide often (so duplicates, cycles
/// and unknown dependencies come up), sometimes invalid ones.
fn id_pool(noisy: bool) -> BoxedStrategy<String> {
    let valid = select(vec!["a", "b", "c", "d", "e", "s-1", "1x"]);
    if noisy {
        prop_oneof![10 => valid, 1 => select(vec!["", "a.b", "_z", "ghost", "a b"])]
            .prop_map(str::to_owned)
            .boxed()
    } else {
        valid.prop_map(str::to_owned).boxed()
    }
}

/// Usually absent or a plausible value; in a noisy document sometimes junk
/// of any type.
fn sometimes<S>(noisy: bool, good: S) -> BoxedStrategy<Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    if noisy {
        prop_oneof![4 => Just(None), 3 => good.prop_map(Some), 1 => json_value().prop_map(Some)]
            .boxed()
    } else {
        prop_oneof![Just(None), good.prop_map(Some)].boxed()
    }
}

/// A plausible value, in a noisy document sometimes junk of any type.
fn mostly<S>(noisy: bool, good: S) -> BoxedStrategy<Value>
where
    S: Strategy<Value = Value> + 'static,
{
    if noisy {
        prop_oneof![8 => good, 1 => json_value()].boxed()
    } else {
        good.boxed()
    }
}

fn template_value(noisy: bool) -> BoxedStrategy<Value> {
    let plausible = prop_oneof![
        6 => select(vec![
            "hi",
            "{{ params.p }}",
            "{{ params.q + 1 }}",
            "n={{ params.q }}",
            "{% if params.p %}yes{% endif %}",
        ]),
        1 => select(vec!["{{ steps.a.outputs.x }}", "{{ steps['s-1'].outputs.x | default('') }}"]),
    ];
    let wrong = select(vec![
        "{{ params.undeclared }}",
        "{{ steps.ghost.outputs.v }}",
        "{{ x + }}",
    ]);
    if noisy {
        prop_oneof![
            6 => plausible.prop_map(Value::from),
            1 => wrong.prop_map(Value::from),
            1 => jinja_text().prop_map(Value::from),
        ]
        .boxed()
    } else {
        plausible.prop_map(Value::from).boxed()
    }
}

fn step_params(noisy: bool) -> impl Strategy<Value = Value> {
    let message = if noisy {
        prop_oneof![8 => template_value(true).prop_map(Some), 1 => Just(None)].boxed()
    } else {
        template_value(false).prop_map(Some).boxed()
    };
    let levels = if noisy {
        vec!["info", "error", "loud"]
    } else {
        vec!["info", "error"]
    };
    let codes = if noisy { -1i64..8 } else { 1i64..6 };
    (
        message,
        sometimes(noisy, select(levels).prop_map(Value::from)),
        sometimes(noisy, codes.prop_map(Value::from)),
    )
        .prop_map(|(message, level, code)| {
            let mut params = Map::new();
            for (key, value) in [("message", message), ("level", level), ("code", code)] {
                if let Some(value) = value {
                    params.insert(key.into(), value);
                }
            }
            Value::Object(params)
        })
}

fn retry_block(noisy: bool) -> impl Strategy<Value = Value> {
    let (attempts, backoff, multiplier) = if noisy {
        (0i64..12, -1.0f64..10.0, 0.0f64..3.0)
    } else {
        (1i64..11, 0.0f64..10.0, 1.0f64..3.0)
    };
    (attempts, backoff, multiplier).prop_map(|(attempts, backoff, multiplier)| {
        json!({"max_attempts": attempts, "backoff_seconds": backoff, "backoff_multiplier": multiplier})
    })
}

fn step_doc(noisy: bool) -> impl Strategy<Value = Value> {
    let actions = if noisy {
        prop_oneof![5 => Just("log"), 5 => Just("fail"), 1 => Just("nope")].boxed()
    } else {
        prop_oneof![Just("log"), Just("fail")].boxed()
    };
    let on_failure = if noisy {
        vec!["fail", "CONTINUE", "retry", "boom"]
    } else {
        vec!["fail", "CONTINUE", "retry"]
    };
    let fields = (
        mostly(noisy, id_pool(noisy).prop_map(Value::from)),
        mostly(noisy, actions.prop_map(Value::from)),
        sometimes(
            noisy,
            proptest::collection::vec(id_pool(noisy).prop_map(Value::from), 0..3)
                .prop_map(Value::from),
        ),
        mostly(noisy, step_params(noisy)),
        sometimes(noisy, template_value(noisy)),
        sometimes(
            noisy,
            (if noisy { -1i64..20 } else { 1..20 }).prop_map(Value::from),
        ),
        sometimes(noisy, retry_block(noisy)),
        sometimes(noisy, select(on_failure).prop_map(Value::from)),
    );
    let step = fields.prop_map(
        |(id, action, deps, params, cond, timeout, retry, on_failure)| {
            let mut step = Map::new();
            step.insert("id".into(), id);
            step.insert("action".into(), action);
            step.insert("params".into(), params);
            for (key, value) in [
                ("depends_on", deps),
                ("condition", cond),
                ("timeout_seconds", timeout),
                ("retry", retry),
                ("on_failure", on_failure),
            ] {
                if let Some(value) = value {
                    step.insert(key.into(), value);
                }
            }
            Value::Object(step)
        },
    );
    if noisy {
        prop_oneof![20 => step, 1 => json_leaf()].boxed()
    } else {
        step.boxed()
    }
}

/// Documents that are sometimes valid and often wrong in several ways: a
/// "clean" document only has well-typed fields (its problems are duplicate
/// ids, unknown or cyclic dependencies, references to steps that are not
/// upstream), a "noisy" one has junk anywhere.
fn dagish_doc() -> impl Strategy<Value = Value> {
    any::<bool>().prop_flat_map(dagish_doc_with)
}

fn dagish_doc_with(noisy: bool) -> impl Strategy<Value = Value> {
    let declared = json!([{"name": "p"}, {"name": "q", "type": "integer", "default": 1}]);
    let name = if noisy {
        prop_oneof![10 => Just(Some(Value::from("wf"))), 1 => Just(None), 1 => json_leaf().prop_map(Some)]
            .boxed()
    } else {
        Just(Some(Value::from("wf"))).boxed()
    };
    let parameters = if noisy {
        prop_oneof![6 => Just(Some(declared)), 1 => sometimes(true, json_value())].boxed()
    } else {
        Just(Some(declared)).boxed()
    };
    let steps = if noisy {
        mostly(
            true,
            proptest::collection::vec(step_doc(true), 0..7).prop_map(Value::from),
        )
    } else {
        clean_steps().boxed()
    };
    (
        name,
        steps,
        parameters,
        sometimes(
            noisy,
            Just(json!({"timeout_seconds": 60, "max_parallel_steps": 2})),
        ),
        sometimes(
            noisy,
            Just(json!({"r": "{{ steps.a.outputs.x }}", "p": "{{ params.p }}"})),
        ),
    )
        .prop_map(|(name, steps, parameters, settings, outputs)| {
            let mut doc = Map::new();
            doc.insert("steps".into(), steps);
            for (key, value) in [
                ("name", name),
                ("parameters", parameters),
                ("settings", settings),
                ("outputs", outputs),
            ] {
                if let Some(value) = value {
                    doc.insert(key.into(), value);
                }
            }
            Value::Object(doc)
        })
}

/// Well-typed steps wired by index: ids are distinct but for an occasional
/// duplicate, dependencies mostly point to earlier steps but sometimes
/// forward (a possible cycle) or to the step itself.
fn clean_steps() -> impl Strategy<Value = Value> {
    const IDS: [&str; 7] = ["a", "s-1", "1x", "b", "c", "d", "e"];
    let wiring = (
        proptest::bool::weighted(0.1),
        any::<prop::sample::Index>(),
        proptest::collection::vec(
            (any::<prop::sample::Index>(), proptest::bool::weighted(0.1)),
            0..3,
        ),
    );
    proptest::collection::vec((step_doc(false), wiring), 1..7).prop_map(|steps| {
        let n = steps.len();
        let ids: Vec<&str> = steps
            .iter()
            .enumerate()
            .map(|(i, (_, (duplicate, other, _)))| {
                if *duplicate {
                    IDS[other.index(n)]
                } else {
                    IDS[i]
                }
            })
            .collect();
        let docs = steps
            .into_iter()
            .enumerate()
            .map(|(i, (mut doc, (_, _, deps)))| {
                doc["id"] = Value::from(ids[i]);
                let deps: Vec<&str> = deps
                    .iter()
                    .filter(|(_, forward)| *forward || i > 0)
                    .map(|(at, forward)| ids[if *forward { at.index(n) } else { at.index(i) }])
                    .collect();
                doc["depends_on"] = json!(deps);
                doc
            })
            .collect();
        Value::Array(docs)
    })
}

/// A valid acyclic document: each step depends only on earlier ones and reads
/// only its ancestors' outputs and declared parameters.
fn acyclic_doc() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            any::<bool>(),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            any::<bool>(),
        ),
        1..40,
    )
    .prop_map(|steps| {
        let steps: Vec<Value> = steps
            .into_iter()
            .enumerate()
            .map(|(i, (is_log, deps, uses_template))| {
                let mut deps: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    deps.iter().map(|d| d.index(i)).collect()
                };
                deps.sort_unstable();
                deps.dedup();
                let dep_ids: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
                let message = match (uses_template, dep_ids.first()) {
                    (true, Some(dep)) => {
                        format!("{{{{ steps.{dep}.outputs.x }}}} and {{{{ params.p }}}}")
                    }
                    (true, None) => "{{ params.q + 1 }}".to_owned(),
                    (false, _) => "plain".to_owned(),
                };
                let (action, params) = if is_log {
                    ("log", json!({"message": message, "level": "info"}))
                } else {
                    ("fail", json!({"code": 3, "note": message}))
                };
                json!({"id": format!("s{i}"), "action": action, "depends_on": dep_ids,
                       "params": params, "condition": "{{ params.p }}"})
            })
            .collect();
        json!({
            "name": "generated",
            "parameters": [{"name": "p"}, {"name": "q", "type": "integer", "default": 1}],
            "steps": steps,
            "outputs": {"last": "{{ steps.s0.outputs.x }}"},
        })
    })
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validator_never_panics_and_accepted_dags_are_ordered(doc in dagish_doc()) {
        let registry = registry();
        let v = validate(&doc, &registry);
        // Errors and a typed DAG exclude each other.
        prop_assert_eq!(v.dag.is_some(), v.errors.is_empty(), "{:?}", v);
        // Every message names what it is about.
        for message in v.errors.iter().chain(&v.warnings) {
            let head = message.split(':').next().unwrap_or_default();
            prop_assert!(
                ["dag", "name", "version", "description", "parameters", "settings", "steps", "outputs"]
                    .iter()
                    .any(|root| head == *root || head.starts_with(&format!("{root}."))),
                "{}", message
            );
        }
        if let Some(dag) = &v.dag {
            assert_respects_every_edge(dag)?;
        }
        // Same input, same answer.
        prop_assert_eq!(&validate(&doc, &registry), &v);
    }

    #[test]
    fn generated_acyclic_dags_are_accepted(doc in acyclic_doc()) {
        let v = validate(&doc, &registry());
        prop_assert_eq!(&v.errors, &Vec::<String>::new());
        prop_assert_eq!(&v.warnings, &Vec::<String>::new());
        let dag = v.dag.expect("valid");
        prop_assert_eq!(dag.steps.len(), doc["steps"].as_array().unwrap().len());
        assert_respects_every_edge(&dag)?;
    }

    #[test]
    fn adding_a_back_edge_to_an_acyclic_dag_is_a_cycle(doc in acyclic_doc()) {
        let mut doc = doc;
        let steps = doc["steps"].as_array_mut().unwrap();
        let last = steps.len() - 1;
        if last == 0 {
            return Ok(()); // one step: a back edge would be a self-dependency
        }
        // The last step's first dependency (or the first step, after adding
        // that edge) now depends on the last step.
        let deps = steps[last]["depends_on"].as_array_mut().unwrap();
        if deps.is_empty() {
            deps.push(Value::from("s0"));
        }
        let first: usize = deps[0].as_str().unwrap()[1..].parse().unwrap();
        steps[first]["depends_on"]
            .as_array_mut()
            .unwrap()
            .push(Value::from(format!("s{last}")));
        let v = validate(&doc, &registry());
        prop_assert!(v.dag.is_none());
        prop_assert!(
            v.errors.iter().any(|e| e.starts_with("steps: cycle detected: ")),
            "{:?}", v.errors
        );
    }

    #[test]
    fn template_functions_never_panic(text in jinja_text(), value in json_value()) {
        let context = json!({
            "params": {"p": "v", "q": 2, "o": {"k": [1, 2]}},
            "steps": {"a": {"outputs": {"x": 1}}, "b": {"outputs": {"y": "z"}}},
        });
        let _ = template::resolve(&Value::String(text.clone()), &context, &budget());
        let _ = template::resolve(&value, &context, &budget());
        let _ = template::condition(&text, &context, &budget());
        let refs = template::references(&text);
        // A string that is not a template reads nothing and always parses.
        if !template::is_template(&text) {
            prop_assert_eq!(refs, Ok(Vec::new()));
            prop_assert_eq!(
                template::resolve(&Value::String(text.clone()), &context, &budget()),
                Ok(Value::String(text))
            );
        }
    }

    #[test]
    fn resolve_leaves_non_template_values_alone(value in json_value()) {
        let no_template = template::templates_in(&value, "v").is_empty();
        if no_template {
            prop_assert_eq!(template::resolve(&value, &json!({}), &budget()), Ok(value));
        }
    }
}

fn budget() -> template::Budget {
    template::Budget::new(template::DEFAULT_MAX_BYTES)
}

fn assert_respects_every_edge(dag: &budpipeline::dag::Dag) -> Result<(), TestCaseError> {
    let order = topological_order(dag);
    let mut position = vec![usize::MAX; dag.steps.len()];
    for (at, &i) in order.iter().enumerate() {
        prop_assert_eq!(position[i], usize::MAX, "step {} twice in {:?}", i, order);
        position[i] = at;
    }
    prop_assert!(position.iter().all(|&p| p != usize::MAX), "{:?}", order);
    let index: HashMap<&str, usize> = dag
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for (i, step) in dag.steps.iter().enumerate() {
        for dep in &step.depends_on {
            let j = index[dep.as_str()];
            prop_assert!(
                position[j] < position[i],
                "{} runs before its dependency {}",
                step.id,
                dep
            );
        }
    }
    Ok(())
}
