//! Inbound events (`inbound_events`): as the API reads them, and the
//! statements with which the engine records them, pairs early ones with the
//! step that comes to wait for them, and expires and deletes them. The rules
//! (which event goes where) are the engine's (`crate::engine::events`).

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

const RECENT: &str = "SELECT json_build_object('correlation_id', correlation_id, 'status', status,
            'received_at', received_at,
            'event', COALESCE(body #>> '{payload,event}', body ->> 'event'),
            'event_status', COALESCE(body #>> '{payload,content,status}', body ->> 'status'),
            'message', COALESCE(body #>> '{payload,content,message}', body ->> 'message'))
    FROM (SELECT * FROM inbound_events WHERE correlation_id = ANY($1)
          ORDER BY received_at DESC LIMIT 20) e
    ORDER BY received_at";

/// The latest 20 events for these correlation ids, oldest first, each a
/// JSON summary (`correlation_id`, `status`, `received_at`, and the event's
/// `event`, `event_status` and `message`, wherever the sender put them).
pub(crate) async fn recent(
    db: impl PgExecutor<'_>,
    correlation_ids: &[String],
) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar(RECENT)
        .bind(correlation_ids)
        .fetch_all(db)
        .await
}

const LOCK_CORRELATION: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// Take the transaction-scoped advisory lock on `correlation_id`. Both the
/// event's side (recording it) and the step's side (recording its wait and
/// consuming early events) hold it, so neither can miss the other.
pub(crate) async fn lock_correlation(
    tx: &mut PgConnection,
    correlation_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK_CORRELATION)
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

const RECORD: &str =
    "INSERT INTO inbound_events (source, id, correlation_id, body, status, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
         ON CONFLICT (source, id) DO NOTHING";

/// Store an event once per (source, id): `false` when it was seen before.
pub(crate) async fn record(
    tx: &mut PgConnection,
    event: &NewEvent<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(RECORD)
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

const MARK_IGNORED: &str =
    "UPDATE inbound_events SET status = 'IGNORED' WHERE source = $1 AND id = $2";

/// Mark a stored event `IGNORED`.
pub(crate) async fn mark_ignored(
    tx: &mut PgConnection,
    source: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_IGNORED)
        .bind(source)
        .bind(id)
        .execute(tx)
        .await
        .map(|_| ())
}

const SET_STATUS: &str = "UPDATE inbound_events SET status = $3 WHERE source = $1 AND id = $2";

/// Set a stored event's status.
pub(crate) async fn set_status(
    tx: &mut PgConnection,
    source: &str,
    id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_STATUS)
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

const LOCK_EARLY: &str = "SELECT source, id, body FROM inbound_events
    WHERE correlation_id = $1 AND status = 'EARLY' AND expires_at > now()
    ORDER BY received_at FOR UPDATE";

/// The unexpired `EARLY` events on `correlation_id`, oldest first, locked
/// until the transaction ends.
pub(crate) async fn lock_early(
    tx: &mut PgConnection,
    correlation_id: &str,
) -> Result<Vec<Early>, sqlx::Error> {
    sqlx::query_as(LOCK_EARLY)
        .bind(correlation_id)
        .fetch_all(tx)
        .await
}

const EXPIRE_EARLY: &str =
    "UPDATE inbound_events SET status = 'EXPIRED' WHERE status = 'EARLY' AND expires_at < now()";

/// `EARLY` events past their TTL become `EXPIRED`.
pub(crate) async fn expire_early(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(EXPIRE_EARLY).execute(db).await.map(|_| ())
}

const DELETE_OLD: &str = "DELETE FROM inbound_events WHERE ctid IN (
    SELECT ctid FROM inbound_events
    WHERE status <> 'EARLY' AND received_at < now() - make_interval(days => $1::int)
    LIMIT $2)";

/// Delete up to `limit` events (not `EARLY` ones) received more than
/// `days` ago. Returns how many.
pub(crate) async fn delete_old(
    db: impl PgExecutor<'_>,
    days: i32,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(DELETE_OLD)
        .bind(days)
        .bind(limit)
        .execute(db)
        .await?
        .rows_affected())
}

super::check::statements!(
    RECENT,
    LOCK_CORRELATION,
    RECORD,
    MARK_IGNORED,
    SET_STATUS,
    LOCK_EARLY => Early,
    EXPIRE_EARLY,
    DELETE_OLD,
);
