//! `postgres`: `wide_200` and `noop_10k` on one PostgreSQL database shared by several
//! scheduler processes.
//!
//! Each measurement gets a schema of its own on the server of `--postgres`. The schedulers
//! start on an empty folder and the DAG file appears (renamed into place) only once every one
//! of them holds its lease, so that all of them are there when its run is created; the run is
//! created by whichever scheduler's cron fires first, and the others join it from the change
//! notices (at their next one-second change check). The figures are read from the database as
//! the SQLite scenarios read theirs, and each run is checked the same way (every task
//! succeeded with exactly one try, none before its upstreams ended).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use sluice_store::{PgStore, RunFilter, Store};

use super::{check_run, latency_metrics, spec_of, POLL};
use crate::daemon::{Daemon, Paths};
use crate::gen::DagSpec;
use crate::report::{Metric, ScenarioResult};
use crate::{BenchError, Options, Scenario};

/// What one run on the shared database gave.
struct SharedSample {
    wall: f64,
    latencies: Vec<f64>,
    /// The busiest scheduler's share of the tries, %.
    busiest: f64,
    /// Schedulers that started at least one try.
    working: usize,
}

pub(super) async fn postgres(
    o: &Options,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<Vec<ScenarioResult>, BenchError> {
    // What an interrupted benchmark left behind goes first.
    PgStore::drop_orphan_schemas(&o.postgres, PREFIX).await?;
    let mut results = Vec::new();
    for s in [Scenario::Wide, Scenario::Noop] {
        let spec = spec_of(o, s);
        let n = spec.tasks.len();
        for &k in &o.schedulers {
            let (mut walls, mut lat, mut busiest, mut working) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..o.repeat.max(1) {
                let sample = run_shared_once(o, &spec, k.max(1), keep).await?;
                walls.push(sample.wall);
                lat.extend(sample.latencies);
                busiest.push(sample.busiest);
                working.push(sample.working as f64);
            }
            let mut metrics = Vec::new();
            if s == Scenario::Noop {
                let rates: Vec<f64> = walls.iter().map(|w| n as f64 / w).collect();
                metrics.push(Metric::of("tasks per second", "tasks/s", &rates, None));
            }
            metrics.push(Metric::of("trigger to success", "s", &walls, None));
            metrics.extend(latency_metrics(&lat, None, None));
            metrics.push(Metric::of("busiest scheduler's share of the tries", "%", &busiest, None));
            metrics.push(Metric::of("schedulers that ran tries", "", &working, None));
            let plural = if k == 1 { "" } else { "s" };
            results.push(ScenarioResult {
                scenario: format!("postgres {} ×{k}", s.name()),
                description: format!("{} on PostgreSQL, {k} scheduler{plural} sharing the database", s.name()),
                tasks: n,
                metrics,
            });
        }
    }
    Ok(results)
}

/// Schemas of the benchmark are named after its process.
const PREFIX: &str = "sluice_bench_";

/// A schema of this process's own on the benchmark's server (dropped after its measurement).
fn schema_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{PREFIX}{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn run_shared_once(
    o: &Options,
    spec: &DagSpec,
    k: usize,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<SharedSample, BenchError> {
    let schema = schema_name();
    let url = PgStore::create_schema(&o.postgres, &schema).await?;
    let measured = measure_in(o, spec, k, &url, keep).await;
    let dropped = PgStore::drop_schema(&o.postgres, &schema).await;
    let sample = measured?;
    dropped?;
    Ok(sample)
}

async fn measure_in(
    o: &Options,
    spec: &DagSpec,
    k: usize,
    url: &str,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<SharedSample, BenchError> {
    let dir = tempfile::Builder::new().prefix("sluice-bench-pg-").tempdir()?;
    let (dags, logs) = (dir.path().join("dags"), dir.path().join("logs"));
    std::fs::create_dir_all(&dags)?;
    // Migrated here, before any scheduler starts.
    let store = PgStore::open(url).await?;
    let paths = Paths { root: dir.path(), dags: &dags, db_url: url, logs: &logs, api_bind: None };
    let mut daemons = Vec::with_capacity(k);
    for i in 0..k {
        match Daemon::start_logged(&o.daemon, &paths, o.parallelism, &format!("daemon-{i}.log")) {
            Ok(d) => daemons.push(d),
            Err(e) => {
                // The start's error is the one to report.
                let _ = stop_all(daemons).await;
                return Err(e);
            }
        }
    }
    let outcome = drive(o, spec, k, &store, &dags, &mut daemons).await;
    let stopped = stop_all(daemons).await;
    let run = outcome?;
    stopped?;
    let (wall, latencies) = check_run(&store, spec, &run).await?;
    let per = store.tries_per_scheduler().await?;
    let total: u64 = per.iter().sum();
    let busiest = per.first().map_or(0.0, |b| *b as f64 / total.max(1) as f64 * 100.0);
    let working = per.iter().filter(|c| **c > 0).count();
    store.close().await?;
    keep.push(dir);
    Ok(SharedSample { wall, latencies, busiest, working })
}

/// Waits for every scheduler's claim, drops the DAG file in, and waits for its run to end.
async fn drive(
    o: &Options,
    spec: &DagSpec,
    k: usize,
    store: &PgStore,
    dags: &std::path::Path,
    daemons: &mut [Daemon],
) -> Result<sluice_store::Run, BenchError> {
    let began = Instant::now();
    let alive = |daemons: &mut [Daemon]| daemons.iter_mut().try_for_each(|d| d.check_alive());
    while store.schedulers().await?.len() < k {
        alive(daemons)?;
        if began.elapsed() > o.timeout {
            return Err(BenchError::Check(format!(
                "{k} schedulers did not all claim the database within {:?}",
                o.timeout
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    // Written under a hidden name, then renamed: each scheduler sees the whole file.
    let tmp = dags.join(format!(".{}.toml.tmp", spec.id));
    std::fs::write(&tmp, spec.to_toml())?;
    std::fs::rename(&tmp, dags.join(format!("{}.toml", spec.id)))?;
    let filter = RunFilter { dag_id: Some(spec.id.clone()), ..Default::default() };
    loop {
        if let Some(run) = store.runs(&filter).await?.into_iter().next() {
            if run.state.is_finished() {
                return Ok(run);
            }
        }
        alive(daemons)?;
        if began.elapsed() > o.timeout {
            return Err(BenchError::Check(format!("{}: the run did not finish within {:?}", spec.id, o.timeout)));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops every daemon (all of them, whatever one says); the first error.
async fn stop_all(daemons: Vec<Daemon>) -> Result<(), BenchError> {
    let mut first = Ok(());
    for d in daemons {
        if let Err(e) = d.stop().await {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
