//! A circuit breaker for one callee (one Dapr app id).
//!
//! ```text
//!   Closed{failures} --failures reach threshold--> Open{until}
//!   Open{until} --first caller after `until`--> HalfOpen{trial in flight}
//!   HalfOpen --trial succeeds--> Closed{0}
//!   HalfOpen --trial fails--> Open{now + recovery}
//! ```
//!
//! The unit is a whole *call* (every retry attempt of it), so a breaker
//! opens after `threshold` calls in a row that each exhausted their retries.
//! While open, and while a half-open trial is in flight, callers are refused
//! at once and make no network request.
//!
//! The state sits behind a `std::sync::Mutex` that is never held across an
//! `.await`; time is `tokio::time::Instant` so tests can pause the clock.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// The externally visible state, for `/internal/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    recovery: Duration,
    state: Mutex<State>,
}

/// Leave to make one call. Report how it went with [`Permit::record`];
/// a permit dropped without a record (the caller was cancelled) frees the
/// half-open trial slot so the breaker cannot stay stuck.
#[derive(Debug)]
#[must_use = "record the call's result on the permit"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, recovery: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            recovery,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    /// A permit to call, or how long until a call may be tried again.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        let trial = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. }
            | State::HalfOpen {
                trial_in_flight: false,
            } => {
                *state = State::HalfOpen {
                    trial_in_flight: true,
                };
                true
            }
            // Another caller is probing; it will settle the state soon.
            State::HalfOpen {
                trial_in_flight: true,
            } => return Err(self.recovery),
        };
        Ok(Permit {
            breaker: self,
            trial,
            recorded: false,
        })
    }

    pub fn state(&self) -> BreakerState {
        public_state(*self.lock())
    }

    /// Settle a call; returns the new state when it changed.
    fn record(&self, trial: bool, success: bool) -> Option<BreakerState> {
        let mut state = self.lock();
        let next = match (*state, trial, success) {
            (State::HalfOpen { .. }, true, true) => State::Closed {
                consecutive_failures: 0,
            },
            (State::HalfOpen { .. }, true, false) => self.open_now(),
            (State::Closed { .. }, false, true) => State::Closed {
                consecutive_failures: 0,
            },
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    self.open_now()
                } else {
                    State::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A call that started before the breaker changed state does not
            // decide anything any more: only the trial settles a half-open
            // breaker, and an open one waits for its recovery time.
            (current, _, _) => current,
        };
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&*state);
        *state = next;
        changed.then(|| public_state(next))
    }

    fn release_trial(&self) {
        let mut state = self.lock();
        if let State::HalfOpen {
            trial_in_flight: true,
        } = *state
        {
            *state = State::HalfOpen {
                trial_in_flight: false,
            };
        }
    }

    fn open_now(&self) -> State {
        State::Open {
            until: Instant::now() + self.recovery,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding this lock cannot leave `State`
        // half-written (it is Copy), so the poisoned value is still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn public_state(state: State) -> BreakerState {
    match state {
        State::Closed { .. } => BreakerState::Closed,
        State::Open { .. } => BreakerState::Open,
        State::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

impl Permit<'_> {
    /// `success` is false only for failures that say the callee is unwell
    /// (exhausted retries on 5xx, timeouts, unreachable). Returns the
    /// breaker's new state when this call changed it (for logging).
    pub fn record(mut self, success: bool) -> Option<BreakerState> {
        self.recorded = true;
        self.breaker.record(self.trial, success)
    }

    /// Whether this permit is the single half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.recorded {
            self.breaker.release_trial();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECOVERY: Duration = Duration::from_secs(30);

    fn fail(breaker: &CircuitBreaker) {
        let _ = breaker.try_acquire().expect("permit").record(false);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_threshold_consecutive_failures() {
        let breaker = CircuitBreaker::new(3, RECOVERY);
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
        let opened = breaker.try_acquire().unwrap().record(false);
        assert_eq!(opened, Some(BreakerState::Open));
        assert_eq!(breaker.state(), BreakerState::Open);
        let retry_after = breaker.try_acquire().unwrap_err();
        assert_eq!(retry_after, RECOVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, RECOVERY);
        fail(&breaker);
        breaker.try_acquire().unwrap().record(true);
        fail(&breaker);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_lets_one_trial_through_after_recovery() {
        let breaker = CircuitBreaker::new(1, RECOVERY);
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            breaker.try_acquire().unwrap_err(),
            Duration::from_secs(20),
            "still open, with the time left"
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        let trial = breaker.try_acquire().expect("trial permit");
        assert!(trial.is_trial());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(
            breaker.try_acquire().is_err(),
            "concurrent callers fail fast while the trial runs"
        );
        assert_eq!(trial.record(true), Some(BreakerState::Closed));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(!breaker.try_acquire().unwrap().is_trial());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_for_a_full_recovery_period() {
        let breaker = CircuitBreaker::new(1, RECOVERY);
        fail(&breaker);
        tokio::time::advance(RECOVERY).await;
        breaker.try_acquire().unwrap().record(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire().unwrap_err(), RECOVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_trial_frees_the_slot_for_the_next_caller() {
        let breaker = CircuitBreaker::new(1, RECOVERY);
        fail(&breaker);
        tokio::time::advance(RECOVERY).await;
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire().unwrap().is_trial());
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_of_calls_started_before_opening_change_nothing() {
        let breaker = CircuitBreaker::new(1, RECOVERY);
        let early = breaker.try_acquire().unwrap();
        fail(&breaker);
        early.record(true);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn state_serializes_as_snake_case() {
        let json = serde_json::to_string(&BreakerState::HalfOpen).unwrap();
        assert_eq!(json, "\"half_open\"");
        assert_eq!(BreakerState::Open.as_str(), "open");
    }
}
