//! Events from other services, delivered by Dapr to `/workflow-events`
//! (API.md "Events from other services", ENGINE.md guarantee 4).
//!
//! An event is stored, deduplicated on (source, id), in the same
//! transaction that applies it. One that matches no waiting step is kept
//! (`EARLY`) for `EARLY_EVENT_TTL_SECONDS` and consumed when a step records
//! its wait on that correlation id; both sides take a transaction-scoped
//! advisory lock on the correlation id, so neither can miss the other.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::Engine;
use super::model::InboundStatus;
use super::transition::Locked;
use crate::actions::EventAction;
use crate::db;

/// What happened to a delivered event; every variant is a `SUCCESS` to Dapr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventVerdict {
    /// Applied to the waiting step (completed, failed or progressed it).
    Applied,
    /// Matched a waiting step whose action ignores this event.
    Ignored,
    /// Same (source, id) seen before.
    Duplicate,
    /// Matches a step that no longer waits: recorded, changes nothing.
    Stale,
    /// Matches nothing yet: kept for a step that is about to wait.
    Kept,
}

impl EventVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Kept => "kept",
        }
    }
}

pub struct InboundEvent {
    pub source: String,
    pub id: String,
    pub correlation_id: String,
    /// The event itself (the CloudEvent's `data`).
    pub body: Value,
    /// The trace the CloudEvent carries (its `traceparent`), when well formed.
    pub trace_id: Option<String>,
}

/// Store the event once per (source, id): `false` when it was seen before.
async fn record(
    tx: &mut sqlx::PgConnection,
    event: &InboundEvent,
    status: InboundStatus,
    ttl: Option<std::time::Duration>,
) -> Result<bool, crate::engine::Error> {
    let new = db::events::NewEvent {
        source: &event.source,
        id: &event.id,
        correlation_id: &event.correlation_id,
        body: &event.body,
        status: status.as_str(),
        ttl_seconds: ttl.map(|t| t.as_secs_f64()),
    };
    Ok(db::events::record(tx, &new).await?)
}

impl Engine {
    /// Durably record and apply one event. Returns only after commit.
    pub async fn receive_event(
        &self,
        event: &InboundEvent,
    ) -> Result<EventVerdict, crate::engine::Error> {
        // A step may start or stop waiting between the lookup and the lock;
        // each pass re-checks under the locks and starts over if so.
        for _ in 0..5 {
            let waiting = db::steps::waiting_on(self.pool(), &event.correlation_id).await?;
            let verdict = match waiting {
                Some((execution_id, step_id)) => {
                    match self.apply_to_waiting(event, execution_id, &step_id).await {
                        // The waiting step's execution cannot be read back:
                        // fail it (its step stops waiting), then the event
                        // is recorded against a step that no longer waits.
                        Err(e) if e.is_corrupt() => {
                            self.quarantine(execution_id, &e).await;
                            None
                        }
                        other => other?,
                    }
                }
                None => self.keep_or_ignore(event).await?,
            };
            if let Some(verdict) = verdict {
                return Ok(verdict);
            }
        }
        Err(crate::engine::Error::Contended(format!(
            "the step waiting on '{}' kept changing; retry the delivery",
            event.correlation_id
        )))
    }

    async fn apply_to_waiting(
        &self,
        event: &InboundEvent,
        execution_id: Uuid,
        step_id: &str,
    ) -> Result<Option<EventVerdict>, crate::engine::Error> {
        let Some(mut locked) = self.lock_cached(execution_id).await? else {
            return Ok(None);
        };
        db::events::lock_correlation(&mut locked.tx, &event.correlation_id).await?;
        let Some(i) = locked.index(step_id) else {
            return Ok(None);
        };
        let row = &locked.rows[i];
        if !(row.is_waiting()
            && row.external_workflow_id.as_deref() == Some(event.correlation_id.as_str()))
        {
            return Ok(None);
        }
        if !record(&mut locked.tx, event, InboundStatus::Applied, None).await? {
            return Ok(Some(EventVerdict::Duplicate));
        }
        let verdict = locked.apply_event(self, i, &event.body);
        if verdict == EventVerdict::Ignored {
            db::events::mark_ignored(&mut locked.tx, &event.source, &event.id).await?;
        }
        let ready = locked.advance_inline(self);
        let handoffs = locked.claim_locally(self, &ready, Vec::new());
        locked.commit(self).await?;
        self.spawn_handoffs(handoffs);
        Ok(Some(verdict))
    }

    async fn keep_or_ignore(
        &self,
        event: &InboundEvent,
    ) -> Result<Option<EventVerdict>, crate::engine::Error> {
        let mut tx = self.pool().begin().await?;
        db::events::lock_correlation(&mut tx, &event.correlation_id).await?;
        let db::steps::Correlation { waiting, known } =
            db::steps::correlation(&mut *tx, &event.correlation_id).await?;
        if waiting {
            return Ok(None);
        }
        let (status, ttl, verdict) = if known {
            (InboundStatus::Ignored, None, EventVerdict::Stale)
        } else {
            (
                InboundStatus::Early,
                Some(self.settings().early_event_ttl),
                EventVerdict::Kept,
            )
        };
        if !record(&mut tx, event, status, ttl).await? {
            return Ok(Some(EventVerdict::Duplicate));
        }
        tx.commit().await?;
        Ok(Some(verdict))
    }
}

impl Locked {
    /// Apply an event to waiting row `i` through its action's mapping.
    pub fn apply_event(&mut self, engine: &Engine, i: usize, event: &Value) -> EventVerdict {
        let Some(handler) = engine.registry().get(&self.rows[i].action).cloned() else {
            return EventVerdict::Ignored;
        };
        let outputs = self.rows[i].outputs_map();
        match handler.on_event(event, &outputs) {
            EventAction::Complete(extra) => {
                let mut merged: Map<String, Value> = outputs;
                merged.extend(extra);
                self.complete_step(i, merged);
                EventVerdict::Applied
            }
            EventAction::Fail(error) => {
                self.fail_step(i, error, true, super::model::StepStatus::Failed);
                EventVerdict::Applied
            }
            EventAction::Progress(report) => {
                let now = self.now();
                let mut stage = report.to_json();
                stage["at"] = serde_json::json!(now);
                self.rows[i].record_stage(report.progress, stage);
                self.stage_reports.push((i, report));
                EventVerdict::Applied
            }
            EventAction::Ignore => EventVerdict::Ignored,
        }
    }

    /// Events that arrived before this step recorded its wait.
    pub(super) async fn consume_early_events(
        &mut self,
        engine: &Engine,
        i: usize,
        correlation_id: &str,
    ) -> Result<(), crate::engine::Error> {
        let early = db::events::lock_early(&mut self.tx, correlation_id).await?;
        for db::events::Early { source, id, body } in early {
            let status = if self.rows[i].is_waiting() {
                match self.apply_event(engine, i, &body) {
                    EventVerdict::Ignored => InboundStatus::Ignored,
                    _ => InboundStatus::Consumed,
                }
            } else {
                InboundStatus::Ignored
            };
            db::events::set_status(&mut self.tx, &source, &id, status.as_str()).await?;
        }
        Ok(())
    }
}
