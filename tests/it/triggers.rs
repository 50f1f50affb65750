//! Schedules, webhooks and event triggers on the real binary (COMPAT.md
//! "Triggers"): the original's shapes as budapp and budadmin send and read
//! them, the bad input refused with the field named and nothing started,
//! time zones across daylight-saving changes, webhook secrets, rotation and
//! IP ranges, 100 concurrent webhook calls, and an event redelivered.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, ServiceProcess, database_url};
use uuid::Uuid;

fn tick_dag(name: &str) -> Value {
    json!({"name": name, "steps": [{"id": "log", "action": "log", "params": {"message": "tick"}}]})
}

async fn executions_of(pool: &PgPool, wf: Uuid) -> Vec<(Uuid, Value, String)> {
    sqlx::query_as("SELECT id, parameters, initiator FROM executions WHERE workflow_id = $1 ORDER BY created_at")
        .bind(wf)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Every problem of a 400 for budapp (`detail.errors`), joined.
fn problems(body: &Value) -> String {
    body["detail"]["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| body.to_string())
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn schedules_in_the_originals_shapes_and_bad_input_named(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("nightly")).await;

    // As budapp passes budadmin's form through.
    let (status, s) = api
        .post(
            "/schedules",
            json!({"workflow_id": wf.to_string(), "name": "weekday mornings",
                   "schedule": {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "America/New_York"},
                   "params": {"region": "us"}, "description": "d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s:#}");
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["workflow_id"], wf.to_string());
    assert_eq!(
        s["schedule"],
        json!({"type": "cron", "expression": "0 9 * * 1-5", "timezone": "America/New_York", "run_at": null})
    );
    assert_eq!(
        (
            &s["status"],
            &s["enabled"],
            &s["run_count"],
            &s["params"]["region"]
        ),
        (&json!("active"), &json!(true), &json!(0), &json!("us"))
    );
    for key in [
        "next_run_at",
        "last_run_at",
        "last_execution_id",
        "last_execution_status",
        "max_runs",
        "expires_at",
        "created_at",
        "updated_at",
    ] {
        assert!(s.get(key).is_some(), "{key} in {s:#}");
    }
    let next: chrono::DateTime<chrono::Utc> = s["next_run_at"].as_str().unwrap().parse().unwrap();
    let local = next.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "09:00", "{next}");

    // Bad input: a 400 naming the field, and nothing stored.
    let bad = [
        (
            json!({"type": "cron", "expression": "61 * * * *"}),
            "schedule.expression",
        ),
        (
            json!({"type": "cron", "expression": "* * *"}),
            "schedule.expression",
        ),
        (json!({"type": "cron"}), "schedule.expression"),
        (
            json!({"type": "interval", "expression": "@every 0s"}),
            "schedule.expression",
        ),
        (
            json!({"type": "interval", "expression": "every minute"}),
            "schedule.expression",
        ),
        (
            json!({"type": "cron", "expression": "* * * * *", "timezone": "Mars/Olympus"}),
            "schedule.timezone",
        ),
        (json!({"type": "one_time"}), "schedule.run_at"),
        (
            json!({"type": "one_time", "run_at": "2020-01-01T00:00:00Z"}),
            "schedule.run_at",
        ),
        (
            json!({"type": "one_time", "run_at": "soon"}),
            "schedule.run_at",
        ),
        (json!({"type": "weekly"}), "schedule.type"),
    ];
    for (schedule, field) in bad {
        let (status, body) = api
            .post(
                "/schedules",
                json!({"workflow_id": wf, "name": "bad", "schedule": schedule}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{schedule}: {body:#}");
        assert!(
            problems(&body).contains(field),
            "{schedule} names {field}: {body:#}"
        );
    }
    let (status, body) = api
        .post(
            "/schedules",
            json!({"workflow_id": wf, "schedule": {"type": "manual"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problems(&body).contains("name:"), "{body:#}");
    for unknown in [Uuid::new_v4().to_string(), "not-a-pipeline".to_owned()] {
        let (status, body) = api
            .post(
                "/schedules",
                json!({"workflow_id": unknown, "name": "x", "schedule": {"type": "manual"}}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
        assert_eq!(body["detail"], format!("Pipeline not found: {unknown}"));
    }
    let (_, list) = api.get("/schedules").await;
    assert_eq!(
        list["total"], 1,
        "nothing stored by a refused request: {list:#}"
    );
    assert_eq!(list["schedules"][0]["id"], id);
    let (_, list) = api
        .get(&format!("/schedules?workflow_id={}", Uuid::new_v4()))
        .await;
    assert_eq!(list["total"], 0);

    // pause, resume, update, next-runs, delete.
    let (status, p) = api.post(&format!("/schedules/{id}/pause"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{p:#}");
    assert_eq!(
        (&p["status"], &p["enabled"]),
        (&json!("paused"), &json!(false))
    );
    let (_, list) = api.get("/schedules?status=paused").await;
    assert_eq!(list["total"], 1);
    let (status, r) = api
        .post(&format!("/schedules/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r:#}");
    assert_eq!(
        (&r["status"], &r["enabled"]),
        (&json!("active"), &json!(true))
    );
    assert!(r["next_run_at"].is_string());
    let (status, u) = api
        .call(
            reqwest::Method::PUT,
            &format!("/schedules/{id}"),
            Some(json!({"name": "renamed", "schedule": {"type": "interval", "expression": "@every 1h"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u:#}");
    assert_eq!(u["name"], "renamed");
    assert_eq!(u["schedule"]["type"], "interval");
    assert_eq!(
        u["params"]["region"], "us",
        "an update keeps what it does not name"
    );
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            &format!("/schedules/{id}"),
            Some(json!({"schedule": {"type": "cron", "expression": "0 0 31 2 *"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert!(problems(&body).contains("schedule.expression"), "{body:#}");
    // budadmin sends the whole schedule back with a change: the same timing
    // keeps its next due time.
    let mut whole = u.clone();
    whole["description"] = json!("edited in the UI");
    let (status, edited) = api
        .call(
            reqwest::Method::PUT,
            &format!("/schedules/{id}"),
            Some(whole),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited:#}");
    assert_eq!(edited["description"], "edited in the UI");
    assert_eq!(edited["next_run_at"], u["next_run_at"]);
    let (status, runs) = api.get(&format!("/schedules/{id}/next-runs?count=3")).await;
    assert_eq!(status, StatusCode::OK, "{runs:#}");
    assert_eq!(runs["schedule_id"], id);
    assert_eq!(runs["next_runs"].as_array().unwrap().len(), 3);
    let (status, _) = api.get(&format!("/schedules/{id}/next-runs?count=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The cron binding of Bud's chart: the original's answer.
    let (status, poll) = api.post("/internal/schedule-poll", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{poll:#}");
    for key in ["polled_at", "due_count", "triggered_count", "error_count"] {
        assert!(poll.get(key).is_some(), "{key} in {poll:#}");
    }
    let mut anonymous = api.clone();
    anonymous.token = None;
    let (status, _) = anonymous.post("/internal/schedule-poll", json!({})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the poll needs the app token"
    );

    let (status, _) = api
        .call(reqwest::Method::DELETE, &format!("/schedules/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [format!("/schedules/{id}"), "/schedules/nope".to_owned()] {
        let (status, body) = api.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["detail"], "Schedule not found");
    }
}

#[sqlx::test]
async fn a_cron_schedule_keeps_its_wall_clock_across_daylight_saving(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("dst")).await;
    let create = |expr: &str, tz: &str| {
        json!({"workflow_id": wf, "name": format!("{expr} {tz}"),
               "schedule": {"type": "cron", "expression": expr, "timezone": tz}})
    };
    let next_runs = async |body: Value, from: &str, count: usize| -> Vec<String> {
        let (status, s) = api.post("/schedules", body).await;
        assert_eq!(status, StatusCode::CREATED, "{s:#}");
        let (status, runs) = api
            .get(&format!(
                "/schedules/{}/next-runs?count={count}&from={from}",
                s["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{runs:#}");
        runs["next_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    // Berlin springs forward on 2027-03-28 at 02:00: no 02:30 that day.
    assert_eq!(
        next_runs(
            create("30 2 * * *", "Europe/Berlin"),
            "2027-03-26T12:00:00Z",
            3
        )
        .await,
        [
            "2027-03-27T01:30:00Z",
            "2027-03-29T00:30:00Z",
            "2027-03-30T00:30:00Z"
        ]
    );
    // Berlin falls back on 2027-10-31 at 03:00: 02:30 happens twice, runs once.
    assert_eq!(
        next_runs(
            create("30 2 * * *", "Europe/Berlin"),
            "2027-10-30T12:00:00Z",
            2
        )
        .await,
        ["2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"]
    );
    // Every 30 minutes through the repeated hour: once per wall-clock time.
    assert_eq!(
        next_runs(
            create("*/30 * * * *", "Europe/Berlin"),
            "2027-10-30T23:10:00Z",
            5
        )
        .await,
        [
            "2027-10-30T23:30:00Z",
            "2027-10-31T00:00:00Z",
            "2027-10-31T00:30:00Z",
            "2027-10-31T02:00:00Z",
            "2027-10-31T02:30:00Z"
        ]
    );
    // New York at 09:00 on weekdays, across 2027-03-14.
    assert_eq!(
        next_runs(
            create("0 9 * * 1-5", "America/New_York"),
            "2027-03-12T00:00:00Z",
            3
        )
        .await,
        [
            "2027-03-12T14:00:00Z",
            "2027-03-15T13:00:00Z",
            "2027-03-16T13:00:00Z"
        ]
    );
    // The same expression in UTC ignores both.
    assert_eq!(
        next_runs(create("30 2 * * *", "UTC"), "2027-03-27T12:00:00Z", 2).await,
        ["2027-03-28T02:30:00Z", "2027-03-29T02:30:00Z"]
    );
    // A one-time run given as a local time is read in the schedule's zone.
    let (status, s) = api
        .post(
            "/schedules",
            json!({"workflow_id": wf, "name": "once",
                   "schedule": {"type": "one_time", "run_at": "2030-07-01T09:00", "timezone": "Asia/Kolkata"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s:#}");
    assert_eq!(s["next_run_at"], "2030-07-01T03:30:00Z");
}

#[sqlx::test]
async fn a_schedule_runs_with_its_params_until_max_runs(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("twice")).await;
    let (status, s) = api
        .post(
            "/schedules",
            json!({"workflow_id": wf, "name": "twice", "max_runs": 2, "params": {"x": 1},
                   "schedule": {"type": "interval", "expression": "@every 1s"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s:#}");
    let id = s["id"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    wait_for(
        "two runs and completed",
        Duration::from_secs(10),
        async || {
            last = api.get(&format!("/schedules/{id}")).await.1;
            last["status"] == "completed"
        },
    )
    .await;
    assert_eq!(last["run_count"], 2, "{last:#}");
    assert!(last["next_run_at"].is_null());
    assert!(last["last_run_at"].is_string());
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(last["last_execution_id"], runs[1].0.to_string());
    for (_, params, initiator) in &runs {
        assert_eq!(params["x"], 1);
        let t = &params["_trigger"];
        assert_eq!(
            (&t["type"], &t["schedule_id"], &t["schedule_name"]),
            (&json!("scheduled"), &json!(id), &json!("twice"))
        );
        assert!(
            t["scheduled_at"].is_string() && t["triggered_at"].is_string(),
            "{t}"
        );
        assert_eq!(initiator, &format!("schedule:{id}"));
    }
    // Two due times, one second apart (the interval's rhythm).
    let due = |i: usize| -> chrono::DateTime<chrono::Utc> {
        runs[i].1["_trigger"]["scheduled_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!((due(1) - due(0)).num_milliseconds(), 1000);
    let (status, body) = api
        .post(&format!("/schedules/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["detail"], "Cannot resume completed schedule");

    // `trigger`: now, once, with overrides; the count stays.
    let (status, t) = api
        .post(&format!("/schedules/{id}/trigger"), json!({"x": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{t:#}");
    assert_eq!(
        (&t["workflow_id"], &t["status"]),
        (&json!(wf), &json!("RUNNING"))
    );
    let manual = api
        .wait_terminal(
            t["execution_id"].as_str().unwrap().parse().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(manual["status"], "COMPLETED");
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[2].1["x"], 2);
    assert_eq!(runs[2].1["_trigger"]["manual"], true);
    // budapp's call has no body at all.
    let resp = api
        .http
        .post(format!("{}/schedules/{id}/trigger", api.base))
        .header("dapr-api-token", api.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, s) = api.get(&format!("/schedules/{id}")).await;
    assert_eq!(s["run_count"], 2);
}

#[sqlx::test]
async fn a_schedule_whose_pipeline_is_gone_says_why_once(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("doomed")).await;
    let (status, s) = api
        .post(
            "/schedules",
            json!({"workflow_id": wf, "name": "doomed",
                   "schedule": {"type": "interval", "expression": "@every 1s"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s:#}");
    let id = s["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(reqwest::Method::DELETE, &format!("/pipelines/{wf}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut last = Value::Null;
    wait_for(
        "the failure recorded",
        Duration::from_secs(10),
        async || {
            last = api.get(&format!("/schedules/{id}")).await.1;
            last["failure_count"] == 1
        },
    )
    .await;
    // Several due times later: still one failure, and paused with the reason.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, last) = api.get(&format!("/schedules/{id}")).await;
    assert_eq!(last["failure_count"], 1, "{last:#}");
    assert_eq!(
        (&last["status"], &last["enabled"]),
        (&json!("paused"), &json!(false))
    );
    assert!(
        last["last_error"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{last:#}"
    );
    assert!(last["next_run_at"].is_null());
    assert_eq!(last["run_count"], 0);
    assert!(executions_of(&pool, wf).await.is_empty());
    let firings: Vec<(Option<Uuid>, Option<String>)> = sqlx::query_as(
        "SELECT execution_id, error FROM schedule_firings WHERE schedule_id = $1::uuid",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert!(firings[0].0.is_none() && firings[0].1.is_some());
    let (_, status) = service.api.get("/internal/status").await;
    assert_eq!(status["schedules"]["failed_last_hour"], 1, "{status:#}");
}

/// `POST /trigger/{id}` as an outside caller makes it: no app token.
async fn fire(api: &Api, id: &str, secret: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = api
        .http
        .post(format!("{}/trigger/{id}", api.base))
        .header("X-Request-Source", "ci")
        .json(&body);
    if let Some(s) = secret {
        req = req.header("X-Webhook-Secret", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[sqlx::test]
async fn webhooks_secret_rotation_ip_ranges_and_100_concurrent_triggers(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("hooked")).await;
    let (status, hook) = api
        .post(
            "/webhooks",
            json!({"workflow_id": wf, "name": "deploy hook", "params": {"a": 1, "b": 0},
                   "config": {"headers_to_include": ["X-Request-Source"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook:#}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"]
        .as_str()
        .expect("the secret, shown once")
        .to_owned();
    assert_eq!(secret.len(), 43);
    assert!(
        hook["endpoint_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/trigger/{id}"))
    );
    assert_eq!(hook["config"]["require_secret"], true);
    let (_, listed) = api.get("/webhooks").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert!(listed[0]["secret"].is_null(), "never shown again");
    let (_, got) = api.get(&format!("/webhooks/{id}")).await;
    assert!(got["secret"].is_null());
    let stored: String = sqlx::query_scalar("SELECT secret_hash FROM webhooks WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        !stored.contains(&secret) && stored.len() == 64,
        "stored hashed"
    );

    // No secret, a wrong one: 401, nothing started.
    assert_eq!(
        fire(api, &id, None, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = fire(api, &id, Some("guess"), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Invalid secret");
    assert!(executions_of(&pool, wf).await.is_empty());

    // The right one: the original's parameter merge, answered at once.
    let (status, t) = fire(api, &id, Some(&secret), json!({"params": {"b": 2}})).await;
    assert_eq!(status, StatusCode::OK, "{t:#}");
    assert_eq!(
        (&t["workflow_id"], &t["status"]),
        (&json!(wf), &json!("RUNNING"))
    );
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), 1);
    let params = &runs[0].1;
    assert_eq!((&params["a"], &params["b"]), (&json!(1), &json!(2)));
    assert_eq!(params["header_x_request_source"], "ci");
    assert_eq!(params["_trigger"]["type"], "webhook");
    assert_eq!(params["_trigger"]["webhook_id"], id);

    // Rotation: the old secret stops working.
    let (status, rotated) = api
        .post(&format!("/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated:#}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        fire(api, &id, Some(&secret), json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fire(api, &id, Some(&new_secret), json!({})).await.0,
        StatusCode::OK
    );

    // Disabled: 403, nothing started.
    let path = format!("/webhooks/{id}");
    let put = |body: Value| api.call(reqwest::Method::PUT, &path, Some(body));
    assert_eq!(put(json!({"enabled": false})).await.0, StatusCode::OK);
    let (status, body) = fire(api, &id, Some(&new_secret), json!({})).await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::FORBIDDEN, &json!("Webhook is disabled"))
    );
    assert_eq!(put(json!({"enabled": true})).await.0, StatusCode::OK);

    // IP ranges: this test calls from 127.0.0.1.
    let (status, body) = put(
        json!({"config": {"allowed_ips": ["10.0.0.0/8", "192.168.1.7"],
                                               "headers_to_include": ["X-Request-Source"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(
        body["config"]["allowed_ips"],
        json!(["10.0.0.0/8", "192.168.1.7/32"])
    );
    assert_eq!(body["config"]["require_secret"], true, "the secret stays");
    let (status, body) = fire(api, &id, Some(&new_secret), json!({})).await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::FORBIDDEN, &json!("IP not allowed"))
    );
    assert_eq!(
        put(json!({"config": {"allowed_ips": ["127.0.0.0/8", "::1"]}}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        fire(api, &id, Some(&new_secret), json!({})).await.0,
        StatusCode::OK
    );
    let (status, body) = put(json!({"config": {"allowed_ips": ["10.0.0.0/8", "nope"]}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problems(&body).contains("config.allowed_ips[1]"),
        "{body:#}"
    );
    let before = executions_of(&pool, wf).await.len();
    assert_eq!(before, 3);

    // 100 at once (a fresh webhook: the default burst is 100 calls):
    // 100 executions, each answered with its own id.
    let (status, burst) = api
        .post("/webhooks", json!({"workflow_id": wf, "name": "burst"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{burst:#}");
    let burst_id = burst["id"].as_str().unwrap().to_owned();
    let burst_secret = burst["secret"].as_str().unwrap().to_owned();
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let (api, id, secret) = (api.clone(), burst_id.clone(), burst_secret.clone());
            tokio::spawn(async move {
                fire(&api, &id, Some(&secret), json!({"params": {"i": i}})).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body:#}");
        ids.insert(body["execution_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 100);
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), before + 100);
    let from_burst: Vec<_> = runs
        .iter()
        .filter(|r| r.2 == format!("webhook:{burst_id}"))
        .collect();
    assert_eq!(from_burst.len(), 100);
    let (_, got) = api.get(&format!("/webhooks/{burst_id}")).await;
    assert_eq!(got["trigger_count"], 100, "{got:#}");
    assert!(got["last_triggered_at"].is_string());
    let (_, got) = api.get(&format!("/webhooks/{id}")).await;
    assert_eq!(got["trigger_count"], json!(before), "{got:#}");

    // budadmin's form: `require_secret` at the top level.
    let (status, open) = api
        .post(
            "/webhooks",
            json!({"workflow_id": wf, "name": "open hook", "require_secret": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{open:#}");
    assert!(open["secret"].is_null());
    assert_eq!(open["config"]["require_secret"], false);
    let open_id = open["id"].as_str().unwrap();
    assert_eq!(fire(api, open_id, None, json!({})).await.0, StatusCode::OK);

    // Unknown webhook or pipeline.
    for unknown in [Uuid::new_v4().to_string(), "nope".to_owned()] {
        let (status, body) = fire(api, &unknown, Some(&new_secret), json!({})).await;
        assert_eq!(
            (status, &body["detail"]),
            (StatusCode::NOT_FOUND, &json!("Webhook not found"))
        );
    }
    let (status, _) = api
        .post(
            "/webhooks",
            json!({"workflow_id": Uuid::new_v4(), "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(reqwest::Method::DELETE, &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        fire(api, &id, Some(&new_secret), json!({})).await.0,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test]
async fn webhook_rate_limit_and_forwarded_addresses(pool: PgPool) {
    let service = ServiceProcess::start(
        &database_url(&pool),
        &[
            ("WEBHOOK_RATE_BURST", "3"),
            ("WEBHOOK_RATE_PER_SECOND", "0.5"),
            ("WEBHOOK_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("limited")).await;
    let create = async |body: Value| -> (String, String) {
        let (status, hook) = api.post("/webhooks", body).await;
        assert_eq!(status, StatusCode::CREATED, "{hook:#}");
        (
            hook["id"].as_str().unwrap().to_owned(),
            hook["secret"].as_str().unwrap().to_owned(),
        )
    };
    let (id, secret) = create(json!({"workflow_id": wf, "name": "limited"})).await;
    for _ in 0..3 {
        assert_eq!(
            fire(api, &id, Some(&secret), json!({})).await.0,
            StatusCode::OK
        );
    }
    let resp = api
        .http
        .post(format!("{}/trigger/{id}", api.base))
        .header("X-Webhook-Secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        executions_of(&pool, wf).await.len(),
        3,
        "a refused call starts nothing"
    );
    // Another webhook has its own bucket; a wrong secret takes no token.
    let (other, other_secret) = create(json!({"workflow_id": wf, "name": "other",
        "config": {"allowed_ips": ["203.0.113.0/24"]}}))
    .await;
    // Behind a trusted proxy the caller is the forwarded address.
    let forwarded = async |from: Option<&str>| -> StatusCode {
        let mut req = api
            .http
            .post(format!("{}/trigger/{other}", api.base))
            .header("X-Webhook-Secret", &other_secret);
        if let Some(from) = from {
            req = req.header("X-Forwarded-For", from);
        }
        req.send().await.unwrap().status()
    };
    assert_eq!(forwarded(Some("203.0.113.7")).await, StatusCode::OK);
    assert_eq!(forwarded(Some("198.51.100.1")).await, StatusCode::FORBIDDEN);
    assert_eq!(
        forwarded(Some("203.0.113.7, 198.51.100.1")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(forwarded(None).await, StatusCode::FORBIDDEN);
    let (_, metrics) = {
        let resp = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert!(
        metrics.contains("budpipeline_webhook_triggers_total{outcome=\"rate_limited\"} 1"),
        "{metrics}"
    );
}

#[sqlx::test]
async fn a_redelivered_event_starts_its_triggers_pipeline_once(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("on-event")).await;
    // budadmin's form: event_type and filters at the top level.
    let (status, t) = api
        .post(
            "/event-triggers",
            json!({"workflow_id": wf, "name": "hf models", "event_type": "model.onboarded",
                   "filters": {"model.provider": "hf"}, "params": {"p": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t:#}");
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(
        t["config"],
        json!({"event_type": "model.onboarded", "filters": {"model.provider": "hf"}})
    );
    // The original's form: config.
    let (status, _) = api
        .post(
            "/event-triggers",
            json!({"workflow_id": wf, "name": "failures", "config": {"event_type": "deployment.failed"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .post(
            "/event-triggers",
            json!({"workflow_id": wf, "name": "x", "event_type": "model.exploded"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problems(&body).contains("config.event_type: Unsupported event type"),
        "{body:#}"
    );
    let (_, types) = api.get("/event-triggers/event-types").await;
    assert_eq!(types.as_array().unwrap().len(), 8, "{types:#}");
    assert_eq!(
        types[0],
        json!({"type": "model.onboarded", "source": "budapp", "description": "Model successfully onboarded"})
    );
    let (_, listed) = api.get("/event-triggers?event_type=model.onboarded").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let event = json!({"specversion": "1.0", "id": "ev-1", "source": "budapp", "type": "model.onboarded",
                       "data": {"type": "model.onboarded", "model": {"provider": "hf", "id": "m1"}}});
    let (status, first) = api.post("/workflow-events", event.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first:#}");
    assert_eq!(
        first["status"], "SUCCESS",
        "not dropped without a correlation id"
    );
    assert_eq!(first["triggers"][0]["status"], "triggered", "{first:#}");
    // Redelivered (Dapr delivers at least once), also several at once.
    let (_, again) = api.post("/workflow-events", event.clone()).await;
    assert_eq!(again["status"], "SUCCESS");
    assert_eq!(again["triggers"][0]["status"], "duplicate", "{again:#}");
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (api, event) = (api.clone(), event.clone());
            tokio::spawn(async move { api.post("/workflow-events", event).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().1["status"], "SUCCESS");
    }
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let params = &runs[0].1;
    assert_eq!(params["p"], 1);
    assert_eq!(params["event"]["model"]["id"], "m1");
    assert_eq!(
        (
            &params["_trigger"]["type"],
            &params["_trigger"]["trigger_id"]
        ),
        (&json!("event"), &json!(tid))
    );
    assert_eq!(runs[0].2, format!("event-trigger:{tid}"));

    // As Dapr delivers a Bud service's own CloudEvent: no data, no id
    // (deduplicated on its bytes).
    let flat = json!({"specversion": "1.0", "source": "Dapr", "type": "model.onboarded",
                      "topic": "budpipelineEvents", "model": {"provider": "hf", "id": "m2"}});
    for _ in 0..2 {
        let (_, answer) = api.post("/workflow-events", flat.clone()).await;
        assert_eq!(answer["status"], "SUCCESS", "{answer:#}");
    }
    // Filters that do not match, and a type no trigger wants.
    let other = json!({"specversion": "1.0", "id": "ev-3", "source": "budapp", "type": "model.onboarded",
                       "model": {"provider": "local"}});
    let (_, answer) = api.post("/workflow-events", other).await;
    assert_eq!(answer["triggers"], json!([]), "{answer:#}");
    let runs = executions_of(&pool, wf).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].1["event"]["model"]["id"], "m2");
    let (_, got) = api.get(&format!("/event-triggers/{tid}")).await;
    assert_eq!(got["trigger_count"], 2, "{got:#}");

    // A disabled trigger starts nothing; a deleted one is gone.
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/event-triggers/{tid}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = json!({"specversion": "1.0", "id": "ev-4", "source": "budapp", "type": "model.onboarded",
                       "model": {"provider": "hf"}});
    api.post("/workflow-events", fresh).await;
    assert_eq!(executions_of(&pool, wf).await.len(), 2);
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/event-triggers/{tid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get(&format!("/event-triggers/{tid}")).await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::NOT_FOUND, &json!("Event trigger not found"))
    );
}

#[sqlx::test]
async fn after_downtime_a_schedule_runs_once_for_what_it_missed(pool: PgPool) {
    let service = ServiceProcess::start(&database_url(&pool), &[]).await;
    let api = &service.api;
    let wf = api.create_workflow(tick_dag("missed")).await;
    let mut ids = Vec::new();
    for (name, schedule) in [
        (
            "hourly interval",
            json!({"type": "interval", "expression": "@every 1h"}),
        ),
        (
            "every five minutes",
            json!({"type": "cron", "expression": "*/5 * * * *"}),
        ),
    ] {
        let (status, s) = api
            .post(
                "/schedules",
                json!({"workflow_id": wf, "name": name, "schedule": schedule}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{s:#}");
        ids.push(s["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    // As if every replica had been down: the interval missed 4 due times
    // (3.5 h), the cron one 12 (1 h).
    let missed_interval: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE schedules SET next_run_at = date_trunc('second', now()) - interval '3 hours 30 minutes'
         WHERE id = $1 RETURNING next_run_at",
    )
    .bind(ids[0])
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE schedules SET next_run_at = date_trunc('minute', now()) - interval '1 hour' WHERE id = $1")
        .bind(ids[1])
        .execute(&pool)
        .await
        .unwrap();
    wait_for("both fired", Duration::from_secs(10), async || {
        executions_of(&pool, wf).await.len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(executions_of(&pool, wf).await.len(), 2, "one run each");
    let now = chrono::Utc::now();
    let (_, interval) = api.get(&format!("/schedules/{}", ids[0])).await;
    assert_eq!(interval["run_count"], 1);
    let next: chrono::DateTime<chrono::Utc> =
        interval["next_run_at"].as_str().unwrap().parse().unwrap();
    // Its rhythm kept: the missed due time plus a whole number of hours.
    assert_eq!(
        next,
        missed_interval + chrono::Duration::hours(4),
        "{interval:#}"
    );
    let (_, cron) = api.get(&format!("/schedules/{}", ids[1])).await;
    assert_eq!(cron["run_count"], 1);
    let next: chrono::DateTime<chrono::Utc> =
        cron["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next > now && next - now <= chrono::Duration::minutes(5),
        "{cron:#}"
    );
    assert_eq!(next.timestamp() % 300, 0, "on a five-minute mark: {next}");
}
