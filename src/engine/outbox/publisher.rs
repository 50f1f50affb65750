//! Draining the outbox to the sidecar's publish API.
//!
//! A batch is taken by moving its due time forward (a lease: if this
//! replica dies mid-publish, another re-sends it later with the same event
//! id), published in id order, then deleted. A failed publish waits with
//! exponential backoff; nothing is dropped.

use std::time::Duration;

use serde_json::Value;

use crate::dapr::DaprClient;
use crate::engine::Engine;

const BATCH: i64 = 100;
/// How long a taken batch is ours before another replica may re-send it.
const CLAIM_SECONDS: f64 = 30.0;

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    event_id: String,
    topic: String,
    body: Value,
    attempts: i32,
}

impl Engine {
    /// Publish outbox rows until draining. Waits for the sidecar first
    /// (without blocking the API, which is already serving).
    pub async fn run_publisher(self, dapr: DaprClient) {
        dapr.wait_for_sidecar(self.settings().dapr_health_timeout)
            .await;
        loop {
            match self.publish_batch(&dapr).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox: reading or updating failed"),
            }
            if self.is_draining() {
                return;
            }
            tokio::select! {
                _ = self.inner.outbox_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Publish one batch of due rows. Returns how many were taken.
    pub async fn publish_batch(&self, dapr: &DaprClient) -> Result<usize, sqlx::Error> {
        let batch: Vec<Pending> = sqlx::query_as(
            "UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= now()
                          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_id, topic, body, attempts",
        )
        .bind(BATCH)
        .bind(CLAIM_SECONDS)
        .fetch_all(self.pool())
        .await?;
        let mut batch = batch;
        batch.sort_by_key(|p| p.id);
        let mut sent = Vec::new();
        let (mut failed_ids, mut errors, mut delays) = (Vec::new(), Vec::new(), Vec::new());
        for p in &batch {
            match dapr.publish(&p.topic, &p.event_id, &p.body).await {
                Ok(()) => sent.push(p.id),
                Err(e) => {
                    self.inner.metrics.outbox_failures.inc();
                    let delay = (2f64.powi(p.attempts.min(8))).min(60.0);
                    tracing::warn!(topic = %p.topic, event_id = %p.event_id, attempts = p.attempts + 1,
                        retry_in_s = delay, error = %e, "publish failed; will retry");
                    failed_ids.push(p.id);
                    errors.push(e.to_string());
                    delays.push(delay);
                }
            }
        }
        if !sent.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                .bind(&sent)
                .execute(self.pool())
                .await?;
            self.inner
                .metrics
                .outbox_published
                .inc_by(sent.len() as u64);
        }
        if !failed_ids.is_empty() {
            sqlx::query(
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error,
                        next_attempt_at = now() + make_interval(secs => f.delay)
                 FROM UNNEST($1::bigint[], $2::text[], $3::float8[]) AS f(id, error, delay)
                 WHERE o.id = f.id",
            )
            .bind(&failed_ids)
            .bind(&errors)
            .bind(&delays)
            .execute(self.pool())
            .await?;
        }
        Ok(batch.len())
    }
}
