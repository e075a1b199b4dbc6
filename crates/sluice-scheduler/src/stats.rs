//! What the engine tells the world about itself while it runs, without being asked: when its
//! loop last turned (what `/readyz` judges it by), how long its turns take, how much is in
//! flight, how full its pools are, and what its operator families count ([`Telemetry`]).
//! Plain atomics, written once per turn by the engine and read by anyone holding the `Arc`: a
//! reader never waits for the loop and the loop never waits for a reader, nor allocates for
//! one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
pub use sluice_operator::{CallCounts, Meter, ServiceCalls, Telemetry};

/// The upper bounds (seconds) of the buckets of [`EngineStats::turn_time`]: from half a
/// millisecond (an idle turn) to ten seconds (a stalled one).
pub const TURN_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The engine's own figures, shared from [`crate::Engine::stats`].
#[derive(Debug)]
pub struct EngineStats {
    /// When the last turn ended, on the engine's clock, in milliseconds since the epoch (0:
    /// no turn yet).
    last_turn_ms: AtomicI64,
    turns: AtomicU64,
    running_tries: AtomicUsize,
    active_runs: AtomicUsize,
    turn_time: AtomicHistogram,
    pools: Vec<Pool>,
    telemetry: Vec<Arc<Telemetry>>,
}

/// A pool of `sluice.toml` and its slots taken after the last turn.
#[derive(Debug)]
struct Pool {
    name: String,
    size: usize,
    in_use: AtomicUsize,
}

/// One pool's slots, as [`EngineStats::pools`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    pub name: String,
    /// Its slots (`[pools]` of `sluice.toml`).
    pub size: usize,
    /// Slots held by tries in flight after the last turn.
    pub in_use: usize,
}

/// A histogram of durations over fixed buckets, in atomics: observing is a few comparisons
/// and two relaxed additions.
#[derive(Debug)]
struct AtomicHistogram {
    bounds: &'static [f64],
    /// One per bound, then the one above the last bound.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Each bucket's upper bound (seconds) with the observations at most that bound and above
    /// the previous one (not cumulative); the last bucket, above every bound, is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    /// The sum of the observations, in seconds.
    pub sum: f64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let bounds = self.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        HistogramSnapshot { buckets, count, sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

impl Default for EngineStats {
    fn default() -> EngineStats {
        EngineStats::new(&BTreeMap::new(), Vec::new())
    }
}

impl EngineStats {
    /// The figures of an engine with these pools (name and size) and operator families'
    /// counters.
    pub fn new(pools: &BTreeMap<String, usize>, telemetry: Vec<Arc<Telemetry>>) -> EngineStats {
        EngineStats {
            last_turn_ms: AtomicI64::new(0),
            turns: AtomicU64::new(0),
            running_tries: AtomicUsize::new(0),
            active_runs: AtomicUsize::new(0),
            turn_time: AtomicHistogram::new(TURN_BUCKETS),
            pools: pools
                .iter()
                .map(|(name, size)| Pool { name: name.clone(), size: *size, in_use: AtomicUsize::new(0) })
                .collect(),
            telemetry,
        }
    }

    /// Records the end of a turn at `at` (the engine's "now"), with what is in flight after it
    /// and, for each pool, the slots `in_pool` says are taken.
    pub(crate) fn turned(
        &self,
        at: DateTime<Utc>,
        running_tries: usize,
        active_runs: usize,
        in_pool: impl Fn(&str) -> usize,
    ) {
        self.last_turn_ms.store(at.timestamp_millis(), Ordering::Relaxed);
        self.turns.fetch_add(1, Ordering::Relaxed);
        self.running_tries.store(running_tries, Ordering::Relaxed);
        self.active_runs.store(active_runs, Ordering::Relaxed);
        for p in &self.pools {
            p.in_use.store(in_pool(&p.name), Ordering::Relaxed);
        }
    }

    /// Records how long one turn (`Engine::handle`) took, on the monotonic clock. A figure for
    /// people: nothing the engine decides reads it.
    pub(crate) fn turn_took(&self, d: Duration) {
        self.turn_time.observe(d);
    }

    /// When the loop last finished a turn, on the engine's clock; `None` before the first.
    pub fn last_turn_at(&self) -> Option<DateTime<Utc>> {
        match self.last_turn_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Turns taken since the engine started.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    /// Tries in flight after the last turn.
    pub fn running_tries(&self) -> usize {
        self.running_tries.load(Ordering::Relaxed)
    }

    /// Runs the engine holds as active (queued or running) after the last turn.
    pub fn active_runs(&self) -> usize {
        self.active_runs.load(Ordering::Relaxed)
    }

    /// How long the turns took (buckets of [`TURN_BUCKETS`]).
    pub fn turn_time(&self) -> HistogramSnapshot {
        self.turn_time.snapshot()
    }

    /// Every declared pool, by name, with its size and the slots taken after the last turn.
    pub fn pools(&self) -> Vec<PoolUse> {
        self.pools
            .iter()
            .map(|p| PoolUse { name: p.name.clone(), size: p.size, in_use: p.in_use.load(Ordering::Relaxed) })
            .collect()
    }

    /// The counters of the engine's operator families (the AWS operators': calls, throttles,
    /// errors per service, usage per DAG).
    pub fn telemetry(&self) -> &[Arc<Telemetry>] {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_times_fall_in_their_buckets_and_add_up() {
        let s = EngineStats::default();
        for ms in [0, 1, 3, 3, 20_000] {
            s.turn_took(Duration::from_millis(ms));
        }
        let h = s.turn_time();
        assert_eq!(h.count, 5);
        assert!((h.sum - 20.007).abs() < 1e-9, "{}", h.sum);
        let at = |bound: f64| h.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.0005), Some(1), "0 ms");
        assert_eq!(at(0.001), Some(1), "1 ms is at most 1 ms");
        assert_eq!(at(0.005), Some(2));
        assert_eq!(at(f64::INFINITY), Some(1), "20 s is above every bound");
        assert_eq!(h.buckets.len(), TURN_BUCKETS.len() + 1);
    }

    #[test]
    fn pools_report_their_size_and_what_the_last_turn_held() {
        let pools = BTreeMap::from([("db".to_string(), 2), ("emr".to_string(), 5)]);
        let s = EngineStats::new(&pools, Vec::new());
        s.turned(Utc::now(), 3, 1, |p| if p == "emr" { 4 } else { 0 });
        let expected =
            vec![PoolUse { name: "db".into(), size: 2, in_use: 0 }, PoolUse { name: "emr".into(), size: 5, in_use: 4 }];
        assert_eq!(s.pools(), expected);
        assert_eq!((s.running_tries(), s.active_runs(), s.turns()), (3, 1, 1));
    }
}
