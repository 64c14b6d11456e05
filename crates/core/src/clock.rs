//! The one module that reads the clock or waits. Everything else goes through
//! it; clippy's `disallowed-methods` (`clippy.toml`) rejects `Utc::now`,
//! `SystemTime::now`, `Instant::now` and the sleeps anywhere else.
//!
//! Two kinds of time, kept apart on purpose:
//! - **Wall-clock time** decides things (token lifetimes, the refresh grace
//!   window, retention). Code that decides reads it from a [`Clock`] it was
//!   given, so a test can hand it a [`ManualClock`] and move time forward
//!   instead of sleeping and hoping the machine keeps up (kanidm's rule).
//! - **Monotonic time** only measures and bounds waits: [`instant`], [`sleep`],
//!   [`sleep_until`] and [`blocking_sleep`]. Nothing is decided on it that a
//!   test would need to control, so it is not injectable; routing it through
//!   here keeps every wait in the code base easy to find.

#![allow(clippy::disallowed_methods)]

use chrono::{DateTime, Utc};
use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Where the wall-clock time comes from: the system's, or a test's
/// [`ManualClock`]. Cheap to clone; clones of a manual clock share its time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system's clock: what every service runs with.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(t) => *t.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(_) => write!(f, "Clock::manual({})", self.now()),
        }
    }
}

/// A clock that only moves when a test says so.
///
/// ```
/// use confab_core::clock::ManualClock;
/// let hand = ManualClock::starting_now();
/// let clock = hand.clock();
/// let before = clock.now();
/// hand.advance(std::time::Duration::from_secs(11));
/// assert_eq!((clock.now() - before).num_seconds(), 11);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    clock: Clock,
}

impl ManualClock {
    /// Stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            clock: Clock {
                manual: Some(Arc::new(Mutex::new(start))),
            },
        }
    }

    /// Stopped at the current system time, to the whole second: tokens issued
    /// by it are still accepted by verifiers that read the real clock, and its
    /// times survive a round trip through PostgreSQL's microsecond timestamps
    /// unchanged (so a test can probe a boundary exactly).
    pub fn starting_now() -> Self {
        let now = Utc::now();
        Self::new(DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now))
    }

    /// A [`Clock`] that reads this one's time; give it to the code under test.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Move time forward by `by` for every clone of [`Self::clock`].
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.clock.manual {
            let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
            let mut t = t.lock().unwrap_or_else(PoisonError::into_inner);
            *t = t.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
    }
}

/// Monotonic now, for measuring durations and computing deadlines.
pub fn instant() -> Instant {
    Instant::now()
}

/// Wait asynchronously. Prefer an event to wait for; use this for backoff,
/// pacing and polling an external process that offers nothing to wait on.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Wait asynchronously until a monotonic deadline.
pub async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline.into()).await
}

/// Block the thread: only for synchronous code that waits on a child process
/// (`confab up`, the private servers, the harness).
pub fn blocking_sleep(duration: Duration) {
    std::thread::sleep(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_for_all_its_clones() {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let hand = ManualClock::new(start);
        let (a, b) = (hand.clock(), hand.clock());
        assert_eq!(a.now(), start);
        hand.advance(Duration::from_millis(1500));
        assert_eq!(a.now(), b.now());
        assert_eq!((a.now() - start).num_milliseconds(), 1500);
        // Saturates instead of panicking on absurd steps.
        hand.advance(Duration::MAX);
        assert_eq!(a.now(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn the_system_clock_follows_real_time() {
        let c = Clock::system();
        let (a, b) = (c.now(), c.now());
        assert!(b >= a);
        assert!((Utc::now() - a).num_seconds().abs() < 5);
    }

    #[test]
    fn a_manual_clock_starting_now_is_on_a_whole_second() {
        let t = ManualClock::starting_now().clock().now();
        assert_eq!(t.timestamp_subsec_nanos(), 0);
        assert!((Utc::now() - t).num_seconds().abs() < 5);
    }
}
