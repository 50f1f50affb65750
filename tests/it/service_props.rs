//! Property test of the running service: random workflow documents,
//! templates, parameters and events thrown at the real binary over HTTP.
//!
//! Invariants, whatever the input: no 5xx (the database is up), the process
//! stays alive, `/ready` stays 200, and every execution that was accepted
//! reaches a terminal state. The inputs come from a deterministic proptest
//! runner, so a failure reproduces; `SERVICE_PROPS_CASES` sets how many.

use crate::support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use support::app::{ServiceProcess, TOKEN, database_url};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

/// Templates that validate: some fail at run time, run away, or build
/// large values.
const TEMPLATES: &[&str] = &[
    "plain text",
    "{{ params.p }}",
    "{{ params.p | tojson }}",
    "{{ params }}",
    "{{ 1 / 0 }}",
    "{{ 1.7976931348623157e308 * 10 }}",
    "{{ params.p.q.r }}",
    "{% for i in range(10) %}{{ i }}{% endfor %}",
    "{% for i in range(100000000) %}{% endfor %}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{{ range(1000)|list|length }}",
    "{{ 'ab' ~ params.p ~ 'cd' }}",
    "{{ params.p | upper }}",
    "{{ [1, 2, 3] | sum }}",
    "{{ '%s' | format(params.p) }}",
    "\u{0}",
    "\u{1F600} ünïcödé",
    "{{ true }}",
    "{{ -9223372036854775808 - 1 }}",
    // Bombs: each must fail its step cleanly (TEMPLATE_MAX_BYTES).
    "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
    "{{ 'a' * 1000000000 }}",
    "{{ range(100000)|join(',') * 1000 }}",
    "{{ 'x'|replace('', 'yyyyyyyyyy') * 100000 }}",
    "{{ '%99999999s'|format('a') }}",
    "{{ debug() }}",
];

/// Templates the validator must refuse.
const BAD_TEMPLATES: &[&str] = &[
    "{{ nothing.here }}",
    "{% if %}",
    "{{ ",
    "{{ steps }}",
    "{{ steps.zz.outputs }}",
    "{{ params.undeclared }}",
];

const ACTIONS: &[&str] = &[
    "log",
    "transform",
    "set_output",
    "fail",
    "conditional",
    "aggregate",
    "wait_until",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(1.7976931348623157e308)),
        Just(json!(5e-324)),
        ".{0,12}".prop_map(Value::from),
        select(TEMPLATES).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn params_for(action: &str) -> BoxedStrategy<Value> {
    let text = prop_oneof![select(TEMPLATES).prop_map(Value::from), json_leaf()];
    match action {
        "log" => (
            text,
            select(&["info", "error", "debug", "warning", "loud"][..]),
        )
            .prop_map(|(m, l)| json!({"message": m, "level": l}))
            .boxed(),
        "transform" => (
            json_value(),
            select(&["uppercase", "keys", "count", "sort", "flatten", "bogus"][..]),
        )
            .prop_map(|(input, op)| json!({"input": input, "operation": op}))
            .boxed(),
        "set_output" => json_value()
            .prop_map(|v| json!({"outputs": {"value": v}}))
            .boxed(),
        "fail" => text.prop_map(|m| json!({"message": m})).boxed(),
        "conditional" => text.prop_map(|c| json!({"condition": c})).boxed(),
        "aggregate" => json_value()
            .prop_map(|v| json!({"inputs": v, "operation": "merge"}))
            .boxed(),
        "wait_until" => (1.0f64..2.0)
            .prop_map(|s| json!({"duration_seconds": s}))
            .boxed(),
        _ => json_value().prop_map(|v| json!({"x": v})).boxed(),
    }
}

/// Step `i` of a DAG: dependencies on earlier steps only.
fn step(i: usize) -> impl Strategy<Value = Value> {
    (
        select(ACTIONS),
        prop::collection::vec(0..8usize, 0..3),
        prop::option::of(select(TEMPLATES)),
        prop::option::of(select(&["fail", "continue", "retry"][..])),
    )
        .prop_flat_map(move |(action, deps, condition, on_failure)| {
            params_for(action).prop_map(move |params| {
                let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
                let mut s = json!({"id": ids[i], "name": format!("step {i}"), "action": action,
                                   "params": params});
                let mut depends: Vec<&str> =
                    deps.iter().filter(|d| **d < i).map(|d| ids[*d]).collect();
                depends.sort_unstable();
                depends.dedup();
                if !depends.is_empty() {
                    s["depends_on"] = json!(depends);
                }
                if let Some(c) = condition {
                    s["condition"] = json!(c);
                }
                if let Some(f) = on_failure {
                    s["on_failure"] = json!(f);
                    if f == "retry" {
                        s["retry"] = json!({"max_attempts": 2, "backoff_seconds": 0.1});
                    }
                }
                s
            })
        })
}

