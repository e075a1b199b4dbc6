//! The scenarios: generate, run through the daemon, read back, check, measure.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice_store::{Run, RunFilter, RunState, SqliteStore, Store, TaskState};

use crate::daemon::{Daemon, Paths};
use crate::gen::{self, DagSpec};
use crate::measure::{self, quantile};
use crate::report::{Metric, Report, ScenarioResult, Target};
use crate::{BenchError, DaemonKind, Options, Scenario};

mod alerts;
mod api;
mod postgres;
mod ui;

/// The daemon's memory target, 50 MB (decimal), in the MiB the memory figures are reported in.
const MEMORY_TARGET_MIB: f64 = 50.0 * 1e6 / (1024.0 * 1024.0);

const POLL: Duration = Duration::from_millis(10);

/// What one run of a generated DAG gave.
struct RunSample {
    /// Run created (the trigger) to run ended, seconds.
    wall: f64,
    /// Per task, ms: its try's start minus the latest end of its upstream tries (a root task:
    /// minus the run's start).
    latencies: Vec<f64>,
    /// The daemon's peak resident memory, KiB.
    peak_rss: Option<u64>,
}

pub(crate) async fn run_all(o: &Options) -> Result<Report, BenchError> {
    // Scratch folders are deleted only at the end: on ext4, creating inodes right after
    // tens of thousands were deleted is many times slower (the allocator skips recently
    // freed inodes), which would charge one repetition's clean-up to the next one's daemon.
    let mut keep: Vec<tempfile::TempDir> = Vec::new();
    let report = run_scenarios(o, &mut keep).await;
    drop(keep);
    report
}

