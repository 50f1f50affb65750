//! A step's state machine: every change of a `step_executions` row the
//! engine makes in memory is one of these methods, and each marks the row
//! changed (`dirty`) itself, so the transition writes it back.
//!
//! ```text
//!            make_ready            claim                 finish(COMPLETED | FAILED | TIMEOUT)
//! PENDING ─────────────▶ PENDING ───────▶ RUNNING ──────────────────────────────▶ terminal
//! (waiting on deps)      (available_at)    │  ▲ │ start_waiting (awaiting_event)
//!                             ▲            │  │ ▼
//!                             └────────────┘  RUNNING, waiting ── event / timer ──▶ terminal
//!                          retry_at / release
//! PENDING ── skip ──▶ SKIPPED        any unfinished ── finish(CANCELLED) ──▶ CANCELLED
//! terminal ── rerun ──▶ PENDING (POST /executions/{id}/retry)
//! ```
//!
//! The batch claim of `claim.rs` makes the same change in SQL for rows it
//! never loads (`claim` below says which columns).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::model::{SkipReason, StepRow, StepStatus};

impl StepRow {
    /// Its dependencies are satisfied and a parallel place is free: it may
    /// be claimed from `now`.
    pub fn make_ready(&mut self, now: DateTime<Utc>) {
        self.available_at = Some(now);
        self.dirty = true;
    }

    /// Taken by replica `owner` for a new attempt. The same columns as the
    /// batch claim's `UPDATE` in `claim.rs`.
    pub fn claim(&mut self, owner: Uuid, now: DateTime<Utc>, lease: ChronoDuration) {
        self.status = StepStatus::Running;
        self.attempt += 1;
        self.available_at = None;
        self.lease_owner = Some(owner);
        self.lease_expires_at = Some(now + lease);
        self.started_at = Some(now);
        self.awaiting_event = false;
        self.timeout_at = self
            .timeout_seconds
            .map(|s| now + ChronoDuration::milliseconds((s * 1000.0) as i64));
        self.dirty = true;
    }

    /// The attempt now waits for an event correlated by `external_id` (or
    /// for its timer), until `timeout_at`. It holds no lease while it waits,
    /// but keeps `lease_owner` as the replica that ran the attempt (for its
    /// `step_attempts` row).
    pub fn start_waiting(
        &mut self,
        external_id: String,
        outputs: Map<String, Value>,
        timeout_at: Option<DateTime<Utc>>,
    ) {
        self.awaiting_event = true;
        self.external_workflow_id = Some(external_id);
        self.stage = None;
        self.outputs = Some(Value::Object(outputs));
        self.timeout_at = timeout_at;
        self.lease_expires_at = None;
        self.dirty = true;
    }

    /// A progress report of the operation it waits on.
    pub fn record_stage(&mut self, progress: Option<f64>, stage: Value) {
        if let Some(p) = progress {
            self.progress = Some(p.clamp(0.0, 100.0));
        }
        self.stage = Some(stage);
        self.dirty = true;
    }

    /// A failed attempt to be tried again at `at` (a due time, not a sleep).
    pub fn retry_at(&mut self, at: DateTime<Utc>) {
        self.status = StepStatus::Pending;
        self.available_at = Some(at);
        self.lease_owner = None;
        self.lease_expires_at = None;
        self.awaiting_event = false;
        self.timeout_at = None;
        self.dirty = true;
    }

    /// Handed back to be claimed again now (a dead replica's lease, or this
    /// replica shutting down); the attempt is not counted as failed.
    pub fn release(&mut self, now: DateTime<Utc>) {
        self.status = StepStatus::Pending;
        self.available_at = Some(now);
        self.lease_owner = None;
        self.lease_expires_at = None;
        self.dirty = true;
    }

    /// Its handler returned: whatever killed earlier attempts' processes
    /// did not kill this one.
    pub fn survived(&mut self) {
        if self.crashes != 0 {
            self.crashes = 0;
            self.dirty = true;
        }
    }

    /// Put the row in terminal `status` and drop everything that kept it
    /// alive (its due time, lease, wait and timer).
    pub fn finish(&mut self, status: StepStatus, now: DateTime<Utc>) {
        self.status = status;
        self.available_at = None;
        self.lease_owner = None;
        self.lease_expires_at = None;
        self.awaiting_event = false;
        self.timeout_at = None;
        self.completed_at = Some(now);
        self.dirty = true;
    }

