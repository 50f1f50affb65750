//! The outbox (`outbox`) as the publisher drains it: taking a batch,
//! deleting what was published, deferring what failed, failing what can
//! never be published, and retention of failed rows. Rows are written by
//! the transactions that produce them: a transition's one statement
//! ([`super::steps::write_transition`]) or [`insert`].

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A row taken for publishing.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Pending {
    pub id: i64,
    pub event_id: String,
    pub topic: String,
    pub body: Value,
    pub attempts: i32,
    pub trace_id: Option<String>,
    pub execution_id: Option<Uuid>,
}

const TAKE: &str = "WITH waiting AS (
        SELECT topic, min(id) AS first_id FROM outbox
        WHERE next_attempt_at > now() AND failed_at IS NULL GROUP BY topic
    )
    UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2)
    WHERE id IN (SELECT o.id FROM outbox o LEFT JOIN waiting w ON w.topic = o.topic
                 WHERE o.next_attempt_at <= now() AND o.failed_at IS NULL
                   AND (w.first_id IS NULL OR o.id < w.first_id)
                 ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED)
    RETURNING id, event_id, topic, body, attempts, trace_id, execution_id";

/// Take up to `limit` due rows for `claim_seconds` (moving their due time
/// forward: a lease, so that if this replica dies mid-publish another
/// re-sends them later with the same event id).
///
/// Each topic is taken in order: a row is not taken while an earlier row
/// of its topic waits (for its retry, or in another replica's batch).
pub(crate) async fn take(
    db: impl PgExecutor<'_>,
    limit: i64,
    claim_seconds: f64,
) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query_as(TAKE)
        .bind(limit)
        .bind(claim_seconds)
        .fetch_all(db)
        .await
}

const DELETE: &str = "DELETE FROM outbox WHERE id = ANY($1)";

/// Delete published rows.
pub(crate) async fn delete(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE).bind(ids).execute(db).await.map(|_| ())
}

const FAIL_UNPUBLISHABLE: &str = "UPDATE outbox SET failed_at = now(),
           last_error = 'the topic can never be published: it must match ^[A-Za-z][A-Za-z0-9._-]*$ and be at most 249 characters'
    WHERE id = ANY($1)";

/// Fail rows whose topic no broker takes: they keep their body and
/// `last_error`, and stop holding their topic back.
pub(crate) async fn fail_unpublishable(
    db: impl PgExecutor<'_>,
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query(FAIL_UNPUBLISHABLE)
        .bind(ids)
        .execute(db)
        .await
        .map(|_| ())
}

/// Rows to publish again later: `ids[i]` comes due `delays[i]` seconds
/// from now; when `counts[i]`, its publish failed with `errors[i]` (an
/// attempt), otherwise it was held back behind such a row.
pub(crate) struct Deferred {
    pub ids: Vec<i64>,
    pub errors: Vec<String>,
    pub delays: Vec<f64>,
    pub counts: Vec<bool>,
}

const DEFER: &str = "UPDATE outbox o SET attempts = o.attempts + f.counts::int,
           last_error = CASE WHEN f.counts THEN f.error ELSE o.last_error END,
           next_attempt_at = now() + make_interval(secs => f.delay)
    FROM UNNEST($1::bigint[], $2::text[], $3::float8[], $4::bool[]) AS f(id, error, delay, counts)
    WHERE o.id = f.id";

/// One statement, so the rows held back behind a failure come due at the
/// same instant as it and, ordered by id, after it.
pub(crate) async fn defer(db: impl PgExecutor<'_>, rows: &Deferred) -> Result<(), sqlx::Error> {
    sqlx::query(DEFER)
        .bind(&rows.ids)
        .bind(&rows.errors)
        .bind(&rows.delays)
        .bind(&rows.counts)
        .execute(db)
        .await
        .map(|_| ())
}

const DELETE_FAILED: &str =
    "DELETE FROM outbox WHERE failed_at < now() - make_interval(days => $1::int)";

/// Delete rows that failed more than `days` ago.
pub(crate) async fn delete_failed(db: impl PgExecutor<'_>, days: i32) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_FAILED)
        .bind(days)
        .execute(db)
        .await
        .map(|_| ())
}

const INSERT: &str = "INSERT INTO outbox (event_id, topic, body, trace_id, execution_id)
    SELECT event_id, topic, body, trace_id, execution_id
    FROM jsonb_to_recordset($1) AS r(event_id text, topic text, body jsonb, trace_id text, execution_id uuid)";

/// Add `events` to the outbox inside the caller's transaction.
pub(crate) async fn insert(
    tx: &mut sqlx::PgConnection,
    events: &[crate::engine::outbox::OutboxEvent],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT)
        .bind(sqlx::types::Json(events))
        .execute(tx)
        .await?;
    Ok(())
}

super::check::statements!(
    TAKE => Pending,
    DELETE,
    FAIL_UNPUBLISHABLE,
    DEFER,
    DELETE_FAILED,
    INSERT,
);
