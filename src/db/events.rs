//! Inbound events (`inbound_events`) as the API reads them. Recording and
//! matching them is the engine's (`crate::engine::events`).

use serde_json::Value;
use sqlx::PgExecutor;

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
