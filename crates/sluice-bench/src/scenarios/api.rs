//! `api`: the HTTP API's latency and throughput with years of history in the store, and what
//! serving it costs the scheduler.
//!
//! The store is filled first, through the store's own calls (every run, task instance, try and
//! event as the daemon writes them): `api_runs` runs of a 20-task DAG and `grid_runs` runs of a
//! 50-task DAG, every one succeeded. Then the `dagctl scheduler` binary starts on it with the API
//! on a free loopback port, and each endpoint is loaded in turn by `dagctl bench-load` in a
//! second process (`API_CLIENTS` keep-alive clients, closed loop, `load_seconds` each): the run
//! list (first pages and cursor pages, with and without `count`), one run (every run in turn),
//! the grid (all its runs by all its tasks) and `/metrics`. All the while, and once before any
//! load for comparison, a chain of 20 `true` command tasks is triggered through the API again
//! and again, and its tasks' latency (a task's start minus its upstream's end) is the
//! scheduler's answer to "what does the API cost me". The load generator runs at the priority
//! of the daemon's API threads (nice 10), as clients on other hosts would not compete with the
//! engine at all.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sluice_store::{FinishTry, NewRun, RunFilter, RunKind, RunState, SqliteStore, Store, TaskState, TryOutcome};

use super::{check_run, target, Scratch, POLL};
use crate::gen::{self, DagSpec};
use crate::load::LoadResult;
use crate::measure::quantile;
use crate::report::{Metric, ScenarioResult, Target};
use crate::{BenchError, DaemonKind, Options, Scenario};

/// Clients of the load generator.
pub(crate) const API_CLIENTS: usize = 4;

const API_DAG: &str = "bench_api";
const GRID_DAG: &str = "bench_grid";
const CHAIN_DAG: &str = "bench_api_chain";

/// One loaded endpoint.
struct Phase {
    name: &'static str,
    urls: Vec<String>,
    p99_target: f64,
    rps_target: Option<f64>,
}

