//! The sidecar client and the seed actions against real HTTP stand-ins
//! (tests/support): retries, the circuit breaker, error classification,
//! publish, and what each seed action sends and makes of the answers.

use crate::support;

use std::time::{Duration, Instant};

use budpipeline::actions::{EventAction, Registry, StepContext, StepOutcome, seed};
use budpipeline::config::Settings;
use budpipeline::dapr::{BreakerState, Budcluster, CallHints, DaprClient, InvokeError};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use support::budcluster::{FakeBudcluster, Reply, Route, deployment_event};
use support::sidecar::FakeSidecar;
use uuid::Uuid;

/// Backoff of the tests: 20 ms, doubling, capped at 80 ms.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(80);

struct Stand {
    budcluster: FakeBudcluster,
    sidecar: FakeSidecar,
    settings: Settings,
    client: DaprClient,
}

impl Stand {
    async fn start(vars: &[(&str, &str)]) -> Self {
        let budcluster = FakeBudcluster::start().await;
        let sidecar = FakeSidecar::start(budcluster.url()).await;
        let settings = support::settings(sidecar.url(), vars);
        let client = fast_client(&settings);
        Self {
            budcluster,
            sidecar,
            settings,
            client,
        }
    }

    fn budcluster_api(&self) -> Budcluster {
        Budcluster::new(self.client.clone(), "budcluster")
    }

    async fn deploy(&self) -> Result<budpipeline::dapr::budcluster::DeployResponse, InvokeError> {
        self.budcluster_api()
            .deploy_model("c1", "m1", &json!({}), &CallHints::default())
            .await
    }

    fn registry(&self) -> Registry {
        let mut registry = Registry::new();
        seed::register(&mut registry, self.client.clone(), &self.settings);
        registry
    }

    async fn run(&self, action: &str, ctx: StepContext) -> StepOutcome {
        let registry = self.registry();
        let handler = registry.get(action).expect("registered");
        handler.run(ctx).await
    }
}

fn fast_client(settings: &Settings) -> DaprClient {
    DaprClient::new(settings).with_backoff(BACKOFF_MIN, BACKOFF_MAX)
}

