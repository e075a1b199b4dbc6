//! `ui`: what each view of the web UI costs the server, and how long the DAG page's 365-run
//! grid takes to draw in headless Chromium.
//!
//! The store is filled first, through the store's own calls (as `api` does): `ui_runs` runs
//! of a 20-task DAG, and 14 runs each (a DAG list row's dots) of `ui_dags - 1` other 5-task
//! DAGs, so the DAG list has `ui_dags` rows. The main DAG's first tries get a log file. Then
//! the `dagctl scheduler` binary starts on it with the API (and so the UI) on a free loopback
//! port.
//!
//! A view's server time is the time of the API requests the UI makes to draw it (as
//! `assets/app.js` makes them), sent one after another on one keep-alive connection and
//! summed: an upper bound of what the page waits for, as the page sends some of them at once.
//! Each view is loaded `ui_samples` times (after one load not counted), cycling through the
//! runs for the run and try pages; its p50 and p99 are reported, the p99 against 50 ms.
//!
//! The browser figure: chromedriver (Debian's `chromium-driver`) starts headless Chromium,
//! which opens the DAG page with 365 runs in its grid `ui_browser_loads` times (after one load
//! not counted). The page marks `sluice:grid-laid-out` (a `performance.mark` right after a
//! forced layout of the grid's cells) and `sluice:grid-drawn` (two animation frames later:
//! painted); their `startTime` is the time from the navigation's start, and the drawn one
//! has the target. Without chromedriver, the scenario says so in its
//! description and reports the server times only.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_store::{RunFilter, SqliteStore, Store};

use super::api::{fill, get_json, wait_ready};
use super::{target, Scratch, POLL};
use crate::gen::{self, DagSpec};
use crate::measure::quantile;
use crate::report::{Metric, ScenarioResult, Target};
use crate::{BenchError, DaemonKind, Options, Scenario};

const UI_DAG: &str = "bench_ui";
/// Runs of each other DAG: the 14 dots of its DAG list row.
const OTHER_RUNS: usize = 14;
/// Tasks of each other DAG.
const OTHER_TASKS: usize = 5;
/// The target of every view's p99 server time, ms.
const PAGE_TARGET_MS: f64 = 50.0;
/// The target of the 365-run grid drawn in Chromium, ms.
const GRID_TARGET_MS: f64 = 1_000.0;
/// The runs the grid shows at most (the UI's largest choice).
const GRID_RUNS: usize = 365;
/// What the page marks once the grid is drawn (painted), and once it is laid out.
const GRID_MARK: &str = "sluice:grid-drawn";
const LAYOUT_MARK: &str = "sluice:grid-laid-out";

/// One view of the UI: the API requests it makes, per load (`k` is the load's number).
struct View {
    name: &'static str,
    requests: Box<dyn Fn(usize) -> Vec<String> + Send + Sync>,
}