pub(crate) async fn api(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    let DaemonKind::Binary(exe) = &o.daemon else {
        return Err(BenchError::Check(
            "the api scenario needs the dagctl binary (its API and its load generator)".into(),
        ));
    };
    let z = &o.sizes;
    let api_dag = gen::noop_tree(API_DAG, 20).never_due();
    let grid_dag = gen::noop_tree(GRID_DAG, 50).never_due();
    let chain = gen::chain(CHAIN_DAG, 20).manual_only();
    let scratch = Scratch::new()?;
    for d in [&api_dag, &grid_dag, &chain] {
        d.write(&scratch.dags())?;
    }
    {
        let store = SqliteStore::open(&scratch.db_url).await?;
        fill(&store, &api_dag, z.api_runs).await?;
        fill(&store, &grid_dag, z.grid_runs).await?;
        store.close().await?;
    }
    // Any free port: the daemon says which in its log.
    let (store, mut daemon) = scratch.start_with_api(o, "127.0.0.1:0").await?;
    let http = reqwest::Client::new();
    let base = wait_ready(o, &http, &mut daemon, 3).await?;

    let result = async {
        let phases = phases(&http, &base, &store, z.api_runs, z.grid_runs).await?;
        // Before any load: the chain's latency on a quiet daemon.
        let idle_runs = chains_while(&http, &base, &store, o, CHAIN_DAG, async {
            tokio::time::sleep(o.load_seconds).await;
            Ok(())
        })
        .await?;
        let mut metrics = Vec::new();
        let mut loaded_runs = Vec::new();
        for (k, phase) in phases.iter().enumerate() {
            let urls = scratch.dir.path().join(format!("urls-{k}.txt"));
            std::fs::write(&urls, phase.urls.join("\n"))?;
            let mut load = None;
            let runs = chains_while(&http, &base, &store, o, CHAIN_DAG, async {
                load = Some(load_process(exe, &urls, o.load_seconds).await?);
                Ok(())
            })
            .await?;
            loaded_runs.extend(runs);
            let load = load.expect("the load ran");
            if load.errors > 0 || load.requests == 0 {
                return Err(BenchError::Check(format!(
                    "{}: {} requests answered, {} failed (first: {})",
                    phase.name,
                    load.requests,
                    load.errors,
                    load.first_error.as_deref().unwrap_or("none")
                )));
            }
            let l = &load.latencies_ms;
            metrics.push(Metric::single(&format!("{} p50", phase.name), "ms", quantile(l, 0.5), l.len(), None));
            metrics.push(Metric::single(
                &format!("{} p99", phase.name),
                "ms",
                quantile(l, 0.99),
                l.len(),
                target(o, Target::at_most(phase.p99_target)),
            ));
            metrics.push(Metric::single(
                &format!("{} throughput", phase.name),
                "requests/s",
                load.per_second(),
                l.len(),
                phase.rps_target.and_then(|t| target(o, Target::at_least(t))),
            ));
        }
        let idle_lat = chain_latencies(&store, &chain, &idle_runs).await?;
        let loaded_lat = chain_latencies(&store, &chain, &loaded_runs).await?;
        metrics.push(Metric::single(
            "task latency p99, no load",
            "ms",
            quantile(&idle_lat, 0.99),
            idle_lat.len(),
            None,
        ));
        metrics.push(Metric::single(
            "task latency p99, API under load",
            "ms",
            quantile(&loaded_lat, 0.99),
            loaded_lat.len(),
            target(o, Target::at_most(5.0)),
        ));
        Ok(metrics)
    }
    .await;
    let stopped = daemon.stop().await;
    store.close().await?;
    keep.push(scratch.dir);
    let metrics = result?;
    stopped?;
    Ok(ScenarioResult {
        scenario: Scenario::Api.name().into(),
        description: format!(
            "{} runs of a 20-task DAG and {} of a 50-task DAG stored; {API_CLIENTS} clients, {} s per endpoint",
            z.api_runs,
            z.grid_runs,
            o.load_seconds.as_secs_f64()
        ),
        tasks: chain.tasks.len(),
        metrics,
    })
}

/// Writes `count` succeeded runs of `spec`, one a day from 1990, as the daemon would: created,
/// started, every task's try started and finished, the run finished.
pub(super) async fn fill(store: &SqliteStore, spec: &DagSpec, count: usize) -> Result<(), BenchError> {
    const BATCH: usize = 100;
    let tasks: Vec<(String, u32)> = spec.tasks.iter().map(|t| (t.id.clone(), 1)).collect();
    let first = Utc.with_ymd_and_hms(1990, 1, 1, 5, 0, 0).single().expect("a valid date");
    for from in (0..count).step_by(BATCH) {
        let mut runs = Vec::with_capacity(BATCH);
        for i in from..(from + BATCH).min(count) {
            let day = first + chrono::Duration::days(i as i64);
            let new = NewRun {
                dag_id: spec.id.clone(),
                run_id: format!("scheduled__{}", day.format("%Y-%m-%dT%H:%M:%S+00:00")),
                kind: RunKind::Scheduled,
                logical_date: day,
                data_interval_start: day,
                data_interval_end: day + chrono::Duration::days(1),
                conf: None,
                deadline: None,
                tasks: tasks.clone(),
                idempotency_key: None,
            };
            let run = store.create_run(&new).await?.run().id;
            store.set_run_state(run, RunState::Running, day + chrono::Duration::days(1)).await?;
            runs.push((run, day + chrono::Duration::days(1)));
        }
        let Some(&(_, at)) = runs.first() else { continue };
        let queued: Vec<(i64, Vec<(String, TaskState)>)> = runs
            .iter()
            .map(|(r, _)| (*r, tasks.iter().map(|(t, _)| (t.clone(), TaskState::Queued)).collect()))
            .collect();
        let starts: Vec<(i64, String)> =
            runs.iter().flat_map(|(r, _)| tasks.iter().map(move |(t, _)| (*r, t.clone()))).collect();
        store.set_states_and_start(&queued, &starts, at).await?;
        let ends: Vec<FinishTry> = starts
            .iter()
            .enumerate()
            .map(|(k, (run, task))| FinishTry {
                run: *run,
                task_id: task.clone(),
                try_number: 1,
                outcome: TryOutcome::Success { outputs: Default::default() },
                at: at + chrono::Duration::milliseconds(1_000 + (k as i64 * 7_919) % 600_000),
            })
            .collect();
        store.finish_tries(&ends).await?;
        for (run, at) in &runs {
            store.set_run_state(*run, RunState::Success, *at + chrono::Duration::hours(1)).await?;
        }
    }
    Ok(())
}