    /// Ended without running, for `reason`.
    pub fn skip(&mut self, reason: SkipReason, now: DateTime<Utc>) {
        self.skip_reason = Some(reason.as_str().to_owned());
        self.finish(StepStatus::Skipped, now);
    }

    /// Back to PENDING for a rerun of its execution, as if it never ran
    /// (its attempt count goes on, so fences of old attempts still hold).
    pub fn rerun(&mut self) {
        self.status = StepStatus::Pending;
        self.available_at = None;
        self.failures = 0;
        self.error = None;
        self.skip_reason = None;
        self.outputs = None;
        self.awaiting_event = false;
        self.timeout_at = None;
        self.progress = None;
        self.stage = None;
        self.completed_at = None;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn row() -> StepRow {
        let mut row = StepRow::fresh("s", 0, "s", "log");
        row.timeout_seconds = Some(2.5);
        row
    }

    #[test]
    fn a_claim_starts_a_new_attempt_under_a_lease() {
        let mut r = row();
        r.make_ready(now());
        let owner = Uuid::from_u128(7);
        r.claim(owner, now(), ChronoDuration::seconds(30));
        assert_eq!(
            (r.status, r.attempt, r.available_at),
            (StepStatus::Running, 1, None)
        );
        assert_eq!(r.lease_owner, Some(owner));
        assert_eq!(
            r.lease_expires_at,
            Some(now() + ChronoDuration::seconds(30))
        );
        assert_eq!(r.started_at, Some(now()));
        assert_eq!(
            r.timeout_at,
            Some(now() + ChronoDuration::milliseconds(2500))
        );
        assert!(r.dirty);
    }

    #[test]
    fn waiting_drops_the_lease_but_keeps_who_ran_the_attempt() {
        let mut r = row();
        let owner = Uuid::from_u128(7);
        r.claim(owner, now(), ChronoDuration::seconds(30));
        r.dirty = false;
        let mut outputs = Map::new();
        outputs.insert("workflow_id".into(), json!("w1"));
        r.start_waiting("w1".into(), outputs, Some(now()));
        assert!(r.awaiting_event && r.dirty && r.is_waiting());
        assert_eq!((r.lease_owner, r.lease_expires_at), (Some(owner), None));
        assert_eq!(r.external_workflow_id.as_deref(), Some("w1"));
        r.record_stage(Some(250.0), json!({"stage": "pull"}));
        assert_eq!(r.progress, Some(100.0), "progress is clamped");
    }

    #[test]
    fn retry_and_release_give_the_step_back_without_its_lease() {
        let later = now() + ChronoDuration::seconds(4);
        let mut r = row();
        r.claim(Uuid::from_u128(7), now(), ChronoDuration::seconds(30));
        r.retry_at(later);
        assert_eq!(
            (r.status, r.available_at),
            (StepStatus::Pending, Some(later))
        );
        assert_eq!(
            (r.lease_owner, r.timeout_at, r.awaiting_event),
            (None, None, false)
        );
        r.claim(Uuid::from_u128(8), now(), ChronoDuration::seconds(30));
        r.release(now());
        assert_eq!(
            (r.status, r.available_at, r.attempt),
            (StepStatus::Pending, Some(now()), 2)
        );
        assert_eq!(r.lease_owner, None);
    }

    #[test]
    fn a_rerun_forgets_the_result_but_not_the_attempt_count() {
        let mut r = row();
        r.claim(Uuid::from_u128(7), now(), ChronoDuration::seconds(30));
        r.failures = 2;
        r.error = Some("boom".into());
        r.finish(StepStatus::Failed, now());
        r.rerun();
        assert_eq!(
            (r.status, r.failures, r.error.as_deref()),
            (StepStatus::Pending, 0, None)
        );
        assert_eq!((r.completed_at, r.attempt), (None, 1));
        let mut crashed = row();
        crashed.crashes = 2;
        crashed.survived();
        assert_eq!((crashed.crashes, crashed.dirty), (0, true));
    }
}