async fn run_scenarios(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<Report, BenchError> {
    let mut chosen: Vec<Scenario> = if o.scenarios.is_empty() { Scenario::default_set() } else { o.scenarios.clone() };
    chosen.sort();
    chosen.dedup();
    let mut report = Report::new(o);
    // Latency pools the command scenarios' tasks; it runs them if they were not chosen.
    let mut pooled: Vec<f64> = Vec::new();
    let latency_sources = [Scenario::Chain, Scenario::Wide, Scenario::Fan];
    let mut ran: Vec<Scenario> = Vec::new();
    for s in chosen.iter().copied() {
        match s {
            Scenario::Chain | Scenario::Wide | Scenario::Fan | Scenario::Noop => {
                let (result, lat) = dag_scenario(o, s, keep).await?;
                if latency_sources.contains(&s) {
                    pooled.extend(lat);
                    ran.push(s);
                }
                report.results.push(result);
            }
            Scenario::Latency => {
                for src in latency_sources.iter().filter(|x| !ran.contains(x)) {
                    let (_, lat) = dag_scenario(o, *src, keep).await?;
                    pooled.extend(lat);
                }
                report.results.push(latency_result(o, &pooled));
            }
            Scenario::ManyDags => report.results.push(many_dags(o, keep).await?),
            Scenario::HugeDag => report.results.push(huge_dag(o, keep).await?),
            Scenario::ReloadHuge => report.results.push(reload_huge(o, keep).await?),
            Scenario::Idle => report.results.push(idle(o, keep).await?),
            Scenario::Api => report.results.push(api::api(o, keep).await?),
            Scenario::Alerts => report.results.push(alerts::alerts(o, keep).await?),
            Scenario::Ui => report.results.push(ui::ui(o, keep).await?),
            Scenario::Postgres => report.results.extend(postgres::postgres(o, keep).await?),
        }
    }
    Ok(report)
}

fn target(o: &Options, t: Target) -> Option<Target> {
    o.targets.then_some(t)
}

fn spec_of(o: &Options, s: Scenario) -> DagSpec {
    let z = &o.sizes;
    match s {
        Scenario::Chain => gen::chain("bench_chain", z.chain),
        Scenario::Wide => gen::wide("bench_wide", z.wide),
        Scenario::Fan => gen::fan("bench_fan", z.fan),
        _ => gen::noop_tree("bench_noop", z.noop),
    }
}

/// Runs a scenario's DAG `repeat` times; returns its result and every task's latency.
async fn dag_scenario(
    o: &Options,
    s: Scenario,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<(ScenarioResult, Vec<f64>), BenchError> {
    let spec = spec_of(o, s);
    let n = spec.tasks.len();
    let mut walls = Vec::new();
    let mut lat = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..o.repeat.max(1) {
        let sample = run_dag_once(o, &spec, keep).await?;
        walls.push(sample.wall);
        lat.extend(sample.latencies);
        peaks.extend(sample.peak_rss.map(|k| k as f64 / 1024.0));
    }
    let (description, main) = match s {
        Scenario::Chain => (
            format!("{n} command tasks (`true`), linear"),
            Metric::of("trigger to success", "s", &walls, target(o, Target::at_most(0.25))),
        ),
        Scenario::Wide => (
            format!("{n} independent command tasks (`true`)"),
            Metric::of("trigger to success", "s", &walls, target(o, Target::at_most(0.5))),
        ),
        Scenario::Fan => (
            format!("1 -> {} -> 1 command tasks (`true`)", n - 2),
            Metric::of("trigger to success", "s", &walls, target(o, Target::at_most(0.5))),
        ),
        _ => {
            let rates: Vec<f64> = walls.iter().map(|w| n as f64 / w).collect();
            (
                format!("{n} noop tasks, binary fan-out then fan-in"),
                Metric::of("tasks per second", "tasks/s", &rates, target(o, Target::at_least(20_000.0))),
            )
        }
    };
    let mut metrics = vec![main];
    if s == Scenario::Noop {
        metrics.push(Metric::of("trigger to success", "s", &walls, None));
    }
    metrics.extend(latency_metrics(&lat, None, None));
    if !peaks.is_empty() {
        metrics.push(Metric::of("daemon peak RSS", "MiB", &peaks, None));
    }
    Ok((ScenarioResult { scenario: s.name().into(), description, tasks: n, metrics }, lat))
}

fn latency_metrics(lat: &[f64], p99: Option<Target>, max: Option<Target>) -> Vec<Metric> {
    vec![
        Metric::single("latency p50", "ms", quantile(lat, 0.5), lat.len(), None),
        Metric::single("latency p99", "ms", quantile(lat, 0.99), lat.len(), p99),
        Metric::single("latency max", "ms", quantile(lat, 1.0), lat.len(), max),
    ]
}

fn latency_result(o: &Options, pooled: &[f64]) -> ScenarioResult {
    ScenarioResult {
        scenario: Scenario::Latency.name().into(),
        description: "every task of chain, wide and fan: its start minus its last upstream's end".into(),
        tasks: pooled.len(),
        metrics: latency_metrics(pooled, target(o, Target::at_most(5.0)), target(o, Target::at_most(50.0))),
    }
}

struct Scratch {
    dir: tempfile::TempDir,
    db_url: String,
}

impl Scratch {
    fn new() -> Result<Scratch, BenchError> {
        let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("dags"))?;
        let db_url = format!("sqlite:{}", dir.path().join("sluice.db").display());
        Ok(Scratch { dir, db_url })
    }

    fn dags(&self) -> std::path::PathBuf {
        self.dir.path().join("dags")
    }

    fn logs(&self) -> std::path::PathBuf {
        self.dir.path().join("logs")
    }

    /// Creates the database (so the daemon and this process do not race to create it), then
    /// starts the daemon.
    async fn start(&self, o: &Options) -> Result<(SqliteStore, Daemon), BenchError> {
        self.start_daemon(o, None).await
    }

    /// [`Scratch::start`], the daemon serving its API on `bind`.
    async fn start_with_api(&self, o: &Options, bind: &str) -> Result<(SqliteStore, Daemon), BenchError> {
        self.start_daemon(o, Some(bind)).await
    }

    async fn start_daemon(&self, o: &Options, api_bind: Option<&str>) -> Result<(SqliteStore, Daemon), BenchError> {
        let store = SqliteStore::open(&self.db_url).await?;
        let (dags, logs) = (self.dags(), self.logs());
        let paths = Paths { root: self.dir.path(), dags: &dags, db_url: &self.db_url, logs: &logs, api_bind };
        let daemon = Daemon::start(&o.daemon, &paths, o.parallelism)?;
        Ok((store, daemon))
    }
}

async fn run_dag_once(o: &Options, spec: &DagSpec, keep: &mut Vec<tempfile::TempDir>) -> Result<RunSample, BenchError> {
    let scratch = Scratch::new()?;
    spec.write(&scratch.dags())?;
    let (store, mut daemon) = scratch.start(o).await?;
    let began = Instant::now();
    let filter = RunFilter { dag_id: Some(spec.id.clone()), ..Default::default() };
    let run = loop {
        if let Some(run) = store.runs(&filter).await?.into_iter().next() {
            if run.state.is_finished() {
                break run;
            }
        }
        daemon.check_alive()?;
        if began.elapsed() > o.timeout {
            let _ = daemon.stop().await;
            return Err(BenchError::Check(format!("{}: the run did not finish within {:?}", spec.id, o.timeout)));
        }
        tokio::time::sleep(POLL).await;
    };
    let peak_rss = match o.daemon {
        DaemonKind::Binary(_) => measure::peak_rss_kib(daemon.pid()),
        DaemonKind::InProcess => None,
    };
    daemon.stop().await?;
    let sample = check_run(&store, spec, &run).await;
    store.close().await?;
    keep.push(scratch.dir);
    let (wall, latencies) = sample?;
    Ok(RunSample { wall, latencies, peak_rss })
}

/// Checks that the run and every task succeeded, each with exactly one try; returns the
/// run's wall time (s) and the tasks' latencies (ms).
async fn check_run(store: &dyn Store, spec: &DagSpec, run: &Run) -> Result<(f64, Vec<f64>), BenchError> {
    let fail = |m: String| Err(BenchError::Check(format!("{}: {m}", spec.id)));
    if run.state != RunState::Success {
        return fail(format!("the run ended {}", run.state));
    }
    let tis = store.task_instances(run.id).await?;
    if tis.len() != spec.tasks.len() {
        return fail(format!("{} task instances for {} tasks", tis.len(), spec.tasks.len()));
    }
    if let Some(ti) = tis.iter().find(|t| t.state != TaskState::Success) {
        return fail(format!("task {} ended {}", ti.task_id, ti.state));
    }
    let tries = store.tries(run.id, None).await?;
    if tries.len() != spec.tasks.len() {
        return fail(format!("{} tries for {} tasks (one each expected)", tries.len(), spec.tasks.len()));
    }
    let by_task: HashMap<&str, &sluice_store::Try> = tries.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let (Some(started), Some(ended)) = (run.started_at, run.ended_at) else {
        return fail("the run has no start or end time".into());
    };
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    let mut latencies = Vec::with_capacity(spec.tasks.len());
    for t in &spec.tasks {
        let Some(tr) = by_task.get(t.id.as_str()) else { return fail(format!("task {} has no try", t.id)) };
        if tr.state != TaskState::Success {
            return fail(format!("the try of {} ended {}", t.id, tr.state));
        }
        let mut last_up: Option<DateTime<Utc>> = None;
        for d in &t.deps {
            let up = by_task[spec.tasks[*d].id.as_str()];
            let Some(end) = up.ended_at else { return fail(format!("task {} has no end time", up.task_id)) };
            if end > tr.started_at {
                return fail(format!("task {} started before its upstream {} ended", t.id, up.task_id));
            }
            last_up = Some(last_up.map_or(end, |l| l.max(end)));
        }
        latencies.push(ms(tr.started_at, last_up.unwrap_or(started)));
    }
    Ok(((ended - run.created_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6, latencies))
}

/// Waits until the daemon has recorded every DAG of the folder in the store.
async fn wait_loaded(o: &Options, store: &SqliteStore, daemon: &mut Daemon, count: usize) -> Result<f64, BenchError> {
    let began = Instant::now();
    loop {
        let dags = store.dags().await?;
        if dags.len() >= count {
            if let Some(d) = dags.iter().find(|d| d.parse_error.is_some()) {
                return Err(BenchError::Check(format!("DAG {} did not load: {:?}", d.dag_id, d.parse_error)));
            }
            return Ok(began.elapsed().as_secs_f64());
        }
        daemon.check_alive()?;
        if began.elapsed() > o.timeout {
            return Err(BenchError::Check(format!("the daemon did not load {count} DAGs within {:?}", o.timeout)));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn load_checked(dir: &Path, count: usize) -> Result<f64, BenchError> {
    let t = Instant::now();
    let folder = sluice_dag::load_folder(dir)?;
    let took = t.elapsed().as_secs_f64();
    if folder.has_errors() || folder.dags.len() != count {
        let first = folder.diagnostics().find(|d| d.is_error()).map(|d| d.to_string()).unwrap_or_default();
        return Err(BenchError::Check(format!("{} of {count} DAGs loaded; {first}", folder.dags.len())));
    }
    Ok(took)
}

async fn many_dags(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    let (count, tasks) = (o.sizes.many_dags, o.sizes.tasks_per_dag);
    let scratch = Scratch::new()?;
    gen::idle_folder(&scratch.dags(), count, tasks)?;
    let mut loads = Vec::new();
    for _ in 0..o.repeat.max(1) {
        let dir = scratch.dags();
        let took = tokio::task::spawn_blocking(move || load_checked(&dir, count))
            .await
            .map_err(|e| BenchError::Check(e.to_string()))??;
        loads.push(took);
    }
    let (store, mut daemon) = scratch.start(o).await?;
    let ready = wait_loaded(o, &store, &mut daemon, count).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = daemon.pid();
    let rss = measure::rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let peak = measure::peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    daemon.stop().await?;
    store.close().await?;
    keep.push(scratch.dir);
    Ok(ScenarioResult {
        scenario: Scenario::ManyDags.name().into(),
        description: format!("{count} DAG files of {tasks} command tasks, nothing due"),
        tasks: count * tasks,
        metrics: vec![
            Metric::of("load + validate folder", "s", &loads, target(o, Target::at_most(0.5))),
            Metric::single("daemon start to all DAGs stored", "s", ready, 1, None),
            Metric::single("daemon RSS after loading", "MiB", rss, 1, target(o, Target::at_most(MEMORY_TARGET_MIB))),
            Metric::single("daemon peak RSS", "MiB", peak, 1, None),
        ],
    })
}

/// One file of a `huge`-task chain: how long loading and validating it takes.
async fn huge_dag(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    let n = o.sizes.huge;
    let scratch = Scratch::new()?;
    gen::huge_chain("bench_huge", n).write(&scratch.dags())?;
    let mut loads = Vec::new();
    for _ in 0..o.repeat.max(1) {
        let dir = scratch.dags();
        let took = tokio::task::spawn_blocking(move || load_checked(&dir, 1))
            .await
            .map_err(|e| BenchError::Check(e.to_string()))??;
        loads.push(took);
    }
    keep.push(scratch.dir);
    Ok(ScenarioResult {
        scenario: Scenario::HugeDag.name().into(),
        description: format!("one DAG file of a {n}-task chain"),
        tasks: n,
        metrics: vec![Metric::of("load + validate file", "s", &loads, target(o, Target::at_most(0.2)))],
    })
}

/// A chain of short `sleep` tasks runs; once it is under way, the huge file is dropped into the
/// daemon's folder. The figure is the chain's task latency (each task's start minus its
/// upstream's end) over the whole run, which the reload happened in the middle of: what a
/// reload costs the other DAGs.
async fn reload_huge(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    let spec = gen::sleepy_chain("bench_steady", o.sizes.reload_chain, 0.1);
    let huge = gen::huge_chain("bench_huge", o.sizes.huge);
    let mut lat = Vec::new();
    for _ in 0..o.repeat.max(1) {
        let scratch = Scratch::new()?;
        spec.write(&scratch.dags())?;
        let (store, mut daemon) = scratch.start(o).await?;
        let began = Instant::now();
        let filter = RunFilter { dag_id: Some(spec.id.clone()), ..Default::default() };
        // Under way: a tenth of the chain done.
        let under_way = spec.tasks[spec.tasks.len() / 10].id.clone();
        let mut dropped: Option<DateTime<Utc>> = None;
        let run = loop {
            daemon.check_alive()?;
            if began.elapsed() > o.timeout {
                let _ = daemon.stop().await;
                return Err(BenchError::Check(format!("{}: the run did not finish within {:?}", spec.id, o.timeout)));
            }
            let Some(run) = store.runs(&filter).await?.into_iter().next() else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            if run.state.is_finished() {
                break run;
            }
            if dropped.is_none() {
                let tis = store.task_instances(run.id).await?;
                if tis.iter().any(|t| t.task_id == under_way && t.state == TaskState::Success) {
                    // Written under a hidden name, then renamed: the daemon sees the whole file.
                    let text = huge.to_toml();
                    let tmp = scratch.dags().join(format!(".{}.toml.tmp", huge.id));
                    std::fs::write(&tmp, text)?;
                    std::fs::rename(&tmp, scratch.dags().join(format!("{}.toml", huge.id)))?;
                    dropped = Some(Utc::now());
                }
            }
            tokio::time::sleep(POLL).await;
        };
        daemon.stop().await?;
        let (_, latencies) = check_run(&store, &spec, &run).await?;
        // The reload must have landed while the chain ran, or the figure says nothing.
        let stored = store.dags().await?.into_iter().find(|d| d.dag_id == huge.id).map(|d| d.updated_at);
        store.close().await?;
        keep.push(scratch.dir);
        match (dropped, stored, run.ended_at) {
            (Some(_), Some(at), Some(end)) if at < end => {}
            _ => {
                return Err(BenchError::Check(format!(
                "the huge file was not reloaded while {} ran (dropped {dropped:?}, stored {stored:?}, run ended {:?})",
                spec.id, run.ended_at
            )))
            }
        }
        lat.extend(latencies);
    }
    Ok(ScenarioResult {
        scenario: Scenario::ReloadHuge.name().into(),
        description: format!(
            "{}-task file dropped into the folder while a chain of {} `sleep 0.1` tasks runs",
            o.sizes.huge, o.sizes.reload_chain
        ),
        tasks: spec.tasks.len(),
        metrics: vec![
            Metric::single("chain latency p50", "ms", quantile(&lat, 0.5), lat.len(), None),
            Metric::single("chain latency max", "ms", quantile(&lat, 1.0), lat.len(), target(o, Target::at_most(50.0))),
        ],
    })
}

async fn idle(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    let count = o.sizes.idle_dags;
    let scratch = Scratch::new()?;
    gen::idle_folder(&scratch.dags(), count, o.sizes.tasks_per_dag)?;
    let (store, mut daemon) = scratch.start(o).await?;
    wait_loaded(o, &store, &mut daemon, count).await?;
    // Let start-up work (and the folder watcher's first events) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = daemon.pid();
    let (cpu0, cs0) = (measure::cpu_seconds(pid).unwrap_or(0.0), measure::context_switches(pid));
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.idle_seconds)).await;
    let secs = t.elapsed().as_secs_f64();
    let (cpu1, cs1) = (measure::cpu_seconds(pid).unwrap_or(0.0), measure::context_switches(pid));
    let rss = measure::rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    daemon.check_alive()?;
    daemon.stop().await?;
    // Nothing was due: no run may exist.
    let runs = store.runs(&RunFilter::default()).await?;
    store.close().await?;
    keep.push(scratch.dir);
    if !runs.is_empty() {
        return Err(BenchError::Check(format!("{} runs were created while nothing was due", runs.len())));
    }
    let cpu_pct = (cpu1 - cpu0) / secs * 100.0;
    let wakeups = cs1.saturating_sub(cs0) as f64 / secs;
    Ok(ScenarioResult {
        scenario: Scenario::Idle.name().into(),
        description: format!("{count} DAGs loaded, nothing due, watched for {} s", o.idle_seconds),
        tasks: 0,
        metrics: vec![
            Metric::single("daemon CPU", "% of a core", cpu_pct, 1, target(o, Target::at_most(0.1))),
            Metric::single("daemon thread wake-ups", "per s", wakeups, 1, None),
            Metric::single("daemon RSS", "MiB", rss, 1, None),
        ],
    })
}
