//! A circuit breaker for the partner API, shared by every activity in a worker process.
//!
//! After `failure_threshold` consecutive transport failures the circuit opens: calls fail at once
//! (the activity's retry policy backs off) instead of hammering a partner that is down. After
//! `open_for` one trial call goes through; its success closes the circuit, its failure reopens it.
//! The trial holds a [`Permit`]: if its call is dropped before reporting (the activity was
//! cancelled, its task aborted), dropping the permit reopens the circuit, so it can never stay
//! half-open for ever.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is in flight; everyone else waits for its verdict.
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Mutex<Phase>,
}

/// The circuit is open: try again after the given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the partner circuit is open; next trial in {retry_in:?}")]
pub struct CircuitOpen {
    pub retry_in: Duration,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Mutex::new(Phase::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    /// Asks to make a call now. Keep the permit until the call has reported its verdict
    /// (`on_success` / `on_failure`).
    pub fn acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        let mut phase = self.phase.lock().expect("breaker lock");
        match *phase {
            Phase::Closed { .. } => Ok(Permit {
                breaker: self,
                trial: false,
            }),
            Phase::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *phase = Phase::HalfOpen;
                    Ok(Permit {
                        breaker: self,
                        trial: true,
                    })
                } else {
                    Err(CircuitOpen {
                        retry_in: until - now,
                    })
                }
            }
            Phase::HalfOpen => Err(CircuitOpen {
                retry_in: self.config.open_for,
            }),
        }
    }

    /// The partner answered (any answer that proves it is up, 4xx included).
    pub fn on_success(&self) {
        *self.phase.lock().expect("breaker lock") = Phase::Closed {
            consecutive_failures: 0,
        };
    }

    /// The call failed in transport or with a server error.
    pub fn on_failure(&self) {
        let mut phase = self.phase.lock().expect("breaker lock");
        let open = Phase::Open {
            until: Instant::now() + self.config.open_for,
        };
        *phase = match *phase {
            Phase::Closed {
                consecutive_failures,
            } if consecutive_failures + 1 < self.config.failure_threshold => Phase::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            _ => open,
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(
            *self.phase.lock().expect("breaker lock"),
            Phase::Closed { .. }
        )
    }
}

/// Leave to make one call. The half-open trial's permit reopens the circuit when it is dropped
/// before the call reported, so a lost trial cannot keep everyone else waiting.
#[must_use = "hold the permit until the call has reported"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.trial {
            return;
        }
        let mut phase = self.breaker.phase.lock().expect("breaker lock");
        // Still half-open: the trial never reported (a report closes or reopens the circuit).
        if *phase == Phase::HalfOpen {
            *phase = Phase::Open {
                until: Instant::now() + self.breaker.config.open_for,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for,
        })
    }

    #[test]
    fn opens_after_the_threshold_and_not_before() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            let _call = b.acquire().unwrap();
            b.on_failure();
        }
        assert!(
            b.acquire().is_ok(),
            "two failures must not open a threshold-3 breaker"
        );
        b.on_failure();
        assert!(b.acquire().is_err());
        assert!(b.is_open());
    }

    #[test]
    fn a_trial_that_never_reports_does_not_hold_the_circuit_half_open() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.on_failure();
        }
        let trial = b.acquire().expect("the trial call");
        assert!(b.acquire().is_err(), "others wait for the trial meanwhile");
        // The trial's task is dropped: neither on_success nor on_failure is ever called.
        drop(trial);
        let next = b.acquire().expect("a lost trial gives way to a new one");
        b.on_success();
        drop(next);
        assert!(!b.is_open());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(Duration::from_secs(60));
        b.on_failure();
        b.on_failure();
        b.on_success();
        b.on_failure();
        b.on_failure();
        assert!(b.acquire().is_ok());
    }

    #[test]
    fn half_open_lets_one_trial_through() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.on_failure();
        }
        let trial = b.acquire().expect("open_for elapsed: one trial");
        assert!(b.acquire().is_err(), "a second caller waits for the trial");
        b.on_failure();
        drop(trial);
        let trial = b.acquire().expect("reopened with zero wait: next trial");
        b.on_success();
        drop(trial);
        assert!(b.acquire().is_ok());
        assert!(b.acquire().is_ok(), "closed again");
    }
}