pub(crate) async fn ui(o: &Options, keep: &mut Vec<tempfile::TempDir>) -> Result<ScenarioResult, BenchError> {
    if !matches!(o.daemon, DaemonKind::Binary(_)) {
        return Err(BenchError::Check("the ui scenario needs the dagctl binary (its API and its web UI)".into()));
    }
    let z = &o.sizes;
    let main = gen::noop_tree(UI_DAG, 20).never_due();
    let others: Vec<DagSpec> =
        (1..z.ui_dags.max(1)).map(|k| gen::noop_tree(&format!("bench_ui_{k:03}"), OTHER_TASKS).never_due()).collect();
    let scratch = Scratch::new()?;
    main.write(&scratch.dags())?;
    for d in &others {
        d.write(&scratch.dags())?;
    }
    let run_ids = {
        let store = SqliteStore::open(&scratch.db_url).await?;
        fill(&store, &main, z.ui_runs).await?;
        for d in &others {
            fill(&store, d, OTHER_RUNS).await?;
        }
        let runs = store.runs(&RunFilter { dag_id: Some(UI_DAG.into()), ..Default::default() }).await?;
        store.close().await?;
        runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()
    };
    if run_ids.len() != z.ui_runs || run_ids.is_empty() {
        return Err(BenchError::Check(format!("{} runs of {UI_DAG} stored, {} expected", run_ids.len(), z.ui_runs)));
    }
    let log_task = main.tasks[0].id.clone();
    write_logs(&scratch, &run_ids, &log_task, z.ui_samples + 1)?;
    // The calendar shows the year of the newest run.
    let year = 1990 + ((z.ui_runs - 1) as f64 / 365.25) as i32;

    let (store, mut daemon) = scratch.start_with_api(o, "127.0.0.1:0").await?;
    let http = reqwest::Client::new();
    let result = async {
        let base = wait_ready(o, &http, &mut daemon, z.ui_dags.max(1)).await?;
        let views = views(&base, run_ids, &log_task, year);
        check_views(&http, &views, main.tasks.len(), z.ui_dags.max(1)).await?;
        let mut metrics = Vec::new();
        for view in &views {
            let times = view_times(&http, view, z.ui_samples).await?;
            metrics.push(Metric::single(&format!("{} p50", view.name), "ms", quantile(&times, 0.5), times.len(), None));
            metrics.push(Metric::single(
                &format!("{} p99", view.name),
                "ms",
                quantile(&times, 0.99),
                times.len(),
                target(o, Target::at_most(PAGE_TARGET_MS)),
            ));
        }
        let cells = z.ui_runs.min(GRID_RUNS) * main.tasks.len();
        let browser = match chromedriver() {
            Some(driver) => {
                let url = format!("{base}/dags/{UI_DAG}?runs={GRID_RUNS}");
                let (laid_out, drawn) = grid_in_chromium(o, &driver, &url, cells, z.ui_browser_loads).await?;
                metrics.push(Metric::of("DAG page, grid 365 laid out in Chromium", "ms", &laid_out, None));
                metrics.push(Metric::of("DAG page, grid 365 drawn in Chromium", "ms", &drawn, None));
                metrics.push(Metric::single(
                    "DAG page, grid 365 drawn in Chromium, max",
                    "ms",
                    quantile(&drawn, 1.0),
                    drawn.len(),
                    target(o, Target::at_most(GRID_TARGET_MS)),
                ));
                format!("grid of {cells} cells drawn in headless Chromium, {} loads measured", drawn.len())
            }
            None => {
                eprintln!(
                    "ui: chromedriver not found (apt-get install -y chromium chromium-driver): the browser time is not measured, only the server times"
                );
                "chromedriver not found: server times only, the browser time not measured".to_string()
            }
        };
        Ok::<_, BenchError>((metrics, browser))
    }
    .await;
    let stopped = daemon.stop().await;
    store.close().await?;
    keep.push(scratch.dir);
    let (metrics, browser) = result?;
    stopped?;
    Ok(ScenarioResult {
        scenario: Scenario::Ui.name().into(),
        description: format!(
            "{} runs of a 20-task DAG and {} DAGs stored; each view's API requests in turn, {} loads a view; {browser}",
            z.ui_runs,
            z.ui_dags.max(1),
            z.ui_samples
        ),
        tasks: main.tasks.len(),
        metrics,
    })
}

/// A log of 200 lines for the first try of `task` in the first `count` runs (the try page
/// reads it).
fn write_logs(scratch: &Scratch, run_ids: &[String], task: &str, count: usize) -> Result<(), BenchError> {
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!("2026-01-01T05:00:{:02}Z step {i}: rows written {}\n", i % 60, i * 1_000));
    }
    for run_id in run_ids.iter().take(count) {
        let path = sluice_scheduler::engine::log_path(&scratch.logs(), UI_DAG, run_id, task, 1);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &text)?;
    }
    Ok(())
}

