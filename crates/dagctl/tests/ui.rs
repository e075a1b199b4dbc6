//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over WebDriver (fantoccini), against a real `dagctl scheduler` daemon on a free
//! loopback port with a real SQLite file and real command tasks. Waiting is for the thing
//! itself (an element, a state, a line of log) with a generous safety limit; nothing is timed.
//!
//! Every test ends by checking that the page made no request to another host (the
//! Resource Timing entries) and logged no error (`window.__sluiceErrors` collects
//! `window.onerror`, unhandled rejections and `console.error`).
//!
//! With `SLUICE_UI_SCREENSHOTS=1`, the tests write PNG screenshots of each view, light and
//! dark, under `docs/ui/` (the README shows them); without it they write nothing.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

mod common;

use common::{free_port, urlencode, Env, SAFETY_LIMIT};

/// One browser at a time: three Chromiums on a small machine only slow each other down.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// chromedriver on a free port, in its own process group (so the browser it starts goes with
/// it), and a WebDriver session of headless Chromium.
struct Browser {
    driver: Child,
    client: Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the process group this test started.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(base: &str) -> Browser {
        let driver_bin = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("chromedriver is needed: apt-get install -y chromium chromium-driver (.ci/run does)");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1440,960", "--hide-scrollbars", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-default-apps", "--disable-extensions", "--lang=en-GB",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + SAFETY_LIMIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser { driver, client, base: base.to_string(), _profile: profile }
    }

    /// Opens a path of the UI and waits until its view is drawn.
    async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.ready().await;
    }

    async fn ready(&self) {
        self.until("the view to be drawn", "return document.body && document.body.dataset.ready === '1'").await;
    }

    /// Runs `script` until it returns something truthy, and gives that back.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + SAFETY_LIMIT;
        loop {
            if let Ok(v) = self.client.execute(script, vec![]).await {
                if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                    return v;
                }
            }
            if Instant::now() > deadline {
                let text = self.client.execute("return document.body.innerText", vec![]).await.unwrap_or_default();
                panic!("timed out waiting for {what}; the page says:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        let deadline = Instant::now() + SAFETY_LIMIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if el.click().await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no clickable {css}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : null", json!(css));
        self.until(&format!("{css} to exist"), &script).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the element's text contains `needle`.
    async fn text_contains(&self, css: &str, needle: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent.includes({}) ? e.textContent : null",
            json!(css),
            json!(needle)
        );
        self.until(&format!("{css} to say {needle:?}"), &script).await.as_str().unwrap_or_default().to_string()
    }

    /// Sets an input's value as typing would (an `input` event).
    async fn fill(&self, css: &str, value: &str) {
        let script = format!(
            "const e = document.querySelector({}); if (!e) return false; e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}})); e.dispatchEvent(new Event('change', {{bubbles: true}})); return true",
            json!(css),
            json!(value)
        );
        self.until(&format!("{css} to fill"), &script).await;
    }

    /// Screenshots of the current view (an open dialog included), light and dark, when
    /// SLUICE_UI_SCREENSHOTS=1. The theme is switched in place, as the page's toggle does.
    async fn screenshots(&self, name: &str) {
        if std::env::var("SLUICE_UI_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ui");
        std::fs::create_dir_all(&dir).unwrap();
        for theme in ["light", "dark"] {
            let script = format!(
                "sessionStorage.setItem('sluice.theme', '{theme}'); document.documentElement.dataset.theme = '{theme}'; return true"
            );
            self.client.execute(&script, vec![]).await.unwrap();
            self.until("fonts", "return document.fonts.status === 'loaded'").await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{theme}.png")), png).unwrap();
        }
        let reset =
            "sessionStorage.removeItem('sluice.theme'); delete document.documentElement.dataset.theme; return true";
        self.client.execute(reset, vec![]).await.unwrap();
    }

    /// No request went to another host, and nothing was logged as an error.
    async fn assert_clean(&self) {
        let origin = self.base.clone();
        let urls = self
            .client
            .execute("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])", vec![])
            .await
            .unwrap();
        for u in urls.as_array().unwrap() {
            let u = u.as_str().unwrap();
            assert!(u.starts_with(&origin), "a request to another host: {u}");
        }
        let errors =
            self.client.execute("return window.__sluiceErrors || ['no error collector']", vec![]).await.unwrap();
        assert_eq!(errors, json!([]), "errors in the page");
    }
}

