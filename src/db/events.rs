//! Inbound events (`inbound_events`): as the API reads them, and the
//! statements with which the engine records them, pairs early ones with the
//! step that comes to wait for them, and expires and deletes them. The rules
//! (which event goes where) are the engine's (`crate::engine::events`).

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

/// The latest 20 events for these correlation ids, oldest first, each a
/// JSON summary (`correlation_id`, `status`, `received_at`, and the event's
/// `event`, `event_status` and `message`, wherever the sender put them).
pub(crate) async fn recent(
    db: impl PgExecutor<'_>,
    correlation_ids: &[String],
) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT json_build_object('correlation_id', correlation_id, 'status', status,
                 'received_at', received_at,
                 'event', COALESCE(body #>> '{payload,event}', body ->> 'event'),
                 'event_status', COALESCE(body #>> '{payload,content,status}', body ->> 'status'),
                 'message', COALESCE(body #>> '{payload,content,message}', body ->> 'message'))
         FROM (SELECT * FROM inbound_events WHERE correlation_id = ANY($1)
               ORDER BY received_at DESC LIMIT 20) e
         ORDER BY received_at",
    )
    .bind(correlation_ids)
    .fetch_all(db)
    .await
}

/// Take the transaction-scoped advisory lock on `correlation_id`. Both the
/// event's side (recording it) and the step's side (recording its wait and
/// consuming early events) hold it, so neither can miss the other.
pub(crate) async fn lock_correlation(
    tx: &mut PgConnection,
    correlation_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(correlation_id)
        .execute(tx)
        .await
        .map(|_| ())
}

/// An event as [`record`] stores it.
pub(crate) struct NewEvent<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub correlation_id: &'a str,
    pub body: &'a Value,
    pub status: &'a str,
    /// Seconds from now until the event expires (an `EARLY` one).
    pub ttl_seconds: Option<f64>,
}

/// Store an event once per (source, id): `false` when it was seen before.
pub(crate) async fn record(
    tx: &mut PgConnection,
    event: &NewEvent<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbound_events (source, id, correlation_id, body, status, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
         ON CONFLICT (source, id) DO NOTHING",
    )
    .bind(event.source)
    .bind(event.id)
    .bind(event.correlation_id)
    .bind(event.body)
    .bind(event.status)
    .bind(event.ttl_seconds)
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Mark a stored event `IGNORED`.
pub(crate) async fn mark_ignored(
    tx: &mut PgConnection,
    source: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE inbound_events SET status = 'IGNORED' WHERE source = $1 AND id = $2")
        .bind(source)
        .bind(id)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Set a stored event's status.
pub(crate) async fn set_status(
    tx: &mut PgConnection,
    source: &str,
    id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE inbound_events SET status = $3 WHERE source = $1 AND id = $2")
        .bind(source)
        .bind(id)
        .bind(status)
        .execute(tx)
        .await
        .map(|_| ())
}

/// An event kept for a step that had not yet waited for it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Early {
    pub source: String,
    pub id: String,
    pub body: Value,
}

/// The unexpired `EARLY` events on `correlation_id`, oldest first, locked
/// until the transaction ends.
pub(crate) async fn lock_early(
    tx: &mut PgConnection,
    correlation_id: &str,
) -> Result<Vec<Early>, sqlx::Error> {
    sqlx::query_as(
        "SELECT source, id, body FROM inbound_events
         WHERE correlation_id = $1 AND status = 'EARLY' AND expires_at > now()
         ORDER BY received_at FOR UPDATE",
    )
    .bind(correlation_id)
    .fetch_all(tx)
    .await
}

/// `EARLY` events past their TTL become `EXPIRED`.
pub(crate) async fn expire_early(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE inbound_events SET status = 'EXPIRED' WHERE status = 'EARLY' AND expires_at < now()",
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Delete up to `limit` events (not `EARLY` ones) received more than
/// `days` ago. Returns how many.
pub(crate) async fn delete_old(
    db: impl PgExecutor<'_>,
    days: i32,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM inbound_events WHERE ctid IN (
             SELECT ctid FROM inbound_events
             WHERE status <> 'EARLY' AND received_at < now() - make_interval(days => $1::int)
             LIMIT $2)",
    )
    .bind(days)
    .bind(limit)
    .execute(db)
    .await?
    .rows_affected())
}