/// The views and the API requests each makes (see `assets/app.js`: `viewDags`, `viewDag` and
/// its tabs, `viewRun`, `viewTask`).
fn views(base: &str, run_ids: Vec<String>, log_task: &str, year: i32) -> Vec<View> {
    let dag = format!("{base}/api/v1/dags/{UI_DAG}");
    let tab = |name: &'static str, tail: Vec<String>| {
        let dag = dag.clone();
        View { name, requests: Box::new(move |_| std::iter::once(dag.clone()).chain(tail.iter().cloned()).collect()) }
    };
    let runs = std::sync::Arc::new(run_ids);
    let run_view = {
        let (dag, runs) = (dag.clone(), runs.clone());
        View {
            name: "run page",
            requests: Box::new(move |k| {
                let run = format!("{dag}/runs/{}", encode(&runs[k % runs.len()]));
                vec![run.clone(), format!("{run}/tasks"), dag.clone()]
            }),
        }
    };
    let try_view = {
        let (dag, runs, task) = (dag.clone(), runs.clone(), log_task.to_string());
        View {
            name: "try page with log",
            requests: Box::new(move |k| {
                let run = format!("{dag}/runs/{}", encode(&runs[k % runs.len()]));
                vec![
                    format!("{run}/tasks"),
                    dag.clone(),
                    format!("{run}/tasks/{task}/tries/1/log"),
                    format!("{run}/tasks/{task}/rendered"),
                ]
            }),
        }
    };
    let list = format!("{base}/api/v1/dags?last=14");
    vec![
        View { name: "DAG list", requests: Box::new(move |_| vec![list.clone()]) },
        tab("DAG page, grid 25", vec![format!("{dag}/grid?runs=25")]),
        tab("DAG page, grid 365", vec![format!("{dag}/grid?runs={GRID_RUNS}")]),
        tab("graph", vec![format!("{dag}/graph"), format!("{dag}/grid?runs=1")]),
        tab("calendar", vec![format!("{dag}/calendar?year={year}")]),
        tab("durations", vec![format!("{dag}/grid?runs=25")]),
        tab("runs", vec![format!("{dag}/runs?limit=50&count=true")]),
        tab("source", vec![]),
        run_view,
        try_view,
    ]
}