async fn api_get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn api_post(url: &str, body: Value) -> Value {
    let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "POST {url}: {}", r.status());
    r.json().await.unwrap()
}

/// Polls the API until `probe` finds what it waits for.
async fn until_api(what: &str, url: &str, probe: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SAFETY_LIMIT;
    loop {
        let v = api_get(url).await;
        if probe(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A manual DAG whose `load` fails until a marker file exists.
fn shop_dag(env: &Env) -> String {
    let marker = env.file("unlocked");
    format!(
        r#"id = "shop"
description = "Orders from the shop into the warehouse"
tags = ["sales", "warehouse"]
start_date = 2026-01-01
[tasks.extract]
operator = "command"
command = "echo extracting 42 orders"
[tasks.load]
operator = "command"
depends_on = ["extract"]
retries = 0
command = "echo loading; test -e '{marker}' || {{ echo 'boom: the warehouse is locked'; exit 3; }}; echo loaded"
[tasks.report]
operator = "command"
depends_on = ["load"]
command = "echo report sent"
"#
    )
}

/// A wider DAG, for the graph: two sources fanning out to eight loads and back in.
fn warehouse_dag() -> String {
    let mut s = String::from(
        "id = \"warehouse\"\ndescription = \"Nightly star schema: staging, dimensions, facts and marts\"\nschedule = \"30 2 * * *\"\ntimezone = \"America/New_York\"\nstart_date = 2026-01-01\ncatchup = false\ndeadline = \"07:00\"\ntags = [\"warehouse\"]\n",
    );
    s.push_str("[tasks.stage_orders]\noperator = \"noop\"\n[tasks.stage_customers]\noperator = \"noop\"\n");
    for dim in ["dim_customer", "dim_product", "dim_store", "dim_date"] {
        s.push_str(&format!("[tasks.{dim}]\noperator = \"noop\"\ndepends_on = [\"stage_customers\"]\n"));
    }
    for fact in ["fact_sales", "fact_returns"] {
        s.push_str(&format!(
            "[tasks.{fact}]\noperator = \"noop\"\ndepends_on = [\"stage_orders\", \"dim_customer\", \"dim_product\", \"dim_store\", \"dim_date\"]\n"
        ));
    }
    s.push_str("[tasks.mart_revenue]\noperator = \"noop\"\ndepends_on = [\"fact_sales\", \"fact_returns\"]\n");
    s.push_str("[tasks.publish]\noperator = \"noop\"\ndepends_on = [\"mart_revenue\"]\n");
    s
}

/// 200 noop tasks in 20 stages of 10, each task depending on two of the stage before.
fn big_dag() -> String {
    let mut s = String::from("id = \"big\"\ndescription = \"Two hundred tasks\"\nstart_date = 2026-01-01\n");
    for stage in 0..20 {
        for k in 0..10 {
            s.push_str(&format!("[tasks.s{stage:02}_{k}]\noperator = \"noop\"\n"));
            if stage > 0 {
                s.push_str(&format!(
                    "depends_on = [\"s{p:02}_{k}\", \"s{p:02}_{}\"]\n",
                    (k * 3 + 1) % 10,
                    p = stage - 1
                ));
            }
        }
    }
    s
}

const BROKEN: &str = "id = \"broken\"\n[tasks.x]\noperator = \"nope\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_found_in_the_grid_cleared_from_its_log_and_succeeds_live() {
    let _one = BROWSER.lock().await;
    let env = Env::new();
    env.write_dag("shop.toml", &shop_dag(&env));
    env.write_dag("broken.toml", BROKEN);
    env.write_dag("daily.toml", DAILY);
    env.write_dag("warehouse.toml", &warehouse_dag());
    env.write_dag("big.toml", &big_dag());
    let d = env.daemon();
    // Some history first: runs that succeed (the warehouse unlocked), then one that fails.
    std::fs::write(env.file("unlocked"), "").unwrap();
    for _ in 0..4 {
        api_post(&d.url("/api/v1/dags/shop/runs"), json!({})).await;
    }
    api_post(&d.url("/api/v1/dags/warehouse/runs"), json!({})).await;
    until_api("the first runs to succeed", &d.url("/api/v1/runs?state=success"), |r| {
        r["runs"].as_array().is_some_and(|a| a.len() >= 5)
    })
    .await;
    std::fs::remove_file(env.file("unlocked")).unwrap();
    let t = api_post(&d.url("/api/v1/dags/shop/runs"), json!({})).await;
    let run_id = t["run"]["run_id"].as_str().unwrap().to_string();
    let run_url = d.url(&format!("/api/v1/dags/shop/runs/{}", urlencode(&run_id)));
    until_api("the run to fail", &run_url, |r| r["state"] == "failed").await;
    let list = api_get(&d.url("/api/v1/dags")).await;
    let line = list["failed_files"][0]["errors"][0]["line"].as_u64().expect("the broken file's line");

    let b = Browser::start(&d.base).await;
    b.open("/").await;
    // The broken file is at the top, with its line.
    let broken = b.text_contains("#broken-files", "broken.toml").await;
    assert!(broken.contains(&format!("line {line}")), "{broken}");
    b.text_contains("#dag-list", "warehouse").await;
    b.until("a failed dot", "return document.querySelector('tr[data-dag=shop] .dots a.s-failed')").await;
    b.screenshots("dags").await;

    // Into the DAG's grid, and the failed cell.
    b.click("tr[data-dag=shop] .dag-id a").await;
    b.ready().await;
    b.until("the grid", "return document.querySelector('#grid a.cell')").await;
    b.screenshots("grid").await;
    b.click("#grid a.cell[data-state=failed]").await;
    b.ready().await;
    let url = b.client.current_url().await.unwrap();
    assert!(url.path().ends_with("/tasks/load"), "{url}");
    b.text_contains("#log", "boom: the warehouse is locked").await;
    b.text_contains("#try-error", "exit").await;
    // The rendered keys: the task's command as its template produced it for this run.
    let rendered = b.text_contains("#rendered", "boom: the warehouse is locked").await;
    assert!(rendered.contains("\"command\"") && !rendered.contains("{{"), "{rendered}");
    b.screenshots("log").await;

    // Clear it with its preview: load and what is downstream of it.
    std::fs::write(env.file("unlocked"), "").unwrap();
    b.click("#task-clear").await;
    let preview = b.text_contains("#preview", "2 tasks will be cleared").await;
    assert!(preview.contains("load") && preview.contains("report"), "{preview}");
    assert_eq!(api_get(&run_url).await["state"], "failed", "a preview changes nothing");
    b.click("#confirm").await;
    // Live: the page moves to try 2 and shows it succeed, without a reload.
    b.until("the task to succeed", "return document.querySelector('#task-state [data-state=success]')").await;
    b.text_contains("#log", "loaded").await;
    b.text_contains("#tries", "Try 2").await;
    until_api("the run to succeed", &run_url, |r| r["state"] == "success").await;

    // The run page: the Gantt of its tries and the task table.
    b.open(&format!("/dags/shop/runs/{}", urlencode(&run_id))).await;
    b.until("the run's success", "return document.querySelector('h1 [data-state=success]')").await;
    let bars = b
        .until("4 try bars", "const n = document.querySelectorAll('#gantt rect.try').length; return n === 4 ? n : null")
        .await;
    assert_eq!(bars, json!(4), "extract, load twice, report");
    b.text_contains("#tasks", "pid").await;
    b.screenshots("run").await;

    // Console links: a Glue job run (job name and run id, no EMR Serverless application),
    // and an EMR Serverless job run whose ids also name a job.
    {
        use sluice_store::Store as _;
        let store = sluice_store::SqliteStore::open(&format!("sqlite:{}", env.file("sluice.db"))).await.unwrap();
        let key = store.run_by_run_id("shop", &run_id).await.unwrap().unwrap().id;
        for (task, ids) in [
            ("extract", json!({"job_name": "nightly etl", "job_run_id": "jr_0123", "region": "eu-west-1"})),
            (
                "report",
                json!({"application_id": "00app", "job_run_id": "00run", "job_name": "x", "region": "eu-west-1"}),
            ),
        ] {
            for (k, v) in ids.as_object().unwrap() {
                store.record_external_id(key, task, 1, k, v).await.unwrap();
            }
        }
        store.close().await.unwrap();
    }
    b.open(&format!("/dags/shop/runs/{}", urlencode(&run_id))).await;
    let glue = b
        .until(
            "the Glue link",
            "const a = document.querySelector('tr[data-task=extract] a[href*=gluestudio]'); return a && a.href",
        )
        .await;
    assert_eq!(
        glue,
        json!(
            "https://eu-west-1.console.aws.amazon.com/gluestudio/home?region=eu-west-1#/job/nightly%20etl/run/jr_0123"
        )
    );
    let report = b
        .until("the EMR Serverless link", "const r = document.querySelector('tr[data-task=report]'); return r && r.querySelector('a[href*=serverless]') && [...r.querySelectorAll('.ext a')].map(a => a.href)")
        .await;
    assert_eq!(
        report,
        json!(["https://eu-west-1.console.aws.amazon.com/emr/home?region=eu-west-1#/serverless/applications/00app/job-runs/00run"]),
        "no Glue link beside an application id"
    );

    // The other tabs draw from the API.
    b.open("/dags/warehouse?tab=graph").await;
    b.until("the graph", "return document.querySelectorAll('#graph g.node').length === 10").await;
    b.screenshots("graph").await;
    // A 200-task DAG's graph draws: every node and edge, the picture as big as the layout.
    let layout = api_get(&d.url("/api/v1/dags/big/graph")).await;
    b.open("/dags/big?tab=graph").await;
    let drawn = b
        .until("the 200-task graph", "const g = document.querySelector('#graph'); return g && g.querySelectorAll('g.node').length === 200 && [g.querySelectorAll('path.edge').length, Number(g.getAttribute('width'))]")
        .await;
    assert_eq!(drawn, json!([layout["edges"].as_array().unwrap().len(), layout["width"].as_u64().unwrap() + 40]));
    b.open("/dags/shop?tab=source").await;
    b.text_contains("#validation", "Valid").await;
    b.text_contains("#source", "[tasks.load]").await;
    b.screenshots("source").await;
    b.open("/dags/shop?tab=durations").await;
    b.text_contains("#durations", "extract").await;
    b.open("/dags/shop?tab=calendar").await;
    b.until("a day with runs", "return document.querySelector('#calendar rect.cal.s-success')").await;
    b.screenshots("calendar").await;
    b.assert_clean().await;
}

const DAILY: &str = r#"id = "daily_sales"
description = "Daily sales totals by region"
schedule = "0 5 * * *"
timezone = "Europe/London"
start_date = 2026-01-01
catchup = false
paused_at_creation = true
tags = ["sales"]
[params]
region = "eu"
limit = 10
dry = false
[tasks.totals]
operator = "command"
command = "echo totals for {{ params.region }} limit {{ params.limit }} on {{ ds }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_with_a_param_from_the_form_and_a_backfill_preview_that_creates_nothing_until_confirmed() {
    let _one = BROWSER.lock().await;
    let env = Env::new();
    env.write_dag("daily.toml", DAILY);
    let d = env.daemon();
    let b = Browser::start(&d.base).await;

    // Trigger: the form has the DAG's params with their defaults and types.
    b.open("/dags/daily_sales").await;
    b.click("#trigger").await;
    b.until("the params form", "return document.querySelector('#param-limit[type=number]') && document.querySelector('#param-dry[type=checkbox]')").await;
    assert_eq!(
        b.client.execute("return document.querySelector('#param-region').value", vec![]).await.unwrap(),
        json!("eu")
    );
    b.fill("#param-limit", "42").await;
    let preview = b.text_contains("#preview", "\"limit\": 42").await;
    assert!(!preview.contains("region"), "only changed params are sent: {preview}");
    b.screenshots("trigger").await;
    b.click("#confirm").await;
    // The UI opens the new run; its conf is the form's.
    b.until("the run page", "return location.pathname.includes('/runs/manual__')").await;
    b.ready().await;
    b.text_contains("#conf", "42").await;
    let runs = api_get(&d.url("/api/v1/dags/daily_sales/runs")).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    assert_eq!(runs["runs"][0]["conf"], json!({"limit": 42}));

    // Backfill: the preview lists the runs and creates none of them.
    b.open("/dags/daily_sales").await;
    b.click("#backfill").await;
    b.fill("#backfill-from", "2026-03-01").await;
    b.fill("#backfill-to", "2026-03-03").await;
    let preview = b.text_contains("#preview", "3 new runs").await;
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        assert!(preview.contains(day), "{preview}");
    }
    b.screenshots("backfill").await;
    let runs = api_get(&d.url("/api/v1/dags/daily_sales/runs")).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "the preview created nothing");
    b.click("#confirm").await;
    until_api("the backfill's runs", &d.url("/api/v1/dags/daily_sales/runs?kind=backfill"), |r| {
        r["runs"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    // They appear in the open grid without a reload.
    b.open("/dags/daily_sales").await;
    b.until("4 runs in the grid", "return document.querySelectorAll('#grid a.runbar').length === 4").await;
    b.assert_clean().await;
}

fn gated_dag(env: &Env) -> String {
    let gate = env.file("gate");
    format!(
        r#"id = "gated"
start_date = 2026-01-01
[tasks.wait]
operator = "command"
command = "echo first line; while [ ! -e '{gate}' ]; do sleep 0.05; done; echo second line"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_log_grows_while_the_task_runs_and_a_cli_run_appears_in_the_open_grid() {
    let _one = BROWSER.lock().await;
    let env = Env::new();
    env.write_dag("gated.toml", &gated_dag(&env));
    let d = env.daemon();
    let b = Browser::start(&d.base).await;
    b.open("/dags/gated").await;
    b.text_contains("#grid", "No runs yet").await;
    // Away and back: the page comes back from the back-forward cache (the same document, its
    // script state kept), having let its event stream go while away, and streams again.
    b.client.execute("window.__kept = true; return true", vec![]).await.unwrap();
    b.client.goto("about:blank").await.unwrap();
    b.client.back().await.unwrap();
    b.until("the same page, restored", "return window.__kept === true && location.pathname === '/dags/gated'").await;
    b.until("the stream again", "return document.querySelector('#live.on')").await;

    // A run started from the CLI shows in the open grid, from the event stream.
    env.ok(&["trigger", "gated"]);
    b.until("the CLI's run in the grid", "return document.querySelector('#grid a.cell[data-state=running]')").await;
    b.click("#grid a.cell[data-state=running]").await;
    b.ready().await;
    b.text_contains("#log", "first line").await;
    b.until("the log followed", "return document.querySelector('#following')").await;
    let text = b.text("#log").await;
    assert!(!text.lines().any(|l| l.trim() == "second line"), "{text}");
    b.screenshots("live-log").await;
    std::fs::write(env.file("gate"), "").unwrap();
    b.until(
        "the log's next line",
        "return document.querySelector('#log').textContent.split('\\n').some(l => l.trim() === 'second line')",
    )
    .await;
    b.until("the task to succeed", "return document.querySelector('#task-state [data-state=success]')").await;
    b.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_is_asked_for_and_hides_the_actions() {
    let _one = BROWSER.lock().await;
    let env = Env::new();
    env.write_dag("shop.toml", &shop_dag(&env));
    let viewer = env.ok(&["tokens", "create", "--name", "reader", "--role", "viewer"]);
    let secret = viewer.split_whitespace().find(|w| w.starts_with("slc_")).expect("the token's secret").to_string();
    let d = env.daemon();
    // The API wants a token; the page itself loads without one.
    assert_eq!(reqwest::get(d.url("/api/v1/dags")).await.unwrap().status(), 401);
    let page = reqwest::get(d.url("/dags/shop")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));

    let b = Browser::start(&d.base).await;
    b.client.goto(&d.url("/")).await.unwrap();
    b.until("the token prompt", "return document.querySelector('#token-input')").await;
    b.fill("#token-input", &secret).await;
    b.click("#token-save").await;
    b.ready().await;
    b.text_contains("#dag-list", "shop").await;
    b.until("the viewer's page", "return document.body.classList.contains('viewer')").await;
    let shown = b
        .client
        .execute("return [...document.querySelectorAll('.act')].filter(e => e.offsetParent !== null).length", vec![])
        .await
        .unwrap();
    assert_eq!(shown, json!(0), "no action is shown to a viewer");
    // Kept for the session: another view needs no new prompt.
    b.open("/dags/shop").await;
    assert_eq!(
        b.client.execute("return !!document.querySelector('#token-input')", vec![]).await.unwrap(),
        json!(false)
    );
    let stored =
        b.client.execute("return [sessionStorage.getItem('sluice.token'), localStorage.length]", vec![]).await.unwrap();
    assert_eq!(stored, json!([secret, 0]));
    b.assert_clean().await;
}
