//! Where the engine's "now" comes from, and how it waits for a time. The daemon uses the
//! system clock; tests give the engine a [`ManualClock`], a simulated clock they set or
//! advance: schedule decisions (which runs are due, what a catch-up after downtime creates) do
//! not depend on when the test runs, and a retry an hour away is due as soon as the test moves
//! the clock there, without waiting an hour.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The longest the system clock sleeps in one go: a wake-up at least hourly catches a system
/// clock that was set forward meanwhile (a tokio timer follows the monotonic clock).
const MAX_SLEEP: StdDuration = StdDuration::from_secs(3600);

#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Returns when the clock shows `at` or later, or earlier (the caller then looks at the
    /// time again and waits anew): the system clock wakes at least hourly.
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(left.min(MAX_SLEEP)).await;
    }
}

/// A simulated clock: it shows what it was set to, until it is set again; a sleep on it ends
/// when it is set to (or past) the sleep's end, whatever the wall time.
#[derive(Debug)]
pub struct ManualClock(watch::Sender<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(watch::Sender::new(at))
    }

    /// Sets the time, waking the sleeps that end by then. The clock may be set back.
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.send_replace(at);
    }

    /// Moves the clock forward by `by` (saturating at the end of time).
    pub fn advance(&self, by: chrono::Duration) {
        self.0.send_modify(|t| *t = t.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC));
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this ends only when the time comes.
        let _ = rx.wait_for(|now| *now >= at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_simulated_sleep_ends_when_the_clock_gets_there() {
        let clock = std::sync::Arc::new(ManualClock::new(t("2026-01-01T00:00:00Z")));
        let c = clock.clone();
        let sleep = tokio::spawn(async move { c.sleep_until(t("2026-01-01T01:00:00Z")).await });
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::minutes(59));
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished(), "59 minutes are not an hour");
        clock.advance(chrono::Duration::minutes(1));
        sleep.await.unwrap();
        assert_eq!(clock.now(), t("2026-01-01T01:00:00Z"));
    }

    #[tokio::test]
    async fn a_sleep_until_a_past_time_returns_at_once() {
        let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
        clock.sleep_until(t("2025-12-31T00:00:00Z")).await;
        SystemClock.sleep_until(t("2025-12-31T00:00:00Z")).await;
    }

    #[test]
    fn advancing_past_the_end_of_time_saturates() {
        let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
        clock.advance(chrono::Duration::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    }
}