fn ctx(params: Value) -> StepContext {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    StepContext {
        execution_id: Uuid::new_v4(),
        step_id: "step-1".into(),
        attempt: 1,
        params,
        workflow_params: Map::new(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

#[track_caller]
fn assert_failed(outcome: &StepOutcome, retryable: bool, contains: &str) {
    match outcome {
        StepOutcome::Failed {
            error,
            retryable: got,
            ..
        } => {
            assert_eq!(*got, retryable, "retryable of `{error}`");
            assert!(error.contains(contains), "`{error}` lacks `{contains}`");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

// --- invoke: retries -------------------------------------------------------

#[tokio::test]
async fn invoke_succeeds_on_the_third_attempt_after_two_503s() {
    // Arrange
    let stand = Stand::start(&[("DAPR_API_TOKEN", "dapr-secret")]).await;
    stand.sidecar.require_token(Some("dapr-secret"));
    stand
        .budcluster
        .push_deploy_response(503, json!({"detail": "busy"}));
    stand
        .budcluster
        .push_deploy_response(503, json!({"detail": "busy"}));
    let hints = CallHints {
        idempotency_key: Some("exec:step:1".into()),
        traceparent: None,
        ..CallHints::default()
    };

    // Act
    let answer = stand
        .budcluster_api()
        .deploy_model("c1", "m1", &json!({"replicas": 2}), &hints)
        .await
        .expect("third attempt succeeds");

    // Assert
    assert!(answer.is_accepted());
    let requests = stand.budcluster.requests_to(Route::Deploy);
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.header("idempotency-key"), Some("exec:step:1"));
        assert_eq!(request.path, "/api/v1/clusters/c1/deployments");
        assert_eq!(
            request.body,
            json!({"model_id": "m1", "config": {"replicas": 2}})
        );
    }
    let first_gap = requests[1].at - requests[0].at;
    let second_gap = requests[2].at - requests[1].at;
    assert!(first_gap >= BACKOFF_MIN, "first gap {first_gap:?}");
    assert!(
        second_gap >= BACKOFF_MIN * 2,
        "backoff doubles: {second_gap:?}"
    );
}

#[tokio::test]
async fn invoke_retries_408_and_429() {
    let stand = Stand::start(&[]).await;
    stand.budcluster.push_deploy_response(429, json!({}));
    stand.budcluster.push_deploy_response(408, json!({}));

    stand.deploy().await.expect("succeeds after 429 and 408");

    assert_eq!(stand.budcluster.request_count(), 3);
}

#[tokio::test]
async fn a_400_is_returned_at_once_without_retry() {
    let stand = Stand::start(&[]).await;
    stand
        .budcluster
        .push_deploy_response(400, json!({"detail": "bad model"}));

    let error = stand.deploy().await.unwrap_err();

    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("bad model"), "{error}");
    assert_eq!(stand.budcluster.request_count(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let stand = Stand::start(&[("SERVICE_INVOKE_MAX_RETRIES", "3")]).await;
    stand
        .budcluster
        .set_default(Route::Deploy, Reply::json(503, json!({"detail": "down"})));

    let error = stand.deploy().await.unwrap_err();

    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(error.is_retryable());
    assert_eq!(stand.budcluster.request_count(), 3);
}

#[tokio::test]
async fn slow_callee_times_out_per_attempt() {
    let stand = Stand::start(&[
        ("SERVICE_INVOKE_TIMEOUT", "0.2"),
        ("SERVICE_INVOKE_MAX_RETRIES", "2"),
    ])
    .await;
    let slow = Reply::json(200, json!({"status": "accepted"})).after(Duration::from_secs(2));
    stand.budcluster.set_default(Route::Deploy, slow);

    let started = Instant::now();
    let error = stand.deploy().await.unwrap_err();

    assert!(matches!(error, InvokeError::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(stand.budcluster.request_count(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// --- invoke: circuit breaker ------------------------------------------------

#[tokio::test]
async fn breaker_opens_after_the_threshold_and_a_trial_closes_it() {
    // Arrange: two failed calls open it; one attempt per call.
    let stand = Stand::start(&[
        ("SERVICE_INVOKE_MAX_RETRIES", "1"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
        ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "0.2"),
    ])
    .await;
    stand.budcluster.push_deploy_response(503, json!({}));
    stand.budcluster.push_deploy_response(503, json!({}));
    assert_eq!(
        stand.deploy().await.unwrap_err().status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        stand.client.breaker_states(),
        [("budcluster".to_owned(), BreakerState::Closed)]
    );
    stand.deploy().await.unwrap_err();

    // Act + Assert: open, so calls fail fast without reaching budcluster.
    for _ in 0..3 {
        let error = stand.deploy().await.unwrap_err();
        assert!(
            matches!(error, InvokeError::CircuitOpen { .. }),
            "{error:?}"
        );
        assert!(error.is_retryable());
        assert!(
            error
                .to_string()
                .starts_with("budcluster is unavailable: circuit breaker open (retry after"),
            "{error}"
        );
    }
    assert_eq!(stand.budcluster.request_count(), 2);
    assert_eq!(
        stand.client.breaker_states(),
        [("budcluster".to_owned(), BreakerState::Open)]
    );

    // After the recovery time one trial goes through; its success closes it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    stand.deploy().await.expect("trial call succeeds");
    assert_eq!(stand.budcluster.request_count(), 3);
    assert_eq!(
        stand.client.breaker_states(),
        [("budcluster".to_owned(), BreakerState::Closed)]
    );
    stand.deploy().await.expect("closed again");
    assert_eq!(stand.budcluster.request_count(), 4);
    assert_eq!(
        stand.client.call_counts(),
        [
            ("budcluster".to_owned(), "circuit_open", 3),
            ("budcluster".to_owned(), "ok", 2),
            ("budcluster".to_owned(), "status", 2),
        ]
    );
}

#[tokio::test]
async fn a_failed_trial_reopens_the_breaker() {
    let stand = Stand::start(&[
        ("SERVICE_INVOKE_MAX_RETRIES", "1"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "1"),
        ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "0.2"),
    ])
    .await;
    stand.budcluster.push_deploy_response(500, json!({}));
    stand.budcluster.push_deploy_response(500, json!({}));
    stand.deploy().await.unwrap_err();

    tokio::time::sleep(Duration::from_millis(250)).await;
    let trial = stand.deploy().await.unwrap_err();
    let next = stand.deploy().await.unwrap_err();

    assert_eq!(trial.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(matches!(next, InvokeError::CircuitOpen { .. }), "{next:?}");
    assert_eq!(stand.budcluster.request_count(), 2);
}

#[tokio::test]
async fn client_errors_do_not_count_against_the_breaker() {
    let stand = Stand::start(&[
        ("SERVICE_INVOKE_MAX_RETRIES", "1"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
    ])
    .await;
    stand.budcluster.set_default(
        Route::Deploy,
        Reply::json(404, json!({"detail": "no such cluster"})),
    );

    for _ in 0..4 {
        assert_eq!(
            stand.deploy().await.unwrap_err().status(),
            Some(StatusCode::NOT_FOUND)
        );
    }

    assert_eq!(stand.budcluster.request_count(), 4);
    assert_eq!(
        stand.client.breaker_states(),
        [("budcluster".to_owned(), BreakerState::Closed)]
    );
}

// --- invoke: error classification -----------------------------------------

#[tokio::test]
async fn sidecar_down_is_unreachable_and_retried() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = support::settings(&format!("http://127.0.0.1:{port}"), &[]);
    let client = fast_client(&settings);

    let started = Instant::now();
    let error = Budcluster::new(client, "budcluster")
        .cluster_health(None, &CallHints::default())
        .await
        .unwrap_err();

    assert!(
        matches!(error, InvokeError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    // Three attempts: two backoff sleeps of 20 ms and 40 ms between them.
    assert!(
        started.elapsed() >= BACKOFF_MIN * 3,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_sidecar_500_with_error_code_is_unreachable_not_status() {
    let stand = Stand::start(&[]).await;

    let error = stand
        .client
        .invoke("ghost", Method::GET, "/x", None, &CallHints::default())
        .await
        .unwrap_err();

    assert!(
        matches!(error, InvokeError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("ERR_DIRECT_INVOKE"), "{error}");
    assert_eq!(stand.sidecar.invocations().len(), 3, "retried");
}

#[tokio::test]
async fn a_callee_500_keeps_its_status() {
    let stand = Stand::start(&[("SERVICE_INVOKE_MAX_RETRIES", "1")]).await;
    stand
        .budcluster
        .push_deploy_response(500, json!({"detail": "boom"}));

    let error = stand.deploy().await.unwrap_err();

    assert_eq!(
        error.status(),
        Some(StatusCode::INTERNAL_SERVER_ERROR),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_sidecar_token_is_a_permanent_error() {
    let stand = Stand::start(&[("DAPR_API_TOKEN", "wrong")]).await;
    stand.sidecar.require_token(Some("right"));

    let error = stand.deploy().await.unwrap_err();

    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(stand.budcluster.request_count(), 0);
}

#[tokio::test]
async fn empty_answers_are_empty_objects_and_non_json_answers_are_bad() {
    let stand = Stand::start(&[]).await;
    stand.budcluster.push(Route::Other, Reply::text(204, ""));
    stand
        .budcluster
        .push(Route::Other, Reply::text(200, "<html>hi</html>"));
    let hints = CallHints::default();
    let call = || {
        stand
            .client
            .invoke("budcluster", Method::POST, "api/v1/other", None, &hints)
    };

    assert_eq!(call().await.unwrap(), json!({}));
    let error = call().await.unwrap_err();

    assert!(
        matches!(error, InvokeError::BadResponse { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(
        stand.budcluster.request_count(),
        2,
        "a 2xx is never retried"
    );
    assert_eq!(stand.budcluster.requests()[0].path, "/api/v1/other");
}

#[tokio::test]
async fn trace_context_and_body_reach_the_callee() {
    let stand = Stand::start(&[]).await;
    let hints = CallHints {
        idempotency_key: Some("e:s:2".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..CallHints::default()
    };

    stand
        .budcluster_api()
        .cluster_health(Some("c/1"), &hints)
        .await
        .unwrap();

    let request = &stand.budcluster.requests()[0];
    assert_eq!(request.route, Route::Health);
    assert_eq!(
        request.path, "/api/v1/clusters/c%2F1/health",
        "ids are one segment"
    );
    assert_eq!(request.header("traceparent"), hints.traceparent.as_deref());
    assert_eq!(request.header("idempotency-key"), Some("e:s:2"));
    assert_eq!(request.header("dapr-caller-app-id"), Some("budpipeline"));
}

// --- publish and sidecar health ----------------------------------------------

#[tokio::test]
async fn publish_sends_json_with_the_cloudevent_id() {
    let stand = Stand::start(&[("DAPR_API_TOKEN", "dapr-secret")]).await;
    stand.sidecar.require_token(Some("dapr-secret"));
    let body = json!({"notification_type": "event", "payload": {"x": 1}});

    stand
        .client
        .publish(
            "pipeline-events",
            "exec-1:step a:1",
            &body,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        )
        .await
        .expect("published");

    let published = stand.sidecar.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].pubsub, "budpubsub");
    assert_eq!(published[0].topic, "pipeline-events");
    assert_eq!(
        published[0].cloudevent_id.as_deref(),
        Some("exec-1:step a:1")
    );
    assert_eq!(
        published[0].content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(published[0].body, body);
    assert_eq!(
        published[0].traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}

#[tokio::test]
async fn a_failed_publish_is_reported_and_not_retried_here() {
    let stand = Stand::start(&[]).await;
    stand.sidecar.fail_next_publishes(1);

    let error = stand
        .client
        .publish("t", "id-1", &json!({}), None)
        .await
        .unwrap_err();
    stand
        .client
        .publish("t", "id-1", &json!({}), None)
        .await
        .expect("second try");

    assert!(error.is_retryable(), "{error}");
    assert_eq!(stand.sidecar.published().len(), 1);
    let found = stand
        .sidecar
        .wait_for_published(
            |p| p.cloudevent_id.as_deref() == Some("id-1"),
            Duration::from_secs(1),
        )
        .await;
    assert!(found.is_some());
}

#[tokio::test]
async fn wait_for_sidecar_reports_whether_it_answered() {
    let stand = Stand::start(&[]).await;
    assert!(stand.client.wait_for_sidecar(Duration::from_secs(2)).await);

    stand.sidecar.set_healthy(false);
    let started = Instant::now();
    assert!(
        !stand
            .client
            .wait_for_sidecar(Duration::from_millis(300))
            .await
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

// --- seed actions through the stand-ins --------------------------------------

#[tokio::test]
async fn deploy_model_waits_on_the_budcluster_workflow_and_completes_on_its_event() {
    let stand = Stand::start(&[]).await;
    let ctx = ctx(json!({"cluster_id": "c1", "model_id": "m1", "config": {"replicas": 2}}));
    let hint = ctx.idempotency_hint();

    let outcome = stand.run("deploy_model", ctx).await;

    let workflow_id = stand.budcluster.deploy_workflow_ids()[0].clone();
    let StepOutcome::AwaitEvent {
        external_id,
        outputs,
        timeout,
    } = outcome
    else {
        panic!("expected a wait, got {outcome:?}")
    };
    assert_eq!(external_id, workflow_id);
    assert_eq!(outputs["workflow_id"], json!(workflow_id));
    assert!(
        outputs["deployment_id"]
            .as_str()
            .unwrap()
            .starts_with("dep-")
    );
    assert_eq!(timeout, None);
    let request = &stand.budcluster.requests()[0];
    assert_eq!(request.header("idempotency-key"), Some(hint.as_str()));
    assert_eq!(
        request.body,
        json!({"model_id": "m1", "config": {"replicas": 2}})
    );

    let registry = stand.registry();
    let handler = registry.get("deploy_model").unwrap();
    let event = deployment_event(&workflow_id, "completed", json!({"endpoint": "e1"}));
    assert_eq!(
        handler.on_event(&event, &outputs),
        EventAction::Complete(Map::from_iter([("endpoint".to_owned(), json!("e1"))]))
    );
}

#[tokio::test]
async fn deploy_model_failures_carry_their_retryability() {
    let stand = Stand::start(&[("SERVICE_INVOKE_MAX_RETRIES", "1")]).await;
    stand
        .budcluster
        .push_deploy_response(422, json!({"detail": "unknown model"}));
    stand
        .budcluster
        .push_deploy_response(200, json!({"status": "rejected", "error": "no GPUs"}));
    stand.budcluster.push_deploy_response(503, json!({}));
    let params = json!({"cluster_id": "c1", "model_id": "m1"});

    let rejected = stand.run("deploy_model", ctx(params.clone())).await;
    let refused = stand.run("deploy_model", ctx(params.clone())).await;
    let unavailable = stand.run("deploy_model", ctx(params)).await;

    assert_failed(&rejected, false, "unknown model");
    assert_failed(&refused, false, "no GPUs");
    assert_failed(&unavailable, true, "503");
}

#[tokio::test]
async fn cluster_health_reports_each_check_of_budclusters_route() {
    let stand = Stand::start(&[]).await;
    // budcluster's ClusterHealthResponse (cluster_ops/services.py).
    stand.budcluster.push_health_response(
        200,
        json!({"object": "info", "message": "Cluster health check completed",
               "data": {"nodes": {"healthy": false, "message": "2/3 nodes ready", "count": 3,
                                  "details": {"not_ready_nodes": ["gpu-2"]}},
                        "gpu": {"healthy": true, "message": "4 GPUs allocatable"}}}),
    );

    let outcome = stand
        .run(
            "cluster_health",
            ctx(json!({"cluster_id": "c1", "checks": ["nodes", "gpu", "storage"]})),
        )
        .await;
    let default = stand
        .run("cluster_health", ctx(json!({"cluster_id": "c2"})))
        .await;

    let StepOutcome::Completed { outputs } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(outputs["healthy"], json!(false));
    assert_eq!(outputs["status"], json!("degraded"));
    assert_eq!(
        outputs["issues"],
        json!(["2/3 nodes ready", "storage check not available"])
    );
    assert_eq!(outputs["details"]["gpu"]["message"], "4 GPUs allocatable");
    let StepOutcome::Completed { outputs } = default else {
        panic!("{default:?}")
    };
    assert_eq!(outputs["healthy"], json!(true));
    assert_eq!(outputs["issues"], json!([]));
    let asked: Vec<(String, Option<String>)> = stand
        .budcluster
        .requests()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    assert_eq!(
        asked,
        [
            (
                "/cluster/c1/health".to_owned(),
                Some("checks=nodes,gpu,storage".to_owned())
            ),
            (
                "/cluster/c2/health".to_owned(),
                Some("checks=nodes,api".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn delete_deployment_waits_when_accepted_and_completes_when_done() {
    let stand = Stand::start(&[]).await;
    let params = json!({"cluster_id": "c1", "deployment_id": "d1"});

    let accepted = stand.run("delete_deployment", ctx(params.clone())).await;
    stand
        .budcluster
        .push_delete_response(200, json!({"status": "deleted"}));
    let done = stand.run("delete_deployment", ctx(params)).await;

    assert!(
        matches!(accepted, StepOutcome::AwaitEvent { .. }),
        "{accepted:?}"
    );
    assert_eq!(
        done,
        StepOutcome::completed(Map::from_iter([
            ("deployment_id".to_owned(), json!("d1")),
            ("deleted".to_owned(), json!(true)),
        ]))
    );
    let request = &stand.budcluster.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("DELETE", "/api/v1/clusters/c1/deployments/d1")
    );
}

#[tokio::test]
async fn invoke_service_calls_any_app_and_waits_on_a_response_field() {
    let stand = Stand::start(&[]).await;
    stand.sidecar.add_app("budapp", stand.budcluster.url());
    stand.budcluster.push(
        Route::Other,
        Reply::json(200, json!({"data": {"workflow_id": "app-wf-1"}})),
    );
    stand
        .budcluster
        .push(Route::Other, Reply::json(200, json!({"ok": true})));

    let waiting = stand
        .run(
            "invoke_service",
            ctx(json!({"app_id": "budapp", "method_path": "/models/deploy-workflow",
                       "data": {"model_id": "m"}, "await_event": {"correlation_field": "data.workflow_id"}})),
        )
        .await;
    let direct = stand
        .run(
            "invoke_service",
            ctx(json!({"app_id": "budapp", "method_path": "ping", "http_method": "get"})),
        )
        .await;

    let StepOutcome::AwaitEvent {
        external_id,
        outputs,
        ..
    } = waiting
    else {
        panic!("{waiting:?}")
    };
    assert_eq!(external_id, "app-wf-1");
    assert_eq!(outputs["correlation_id"], "app-wf-1");
    assert_eq!(
        outputs["response"],
        json!({"data": {"workflow_id": "app-wf-1"}})
    );
    assert_eq!(
        direct,
        StepOutcome::completed(Map::from_iter([(
            "response".to_owned(),
            json!({"ok": true})
        )]))
    );
    let requests = stand.budcluster.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/models/deploy-workflow")
    );
    assert_eq!(requests[0].body, json!({"model_id": "m"}));
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path.as_str()),
        ("GET", "/ping")
    );
}

#[tokio::test]
async fn notification_publishes_the_originals_body_to_the_notifications_topic() {
    let stand = Stand::start(&[("NOTIFY_TOPIC", "notificationMessages")]).await;
    let ctx = ctx(
        json!({"channel": "slack", "message": "deployed", "severity": "warning",
               "recipients": ["#ops"], "metadata": {"cluster": "c1"}}),
    );
    let id = format!("{}-{}", ctx.execution_id, ctx.step_id);

    let outcome = stand.run("notification", ctx.clone()).await;

    let StepOutcome::Completed { outputs } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(outputs["sent"], json!(true));
    assert_eq!(outputs["notification_id"], json!(id));
    assert!(
        stand
            .sidecar
            .published_to("notificationMessages")
            .is_empty()
    );
    let published = stand.sidecar.published_to("notifications");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].cloudevent_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        published[0].body,
        json!({"notification_id": id, "channel": "slack", "title": "Workflow Notification",
               "message": "deployed", "severity": "warning",
               "metadata": {"cluster": "c1", "source": "budpipeline",
                            "workflow_execution_id": ctx.execution_id.to_string(),
                            "step_id": ctx.step_id},
               "recipients": ["#ops"]})
    );
}

#[tokio::test]
async fn notification_publish_failure_is_retryable() {
    let stand = Stand::start(&[]).await;
    stand.sidecar.fail_next_publishes(1);

    let outcome = stand
        .run(
            "notification",
            ctx(json!({"channel": "email", "message": "m"})),
        )
        .await;

    assert_failed(&outcome, true, "500");
}

#[tokio::test]
async fn sidecar_delivers_cloudevents_to_an_app() {
    // The delivery helper itself, against a throwaway app that echoes.
    use axum::{Json, Router, http::HeaderMap, routing::post};
    let app = Router::new().route(
        "/workflow-events",
        post(|headers: HeaderMap, body: String| async move {
            let envelope: Value = serde_json::from_str(&body).unwrap();
            Json(json!({
                "status": "SUCCESS",
                "token": headers.get("dapr-api-token").and_then(|v| v.to_str().ok()),
                "content_type": headers.get("content-type").and_then(|v| v.to_str().ok()),
                "envelope": envelope,
            }))
        }),
    );
    let (app_url, server) = support::serve(app, "app").await;
    let stand = Stand::start(&[]).await;
    let event = deployment_event("wf-1", "COMPLETED", json!({}));

    let (status, answer) = stand
        .sidecar
        .deliver_with_id(&app_url, "app-secret", "evt-1", event.clone())
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["token"], "app-secret");
    assert_eq!(answer["content_type"], "application/cloudevents+json");
    let envelope = &answer["envelope"];
    assert_eq!(envelope["specversion"], "1.0");
    assert_eq!(envelope["id"], "evt-1");
    assert_eq!(envelope["source"], "budcluster");
    assert_eq!(envelope["type"], "com.dapr.event.sent");
    assert_eq!(envelope["topic"], "workflow-events");
    assert_eq!(envelope["pubsubname"], "budpubsub");
    assert_eq!(envelope["data"], event);
    server.abort();
}
