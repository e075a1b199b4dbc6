//! `/metrics`: the scheduler's figures in the OpenMetrics text format (prometheus-client),
//! with labels of low cardinality only: a DAG, a state or outcome, a pool, a service; never a
//! run or a task. `docs/metrics.md` lists every figure.
//!
//! Where the figures come from:
//! - **Events** (runs and tries finished, their durations, schedule delay, deadline misses,
//!   last success per DAG): a task of their own follows the store's committed events and
//!   updates the figures as each arrives. In the daemon it listens to the in-process broadcast
//!   ([`Store::subscribe`]), never polling, and catches up from the store by id when it falls
//!   behind (`RecvError::Lagged`) or when an event's id leaves a gap (ids are consecutive in
//!   commit order: the gap is another process's commits, a CLI's `mark`, which this handle
//!   does not broadcast); in `dagctl server` (no engine, another process writes) it
//!   reads the events after the last it saw once a second. Per event that is a few map
//!   lookups and atomic additions, plus one indexed read of the run when a run starts (its
//!   schedule delay) and, when it started before the exporter did, when it ends. The last
//!   success per DAG starts from the store ([`Store::last_successes`]).
//! - **The engine** (in the daemon): its [`EngineStats`], read at scrape time: loop turns and
//!   their duration, tries in flight, active runs, pool slots, and the counters of its
//!   operator families ([`Telemetry`]: the AWS operators' calls, throttles and errors per
//!   service, Athena bytes scanned and EMR normalized instance hours per DAG).
//!
//! Nothing is computed for a scrape that the events did not already count: rendering is
//! encoding what the counters hold.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sluice_scheduler::stats::{CallCounts, EngineStats, HistogramSnapshot, Telemetry};
use sluice_store::{Event, EventKind, EventQuery, Order, RunKind, RunState, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

/// Upper bounds (seconds) of the run and try duration buckets: a tenth of a second to a day,
/// for pipelines of seconds to hours.
pub const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];

/// Upper bounds (seconds) of the schedule delay buckets: from 50 ms (on time) to a day (a
/// catch-up after downtime).
pub const DELAY_BUCKETS: &[f64] = &[0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];

/// How often `dagctl server` (no engine, no broadcast) reads the events it has not seen.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How many running runs and tries the feed remembers the start of (each entry 16 bytes of
/// key and time): past it, the map is emptied and the durations of what was in it are read
/// from the store (runs) or not observed (tries).
pub const MAX_TRACKED: usize = 100_000;