fn document() -> impl Strategy<Value = Value> {
    let dag = (1..6usize)
        .prop_flat_map(|n| {
            let steps: Vec<_> = (0..n).map(step).collect();
            (
                steps,
                prop::option::of(json_value()),
                select(&["string", "object", "integer", "weird"][..]),
            )
        })
        .prop_map(|(steps, outputs, p_type)| {
            let mut dag = json!({
                "name": format!("prop-{}", Uuid::new_v4()),
                "parameters": [{"name": "p", "type": p_type, "required": false}],
                "settings": {"timeout_seconds": 30},
                "steps": steps,
            });
            if let Some(o) = outputs {
                dag["outputs"] = json!({"out": o});
            }
            dag
        });
    // Mostly documents that validate, some broken on purpose, some noise.
    let broken = (
        dag.clone(),
        select(BAD_TEMPLATES),
        select(&["log", "no_such_action"][..]),
    )
        .prop_map(|(mut dag, template, action)| {
            let steps = dag["steps"].as_array_mut().unwrap();
            steps.push(json!({"id": "z", "name": "broken", "action": action,
                              "params": {"message": template}, "depends_on": ["z"]}));
            dag
        });
    prop_oneof![8 => dag, 1 => broken, 1 => json_value()]
}

fn event() -> impl Strategy<Value = (Option<String>, Value)> {
    let correlation = prop_oneof![
        Just("w-1".to_owned()),
        Just(String::new()),
        "[a-z0-9-]{1,40}",
    ];
    let bud = (
        correlation.clone(),
        select(&["results", "eta", "deploy_model", "workflow_metadata"][..]),
        select(&["COMPLETED", "FAILED", "RUNNING", "completed", ""][..]),
        json_value(),
    )
        .prop_map(|(w, stage, status, result)| {
            json!({"specversion": "1.0", "source": "Dapr", "type": "notification",
                   "payload": {"type": "deploy_model", "event": stage, "workflow_id": w,
                               "content": {"status": status, "message": "12", "result": result}}})
        });
    let wrapped = (correlation, json_value())
        .prop_map(|(w, data)| json!({"specversion": "1.0", "id": w.clone(), "source": "s",
                                      "data": {"workflow_id": w, "status": "COMPLETED", "content": data}}));
    prop_oneof![
        4 => bud.prop_map(|v| (None, v)),
        2 => wrapped.prop_map(|v| (None, v)),
        2 => json_value().prop_map(|v| (None, v)),
        1 => select(&["not json", "{", "[1,2", "\u{0}", "{\"a\":1e999}"][..])
            .prop_map(|raw| (Some(raw.to_owned()), Value::Null)),
    ]
}

fn sample<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("a value from the strategy")
        .current()
}

fn check_status(what: &str, status: StatusCode, body: &str) {
    assert!(
        !status.is_server_error(),
        "{what} answered {status}: {body}"
    );
}

#[sqlx::test]
async fn random_documents_parameters_and_events_never_break_the_service(pool: PgPool) {
    let cases: usize = std::env::var("SERVICE_PROPS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let sidecar = FakeSidecar::start("http://127.0.0.1:9").await;
    let db = database_url(&pool);
    let service = ServiceProcess::start(&db, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let api = &service.api;
    let http = &api.http;
    let mut runner = TestRunner::deterministic();
    let mut accepted: Vec<Uuid> = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    let started = Instant::now();

    for case in 0..cases {
        let doc = sample(&mut runner, &document());
        let response = http
            .post(format!("{}/workflows", api.base))
            .header("dapr-api-token", TOKEN)
            .json(&json!({"dag": doc}))
            .send()
            .await
            .expect("the service answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        check_status(&format!("case {case}: create {doc}"), status, &body);
        if status != StatusCode::CREATED {
            rejected.push(body);
            continue;
        }
        let created: Value = serde_json::from_str(&body).unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            let params: Map<String, Value> = match sample(&mut runner, &json_value()) {
                Value::Object(m) => m,
                other => Map::from_iter([("p".to_owned(), other)]),
            };
            let response = http
                .post(format!("{}/workflows/{id}/execute", api.base))
                .header("dapr-api-token", TOKEN)
                .json(&json!({"parameters": params, "callback_topics": ["propTopic"]}))
                .send()
                .await
                .expect("the service answers");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            check_status(&format!("case {case}: execute {doc}"), status, &body);
            if status == StatusCode::ACCEPTED {
                let started: Value = serde_json::from_str(&body).unwrap();
                accepted.push(started["execution_id"].as_str().unwrap().parse().unwrap());
            }
        }
        for _ in 0..3 {
            let (raw, value) = sample(&mut runner, &event());
            let body = raw.unwrap_or_else(|| value.to_string());
            let response = http
                .post(format!("{}/workflow-events", api.base))
                .header("dapr-api-token", TOKEN)
                .header("content-type", "application/cloudevents+json")
                .body(body.clone())
                .send()
                .await
                .expect("the service answers");
            let status = response.status();
            let answer = response.text().await.unwrap_or_default();
            check_status(&format!("case {case}: event {body}"), status, &answer);
        }
    }
    eprintln!(
        "{cases} documents, {} executions accepted, in {:?}",
        accepted.len(),
        started.elapsed()
    );
    assert!(
        accepted.len() >= cases / 3,
        "too few executions ran: {}; some refusals: {:#?}",
        accepted.len(),
        &rejected[..rejected.len().min(8)]
    );

    // Every accepted execution ends, and reading it never fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        loop {
            let (status, body) = api.get(&format!("/executions/{id}")).await;
            check_status(&format!("read {id}"), status, &body.to_string());
            if matches!(
                body["status"].as_str(),
                Some("COMPLETED" | "FAILED" | "CANCELLED")
            ) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} never ended: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = api.get(&format!("/executions/{id}/steps")).await;
        check_status(&format!("steps of {id}"), status, &body.to_string());
    }
    let (status, _) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK, "the process is alive");
    let (status, body) = api.get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.get("/executions?limit=100").await;
    check_status("list", status, &body.to_string());
}