/// Each view's answers are what the UI needs: every DAG listed, the grid's cells all there,
/// a log that is not empty, the rendered keys.
async fn check_views(http: &reqwest::Client, views: &[View], tasks: usize, dags: usize) -> Result<(), BenchError> {
    let get = |url: String| async move { get_json(http, &url).await };
    for view in views {
        let urls = (view.requests)(0);
        match view.name {
            "DAG list" => {
                let list = get(urls[0].clone()).await?;
                let n = list["dags"].as_array().map_or(0, Vec::len);
                if n != dags {
                    return Err(BenchError::Check(format!("the DAG list has {n} DAGs, {dags} expected")));
                }
            }
            "DAG page, grid 365" => {
                let grid = get(urls[1].clone()).await?;
                let rows = grid["states"].as_array().map_or(0, Vec::len);
                let cells: usize =
                    grid["states"].as_array().into_iter().flatten().filter_map(Value::as_array).map(Vec::len).sum();
                if rows == 0 || cells != rows * tasks {
                    return Err(BenchError::Check(format!(
                        "the grid has {cells} cells in {rows} runs of {tasks} tasks"
                    )));
                }
            }
            "try page with log" => {
                let log =
                    http.get(&urls[2]).send().await.map_err(|e| BenchError::Check(format!("GET {}: {e}", urls[2])))?;
                let text = log.text().await.map_err(|e| BenchError::Check(format!("GET {}: {e}", urls[2])))?;
                if !text.contains("step 199") {
                    return Err(BenchError::Check(format!("GET {}: not the try's log: {text:.200}", urls[2])));
                }
                let rendered = get(urls[3].clone()).await?;
                if !rendered["keys"].is_object() {
                    return Err(BenchError::Check(format!("GET {}: no rendered keys: {rendered}", urls[3])));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The server time of `samples` loads of a view (after one not counted), ms each: its
/// requests one after another, summed.
async fn view_times(http: &reqwest::Client, view: &View, samples: usize) -> Result<Vec<f64>, BenchError> {
    let mut times = Vec::with_capacity(samples);
    for k in 0..=samples {
        let mut total = Duration::ZERO;
        for url in (view.requests)(k) {
            let began = Instant::now();
            let r = http.get(&url).send().await.map_err(|e| BenchError::Check(format!("GET {url}: {e}")))?;
            let status = r.status();
            r.bytes().await.map_err(|e| BenchError::Check(format!("GET {url}: {e}")))?;
            total += began.elapsed();
            if !status.is_success() {
                return Err(BenchError::Check(format!("{}: GET {url}: {status}", view.name)));
            }
        }
        if k > 0 {
            times.push(total.as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// Percent-encodes a path segment (run ids hold `:` and `+`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The chromedriver binary, if one answers `--version`.
fn chromedriver() -> Option<String> {
    ["chromedriver", "/usr/bin/chromedriver"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .map(String::from)
}

/// chromedriver in its own process group (the Chromium it starts goes with it when the
/// group is killed).
struct Driver {
    child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: a plain kill(2) of the process group this scenario started.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// Opens `url` in headless Chromium `loads` times (after one load not counted) and reads how
/// long after the navigation's start the page marked the grid laid out and drawn, ms each;
/// every load's grid must have its `cells` cells.
async fn grid_in_chromium(
    o: &Options,
    driver_bin: &str,
    url: &str,
    cells: usize,
    loads: usize,
) -> Result<(Vec<f64>, Vec<f64>), BenchError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = tokio::process::Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Daemon(format!("cannot start {driver_bin}: {e}")))?;
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), _profile: tempfile::tempdir()? };
    let http = reqwest::Client::new();
    let session = new_session(o, &http, &driver).await?;
    let wd = format!("{}/session/{session}", driver.url);
    let result = async {
        let (mut laid_out, mut drawn) = (Vec::with_capacity(loads), Vec::with_capacity(loads));
        for k in 0..=loads {
            webdriver(&http, &format!("{wd}/url"), json!({"url": "about:blank"})).await?;
            webdriver(&http, &format!("{wd}/url"), json!({"url": url})).await?;
            let script = format!(
                "const m = performance.getEntriesByName({mark}), l = performance.getEntriesByName({layout}); return m.length && l.length ? [m[0].startTime, l[0].startTime, document.querySelectorAll('#grid a.cell').length] : null",
                mark = json!(GRID_MARK),
                layout = json!(LAYOUT_MARK)
            );
            let began = Instant::now();
            let answer = loop {
                let v = webdriver(&http, &format!("{wd}/execute/sync"), json!({"script": script, "args": []})).await?;
                if !v.is_null() {
                    break v;
                }
                if began.elapsed() > o.timeout {
                    return Err(BenchError::Check(format!("the grid of {url} was not drawn within {:?}", o.timeout)));
                }
                tokio::time::sleep(POLL).await;
            };
            let (at, laid) = (answer[0].as_f64().unwrap_or(f64::NAN), answer[1].as_f64().unwrap_or(f64::NAN));
            let shown = answer[2].as_u64().unwrap_or(0) as usize;
            if shown != cells || !at.is_finite() || !laid.is_finite() {
                return Err(BenchError::Check(format!("the grid drawn in Chromium has {shown} cells, {cells} expected")));
            }
            if k > 0 {
                laid_out.push(laid);
                drawn.push(at);
            }
        }
        Ok((laid_out, drawn))
    }
    .await;
    let _ = http.delete(&wd).send().await;
    drop(driver);
    result
}

/// A WebDriver session of headless Chromium, once chromedriver answers.
async fn new_session(o: &Options, http: &reqwest::Client, driver: &Driver) -> Result<String, BenchError> {
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1440,960", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps",
            "--disable-extensions", format!("--user-data-dir={}", driver._profile.path().display()),
        ]},
    }}});
    let began = Instant::now();
    loop {
        match webdriver(http, &format!("{}/session", driver.url), caps.clone()).await {
            Ok(v) => {
                return v["sessionId"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| BenchError::Check(format!("chromedriver gave no session: {v}")))
            }
            // Not listening yet; a refusal (no Chromium) is an answer and ends the wait.
            Err(BenchError::Daemon(_)) if began.elapsed() < o.timeout => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A WebDriver command; its `value`. Connection errors are `Daemon` errors (chromedriver is
/// not listening yet), a WebDriver error is a `Check` error with its message.
async fn webdriver(http: &reqwest::Client, url: &str, body: Value) -> Result<Value, BenchError> {
    let r = http.post(url).json(&body).send().await.map_err(|e| BenchError::Daemon(format!("POST {url}: {e}")))?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| BenchError::Check(format!("POST {url}: {e}")))?;
    if !status.is_success() {
        return Err(BenchError::Check(format!(
            "WebDriver {url}: {status}: {}",
            v["value"]["message"].as_str().unwrap_or("no message")
        )));
    }
    Ok(v["value"].clone())
}
