//! The whole Dapr flow of the design note, end to end over real HTTP:
//! budpipeline -> sidecar -> budcluster (service invocation), budcluster's
//! event -> sidecar -> `POST /workflow-events`, and the progress events
//! budpipeline publishes to its callers' topics through the sidecar.
//!
//! The service runs in-process ([`TestApp`]) for most tests and as the real
//! binary ([`ServiceProcess`]) where it must be killed or lose its database.
//! Postgres is real (one `#[sqlx::test]` database per test).

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, TOKEN, TestApp, database_url, step};
use support::budcluster::{FakeBudcluster, Reply, Route, deployment_event};
use support::sidecar::{FakeSidecar, Published};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers (kept in this file: tests/support belongs to someone else).
// ---------------------------------------------------------------------------

const DAPR_TOKEN: &str = "dapr-sidecar-secret";

/// A budcluster stand-in, a sidecar in front of it, and the service
/// in-process talking to that sidecar.
struct Stand {
    budcluster: FakeBudcluster,
    sidecar: FakeSidecar,
    app: TestApp,
}

impl Stand {
    async fn start(pool: &PgPool, env: &[(&str, &str)]) -> Self {
        let budcluster = FakeBudcluster::start().await;
        let sidecar = FakeSidecar::start(budcluster.url()).await;
        let mut vars: Vec<(&str, &str)> = vec![("DAPR_HTTP_ENDPOINT", sidecar.url())];
        vars.extend_from_slice(env);
        let app = TestApp::spawn_with(pool, &vars).await;
        Self {
            budcluster,
            sidecar,
            app,
        }
    }

    fn api(&self) -> &Api {
        &self.app.api
    }

    /// budcluster answers the next deploy `200 answer`; an execution of
    /// `deploy_dag(name)` (no extras) starts with `body` and runs until its
    /// deploy step waits for its event (10 s at most). Returns its id.
    async fn deploy_until_waiting(&self, name: &str, answer: Value, body: Value) -> Uuid {
        self.budcluster.push_deploy_response(200, answer);
        let api = self.api();
        let wf = api.create_workflow(deploy_dag(name, json!({}))).await;
        let exec = api.execute(wf, body).await;
        wait_waiting(api, exec, Duration::from_secs(10)).await;
        exec
    }

    /// Deliver budcluster's `deployment_status` event through the sidecar.
    async fn deliver(
        &self,
        workflow_id: &str,
        status: &str,
        content: Value,
    ) -> (StatusCode, Value) {
        self.sidecar
            .deliver(
                &self.app.api.base,
                TOKEN,
                deployment_event(workflow_id, status, content),
            )
            .await
    }
}

/// `deploy` (deploy_model) then `announce` (log). `deploy_extra` is merged
/// into the deploy step (retry, timeout_seconds, ...).
fn deploy_dag(name: &str, deploy_extra: Value) -> Value {
    let mut deploy = json!({
        "id": "deploy", "name": "Deploy model", "action": "deploy_model",
        "params": {"cluster_id": "{{ params.cluster_id }}",
                   "model_id": "{{ params.model_id }}",
                   "config": {"replicas": "{{ params.replicas }}"}}
    });
    for (k, v) in deploy_extra.as_object().cloned().unwrap_or_default() {
        deploy[k] = v;
    }
    json!({
        "name": name,
        "parameters": [
            {"name": "cluster_id", "type": "string", "required": true},
            {"name": "model_id", "type": "string", "required": true},
            {"name": "replicas", "type": "integer", "default": 2, "required": false}
        ],
        "steps": [
            deploy,
            {"id": "announce", "name": "Announce", "action": "log", "depends_on": ["deploy"],
             "params": {"message": "deployed {{ steps.deploy.outputs.deployment_id }}"}}
        ],
        "outputs": {"deployment_id": "{{ steps.deploy.outputs.deployment_id }}"}
    })
}

fn deploy_params() -> Value {
    json!({"parameters": {"cluster_id": "c-1", "model_id": "m-1"}})
}

/// [`deploy_params`] with the execution's events published on `budappEvents`.
fn deploy_params_to_budapp() -> Value {
    json!({"parameters": {"cluster_id": "c-1", "model_id": "m-1"},
           "callback_topics": ["budappEvents"]})
}

/// An accepted deploy answer with a workflow id of the test's choosing.
fn accepted(workflow_id: &str, deployment_id: &str) -> Value {
    json!({"status": "accepted", "workflow_id": workflow_id, "deployment_id": deployment_id})
}

/// Wait until the deploy step waits for its event; returns the execution.
async fn wait_waiting(api: &Api, exec: Uuid, timeout: Duration) -> Value {
    api.wait_until(exec, timeout, |e| {
        let s = step(e, "deploy");
        s["status"] == "RUNNING" && s["awaiting_event"] == true
    })
    .await
}

/// Poll `check` until it holds; panic with `what` otherwise.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events published for execution `exec` on `topic`, in publish order.
fn events_of(sidecar: &FakeSidecar, topic: &str, exec: Uuid) -> Vec<Published> {
    sidecar
        .published_to(topic)
        .into_iter()
        .filter(|p| p.body["payload"]["workflow_id"] == exec.to_string())
        .collect()
}