/// Events read from the store per page while catching up.
const PAGE: u32 = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DagLabel {
    dag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DagState {
    dag: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelResult {
    channel: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DagOutcome {
    dag: String,
    outcome: String,
}

type LastSuccess = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}

fn delay_histogram() -> Histogram {
    Histogram::new(DELAY_BUCKETS.iter().copied())
}

/// The figures the events feed, shared by the feed (which writes) and the registry (which
/// reads at scrape time).
#[derive(Clone)]
struct Families {
    runs_finished: Family<DagState, Counter>,
    tries_finished: Family<DagOutcome, Counter>,
    run_duration: Family<DagLabel, Histogram, fn() -> Histogram>,
    try_duration: Family<DagLabel, Histogram, fn() -> Histogram>,
    schedule_delay: Family<DagLabel, Histogram, fn() -> Histogram>,
    deadline_misses: Family<DagLabel, Counter>,
    last_success: Family<DagLabel, LastSuccess>,
    alert_deliveries: Family<ChannelResult, Counter>,
}

impl Families {
    fn new() -> Families {
        Families {
            runs_finished: Family::default(),
            tries_finished: Family::default(),
            run_duration: Family::new_with_constructor(duration_histogram),
            try_duration: Family::new_with_constructor(duration_histogram),
            schedule_delay: Family::new_with_constructor(delay_histogram),
            deadline_misses: Family::default(),
            last_success: Family::default(),
            alert_deliveries: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register("sluice_runs_finished", "Runs that finished, by DAG and final state", self.runs_finished.clone());
        r.register(
            "sluice_alert_deliveries",
            "Alert delivery attempts, by channel and result (delivered, retry, gave_up)",
            self.alert_deliveries.clone(),
        );
        r.register(
            "sluice_tries_finished",
            "Task tries that ended, by DAG and outcome (success, failed, skipped)",
            self.tries_finished.clone(),
        );
        r.register(
            "sluice_run_duration_seconds",
            "Time from a run's start to its end, by DAG",
            self.run_duration.clone(),
        );
        r.register(
            "sluice_try_duration_seconds",
            "Time from a task try's start to its end, by DAG",
            self.try_duration.clone(),
        );
        r.register(
            "sluice_schedule_delay_seconds",
            "A scheduled run's first start minus the end of its data interval (when it was due), by DAG",
            self.schedule_delay.clone(),
        );
        r.register(
            "sluice_deadline_misses",
            "Runs that were not finished by their deadline, by DAG",
            self.deadline_misses.clone(),
        );
        r.register(
            "sluice_last_success_timestamp_seconds",
            "When the DAG's last successful run ended (Unix time)",
            self.last_success.clone(),
        );
    }
}

/// The `/metrics` exporter of one API.
pub struct Metrics {
    registry: Registry,
    /// The task following the events; stopped when the exporter is dropped.
    feed: Option<AbortHandle>,
}

impl Drop for Metrics {
    fn drop(&mut self) {
        if let Some(feed) = &self.feed {
            feed.abort();
        }
    }
}

impl Metrics {
    /// The exporter over `store`'s events and, in the daemon, the engine's `stats`. Starts the
    /// task that follows the events (on the current Tokio runtime): `live` (the broadcast of
    /// the engine's store handle) when given, else the store by id once a second. Events
    /// committed before this call are not counted (counters start at zero with the process),
    /// except the last success per DAG, read from the store.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Option<Arc<EngineStats>>,
        live: Option<tokio::sync::broadcast::Receiver<Arc<sluice_store::Event>>>,
    ) -> Metrics {
        let families = Families::new();
        let mut registry = Registry::default();
        families.register(&mut registry);
        if let Some(stats) = &engine {
            registry.register_collector(Box::new(EngineCollector { stats: stats.clone() }));
        }
        // Subscribed by the caller before anything else can commit: no later event is missed.
        let broadcast = live;
        let feed = match tokio::runtime::Handle::try_current() {
            Ok(rt) => Some(rt.spawn(Feed::new(store, families).run(broadcast)).abort_handle()),
            Err(_) => {
                tracing::warn!("metrics: no Tokio runtime; the figures fed by events stay at zero");
                None
            }
        };
        Metrics { registry, feed }
    }

    /// The OpenMetrics text of every figure, ending with `# EOF`.
    pub async fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The per-DAG series the feed writes, looked up by the DAG id without allocating once seen.
#[derive(Default)]
struct DagCells {
    runs_finished: Vec<(RunState, Counter)>,
    tries_finished: Vec<(&'static str, Counter)>,
    run_duration: Option<Histogram>,
    try_duration: Option<Histogram>,
    schedule_delay: Option<Histogram>,
    deadline_misses: Option<Counter>,
    last_success: Option<LastSuccess>,
}

/// Follows the events and updates the [`Families`].
struct Feed {
    store: Arc<dyn Store>,
    families: Families,
    dags: HashMap<String, DagCells>,
    /// Running runs and tries, by a hash of (DAG, run[, task]), with their start.
    runs: HashMap<u64, DateTime<Utc>>,
    tries: HashMap<u64, DateTime<Utc>>,
    keys: std::collections::hash_map::RandomState,
    /// The last event applied.
    last_id: Option<i64>,
    /// The newest event when the feed started: where catching up starts before any event
    /// was applied.
    start_id: Option<i64>,
}

impl Feed {
    fn new(store: Arc<dyn Store>, families: Families) -> Feed {
        Feed {
            store,
            families,
            dags: HashMap::new(),
            runs: HashMap::new(),
            tries: HashMap::new(),
            keys: Default::default(),
            last_id: None,
            start_id: None,
        }
    }

    async fn run(mut self, broadcast: Option<tokio::sync::broadcast::Receiver<Arc<Event>>>) {
        // Where catching up starts: the newest event now (later ones come by the broadcast,
        // which may already hold some of those up to it, or by the poll).
        let newest = EventQuery { limit: 1, order: Order::Newest, ..Default::default() };
        match self.store.events(&newest).await {
            Ok(events) => self.start_id = events.first().map(|e| e.id),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the newest event; following from the first"),
        }
        match self.store.last_successes().await {
            Ok(all) => {
                for (dag, at) in all {
                    self.succeeded(&dag, at);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the last successes"),
        }
        if let Some(mut rx) = broadcast {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        // Ids are consecutive in commit order: a gap is another process's
                        // commits (a CLI's `mark`), which this handle does not broadcast.
                        if self.last_id.or(self.start_id).is_some_and(|last| event.id > last + 1) {
                            self.catch_up().await;
                        }
                        self.apply(&event).await;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "metrics: behind the event broadcast; catching up from the store");
                        self.catch_up().await;
                    }
                    // A backend without a broadcast: follow it by id.
                    Err(RecvError::Closed) => break,
                }
            }
        }
        self.last_id = self.last_id.max(self.start_id);
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.catch_up().await;
        }
    }

    /// Applies every event after the last one applied (or, before any, after the newest at
    /// start), from the store.
    async fn catch_up(&mut self) {
        if self.last_id.is_none() {
            self.last_id = self.start_id;
        }
        loop {
            let query = EventQuery { after: self.last_id, limit: PAGE, ..Default::default() };
            let page = match self.store.events(&query).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot read events");
                    return;
                }
            };
            for event in &page {
                self.apply(event).await;
            }
            if page.len() < PAGE as usize {
                return;
            }
        }
    }

    fn key(&self, dag: &str, run: &str, task: Option<&str>) -> u64 {
        self.keys.hash_one((dag, run, task))
    }

    fn cells(&mut self, dag: &str) -> &mut DagCells {
        if !self.dags.contains_key(dag) {
            self.dags.insert(dag.to_string(), DagCells::default());
        }
        self.dags.get_mut(dag).expect("inserted above")
    }

    async fn apply(&mut self, event: &Event) {
        if self.last_id.is_some_and(|last| event.id <= last) {
            return;
        }
        self.last_id = Some(event.id);
        // An alert may be of no run (freshness).
        if let EventKind::AlertAttempted { channel, result, .. } = &event.kind {
            let label = ChannelResult { channel: channel.clone(), result: result.name().to_string() };
            self.families.alert_deliveries.get_or_create(&label).inc();
            return;
        }
        let (Some(dag), Some(run)) = (event.dag_id.as_deref(), event.run_id.as_deref()) else { return };
        match &event.kind {
            EventKind::RunStarted => {
                let key = self.key(dag, run, None);
                track(&mut self.runs, key, event.at);
                self.schedule_delay(dag, run).await;
            }
            EventKind::RunQueued => {
                let key = self.key(dag, run, None);
                self.runs.remove(&key);
            }
            EventKind::RunFinished { state } => {
                let key = self.key(dag, run, None);
                let took = match self.runs.remove(&key) {
                    Some(started) => Some(event.at - started),
                    None => self.run_took(dag, run).await,
                };
                let families = self.families.clone();
                let cells = self.cells(dag);
                let counter = match cells.runs_finished.iter().find(|(s, _)| s == state) {
                    Some((_, c)) => c.clone(),
                    None => {
                        let labels = DagState { dag: dag.to_string(), state: state.name().to_string() };
                        let c = families.runs_finished.get_or_create(&labels).clone();
                        cells.runs_finished.push((*state, c.clone()));
                        c
                    }
                };
                counter.inc();
                if let Some(took) = took {
                    let h = cells
                        .run_duration
                        .get_or_insert_with(|| families.run_duration.get_or_create(&dag_label(dag)).clone());
                    h.observe(seconds(took));
                }
                if *state == RunState::Success {
                    self.succeeded(dag, event.at);
                }
            }
            EventKind::TryStarted { .. } => {
                let key = self.key(dag, run, event.task_id.as_deref());
                track(&mut self.tries, key, event.at);
            }
            EventKind::TryFinished { outcome, .. } => {
                let key = self.key(dag, run, event.task_id.as_deref());
                let started = self.tries.remove(&key);
                let families = self.families.clone();
                let cells = self.cells(dag);
                let name = outcome.name();
                let counter = match cells.tries_finished.iter().find(|(o, _)| *o == name) {
                    Some((_, c)) => c.clone(),
                    None => {
                        let labels = DagOutcome { dag: dag.to_string(), outcome: name.to_string() };
                        let c = families.tries_finished.get_or_create(&labels).clone();
                        cells.tries_finished.push((name, c.clone()));
                        c
                    }
                };
                counter.inc();
                if let Some(started) = started {
                    let h = cells
                        .try_duration
                        .get_or_insert_with(|| families.try_duration.get_or_create(&dag_label(dag)).clone());
                    h.observe(seconds(event.at - started));
                }
            }
            EventKind::DeadlineMissed { .. } => {
                let families = self.families.clone();
                let cells = self.cells(dag);
                cells
                    .deadline_misses
                    .get_or_insert_with(|| families.deadline_misses.get_or_create(&dag_label(dag)).clone())
                    .inc();
            }
            _ => {}
        }
    }

    /// The last success of `dag` is `at`, unless a later one is known.
    fn succeeded(&mut self, dag: &str, at: DateTime<Utc>) {
        let families = self.families.clone();
        let cells = self.cells(dag);
        let gauge =
            cells.last_success.get_or_insert_with(|| families.last_success.get_or_create(&dag_label(dag)).clone());
        let secs = at.timestamp_millis() as f64 / 1000.0;
        if secs > gauge.get() {
            gauge.set(secs);
        }
    }

    /// A scheduled run that starts for the first time: how late after its interval's end.
    async fn schedule_delay(&mut self, dag: &str, run: &str) {
        let Some(r) = self.read_run(dag, run).await else { return };
        let (RunKind::Scheduled, Some(first)) = (r.kind, r.first_started_at) else { return };
        if r.started_at != Some(first) {
            return; // started again after a clear: not late, re-run
        }
        let families = self.families.clone();
        let cells = self.cells(dag);
        let h =
            cells.schedule_delay.get_or_insert_with(|| families.schedule_delay.get_or_create(&dag_label(dag)).clone());
        h.observe(seconds(first - r.data_interval_end).max(0.0));
    }

    /// The duration of a finished run that started before the feed saw it, from the store.
    async fn run_took(&self, dag: &str, run: &str) -> Option<chrono::Duration> {
        let r = self.read_run(dag, run).await?;
        Some(r.ended_at? - r.started_at?)
    }

    async fn read_run(&self, dag: &str, run: &str) -> Option<sluice_store::Run> {
        match self.store.run_by_run_id(dag, run).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, dag, run, "metrics: cannot read a run");
                None
            }
        }
    }
}

