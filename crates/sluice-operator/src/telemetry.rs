//! What an operator family counts about the remote services it calls, for whoever exports
//! figures (the API's `/metrics`), without knowing any exporter: plain atomics and small maps.
//!
//! - Per service (`emr`, `athena`, ...): API calls made (every attempt, the SDK's own retries
//!   included), those refused for rate (throttled) and those that failed ([`ServiceCalls`]).
//!   A family takes one [`ServiceCalls`] per service once, when it builds its client, so a call
//!   costs three relaxed atomic operations at most.
//! - Per DAG: usage read off the services' own answers, by [`Meter`] (bytes a query scanned,
//!   instance hours a cluster used), each piece of remote work counted once however often it
//!   is seen ended ([`Telemetry::add_usage`]).
//!
//! A family that has one hands it out through `OperatorProvider::telemetry`; the engine keeps
//! them in its `EngineStats`, where the exporter reads
//! them at scrape time.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many pieces of remote work [`Telemetry::add_usage`] remembers having counted (the
/// oldest are forgotten first): far more than end while one is seen ended twice.
pub const REMEMBERED_WORK: usize = 10_000;

/// Counters of one family of operators (the AWS operators: family `aws`).
#[derive(Debug)]
pub struct Telemetry {
    family: &'static str,
    services: Mutex<BTreeMap<&'static str, Arc<ServiceCalls>>>,
    usage: Mutex<Usage>,
}

/// The calls made to one service.
#[derive(Debug, Default)]
pub struct ServiceCalls {
    calls: AtomicU64,
    throttles: AtomicU64,
    errors: AtomicU64,
}

/// What one service's counters read, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Requests sent (each attempt counts).
    pub calls: u64,
    /// Requests the service refused for rate (HTTP 429, `ThrottlingException`, `SlowDown`...).
    pub throttles: u64,
    /// Requests that failed: no answer, or an error answer (throttles included).
    pub errors: u64,
}

/// A kind of usage a family reads off a service's answers, counted per DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Meter {
    /// The figure's name, lower snake case with its unit last (`athena_scanned_bytes`); an
    /// exporter makes it a counter named after it.
    pub name: &'static str,
    /// One line saying what is counted and where it comes from.
    pub help: &'static str,
}

#[derive(Debug, Default)]
struct Usage {
    totals: BTreeMap<(Meter, String), u64>,
    /// The work already counted (meter, id), oldest first, at most [`REMEMBERED_WORK`].
    seen: HashSet<(&'static str, String)>,
    order: VecDeque<(&'static str, String)>,
}

impl ServiceCalls {
    /// One request sent.
    pub fn called(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// One request failed; `throttled` when the service refused it for rate.
    pub fn failed(&self, throttled: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            throttles: self.throttles.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl Telemetry {
    /// The counters of family `family` (a lower snake case name an exporter puts in its figures'
    /// names: `aws` gives `sluice_aws_api_calls_total`).
    pub fn new(family: &'static str) -> Telemetry {
        Telemetry { family, services: Mutex::new(BTreeMap::new()), usage: Mutex::new(Usage::default()) }
    }

    pub fn family(&self) -> &'static str {
        self.family
    }

    /// The counters of calls to `service`, created at the first ask: keep the `Arc` and count
    /// on it.
    pub fn service(&self, service: &'static str) -> Arc<ServiceCalls> {
        lock(&self.services).entry(service).or_default().clone()
    }

    /// Every service called (or asked for) so far, by name, with its counts.
    pub fn services(&self) -> Vec<(&'static str, CallCounts)> {
        lock(&self.services).iter().map(|(name, s)| (*name, s.counts())).collect()
    }

    /// Adds `amount` of `meter` to DAG `dag` for the remote work `work` (a query or cluster
    /// id), unless that work was counted already for this meter; says whether it counted.
    pub fn add_usage(&self, meter: Meter, work: &str, dag: &str, amount: u64) -> bool {
        let mut usage = lock(&self.usage);
        let key = (meter.name, work.to_string());
        if usage.seen.contains(&key) {
            return false;
        }
        if usage.order.len() >= REMEMBERED_WORK {
            if let Some(old) = usage.order.pop_front() {
                usage.seen.remove(&old);
            }
        }
        usage.seen.insert(key.clone());
        usage.order.push_back(key);
        *usage.totals.entry((meter, dag.to_string())).or_default() += amount;
        true
    }

    /// Every usage total: meter, DAG, amount (sorted by meter name, then DAG).
    pub fn usage(&self) -> Vec<(Meter, String, u64)> {
        lock(&self.usage).totals.iter().map(|((m, dag), n)| (*m, dag.clone(), *n)).collect()
    }
}

/// A poisoned lock still holds plain counters: go on with them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCANNED: Meter = Meter { name: "scanned_bytes", help: "bytes" };
    const HOURS: Meter = Meter { name: "hours", help: "hours" };

    #[test]
    fn calls_are_counted_per_service() {
        let t = Telemetry::new("aws");
        let emr = t.service("emr");
        emr.called();
        emr.called();
        emr.failed(true);
        t.service("s3").called();
        t.service("emr").failed(false);
        assert_eq!(
            t.services(),
            vec![
                ("emr", CallCounts { calls: 2, throttles: 1, errors: 2 }),
                ("s3", CallCounts { calls: 1, ..Default::default() })
            ]
        );
    }

    #[test]
    fn usage_counts_each_piece_of_work_once_per_meter() {
        let t = Telemetry::new("aws");
        assert!(t.add_usage(SCANNED, "q1", "d", 100));
        assert!(!t.add_usage(SCANNED, "q1", "d", 100), "the same query seen ended again");
        assert!(t.add_usage(SCANNED, "q2", "d", 5));
        assert!(t.add_usage(SCANNED, "q3", "e", 7));
        assert!(t.add_usage(HOURS, "q1", "d", 3), "another meter");
        assert_eq!(t.usage(), vec![(HOURS, "d".into(), 3), (SCANNED, "d".into(), 105), (SCANNED, "e".into(), 7)]);
    }

    #[test]
    fn the_memory_of_counted_work_is_bounded() {
        let t = Telemetry::new("aws");
        for i in 0..REMEMBERED_WORK + 1 {
            t.add_usage(SCANNED, &i.to_string(), "d", 1);
        }
        let usage = lock(&t.usage);
        assert_eq!((usage.seen.len(), usage.order.len()), (REMEMBERED_WORK, REMEMBERED_WORK));
        drop(usage);
        assert!(t.add_usage(SCANNED, "0", "d", 1), "the oldest was forgotten");
        assert!(!t.add_usage(SCANNED, "5", "d", 1));
    }
}