/// `(payload.event, content.status)` of each published event.
fn labels(events: &[Published]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|p| {
            (
                p.body["payload"]["event"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                p.body["payload"]["content"]["status"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            )
        })
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Rows of `inbound_events` for one CloudEvent id: (status, correlation_id).
async fn inbound(pool: &PgPool, id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT status, correlation_id FROM inbound_events WHERE id = $1")
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A raw POST to `/workflow-events` (for bodies the sidecar helper cannot send).
async fn post_raw(base: &str, token: Option<&str>, body: &'static str) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/workflow-events"))
        .header("content-type", "application/cloudevents+json")
        .body(body);
    if let Some(t) = token {
        req = req.header("dapr-api-token", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A TCP proxy in front of Postgres that can be "unplugged": while down it
/// closes every connection it accepts and has cut all the ones it carried.
#[derive(Clone)]
struct DbProxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DbProxy {
    async fn start(target: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !p.up.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                p.conns.lock().unwrap().push(task);
            }
        });
        proxy
    }

    fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `db_url` with its host and port replaced by the proxy's.
    fn url_for(&self, db_url: &str) -> String {
        let (scheme, rest) = db_url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!(
            "{scheme}://{}127.0.0.1:{}/{path}",
            userinfo.unwrap_or_default(),
            self.port
        )
    }
}

/// Host and port of the real database (the proxy's target).
fn db_target() -> &'static str {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    Box::leak(hostport.into_boxed_str())
}

// ---------------------------------------------------------------------------
// The whole flow of the design note.
// ---------------------------------------------------------------------------

/// The caller's W3C trace is continued: on the call to budcluster, and on
/// every progress event published for the execution.
#[sqlx::test]
async fn the_callers_trace_reaches_budcluster_and_the_callback_events(pool: PgPool) {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let stand = Stand::start(&pool, &[]).await;
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-trace", "dep-trace"));
    let api = stand.api();
    let wf = api.create_workflow(deploy_dag("traced", json!({}))).await;
    let resp = api
        .http
        .post(format!("{}/workflows/{wf}/execute", api.base))
        .header("dapr-api-token", TOKEN)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(
            &json!({"parameters": {"cluster_id": "c-1", "model_id": "m-1"},
                      "callback_topics": ["budappEvents"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Value = resp.json().await.unwrap();
    let exec: Uuid = body["execution_id"].as_str().unwrap().parse().unwrap();
    wait_waiting(api, exec, Duration::from_secs(10)).await;

    let call = &stand.budcluster.requests_to(Route::Deploy)[0];
    let sent = call.header("traceparent").unwrap_or_default().to_owned();
    assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");

    let (status, _) = stand
        .deliver(
            "bc-wf-trace",
            "COMPLETED",
            json!({"deployment_id": "dep-trace"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let results = stand
        .sidecar
        .wait_for_published(
            |p| {
                p.body["payload"]["workflow_id"] == exec.to_string()
                    && p.body["payload"]["event"] == "results"
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(results.is_some(), "results published");
    let events = events_of(&stand.sidecar, "budappEvents", exec);
    assert!(events.len() >= 3, "{events:?}");
    for event in &events {
        let traceparent = event.traceparent.as_deref().unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{TRACE}-")),
            "{traceparent:?} on {}",
            event.body
        );
    }
}

#[sqlx::test]
async fn deploy_flow_end_to_end_through_the_sidecar(pool: PgPool) {
    let stand = Stand::start(&pool, &[("DAPR_API_TOKEN", DAPR_TOKEN)]).await;
    stand.sidecar.require_token(Some(DAPR_TOKEN));
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-main", "dep-main"));
    let api = stand.api();

    let wf = api
        .create_workflow(deploy_dag("deploy-and-log", json!({})))
        .await;
    let exec = api
        .execute(
            wf,
            json!({"parameters": {"cluster_id": "c-1", "model_id": "m-1"},
                   "callback_topics": ["budappEvents", "budadminEvents"]}),
        )
        .await;

    // budcluster accepted: the step waits on budcluster's workflow id.
    let waiting = wait_waiting(api, exec, Duration::from_secs(10)).await;
    let deploy = step(&waiting, "deploy");
    assert_eq!(waiting["status"], "RUNNING");
    assert_eq!(deploy["external_workflow_id"], "bc-wf-main");
    assert!(deploy["timeout_at"].is_string(), "timeout_at set: {deploy}");
    assert_eq!(deploy["attempt"], 1);
    assert_eq!(step(&waiting, "announce")["status"], "PENDING");

    // What crossed the sidecar: the token, an idempotency key, the body.
    let invocations = stand.sidecar.invocations();
    assert_eq!(invocations.len(), 1, "one invocation: {invocations:?}");
    let inv = &invocations[0];
    assert_eq!(inv.app_id, "budcluster");
    assert_eq!(inv.method, "POST");
    assert_eq!(inv.path, "/api/v1/clusters/c-1/deployments");
    assert_eq!(inv.status, 200);
    assert_eq!(
        inv.headers
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok()),
        Some(DAPR_TOKEN)
    );
    let key = format!("{exec}:deploy:1");
    assert_eq!(
        inv.headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(key.as_str())
    );
    let requests = stand.budcluster.requests_to(Route::Deploy);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].body,
        json!({"model_id": "m-1", "config": {"replicas": 2}})
    );
    assert_eq!(requests[0].header("idempotency-key"), Some(key.as_str()));

    // budcluster's completion event, delivered by the sidecar.
    let (status, answer) = stand
        .deliver(
            "bc-wf-main",
            "COMPLETED",
            json!({"deployment_id": "dep-main", "message": "Deployment successful",
                   "endpoint": "http://m-1.c-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "SUCCESS", "{answer}");

    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "COMPLETED");
    assert_eq!(deploy["awaiting_event"], false);
    assert_eq!(
        deploy["outputs"],
        json!({"deployment_id": "dep-main", "workflow_id": "bc-wf-main",
               "message": "Deployment successful", "endpoint": "http://m-1.c-1"})
    );
    let announce = step(&done, "announce");
    assert_eq!(announce["status"], "COMPLETED");
    assert_eq!(announce["outputs"]["message"], "deployed dep-main");
    assert_eq!(done["outputs"], json!({"deployment_id": "dep-main"}));
    assert_eq!(done["progress_percentage"].as_f64(), Some(100.0));

    // Every callback topic gets the whole story, once.
    let mut all_ids = Vec::new();
    for topic in ["budappEvents", "budadminEvents"] {
        let results = stand
            .sidecar
            .wait_for_published(
                |p| {
                    p.topic == topic
                        && p.body["payload"]["workflow_id"] == exec.to_string()
                        && p.body["payload"]["event"] == "results"
                },
                Duration::from_secs(10),
            )
            .await;
        assert!(results.is_some(), "results event on {topic}");
        stand.app.outbox_drained().await;
        let events = events_of(&stand.sidecar, topic, exec);
        let got = labels(&events);
        let progress: Vec<(String, String)> = got
            .iter()
            .filter(|(e, _)| e == "progress")
            .cloned()
            .collect();
        let without_progress: Vec<(String, String)> = got
            .iter()
            .filter(|(e, _)| e != "progress")
            .cloned()
            .collect();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            without_progress,
            vec![
                pair("deploy", "STARTED"),
                pair("deploy", "COMPLETED"),
                pair("announce", "STARTED"),
                pair("announce", "COMPLETED"),
                pair("results", "COMPLETED"),
            ],
            "events on {topic}: {got:?}"
        );
        assert!(!progress.is_empty(), "progress events on {topic}: {got:?}");
        let percentages: Vec<f64> = events
            .iter()
            .filter(|p| p.body["payload"]["event"] == "progress")
            .map(|p| {
                assert_eq!(p.body["payload"]["content"]["status"], "RUNNING");
                p.body["payload"]["content"]["result"]["progress_percentage"]
                    .as_f64()
                    .expect("progress_percentage")
            })
            .collect();
        assert_eq!(
            percentages[0], 50.0,
            "progress after the deploy: {percentages:?}"
        );
        assert!(
            percentages.iter().all(|p| *p == 50.0 || *p == 100.0),
            "{percentages:?}"
        );
        // The progress after the deploy comes after its COMPLETED and before the results.
        let pos = |e: &str, s: &str| got.iter().position(|x| x.0 == e && x.1 == s).unwrap();
        let first_progress = got.iter().position(|x| x.0 == "progress").unwrap();
        assert!(pos("deploy", "COMPLETED") < first_progress);
        assert!(first_progress < pos("results", "COMPLETED"));

        let results: Vec<&Published> = events
            .iter()
            .filter(|p| p.body["payload"]["event"] == "results")
            .collect();
        assert_eq!(results.len(), 1, "exactly one results event on {topic}");
        let content = &results[0].body["payload"]["content"];
        assert_eq!(content["status"], "COMPLETED");
        assert_eq!(content["result"]["success"], true);
        assert_eq!(
            content["result"]["outputs"],
            json!({"deployment_id": "dep-main"})
        );

        for p in &events {
            assert_eq!(p.pubsub, "budpubsub");
            assert!(
                p.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("application/json")),
                "content type {:?}",
                p.content_type
            );
            let b = &p.body;
            assert_eq!(
                keys(b),
                [
                    "name",
                    "notification_type",
                    "payload",
                    "source",
                    "source_topic"
                ]
            );
            assert_eq!(b["notification_type"], "event");
            assert_eq!(b["name"], "bud-notification");
            assert_eq!(b["source"], "budpipeline");
            assert_eq!(b["source_topic"], topic);
            let payload = &b["payload"];
            assert_eq!(
                keys(payload),
                [
                    "category",
                    "content",
                    "event",
                    "source",
                    "type",
                    "workflow_id"
                ]
            );
            assert_eq!(payload["category"], "internal");
            assert_eq!(payload["type"], "pipeline_execution");
            assert_eq!(payload["source"], "budpipeline");
            assert_eq!(payload["workflow_id"], exec.to_string());
            assert_eq!(
                keys(&payload["content"]),
                ["message", "result", "status", "title"]
            );
            assert!(payload["content"]["title"].is_string());
            assert!(payload["content"]["message"].is_string());
            assert!(payload["content"]["result"].is_object());
            let id = p.cloudevent_id.clone().expect("a cloudevent id");
            assert!(!id.is_empty());
            all_ids.push(id);
        }
    }
    let distinct: HashSet<&String> = all_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        all_ids.len(),
        "distinct events have distinct ids: {all_ids:?}"
    );
    // The event was recorded once, as applied.
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT status, correlation_id FROM inbound_events WHERE correlation_id = 'bc-wf-main'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, [("APPLIED".to_owned(), "bc-wf-main".to_owned())]);

    // A later event for the finished step: SUCCESS, changes nothing.
    let before = stand.sidecar.published().len();
    let (status, answer) = stand
        .deliver("bc-wf-main", "FAILED", json!({"message": "late failure"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    // The event was applied (or not) before the answer; what it published,
    // if anything, has gone out once the outbox is empty.
    stand.app.outbox_drained().await;
    let after = api.execution(exec).await;
    assert_eq!(after["status"], "COMPLETED");
    assert_eq!(step(&after, "deploy")["status"], "COMPLETED");
    assert_eq!(step(&after, "deploy")["outputs"], deploy["outputs"]);
    assert_eq!(after["outputs"], done["outputs"]);
    assert_eq!(
        stand.sidecar.published().len(),
        before,
        "a stale event publishes nothing"
    );
}

// ---------------------------------------------------------------------------
// Event paths.
// ---------------------------------------------------------------------------

#[sqlx::test]
async fn failed_event_fails_the_step_and_the_execution(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-fails",
            accepted("bc-wf-fail", "dep-fail"),
            deploy_params_to_budapp(),
        )
        .await;

    let (status, answer) = stand
        .deliver(
            "bc-wf-fail",
            "failed",
            json!({"message": "no GPU left on c-1"}),
        )
        .await;
    assert_eq!(
        (status, answer["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );

    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "FAILED");
    assert_eq!(deploy["error"], "no GPU left on c-1");
    assert_eq!(deploy["awaiting_event"], false);
    assert_eq!(step(&done, "announce")["status"], "SKIPPED");
    assert_eq!(step(&done, "announce")["skip_reason"], "upstream_failed");
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 1);

    let results = stand
        .sidecar
        .wait_for_published(
            |p| p.topic == "budappEvents" && p.body["payload"]["event"] == "results",
            Duration::from_secs(10),
        )
        .await
        .expect("a results event");
    assert_eq!(results.body["payload"]["content"]["status"], "FAILED");
    assert_eq!(
        results.body["payload"]["content"]["result"]["success"],
        false
    );
    let deploy_failed = events_of(&stand.sidecar, "budappEvents", exec)
        .into_iter()
        .find(|p| {
            p.body["payload"]["event"] == "deploy"
                && p.body["payload"]["content"]["status"] == "FAILED"
        })
        .expect("deploy FAILED event");
    assert_eq!(
        deploy_failed.body["payload"]["content"]["message"],
        "no GPU left on c-1"
    );
}

#[sqlx::test]
async fn failed_event_with_a_retry_block_deploys_again(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-r1", "dep-r1"));
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-r2", "dep-r2"));
    let api = stand.api();
    let dag = deploy_dag(
        "deploy-retried",
        json!({"retry": {"max_attempts": 2, "backoff_seconds": 0.5}}),
    );
    let wf = api.create_workflow(dag).await;
    let exec = api.execute(wf, deploy_params()).await;
    wait_waiting(api, exec, Duration::from_secs(10)).await;

    let (_, answer) = stand
        .deliver("bc-wf-r1", "FAILED", json!({"message": "first try failed"}))
        .await;
    assert_eq!(answer["status"], "SUCCESS");

    // The step runs again: a second deploy request, a new workflow to wait on.
    let second = api
        .wait_until(exec, Duration::from_secs(10), |e| {
            let s = step(e, "deploy");
            s["awaiting_event"] == true && s["external_workflow_id"] == "bc-wf-r2"
        })
        .await;
    assert_eq!(step(&second, "deploy")["attempt"], 2);
    let requests = stand.budcluster.requests_to(Route::Deploy);
    assert_eq!(requests.len(), 2, "budcluster got two deploy requests");
    assert_eq!(
        requests[0].header("idempotency-key").map(str::to_owned),
        Some(format!("{exec}:deploy:1"))
    );
    assert_eq!(
        requests[1].header("idempotency-key").map(str::to_owned),
        Some(format!("{exec}:deploy:2"))
    );

    // The first workflow's late events no longer concern the step.
    let (_, answer) = stand
        .deliver("bc-wf-r1", "COMPLETED", json!({"deployment_id": "dep-r1"}))
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let still = api.execution(exec).await;
    assert_eq!(step(&still, "deploy")["status"], "RUNNING");
    assert_eq!(step(&still, "deploy")["awaiting_event"], true);

    let (_, answer) = stand
        .deliver(
            "bc-wf-r2",
            "FAILED",
            json!({"message": "second try failed"}),
        )
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(step(&done, "deploy")["status"], "FAILED");
    assert_eq!(step(&done, "deploy")["error"], "second try failed");
    assert_eq!(step(&done, "deploy")["attempt"], 2);
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 2);
}

#[sqlx::test]
async fn a_step_that_gets_no_event_times_out(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-slow", "dep-slow"));
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-timeout", json!({"timeout_seconds": 1})))
        .await;
    let started = Instant::now();
    let exec = api.execute(wf, deploy_params()).await;
    let waiting = wait_waiting(api, exec, Duration::from_secs(10)).await;
    assert!(step(&waiting, "deploy")["timeout_at"].is_string());

    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "TIMEOUT");
    assert_eq!(deploy["awaiting_event"], false);
    assert!(
        deploy["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{deploy}"
    );
    assert_eq!(step(&done, "announce")["status"], "SKIPPED");

    // The late event is recorded and changes nothing.
    let (_, answer) = stand
        .deliver(
            "bc-wf-slow",
            "COMPLETED",
            json!({"deployment_id": "dep-slow"}),
        )
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let after = api.execution(exec).await;
    assert_eq!(after["status"], "FAILED");
    assert_eq!(step(&after, "deploy")["status"], "TIMEOUT");
}

#[sqlx::test]
async fn a_redelivered_event_is_applied_once(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-dup",
            accepted("bc-wf-dup", "dep-dup"),
            deploy_params_to_budapp(),
        )
        .await;

    // Same CloudEvent id, different data: the second is the same event
    // re-sent as far as dedupe is concerned, so its COMPLETED is not applied.
    let progress = deployment_event("bc-wf-dup", "RUNNING", json!({"progress_percentage": 40}));
    let (s1, a1) = stand
        .sidecar
        .deliver_with_id(&stand.app.api.base, TOKEN, "ce-progress-1", progress)
        .await;
    assert_eq!(
        (s1, a1["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );
    let (s2, a2) = stand
        .sidecar
        .deliver_with_id(
            &stand.app.api.base,
            TOKEN,
            "ce-progress-1",
            deployment_event(
                "bc-wf-dup",
                "COMPLETED",
                json!({"deployment_id": "dep-dup"}),
            ),
        )
        .await;
    assert_eq!(
        (s2, a2["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );
    let mid = api.execution(exec).await;
    assert_eq!(
        step(&mid, "deploy")["status"],
        "RUNNING",
        "the duplicate id was not applied"
    );
    assert_eq!(step(&mid, "deploy")["awaiting_event"], true);

    // The COMPLETED event delivered twice under one id.
    let completed = deployment_event(
        "bc-wf-dup",
        "COMPLETED",
        json!({"deployment_id": "dep-dup", "message": "ok"}),
    );
    let (s1, a1) = stand
        .sidecar
        .deliver_with_id(&stand.app.api.base, TOKEN, "ce-done-1", completed.clone())
        .await;
    let (s2, a2) = stand
        .sidecar
        .deliver_with_id(&stand.app.api.base, TOKEN, "ce-done-1", completed)
        .await;
    assert_eq!(
        (s1, a1["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );
    assert_eq!(
        (s2, a2["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );

    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(step(&done, "deploy")["attempt"], 1);
    assert_eq!(
        step(&done, "deploy")["outputs"],
        json!({"deployment_id": "dep-dup", "workflow_id": "bc-wf-dup", "message": "ok"})
    );
    assert_eq!(inbound(&pool, "ce-done-1").await.len(), 1);
    assert_eq!(inbound(&pool, "ce-done-1").await[0].0, "APPLIED");
    assert_eq!(inbound(&pool, "ce-progress-1").await.len(), 1);

    stand
        .sidecar
        .wait_for_published(
            |p| p.body["payload"]["event"] == "results",
            Duration::from_secs(10),
        )
        .await
        .expect("results");
    stand.app.outbox_drained().await;
    let deploy_completed = events_of(&stand.sidecar, "budappEvents", exec)
        .iter()
        .filter(|p| {
            p.body["payload"]["event"] == "deploy"
                && p.body["payload"]["content"]["status"] == "COMPLETED"
        })
        .count();
    assert_eq!(deploy_completed, 1, "the step completed once");
}

#[sqlx::test]
async fn an_event_that_arrives_before_the_wait_completes_the_step(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    // budcluster starts its workflow (and could publish its event) before
    // its answer reaches budpipeline.
    stand.budcluster.push(
        Route::Deploy,
        Reply::json(200, accepted("bc-wf-early", "dep-early")).after(Duration::from_millis(500)),
    );
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-early", json!({})))
        .await;
    let exec = api.execute(wf, deploy_params()).await;

    eventually(
        Duration::from_secs(10),
        "the deploy request is in flight",
        || async { !stand.budcluster.requests_to(Route::Deploy).is_empty() },
    )
    .await;
    let (status, answer) = stand
        .deliver(
            "bc-wf-early",
            "COMPLETED",
            json!({"deployment_id": "dep-early", "message": "quick"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["status"], "SUCCESS",
        "an early event is kept: {answer}"
    );
    let mid = api.execution(exec).await;
    assert_eq!(
        step(&mid, "deploy")["awaiting_event"],
        false,
        "the event really was early: {mid:#}"
    );
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT status, correlation_id FROM inbound_events WHERE correlation_id = 'bc-wf-early'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(kept, [("EARLY".to_owned(), "bc-wf-early".to_owned())]);

    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "COMPLETED");
    assert_eq!(deploy["external_workflow_id"], "bc-wf-early");
    assert_eq!(
        deploy["outputs"],
        json!({"deployment_id": "dep-early", "workflow_id": "bc-wf-early", "message": "quick"})
    );
    assert_eq!(done["outputs"], json!({"deployment_id": "dep-early"}));
    let consumed: Vec<(String,)> =
        sqlx::query_as("SELECT status FROM inbound_events WHERE correlation_id = 'bc-wf-early'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        consumed,
        [("CONSUMED".to_owned(),)],
        "consumed exactly once"
    );
}

#[sqlx::test]
async fn unusable_and_unauthorised_deliveries(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let base = stand.app.api.base.clone();

    // No correlation id anywhere: DROP with a 200.
    let (status, answer) = stand
        .sidecar
        .deliver(
            &base,
            TOKEN,
            json!({"event_type": "deployment_status", "status": "COMPLETED",
                   "content": {"deployment_id": "d"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "DROP", "{answer}");

    // A body that is not JSON at all.
    let (status, answer) = post_raw(&base, Some(TOKEN), "this is not json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "DROP", "{answer}");

    // A CloudEvent whose data is not an object.
    let (status, answer) = post_raw(
        &base,
        Some(TOKEN),
        r#"{"specversion":"1.0","id":"x1","source":"budcluster","data":42}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "DROP", "{answer}");

    // Wrong or missing token: 403, the event is not looked at.
    let event = deployment_event("bc-wf-x", "COMPLETED", json!({}));
    let (status, answer) = stand
        .sidecar
        .deliver(&base, "not-the-token", event.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer, json!({"detail": "Forbidden"}));
    let (status, answer) = stand.sidecar.deliver(&base, "", event).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer, json!({"detail": "Forbidden"}));
    let (status, _) = post_raw(&base, None, "not json").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing was recorded");
}

#[sqlx::test]
async fn a_cancelled_executions_later_event_changes_nothing(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-cancel",
            accepted("bc-wf-cancel", "dep-cancel"),
            deploy_params_to_budapp(),
        )
        .await;

    let (status, cancelled) = api
        .post(&format!("/executions/{exec}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(step(&cancelled, "deploy")["status"], "CANCELLED");
    assert_eq!(step(&cancelled, "deploy")["awaiting_event"], false);

    let (status, answer) = stand
        .deliver(
            "bc-wf-cancel",
            "COMPLETED",
            json!({"deployment_id": "dep-cancel"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    // The event was applied (or not) before the answer; what it published,
    // if anything, has gone out once the outbox is empty.
    stand.app.outbox_drained().await;
    let after = api.execution(exec).await;
    assert_eq!(after["status"], "CANCELLED");
    assert_eq!(step(&after, "deploy")["status"], "CANCELLED");
    assert_eq!(
        step(&after, "announce")["status"],
        cancelled["steps"][1]["status"]
    );
    assert_ne!(step(&after, "announce")["status"], "COMPLETED");
    assert_ne!(step(&after, "announce")["status"], "RUNNING");
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 1);

    let results = stand
        .sidecar
        .wait_for_published(
            |p| p.body["payload"]["event"] == "results",
            Duration::from_secs(10),
        )
        .await
        .expect("results event");
    assert_eq!(results.body["payload"]["content"]["status"], "FAILED");
    assert_eq!(
        results.body["payload"]["content"]["result"]["cancelled"],
        true
    );
    stand.app.outbox_drained().await;
    let events = events_of(&stand.sidecar, "budappEvents", exec);
    assert_eq!(
        events
            .iter()
            .filter(|p| p.body["payload"]["event"] == "results")
            .count(),
        1
    );
    assert!(
        !events
            .iter()
            .any(|p| p.body["payload"]["event"] == "announce"),
        "nothing ran after the cancel: {:?}",
        labels(&events)
    );
}

#[sqlx::test]
async fn two_steps_cannot_wait_on_one_budcluster_workflow(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-shared", "dep-a"));
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-shared", "dep-b"));
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-shared", json!({})))
        .await;
    let first = api.execute(wf, deploy_params()).await;
    wait_waiting(api, first, Duration::from_secs(10)).await;

    let second = api.execute(wf, deploy_params()).await;
    let failed = api.wait_terminal(second, Duration::from_secs(10)).await;
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    let deploy = step(&failed, "deploy");
    assert_eq!(deploy["status"], "FAILED");
    assert_eq!(deploy["awaiting_event"], false);
    let error = deploy["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("bc-wf-shared") && error.contains("already waiting"),
        "a clear error: {error}"
    );

    // The first still waits and completes on the event.
    let first_now = api.execution(first).await;
    assert_eq!(step(&first_now, "deploy")["awaiting_event"], true);
    let (_, answer) = stand
        .deliver(
            "bc-wf-shared",
            "COMPLETED",
            json!({"deployment_id": "dep-a"}),
        )
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let done = api.wait_terminal(first, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["outputs"], json!({"deployment_id": "dep-a"}));
    let second_now = api.execution(second).await;
    assert_eq!(second_now["status"], "FAILED");
    // The service is still fine.
    let (status, _) = api.get("/internal/status").await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Retries and the circuit breaker, through the engine.
// ---------------------------------------------------------------------------

#[sqlx::test]
async fn transient_503s_are_retried_by_the_invocation(pool: PgPool) {
    let stand = Stand::start(&pool, &[("SERVICE_INVOKE_MAX_RETRIES", "3")]).await;
    stand
        .budcluster
        .push_deploy_response(503, json!({"detail": "busy"}));
    stand
        .budcluster
        .push_deploy_response(503, json!({"detail": "busy"}));
    stand
        .budcluster
        .push_deploy_response(200, accepted("bc-wf-third", "dep-third"));
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-503", json!({})))
        .await;
    let started = Instant::now();
    let exec = api.execute(wf, deploy_params()).await;
    let waiting = wait_waiting(api, exec, Duration::from_secs(14)).await;
    // 2 s then 4 s between the attempts of one call.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        step(&waiting, "deploy")["external_workflow_id"],
        "bc-wf-third"
    );
    assert_eq!(
        step(&waiting, "deploy")["attempt"],
        1,
        "one step attempt, three calls"
    );
    let requests = stand.budcluster.requests_to(Route::Deploy);
    assert_eq!(requests.len(), 3);
    let key = format!("{exec}:deploy:1");
    for r in &requests {
        assert_eq!(
            r.header("idempotency-key"),
            Some(key.as_str()),
            "same key on every retry"
        );
    }

    let (_, answer) = stand
        .deliver(
            "bc-wf-third",
            "COMPLETED",
            json!({"deployment_id": "dep-third"}),
        )
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(step(&done, "deploy")["status"], "COMPLETED");
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 3);
}

#[sqlx::test]
async fn a_400_fails_the_step_at_once_without_any_retry(pool: PgPool) {
    let stand = Stand::start(&pool, &[("SERVICE_INVOKE_MAX_RETRIES", "3")]).await;
    stand
        .budcluster
        .push_deploy_response(400, json!({"detail": "unknown model m-1"}));
    let api = stand.api();
    let dag = deploy_dag(
        "deploy-400",
        json!({"retry": {"max_attempts": 3, "backoff_seconds": 0.5}}),
    );
    let wf = api.create_workflow(dag).await;
    let exec = api.execute(wf, deploy_params()).await;
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED", "{done:#}");
    let deploy = step(&done, "deploy");
    assert_eq!(deploy["status"], "FAILED");
    assert_eq!(deploy["attempt"], 1, "no step retry");
    let error = deploy["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("400") && error.contains("unknown model m-1"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 1);
    // A permanent 4xx says budcluster is up: the breaker stays closed.
    let (_, status) = stand.api().get("/internal/status").await;
    assert_eq!(
        status["circuit_breakers"]["budcluster"], "closed",
        "{status}"
    );
}

#[sqlx::test]
async fn the_breaker_opens_fails_fast_and_closes_after_a_trial(pool: PgPool) {
    let stand = Stand::start(
        &pool,
        &[
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2"),
            ("SERVICE_INVOKE_MAX_RETRIES", "1"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "1"),
        ],
    )
    .await;
    stand
        .budcluster
        .set_default(Route::Deploy, Reply::json(503, json!({"detail": "down"})));
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-breaker", json!({})))
        .await;

    for n in 1..=2 {
        let exec = api.execute(wf, deploy_params()).await;
        let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "FAILED");
        let error = step(&done, "deploy")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains("503"), "{error}");
        assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), n);
    }
    let (_, status) = api.get("/internal/status").await;
    assert_eq!(status["circuit_breakers"]["budcluster"], "open", "{status}");

    // Open: executions fail fast without reaching budcluster.
    let opened = Instant::now();
    let exec = api.execute(wf, deploy_params()).await;
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "FAILED");
    let error = step(&done, "deploy")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("circuit breaker open"), "{error}");
    assert_eq!(
        stand.budcluster.requests_to(Route::Deploy).len(),
        2,
        "no call while open"
    );
    assert!(opened.elapsed() < Duration::from_secs(1), "failed fast");

    // After the recovery time a trial goes through, succeeds, and closes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stand.budcluster.set_default(
        Route::Deploy,
        Reply::json(200, accepted("bc-wf-trial", "dep-trial")),
    );
    let exec = api.execute(wf, deploy_params()).await;
    let waiting = wait_waiting(api, exec, Duration::from_secs(10)).await;
    assert_eq!(
        step(&waiting, "deploy")["external_workflow_id"],
        "bc-wf-trial"
    );
    assert_eq!(stand.budcluster.requests_to(Route::Deploy).len(), 3);
    let (_, status) = api.get("/internal/status").await;
    assert_eq!(
        status["circuit_breakers"]["budcluster"], "closed",
        "{status}"
    );
    let (_, answer) = stand
        .deliver(
            "bc-wf-trial",
            "COMPLETED",
            json!({"deployment_id": "dep-trial"}),
        )
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");
}

// ---------------------------------------------------------------------------
// Durability: the database away, kill -9, the outbox across a restart.
// ---------------------------------------------------------------------------

#[sqlx::test]
async fn an_event_while_the_database_is_down_is_retried_then_applied_once(pool: PgPool) {
    let budcluster = FakeBudcluster::start().await;
    budcluster.push_deploy_response(200, accepted("bc-wf-dbdown", "dep-dbdown"));
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    let proxy = DbProxy::start(db_target()).await;
    let url = proxy.url_for(&database_url(&pool));
    let mut service = ServiceProcess::start(&url, &[("DAPR_HTTP_ENDPOINT", sidecar.url())]).await;
    let api = service.api.clone();
    let wf = api
        .create_workflow(deploy_dag("deploy-dbdown", json!({})))
        .await;
    let exec = api.execute(wf, deploy_params()).await;
    wait_waiting(&api, exec, Duration::from_secs(15)).await;

    proxy.down();
    let event = deployment_event(
        "bc-wf-dbdown",
        "COMPLETED",
        json!({"deployment_id": "dep-dbdown", "message": "done"}),
    );
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(30),
        sidecar.deliver_with_id(&api.base, TOKEN, "ce-dbdown-1", event.clone()),
    )
    .await
    .expect("the service answers while its database is away");
    assert!(status.is_server_error(), "{status} {answer}");
    assert_ne!(status, StatusCode::NOT_FOUND);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(answer["status"], "RETRY", "{answer}");
    }
    assert!(
        inbound(&pool, "ce-dbdown-1").await.is_empty(),
        "nothing recorded"
    );

    proxy.up();
    // Dapr redelivers the same event until it is SUCCESS.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let (status, answer) = sidecar
            .deliver_with_id(&api.base, TOKEN, "ce-dbdown-1", event.clone())
            .await;
        if status == StatusCode::OK {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "redelivery never succeeded: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    let (status, again) = sidecar
        .deliver_with_id(&api.base, TOKEN, "ce-dbdown-1", event)
        .await;
    assert_eq!(
        (status, again["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );

    let done = api.wait_terminal(exec, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(step(&done, "deploy")["outputs"]["message"], "done");
    assert_eq!(step(&done, "deploy")["attempt"], 1);
    assert_eq!(
        inbound(&pool, "ce-dbdown-1").await,
        [("APPLIED".to_owned(), "bc-wf-dbdown".to_owned())]
    );
    service.kill9().await;
}

#[sqlx::test]
async fn an_event_answered_success_survives_kill_9(pool: PgPool) {
    let budcluster = FakeBudcluster::start().await;
    budcluster.push_deploy_response(200, accepted("bc-wf-kill", "dep-kill"));
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    let mut service = ServiceProcess::start(
        &database_url(&pool),
        &[("DAPR_HTTP_ENDPOINT", sidecar.url())],
    )
    .await;
    let api = service.api.clone();
    let wf = api
        .create_workflow(deploy_dag("deploy-kill", json!({})))
        .await;
    let exec = api.execute(wf, deploy_params()).await;
    wait_waiting(&api, exec, Duration::from_secs(15)).await;

    let (status, answer) = sidecar
        .deliver(
            &api.base,
            TOKEN,
            deployment_event(
                "bc-wf-kill",
                "COMPLETED",
                json!({"deployment_id": "dep-kill", "message": "survived"}),
            ),
        )
        .await;
    service.kill9().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "SUCCESS", "{answer}");

    // Straight from the database: the effect is there before any restart.
    let (status_db, outputs): (String, Value) = sqlx::query_as(
        "SELECT status, outputs FROM step_executions WHERE execution_id = $1 AND step_id = 'deploy'",
    )
    .bind(exec)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status_db, "COMPLETED");
    assert_eq!(outputs["message"], "survived");

    service.restart().await;
    let done = service
        .api
        .wait_terminal(exec, Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(step(&done, "deploy")["status"], "COMPLETED");
    assert_eq!(
        step(&done, "deploy")["outputs"]["deployment_id"],
        "dep-kill"
    );
    assert_eq!(step(&done, "announce")["status"], "COMPLETED");
    assert_eq!(done["outputs"], json!({"deployment_id": "dep-kill"}));
    assert_eq!(
        budcluster.requests_to(Route::Deploy).len(),
        1,
        "not deployed again"
    );
    service.kill9().await;
}

#[sqlx::test]
async fn the_outbox_survives_a_restart_with_the_original_ids(pool: PgPool) {
    let budcluster = FakeBudcluster::start().await;
    let sidecar = FakeSidecar::start(budcluster.url()).await;
    sidecar.fail_next_publishes(1_000_000);
    let mut service = ServiceProcess::start(
        &database_url(&pool),
        &[("DAPR_HTTP_ENDPOINT", sidecar.url())],
    )
    .await;
    let api = service.api.clone();
    let wf = api
        .create_workflow(json!({
            "name": "two-logs",
            "steps": [
                {"id": "first", "name": "First", "action": "log", "params": {"message": "one"}},
                {"id": "second", "name": "Second", "action": "log", "depends_on": ["first"],
                 "params": {"message": "two"}}
            ]
        }))
        .await;
    let exec = api
        .execute(wf, json!({"callback_topics": ["budappEvents"]}))
        .await;
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");

    // Nothing got through, so everything is still in the outbox.
    let expected: Vec<(String, Value)> = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows: Vec<(String, Value)> =
                sqlx::query_as("SELECT event_id, body FROM outbox ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            // first STARTED/COMPLETED, progress, second STARTED/COMPLETED, results
            if rows.len() >= 6 || Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(expected.len(), 6, "{expected:#?}");
    assert!(sidecar.published().is_empty());
    let (_, status) = api.get("/internal/status").await;
    assert!(
        status["outbox"]["backlog"].as_i64().unwrap_or(0) > 0,
        "{status}"
    );
    eventually(
        Duration::from_secs(10),
        "a publish attempt failed",
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE attempts > 0")
                .fetch_one(&pool)
                .await
                .unwrap();
            n > 0
        },
    )
    .await;

    service.kill9().await;
    sidecar.fail_next_publishes(0);
    service.restart().await;

    let expected_ids: HashSet<String> = expected.iter().map(|(id, _)| id.clone()).collect();
    eventually(
        Duration::from_secs(45),
        "every outbox event is published",
        || async {
            let got: HashSet<String> = sidecar
                .published()
                .into_iter()
                .filter_map(|p| p.cloudevent_id)
                .collect();
            expected_ids.is_subset(&got)
        },
    )
    .await;
    let published = sidecar.published();
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for p in &published {
        let id = p.cloudevent_id.clone().expect("id");
        assert!(
            expected_ids.contains(&id),
            "no event without an outbox id: {id}"
        );
        if let Some(previous) = by_id.insert(id.clone(), p.body.clone()) {
            assert_eq!(previous, p.body, "a re-send keeps id and body");
        }
    }
    for (id, body) in &expected {
        assert_eq!(&by_id[id], body, "published as stored");
    }
    let results: Vec<&Published> = published
        .iter()
        .filter(|p| p.body["payload"]["event"] == "results")
        .collect();
    assert!(!results.is_empty());
    assert_eq!(results[0].body["payload"]["content"]["status"], "COMPLETED");
    eventually(Duration::from_secs(10), "the outbox is empty", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 0
    })
    .await;
    service.kill9().await;
}

// ---------------------------------------------------------------------------
// The subscription.
// ---------------------------------------------------------------------------

#[sqlx::test]
async fn dapr_subscribe_names_the_workflow_events_route(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app.api.get("/dapr/subscribe").await;
    assert_eq!(status, StatusCode::OK);
    let subs = body.as_array().expect("a JSON array");
    assert_eq!(subs.len(), 1, "{body}");
    assert_eq!(subs[0]["pubsubname"], "budpubsub");
    assert_eq!(subs[0]["topic"], "workflow-events");
    assert_eq!(subs[0]["route"], "/workflow-events");
}

// ---------------------------------------------------------------------------
// Poison messages: data Postgres cannot store must not be redelivered forever.
// ---------------------------------------------------------------------------

/// A string of `n` printable characters that does not compress (Postgres
/// compresses long index entries, so a repetitive one would still fit).
fn incompressible(n: usize) -> String {
    (0..n.div_ceil(16))
        .flat_map(|_| Uuid::new_v4().into_bytes())
        .take(n)
        .map(|b| char::from(b'!' + b % 90))
        .collect()
}

#[sqlx::test]
async fn an_event_with_nul_characters_is_applied_not_redelivered_forever(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-nul",
            accepted("bc-wf-nul", "dep-nul"),
            deploy_params(),
        )
        .await;

    // JSON allows U+0000; Postgres text and jsonb do not.
    let (status, answer) = stand
        .deliver(
            "bc-wf-nul",
            "COMPLETED",
            json!({"deployment_id": "dep-nul", "message": "pod log: a\u{0}b", "k\u{0}": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    let outputs = &step(&done, "deploy")["outputs"];
    assert_eq!(outputs["message"], "pod log: a\u{FFFD}b");
    assert_eq!(outputs["k\u{FFFD}"], 1);

    // A NUL in the CloudEvent id: still deduplicated.
    let event = deployment_event("bc-wf-other", "COMPLETED", json!({}));
    let (s1, a1) = stand
        .sidecar
        .deliver_with_id(&stand.app.api.base, TOKEN, "ce\u{0}1", event.clone())
        .await;
    let (s2, a2) = stand
        .sidecar
        .deliver_with_id(&stand.app.api.base, TOKEN, "ce\u{0}1", event)
        .await;
    assert_eq!(
        (s1, a1["status"].clone()),
        (StatusCode::OK, json!("SUCCESS")),
        "{a1}"
    );
    assert_eq!(a1["outcome"], "kept");
    assert_eq!(
        (s2, a2["status"].clone()),
        (StatusCode::OK, json!("SUCCESS")),
        "{a2}"
    );
    assert_eq!(a2["outcome"], "duplicate");
}

#[sqlx::test]
async fn events_postgres_cannot_index_are_never_left_to_retry(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-long",
            accepted("bc-wf-long", "dep-long"),
            deploy_params(),
        )
        .await;
    let base = stand.app.api.base.clone();

    // A CloudEvent id too long for the dedupe key's index: still applied,
    // and its redelivery still recognised.
    let long_id = incompressible(10_000);
    let event = deployment_event(
        "bc-wf-long",
        "COMPLETED",
        json!({"deployment_id": "dep-long"}),
    );
    let (status, answer) = stand
        .sidecar
        .deliver_with_id(&base, TOKEN, &long_id, event.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "applied", "{answer}");
    let (status, answer) = stand
        .sidecar
        .deliver_with_id(&base, TOKEN, &long_id, event)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "duplicate", "{answer}");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");

    // A correlation id no step could ever wait on: DROP, not RETRY.
    let (status, answer) = stand
        .sidecar
        .deliver(
            &base,
            TOKEN,
            deployment_event(&incompressible(10_000), "COMPLETED", json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "DROP", "{answer}");
}

#[sqlx::test]
async fn a_budcluster_answer_with_nul_characters_still_waits_and_completes(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    stand.budcluster.push_deploy_response(
        200,
        json!({"status": "accepted", "workflow_id": "bc-wf\u{0}nul", "deployment_id": "dep\u{0}"}),
    );
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-nul-answer", json!({})))
        .await;
    let exec = api.execute(wf, deploy_params()).await;
    let waiting = wait_waiting(api, exec, Duration::from_secs(10)).await;
    assert_eq!(
        step(&waiting, "deploy")["external_workflow_id"],
        "bc-wf\u{FFFD}nul"
    );

    // budcluster's event names the same (raw) id and still matches.
    let (_, answer) = stand
        .deliver("bc-wf\u{0}nul", "COMPLETED", json!({"message": "ok"}))
        .await;
    assert_eq!(answer["outcome"], "applied", "{answer}");
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(done["outputs"], json!({"deployment_id": "dep\u{FFFD}"}));

    // A 4xx whose body holds NUL fails the step with a readable error.
    stand
        .budcluster
        .push_deploy_response(400, json!({"detail": "bad\u{0}model"}));
    let exec = api.execute(wf, deploy_params()).await;
    let failed = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    assert!(
        step(&failed, "deploy")["error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{failed:#}"
    );
}

// ---------------------------------------------------------------------------
// Races between deliveries and the wait being recorded.
// ---------------------------------------------------------------------------

#[sqlx::test]
async fn concurrent_redeliveries_apply_once(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    let api = stand.api();
    let exec = stand
        .deploy_until_waiting(
            "deploy-conc",
            accepted("bc-wf-conc", "dep-conc"),
            deploy_params_to_budapp(),
        )
        .await;

    let event = deployment_event(
        "bc-wf-conc",
        "COMPLETED",
        json!({"deployment_id": "dep-conc"}),
    );
    let handles: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(deliver_owned(
                stand.app.api.base.clone(),
                "ce-conc".to_owned(),
                event.clone(),
            ))
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    let mut outcomes: Vec<String> = answers
        .iter()
        .map(|(status, answer)| {
            assert_eq!(*status, StatusCode::OK, "{answer}");
            assert_eq!(answer["status"], "SUCCESS", "{answer}");
            answer["outcome"].as_str().unwrap_or("?").to_owned()
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        7,
        "{outcomes:?}"
    );
    let done = api.wait_terminal(exec, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "COMPLETED");
    stand
        .sidecar
        .wait_for_published(
            |p| p.body["payload"]["event"] == "results",
            Duration::from_secs(10),
        )
        .await
        .expect("results");
    let completed = events_of(&stand.sidecar, "budappEvents", exec)
        .iter()
        .filter(|p| {
            p.body["payload"]["event"] == "deploy"
                && p.body["payload"]["content"]["status"] == "COMPLETED"
        })
        .count();
    assert_eq!(completed, 1);
}

/// What [`FakeSidecar::deliver_with_id`] sends, with owned arguments so
/// that deliveries can run on their own tasks at the same time.
async fn deliver_owned(base: String, id: String, data: Value) -> (StatusCode, Value) {
    let envelope = json!({
        "specversion": "1.0", "id": id, "source": "budcluster",
        "type": "com.dapr.event.sent", "datacontenttype": "application/json",
        "topic": "workflow-events", "pubsubname": "budpubsub", "data": data,
    });
    let resp = reqwest::Client::new()
        .post(format!("{base}/workflow-events"))
        .header("content-type", "application/cloudevents+json")
        .header("dapr-api-token", TOKEN)
        .body(envelope.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[sqlx::test]
async fn events_racing_the_wait_always_complete_their_step(pool: PgPool) {
    let stand = Stand::start(&pool, &[("MAX_CONCURRENT_STEPS", "64")]).await;
    let api = stand.api();
    let wf = api
        .create_workflow(deploy_dag("deploy-race", json!({})))
        .await;
    const N: usize = 12;
    for i in 0..N {
        // Delays from 0 to 55 ms: the event lands before, during or after
        // the wait is recorded.
        stand.budcluster.push(
            Route::Deploy,
            Reply::json(
                200,
                accepted(&format!("bc-wf-race-{i}"), &format!("dep-race-{i}")),
            )
            .after(Duration::from_millis(5 * i as u64)),
        );
    }
    let mut execs = Vec::new();
    for _ in 0..N {
        execs.push(api.execute(wf, deploy_params()).await);
    }
    // Deliver each workflow's event as soon as budcluster has seen its request.
    let mut delivered: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered.len() < N {
        for r in stand.budcluster.requests_to(Route::Deploy) {
            let wf_id = r.response["workflow_id"].as_str().unwrap().to_owned();
            if delivered.insert(wf_id.clone()) {
                let n = wf_id.rsplit('-').next().unwrap().to_owned();
                let (status, answer) = stand
                    .deliver(
                        &wf_id,
                        "COMPLETED",
                        json!({"deployment_id": format!("dep-race-{n}"), "n": n}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                assert_eq!(answer["status"], "SUCCESS", "{answer}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "budcluster saw {} requests",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for exec in execs {
        let done = api.wait_terminal(exec, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "COMPLETED", "{done:#}");
        let deploy = step(&done, "deploy");
        let wf_id = deploy["external_workflow_id"].as_str().unwrap();
        let n = wf_id.rsplit('-').next().unwrap();
        assert_eq!(
            deploy["outputs"]["n"], n,
            "completed by its own event: {deploy}"
        );
    }
    let statuses: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT status FROM inbound_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        statuses
            .iter()
            .all(|(s,)| s == "APPLIED" || s == "CONSUMED"),
        "every event was used: {statuses:?}"
    );
}

#[sqlx::test]
async fn a_failed_publish_does_not_reorder_a_topic(pool: PgPool) {
    let stand = Stand::start(&pool, &[]).await;
    // The very first publish (step a STARTED on t1) fails once.
    stand.sidecar.fail_next_publishes(1);
    let api = stand.api();
    let wf = api
        .create_workflow(json!({"name": "logs", "steps": [
            {"id": "a", "action": "log", "params": {"message": "a"}},
            {"id": "b", "action": "log", "depends_on": ["a"], "params": {"message": "b"}}]}))
        .await;
    let exec = api
        .execute(wf, json!({"callback_topics": ["t1", "t2"]}))
        .await;
    api.wait_terminal(exec, Duration::from_secs(10)).await;
    for topic in ["t1", "t2"] {
        stand
            .sidecar
            .wait_for_published(
                |p| p.topic == topic && p.body["payload"]["event"] == "results",
                Duration::from_secs(15),
            )
            .await
            .expect("results");
    }
    for topic in ["t1", "t2"] {
        let got = labels(&events_of(&stand.sidecar, topic, exec));
        assert_eq!(got.len(), 6, "{topic}: {got:?}");
        let pos = |e: &str, s: &str| {
            got.iter()
                .position(|x| x.0 == e && x.1 == s)
                .unwrap_or_else(|| panic!("{topic}: no {e} {s} in {got:?}"))
        };
        // Causal order, whatever order one transaction's events take.
        assert!(
            pos("a", "STARTED") < pos("a", "COMPLETED"),
            "{topic}: {got:?}"
        );
        assert!(
            pos("a", "COMPLETED") < pos("b", "COMPLETED"),
            "{topic}: {got:?}"
        );
        assert!(
            pos("b", "STARTED") < pos("b", "COMPLETED"),
            "{topic}: {got:?}"
        );
        assert!(
            pos("a", "COMPLETED") <= pos("progress", "RUNNING"),
            "{topic}: {got:?}"
        );
        assert_eq!(
            pos("results", "COMPLETED"),
            5,
            "results last on {topic}: {got:?}"
        );
    }
}
