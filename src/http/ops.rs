//! Health, readiness, metrics and the operator status page.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::db::ops::{self as queries, Depths};
use crate::metrics::{AppLabels, StateLabels};

/// Liveness: the process serves.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `Ok` when the database answers, else why not (for `/ready`'s body).
async fn database_answers(state: &AppState) -> Result<(), String> {
    let ping = queries::ping(state.engine.pool());
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(sqlx::Error::Database(db))) => Err(db.message().to_owned()),
        Ok(Err(sqlx::Error::PoolTimedOut)) => Err("no connection could be opened in time".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".into()),
    }
}

/// Readiness: the database answers and migrations are applied.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "database answers, migrations applied"), (status = 503, description = "not ready")))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let database = database_answers(&state).await;
    let migrations = state.migrated.load(std::sync::atomic::Ordering::Relaxed);
    let draining = state.engine.is_draining();
    let ok = database.is_ok() && migrations && !draining;
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "checks": {
            "database": if database.is_ok() { "ok" } else { "unreachable" },
            "migrations": if migrations { "ok" } else { "pending" },
            "shutdown": if draining { "draining" } else { "no" },
        },
        "database_error": database.err(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn depths(state: &AppState) -> Option<Depths> {
    let query = queries::depths(state.engine.pool());
    match tokio::time::timeout(Duration::from_secs(2), query).await {
        Ok(Ok(d)) => Some(d),
        _ => None,
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.engine.metrics();
    if let Some(d) = depths(&state).await {
        m.steps_claimable.set(d.claimable);
        m.steps_waiting.set(d.waiting);
        m.steps_running.set(d.running);
        m.outbox_backlog.set(d.outbox);
        m.schedules_due.set(d.schedules_due);
    }
    let pool = state.engine.pool();
    let idle = pool.num_idle() as i64;
    m.db_connections
        .get_or_create(&StateLabels {
            state: "idle".into(),
        })
        .set(idle);
    m.db_connections
        .get_or_create(&StateLabels {
            state: "in_use".into(),
        })
        .set(pool.size() as i64 - idle);
    for (app_id, breaker) in state.dapr.breaker_states() {
        let value = match breaker.as_str() {
            "closed" => 0,
            "half_open" => 1,
            _ => 2,
        };
        m.breaker_state
            .get_or_create(&AppLabels { app_id })
            .set(value);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

/// This replica's engine state: queues, handlers, outbox, breakers.
#[utoipa::path(get, path = "/internal/status", tag = "operations", responses((status = 200, description = "engine state")))]
pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let engine = &state.engine;
    let d = depths(&state).await;
    let breakers: serde_json::Map<String, Value> = state
        .dapr
        .breaker_states()
        .into_iter()
        .map(|(app, s)| (app, Value::String(s.as_str().to_owned())))
        .collect();
    Json(json!({
        "replica_id": engine.replica_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "draining": engine.is_draining(),
        "handlers_in_flight": engine.inflight(),
        "handler_slots_free": engine.inner.permits.available_permits(),
        "database": if d.is_some() { "ok" } else { "unreachable" },
        "queues": d.as_ref().map(|d| json!({
            "claimable_steps": d.claimable,
            "scheduled_retries": d.scheduled,
            "running_steps": d.running,
            "waiting_steps": d.waiting,
            "early_events": d.early_events,
        })),
        "outbox": d.as_ref().map(|d| json!({
            "backlog": d.outbox,
            "oldest_seconds": d.outbox_oldest_seconds,
            "failed": d.outbox_failed,
        })),
        "schedules": d.as_ref().map(|d| json!({
            "active": d.schedules_active,
            "due": d.schedules_due,
            "paused": d.schedules_paused,
            "fired_last_hour": d.schedule_runs_last_hour,
            "failed_last_hour": d.schedule_failures_last_hour,
            "fired_by_this_replica": engine.metrics().schedules_fired.get(),
            "failed_on_this_replica": engine.metrics().schedules_failed.get(),
        })),
        "circuit_breakers": breakers,
        "pool": { "size": engine.pool().size(), "idle": engine.pool().num_idle() },
    }))
}