/// Remembers a start, within [`MAX_TRACKED`].
fn track(map: &mut HashMap<u64, DateTime<Utc>>, key: u64, at: DateTime<Utc>) {
    if map.len() >= MAX_TRACKED {
        map.clear();
    }
    map.insert(key, at);
}

fn dag_label(dag: &str) -> DagLabel {
    DagLabel { dag: dag.to_string() }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds().map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}

/// The engine's figures and its operator families' counters, read at scrape time.
#[derive(Debug)]
struct EngineCollector {
    stats: Arc<EngineStats>,
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        counter(&mut encoder, "sluice_scheduler_turns", "Turns the scheduler loop has taken.", s.turns())?;
        if let Some(at) = s.last_turn_at() {
            let secs = at.timestamp_millis() as f64 / 1000.0;
            gauge(
                &mut encoder,
                "sluice_scheduler_last_turn_timestamp_seconds",
                "When the scheduler loop last finished a turn (Unix time, on the engine's clock).",
                secs,
            )?;
        }
        histogram(
            &mut encoder,
            "sluice_scheduler_turn_duration_seconds",
            "How long one turn of the scheduler loop took (handling one event and its housekeeping).",
            &s.turn_time(),
        )?;
        gauge(&mut encoder, "sluice_running_tries", "Task tries in flight.", s.running_tries() as i64)?;
        gauge(
            &mut encoder,
            "sluice_active_runs",
            "Runs the scheduler holds as active (queued or running).",
            s.active_runs() as i64,
        )?;
        let pools = s.pools();
        if !pools.is_empty() {
            let mut m = encoder.encode_descriptor(
                "sluice_pool_slots",
                "Slots of a pool ([pools] of sluice.toml).",
                None,
                MetricType::Gauge,
            )?;
            for p in &pools {
                ConstGauge::new(p.size as i64).encode(m.encode_family(&[("pool", p.name.as_str())])?)?;
            }
            let mut m = encoder.encode_descriptor(
                "sluice_pool_slots_in_use",
                "Slots of a pool held by tries in flight.",
                None,
                MetricType::Gauge,
            )?;
            for p in &pools {
                ConstGauge::new(p.in_use as i64).encode(m.encode_family(&[("pool", p.name.as_str())])?)?;
            }
        }
        for t in s.telemetry() {
            encode_telemetry(&mut encoder, t)?;
        }
        Ok(())
    }
}

