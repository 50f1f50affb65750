//! Running claimed steps on this replica: the dispatcher loop, the handler
//! runner, lease renewal, and the wake-ups (in-process, `LISTEN/NOTIFY`, and
//! a slow poll as a safety net).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use tracing::Instrument;

use super::complete::{Handoff, Slot};
use super::model::ClaimedStep;
use super::{Engine, WORK_CHANNEL};

use crate::actions::{StepContext, StepOutcome};

/// The safety-net poll: work is normally found through wake-ups.
const POLL: Duration = Duration::from_secs(1);
const BATCH: usize = 32;
/// The first wait before looking again at ready steps passed over because
/// their execution was held; it doubles while that keeps happening.
const RETRY_SOON_FIRST: Duration = Duration::from_millis(5);

/// What one claim round did.
struct Dispatched {
    /// A full batch came back: there may be more.
    full: bool,
    /// Ready steps were skipped because their execution was held.
    passed_over: bool,
}

impl Engine {
    /// Claim and start ready steps until told to drain.
    pub async fn run_dispatcher(self) {
        let mut retry_soon = RETRY_SOON_FIRST;
        loop {
            if self.is_draining() {
                return;
            }
            match self.dispatch_once().await {
                Ok(Dispatched { full: true, .. }) => continue,
                Ok(Dispatched {
                    passed_over: true, ..
                }) => {
                    // Ready steps whose execution someone else held a moment
                    // ago (a transition, another replica's claim): the wake-up
                    // that announced them is spent, so look again shortly.
                    tokio::select! {
                        _ = self.inner.wake.notified() => {}
                        _ = tokio::time::sleep(retry_soon) => {}
                    }
                    retry_soon = (retry_soon * 2).min(POLL);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "claiming steps failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            retry_soon = RETRY_SOON_FIRST;
            // With every slot busy, a finishing step wakes us; otherwise sleep
            // until the next retry this replica scheduled at most. Retries
            // scheduled elsewhere are their replica's to wake for; if it is
            // gone, the poll finds them.
            let idle = if self.inner.permits.available_permits() == 0 {
                POLL
            } else {
                self.next_retry().unwrap_or(POLL).min(POLL)
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// How long until the next retry this replica scheduled is due, so a
    /// backoff ends on time instead of at the next poll; `None` when none
    /// is pending. Known from the transitions themselves (see
    /// [`Engine::retry_at`]), not asked of the database at every idle turn:
    /// that query ran once per finished step.
    fn next_retry(&self) -> Option<Duration> {
        let mut due = self.inner.retries.lock().expect("retries lock");
        let now = Instant::now();
        // Past ones were just claimed (or will be, by this very round).
        due.retain(|at| *at > now);
        due.iter().min().map(|at| at.duration_since(now))
    }

    /// A transition here scheduled a step's retry `delay` from now.
    pub(crate) fn retry_at(&self, delay: Duration) {
        let mut due = self.inner.retries.lock().expect("retries lock");
        // Bounded: beyond a few hundred pending retries the 1 s poll is as good.
        if due.len() < 1024 {
            due.push(Instant::now() + delay.max(Duration::from_millis(1)));
        }
        drop(due);
        self.inner.wake.notify_one();
    }

    /// Claim one batch for the free slots.
    async fn dispatch_once(&self) -> Result<Dispatched, crate::engine::Error> {
        let none = Dispatched {
            full: false,
            passed_over: false,
        };
        let free = self.inner.permits.available_permits().min(BATCH);
        let Some(mut permits) = (free > 0)
            .then(|| {
                self.inner
                    .permits
                    .clone()
                    .try_acquire_many_owned(free as u32)
                    .ok()
            })
            .flatten()
        else {
            // Woken with every slot busy: whatever woke us waits for a slot.
            self.inner.backlog.store(true, Ordering::SeqCst);
            return Ok(none);
        };
        // Cleared before the claim reads: work released after this point is
        // either seen by this claim or announced by a wake-up of its own.
        self.inner.backlog.store(false, Ordering::SeqCst);
        let claim = match self.claim(free).await {
            Ok(claim) => claim,
            Err(e) => {
                self.inner.backlog.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        let full = claim.steps.len() == free;
        if full || claim.passed_over > 0 {
            self.inner.backlog.store(true, Ordering::SeqCst);
        }
        for step in claim.steps {
            let permit = permits.split(1).expect("one permit per claimed step");
            self.spawn_step(step, Slot::Held(permit));
        }
        Ok(Dispatched {
            full,
            passed_over: claim.passed_over > 0,
        })
    }

    pub fn spawn_handoffs(&self, handoffs: Vec<Handoff>) {
        for h in handoffs {
            self.spawn_step(h.step, h.slot);
        }
    }

    fn spawn_step(&self, step: ClaimedStep, slot: Slot) {
        let engine = self.clone();
        tokio::spawn(engine.run_chain(step, slot));
    }

    /// Run a step, record its result, and go straight on with the next step
    /// that result made ready (a chain runs on one task, one commit a step).
    async fn run_chain(self, step: ClaimedStep, slot: Slot) {
        let mut current = Some((step, slot));
        while let Some((step, slot)) = current.take() {
            let key = (step.execution_id, step.step_id.clone(), step.attempt);
            let abort = Arc::new(Notify::new());
            self.inner
                .inflight
                .lock()
                .expect("inflight lock")
                .insert(key.clone(), abort.clone());
            let span = step_span(
                step.execution_id,
                &step.step_id,
                step.attempt,
                &step.action,
                step.trace_id.as_deref(),
            );
            let handoffs = self
                .run_attempt(&step, &key, &abort, slot)
                .instrument(span)
                .await;
            self.inner
                .inflight
                .lock()
                .expect("inflight lock")
                .remove(&key);
            let mut handoffs = handoffs.into_iter();
            if let Some(next) = handoffs.next() {
                current = Some((next.step, next.slot));
            }
            self.spawn_handoffs(handoffs.collect());
            if current.is_none() && self.inner.backlog.load(Ordering::SeqCst) {
                // The chain ends and its slot is free, and ready steps were
                // left for want of one: claim them now. (While a chain goes
                // on, its slot passes to the next step; and with no backlog a
                // freed slot has nothing to claim: no claim round per step.)
                self.inner.wake.notify_one();
            }
        }
    }

    /// One attempt: the handler (unless its lease is lost meanwhile), then
    /// its result recorded. Returns the steps the result made ready here.
    /// The attempt's slot goes to the first of them: with every slot busy,
    /// a freed one would otherwise leave the next step to the dispatcher's
    /// next claim round.
    async fn run_attempt(
        &self,
        step: &ClaimedStep,
        key: &super::AttemptKey,
        abort: &Notify,
        slot: Slot,
    ) -> Vec<Handoff> {
        let span = tracing::Span::current();
        // A step claimed with every slot busy waits for one first. It is in
        // `inflight` meanwhile, so its lease is renewed, and a lost lease or
        // a shutdown ends the wait as it ends a handler.
        let run = async {
            let permit = match slot {
                Slot::Held(permit) => permit,
                // Counted as queued until it has a slot (or is abandoned).
                Slot::Queued(_queued) => self
                    .inner
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the handler slots' semaphore is never closed"),
            };
            (permit, self.run_handler(step).await)
        };
        let (permit, outcome) = tokio::select! {
            done = run => done,
            _ = abort.notified() => {
                span.record("outcome", "abandoned");
                tracing::warn!("lease lost or shutting down: step abandoned (in its handler or waiting for a slot), its result will not be recorded");
                return Vec::new();
            }
        };
        let mut permit = Some(permit);
        record_outcome(&span, &outcome);
        let mut outcome = outcome;
        loop {
            match self
                .complete_combined(step, outcome.clone(), permit.take())
                .await
            {
                Ok(handoffs) => return handoffs,
                Err(e)
                    if e.is_unstorable()
                        && !matches!(
                            outcome,
                            StepOutcome::Failed {
                                retryable: false,
                                ..
                            }
                        ) =>
                {
                    // The database refuses this result itself (bad data, a
                    // value too large to index): retrying cannot help, so
                    // the attempt fails permanently with a plain message.
                    tracing::warn!(error = %e, "step result cannot be stored; failing the step");
                    outcome = StepOutcome::permanent(format!(
                        "the step's result could not be stored: {e}"
                    ));
                }
                Err(e) => {
                    // The lease keeps the step ours for a while; if the
                    // database stays away the sweeper re-runs it elsewhere.
                    tracing::warn!(error = %e, "recording a step result failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if !self
                        .inner
                        .inflight
                        .lock()
                        .expect("inflight lock")
                        .contains_key(key)
                    {
                        return Vec::new();
                    }
                }
            }
        }
    }

    /// Abandon every handler in flight (shutdown after the grace period).
    pub fn abandon_all(&self) {
        for (_, abort) in self.inner.inflight.lock().expect("inflight lock").drain() {
            abort.notify_one();
        }
    }

    /// Renew the leases of the steps running here; abandon those whose lease
    /// is gone (another replica may run them now) or that could not be
    /// renewed before the lease would expire.
    pub async fn run_lease_renewal(self) {
        let every = self.settings().lease / 3;
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<super::AttemptKey> = self
                .inner
                .inflight
                .lock()
                .expect("inflight lock")
                .keys()
                .cloned()
                .collect();
            if held.is_empty() {
                last_ok = Instant::now();
                if self.is_draining() {
                    return;
                }
                continue;
            }
            match self.renew(&held).await {
                Ok(renewed) => {
                    last_ok = Instant::now();
                    let mut inflight = self.inner.inflight.lock().expect("inflight lock");
                    for key in held.iter().filter(|k| !renewed.contains(k)) {
                        if let Some(abort) = inflight.remove(key) {
                            abort.notify_one();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing leases failed");
                    // Give up before the lease runs out, so no other replica
                    // ever runs a step while we still do.
                    if last_ok.elapsed() > self.settings().lease * 2 / 3 {
                        self.abandon_all();
                    }
                }
            }
        }
    }

    async fn renew(
        &self,
        held: &[super::AttemptKey],
    ) -> Result<Vec<super::AttemptKey>, crate::engine::Error> {
        // Never waits for a row lock (see the statement).
        let lease = self.settings().lease.as_secs_f64();
        Ok(crate::db::steps::renew_leases(self.pool(), self.replica_id(), lease, held).await?)
    }

    /// Tell the other replicas (`NOTIFY`) that steps became claimable, on
    /// its own after the transitions commit rather than inside them:
    /// Postgres commits notifying transactions one at a time, cluster-wide,
    /// each holding that turn through its WAL flush, which would serialise
    /// every transition that released work. Signals raised while a `NOTIFY`
    /// is on its way fold into the next one, so a burst costs one or two.
    /// Sent after the commit it reports, a `NOTIFY` never wakes a listener
    /// before the work is visible.
    pub async fn run_notifier(self) {
        loop {
            self.inner.tell_others.notified().await;
            if let Err(e) = self.notify_others().await {
                // The others still poll; a lost wake-up only delays them.
                tracing::debug!(error = %e, "NOTIFY failed");
            }
        }
    }

    /// One `NOTIFY` on the work channel, outside any transition.
    async fn notify_others(&self) -> Result<(), crate::engine::Error> {
        Ok(crate::db::notify(self.pool(), WORK_CHANNEL).await?)
    }

    /// Follow `NOTIFY`s from other replicas into this one's wake-up.
    pub async fn run_listener(self) {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(self.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; the poll covers meanwhile");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(WORK_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => self.inner.wake.notify_one(),
                    // The connection dropped: wake once in case we missed work.
                    Ok(None) => self.inner.wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost");
                        self.inner.wake.notify_one();
                        break;
                    }
                }
                if self.is_draining() {
                    return;
                }
            }
        }
    }

    async fn run_handler(&self, step: &ClaimedStep) -> StepOutcome {
        let params = match &step.params {
            Ok(p) => p.clone(),
            Err(e) => return StepOutcome::permanent(e.clone()),
        };
        let Some(handler) = self.registry().get(&step.action).cloned() else {
            return StepOutcome::permanent(format!(
                "action '{}' is not registered in this service",
                step.action
            ));
        };
        let ctx = StepContext {
            execution_id: step.execution_id,
            step_id: step.step_id.clone(),
            attempt: step.attempt,
            params,
            workflow_params: step.workflow_params.clone(),
            // The step span's own context, so callees' spans are its children.
            traceparent: crate::telemetry::step_traceparent(step.trace_id.as_deref()),
        };
        let started = Instant::now();
        let run = handler.run(ctx);
        let outcome = match step.timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) => StepOutcome::transient(format!(
                    "step timed out after {:.0}s",
                    limit.as_secs_f64()
                )),
            },
            None => run.await,
        };
        tracing::debug!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "handler returned"
        );
        // Whatever the action built from another service's answer, the
        // outcome is made one the database can record here, once.
        super::storable::storable(outcome)
    }
}

impl Engine {
    /// Hand the steps this replica holds back to the pool (shutdown), so
    /// another replica runs them now rather than when the lease expires.
    pub async fn release_leases(&self) -> Result<u64, crate::engine::Error> {
        let held = crate::db::steps::leased_executions(self.pool(), self.replica_id()).await?;
        let mut released = 0;
        // Through the execution lock like every other change, so a
        // concurrent transition can never write back a stale copy.
        for execution_id in held {
            let Some(mut locked) = self.lock(execution_id).await? else {
                continue;
            };
            for i in 0..locked.rows.len() {
                let row = &locked.rows[i];
                if row.is_in_handler() && row.lease_owner == Some(self.replica_id()) {
                    locked.release(i);
                    released += 1;
                }
            }
            locked.commit(self).await?;
        }
        if released > 0 {
            // Now, not through the notifier: shutdown ends it next.
            self.notify_others().await?;
        }
        Ok(released)
    }
}

/// The span of one attempt: a child of the execution's span, in its
/// trace, whichever replica runs it and whenever. `inline` is recorded for
/// a pure step run inside a transition.
pub(crate) fn step_span(
    execution_id: uuid::Uuid,
    step_id: &str,
    attempt: i32,
    action: &str,
    trace_id: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!("step", execution_id = %execution_id, step_id = %step_id,
        attempt = attempt, action = %action, trace_id = trace_id.unwrap_or(""),
        inline = tracing::field::Empty, outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty);
    crate::telemetry::join_execution(&span, Some(execution_id), trace_id);
    span
}

/// How the attempt ended, on its span.
pub(crate) fn record_outcome(span: &tracing::Span, outcome: &StepOutcome) {
    span.record("outcome", outcome_label(outcome));
    if matches!(outcome, StepOutcome::Failed { .. }) {
        crate::telemetry::mark_error(span);
    }
}

/// How an attempt's handler ended, for its span.
fn outcome_label(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Completed { .. } => "completed",
        StepOutcome::AwaitEvent { .. } => "waiting",
        StepOutcome::Failed {
            retryable: true, ..
        } => "failed_retryable",
        StepOutcome::Failed { .. } => "failed",
    }
}