/// The endpoints, each with the URLs its load cycles through.
async fn phases(
    http: &reqwest::Client,
    base: &str,
    store: &SqliteStore,
    api_runs: usize,
    grid_runs: usize,
) -> Result<Vec<Phase>, BenchError> {
    // The run list: the first page across DAGs and of the DAG (with a count), and the pages a
    // client walking the cursor asks for.
    let mut lists = vec![
        format!("{base}/api/v1/runs?limit=100"),
        format!("{base}/api/v1/runs?dag_id={API_DAG}&limit=100&count=true"),
        format!("{base}/api/v1/runs?dag_id={API_DAG}&state=success&limit=100"),
    ];
    let mut cursor: Option<String> = None;
    for _ in 0..8 {
        let mut url = format!("{base}/api/v1/runs?dag_id={API_DAG}&limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = get_json(http, &url).await?;
        let Some(next) = page["next_cursor"].as_str() else { break };
        let next_url = format!("{base}/api/v1/runs?dag_id={API_DAG}&limit=100&cursor={next}");
        lists.push(next_url);
        cursor = Some(next.to_string());
    }
    let runs = store.runs(&RunFilter { dag_id: Some(API_DAG.into()), ..Default::default() }).await?;
    if runs.len() != api_runs {
        return Err(BenchError::Check(format!("{} runs of {API_DAG} stored, {api_runs} expected", runs.len())));
    }
    let one: Vec<String> = runs.iter().map(|r| format!("{base}/api/v1/dags/{API_DAG}/runs/{}", r.run_id)).collect();
    let grid = format!("{base}/api/v1/dags/{GRID_DAG}/grid?runs={}", grid_runs.min(365));
    let answered: serde_json::Value = get_json(http, &grid).await?;
    let cells =
        answered["states"].as_array().map_or(0, |rows| rows.iter().filter_map(|r| r.as_array()).map(Vec::len).sum());
    if cells != grid_runs.min(365) * 50 {
        return Err(BenchError::Check(format!("the grid has {cells} cells, {} expected", grid_runs.min(365) * 50)));
    }
    Ok(vec![
        Phase { name: "run list", urls: lists, p99_target: 20.0, rps_target: None },
        Phase { name: "one run", urls: one, p99_target: 20.0, rps_target: Some(2_000.0) },
        Phase { name: "grid", urls: vec![grid], p99_target: 50.0, rps_target: None },
        Phase { name: "/metrics", urls: vec![format!("{base}/metrics")], p99_target: 20.0, rps_target: None },
    ])
}

pub(super) async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, BenchError> {
    let r = http.get(url).send().await.map_err(|e| BenchError::Check(format!("GET {url}: {e}")))?;
    if !r.status().is_success() {
        return Err(BenchError::Check(format!("GET {url}: {}", r.status())));
    }
    r.json().await.map_err(|e| BenchError::Check(format!("GET {url}: {e}")))
}

/// Triggers the chain DAG through the API, waits for the run to end, and again, until `until`
/// is done; then lets the last run end. The runs' store ids.
pub(super) async fn chains_while(
    http: &reqwest::Client,
    base: &str,
    store: &SqliteStore,
    o: &Options,
    chain_dag: &str,
    until: impl std::future::Future<Output = Result<(), BenchError>>,
) -> Result<Vec<i64>, BenchError> {
    let mut until = std::pin::pin!(until);
    let mut done = false;
    let mut runs = Vec::new();
    while !done {
        let run_id = trigger(http, base, chain_dag).await?;
        let began = Instant::now();
        loop {
            let run = store.run_by_run_id(chain_dag, &run_id).await?;
            if let Some(run) = run.filter(|r| r.state.is_finished()) {
                runs.push(run.id);
                break;
            }
            if began.elapsed() > o.timeout {
                return Err(BenchError::Check(format!(
                    "{chain_dag}: run {run_id} did not finish within {:?}",
                    o.timeout
                )));
            }
            tokio::select! {
                r = &mut until, if !done => { r?; done = true; }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
    Ok(runs)
}

/// Triggers a run of `dag` through the API; its run id.
pub(super) async fn trigger(http: &reqwest::Client, base: &str, dag: &str) -> Result<String, BenchError> {
    let url = format!("{base}/api/v1/dags/{dag}/runs");
    let r = http
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(|e| BenchError::Check(format!("POST {url}: {e}")))?;
    if r.status() != reqwest::StatusCode::CREATED {
        return Err(BenchError::Check(format!("POST {url}: {}", r.status())));
    }
    r.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["run"]["run_id"].as_str().map(String::from))
        .ok_or_else(|| BenchError::Check(format!("POST {url}: no run_id in the answer")))
}

pub(super) async fn chain_latencies(
    store: &SqliteStore,
    chain: &DagSpec,
    runs: &[i64],
) -> Result<Vec<f64>, BenchError> {
    let mut lat = Vec::new();
    for id in runs {
        let run = store.run(*id).await?.ok_or_else(|| BenchError::Check(format!("run {id} is gone")))?;
        let (_, l) = check_run(store, chain, &run).await?;
        lat.extend(l);
    }
    Ok(lat)
}

/// `dagctl bench-load` in its own process, at the priority of the daemon's API threads (nice
/// 10): clients are not on the scheduler's host, and must not take its CPU from the engine
/// more than the API itself may; its JSON answer.
async fn load_process(exe: &Path, urls: &Path, seconds: Duration) -> Result<LoadResult, BenchError> {
    let mut command = tokio::process::Command::new(exe);
    // SAFETY: between fork and exec, only an async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
    let out = command
        .arg("bench-load")
        .arg("--urls")
        .arg(urls)
        .arg("--concurrency")
        .arg(API_CLIENTS.to_string())
        .arg("--seconds")
        .arg(seconds.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| BenchError::Daemon(format!("cannot start {} bench-load: {e}", exe.display())))?;
    if !out.status.success() {
        return Err(BenchError::Check(format!(
            "bench-load exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Check(format!("bench-load's answer: {e}")))
}

/// Waits until the daemon has said where its API listens, `/readyz` answers 200 and `dags`
/// DAGs are loaded; the API's base URL.
pub(super) async fn wait_ready(
    o: &Options,
    http: &reqwest::Client,
    daemon: &mut crate::daemon::Daemon,
    dags: usize,
) -> Result<String, BenchError> {
    let began = Instant::now();
    loop {
        daemon.check_alive()?;
        let log = daemon.log_text();
        if let Some(at) = log.find("address=http://") {
            let base = log[at + "address=".len()..].split_whitespace().next().unwrap_or("").to_string();
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    if let Ok(v) = get_json(http, &format!("{base}/api/v1/dags")).await {
                        if v["dags"].as_array().is_some_and(|d| d.len() >= dags) {
                            return Ok(base);
                        }
                    }
                }
            }
        }
        if began.elapsed() > o.timeout {
            return Err(BenchError::Check(format!("the daemon's API was not ready within {:?}", o.timeout)));
        }
        tokio::time::sleep(POLL).await;
    }
}