/// Reads one of a service's counts.
type ReadCount = fn(&CallCounts) -> u64;

/// One operator family's counters: calls, throttles and errors by service, usage by DAG.
pub(crate) fn encode_telemetry(encoder: &mut DescriptorEncoder, t: &Telemetry) -> Result<(), std::fmt::Error> {
    let family = t.family();
    let services = t.services();
    if !services.is_empty() {
        let figures: [(&str, &str, ReadCount); 3] = [
            ("api_calls", "Requests sent to a service (each attempt, the SDK's own retries included).", |c| c.calls),
            (
                "api_throttles",
                "Requests a service refused for rate (HTTP 429, ThrottlingException, SlowDown...).",
                |c| c.throttles,
            ),
            ("api_errors", "Requests that failed: no answer, or an error answer (throttles included).", |c| c.errors),
        ];
        for (name, help, read) in figures {
            let name = format!("sluice_{family}_{name}");
            let mut m = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
            for (service, counts) in &services {
                ConstCounter::new(read(counts)).encode(m.encode_family(&[("service", *service)])?)?;
            }
        }
    }
    let usage = t.usage();
    let mut rest = usage.as_slice();
    while let Some((meter, _, _)) = rest.first() {
        let n = rest.iter().take_while(|(m, _, _)| m == meter).count();
        let name = format!("sluice_{}", meter.name);
        let help = format!("{}.", meter.help);
        let mut m = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for (_, dag, amount) in &rest[..n] {
            ConstCounter::new(*amount).encode(m.encode_family(&[("dag", dag.as_str())])?)?;
        }
        rest = &rest[n..];
    }
    Ok(())
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &HistogramSnapshot) -> Result<(), std::fmt::Error> {
    // The text encoder writes `+Inf` for `f64::MAX`.
    let buckets: Vec<(f64, u64)> =
        h.buckets.iter().map(|(b, n)| (if b.is_finite() { *b } else { f64::MAX }, *n)).collect();
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
}
