//! Draining the outbox to the sidecar's publish API.
//!
//! A batch is taken by moving its due time forward (a lease: if this
//! replica dies mid-publish, another re-sends it later with the same event
//! id), published in id order, then deleted. A failed publish waits with
//! exponential backoff; nothing is dropped.
//!
//! Each topic is published in order: a row is not taken while an earlier row
//! of its topic waits (for its retry, or in another replica's batch), and
//! once a publish fails the rest of that topic's batch waits behind it. So a
//! consumer never sees an execution's `results` before its `STARTED` because
//! one publish failed.
//!
//! A row that can never be published (its topic is one no broker takes,
//! stored by an older version before topics were bounded) is failed, not
//! retried: it keeps its body and `last_error`, stops holding its topic
//! back, and is counted in `/internal/status` (`outbox.failed`) and
//! `budpipeline_outbox_failed_total`.

use std::time::Duration;

use crate::dapr::DaprClient;
use crate::db;
use crate::engine::Engine;

const BATCH: i64 = 100;
/// How long a taken batch is ours before another replica may re-send it.
const CLAIM_SECONDS: f64 = 30.0;

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
    pub async fn publish_batch(&self, dapr: &DaprClient) -> Result<usize, crate::engine::Error> {
        let mut batch = db::outbox::take(self.pool(), BATCH, CLAIM_SECONDS).await?;
        batch.sort_by_key(|p| p.id);
        let mut sent = Vec::new();
        let mut failed = db::outbox::Deferred {
            ids: Vec::new(),
            errors: Vec::new(),
            delays: Vec::new(),
            counts: Vec::new(),
        };
        // Topics whose publish failed in this batch, with the failure's delay:
        // their later rows wait as long, behind it (they are not attempts).
        let mut blocked: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
        let mut dead = Vec::new();
        for p in &batch {
            if !super::valid_topic(&p.topic) {
                let head: String = p.topic.chars().take(40).collect();
                tracing::error!(topic = %head, event_id = %p.event_id,
                    "an outbox row names a topic no broker takes; failing it");
                dead.push(p.id);
                continue;
            }
            if let Some(&delay) = blocked.get(p.topic.as_str()) {
                failed.ids.push(p.id);
                failed.errors.push(String::new());
                failed.delays.push(delay);
                failed.counts.push(false);
                continue;
            }
            let traceparent = p.trace_id.as_deref().map(crate::engine::model::traceparent);
            // In the execution's trace, a child of its span, like its steps.
            let span = tracing::info_span!("outbox.publish", topic = %p.topic, event_id = %p.event_id,
                attempt = p.attempts + 1);
            crate::telemetry::join_execution(&span, p.execution_id, p.trace_id.as_deref());
            let publish = dapr.publish(&p.topic, &p.event_id, &p.body, traceparent.as_deref());
            match tracing::Instrument::instrument(publish, span).await {
                Ok(()) => sent.push(p.id),
                Err(e) => {
                    self.inner.metrics.outbox_failures.inc();
                    let delay = (2f64.powi(p.attempts.min(8))).min(60.0);
                    tracing::warn!(topic = %p.topic, event_id = %p.event_id, attempts = p.attempts + 1,
                        retry_in_s = delay, error = %e, "publish failed; will retry");
                    failed.ids.push(p.id);
                    failed.errors.push(e.to_string());
                    failed.delays.push(delay);
                    failed.counts.push(true);
                    blocked.insert(p.topic.as_str(), delay);
                }
            }
        }
        if !sent.is_empty() {
            db::outbox::delete(self.pool(), &sent).await?;
            self.inner
                .metrics
                .outbox_published
                .inc_by(sent.len() as u64);
        }
        if !dead.is_empty() {
            db::outbox::fail_unpublishable(self.pool(), &dead).await?;
            self.inner.metrics.outbox_failed.inc_by(dead.len() as u64);
        }
        if !failed.ids.is_empty() {
            // Rows held back behind a failure come due with it, after it.
            db::outbox::defer(self.pool(), &failed).await?;
        }
        Ok(batch.len())
    }
}
