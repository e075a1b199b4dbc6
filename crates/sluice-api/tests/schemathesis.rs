//! The API fuzzed against its own OpenAPI document by schemathesis (from PyPI, in the project
//! venv: `tests/tooling/requirements.txt`), for a bounded number of examples per operation.
//!
//! The API runs in this process on a free loopback port, over a real SQLite file holding two
//! DAGs (one scheduled, one manual only) and a broken file, runs created through
//! `actions::trigger` and a backfill, task states, finished, failed and running tries with
//! external ids, a log file, and API tokens. schemathesis reads `/api/v1/openapi.json`, generates requests
//! from it (valid and invalid ones; path and query parameters, and the dates of bodies, are
//! drawn from the real DAG, run, task and token names and a few dates about half of the time,
//! so answers other than 404 and 400 are checked too) and checks each
//! answer: no 5xx, a documented status, a documented content type, a body matching the
//! documented schema. Any finding fails the test with schemathesis's report.
//!
//! Left out of the fuzzing, though documented: `GET .../wait` and `GET /api/v1/events/stream`,
//! which stream until a run ends or the client hangs up (a generated request to them would wait
//! out its timeout). A log's `follow` is fuzzed: no try of the data is running, so a followed
//! log answers at once.
//!
//! `SLUICE_SCHEMATHESIS_EXAMPLES` sets the examples per operation (default 20),
//! `SLUICE_SCHEMATHESIS_SEED` the seed (default fixed, so a run is reproducible).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_api::{Api, Role};
use sluice_scheduler::actions::{self, BackfillRequest, Rerun, TriggerRequest};
use sluice_scheduler::views::TryView;
use sluice_scheduler::Catalog;
use sluice_store::{DagSync, RunState, Store, TaskState, TryOutcome};

/// The workspace root: `crates/sluice-api/../..`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The venv's python: `tests/tooling/venv.sh` creates or updates `.venv` (a no-op when it is
/// up to date; parallel callers take turns on its lock).
fn ensure_venv(root: &Path) -> PathBuf {
    let status = Command::new("bash").arg(root.join("tests/tooling/venv.sh")).current_dir(root).status();
    match status {
        Ok(s) if s.success() => root.join(".venv/bin/python"),
        Ok(s) => panic!("tests/tooling/venv.sh exited with {s} (see tests/tooling/README.md)"),
        Err(e) => panic!("cannot run tests/tooling/venv.sh: {e}"),
    }
}

/// Daily at 05:00 in London: `a`, then `b` and `c` after it.
const DAILY: &str = r#"description = "A daily DAG"
schedule = "0 5 * * *"
timezone = "Europe/London"
start_date = "2026-03-01"
tags = ["etl"]
deadline = "6h"

[params]
bucket = "raw"

[tasks.a]
operator = "noop"
doc = "The first task"

[tasks.b]
operator = "noop"
depends_on = ["a"]
retries = 2

[tasks.c]
operator = "noop"
depends_on = ["b"]
"#;

/// Triggered only.
const MANUAL: &str = r#"description = "Runs when triggered"

[tasks.only]
operator = "noop"
"#;

fn now() -> DateTime<Utc> {
    "2026-03-20T12:00:00Z".parse().unwrap()
}

struct Data {
    dag_ids: Vec<String>,
    run_ids: Vec<String>,
    task_ids: Vec<String>,
}

/// Fills the store: DAG rows with their sources, runs in several states, tries and a log.
async fn populate(store: &dyn Store, catalog: &Catalog, dags_dir: &Path, logs: &Path) -> Data {
    let syncs: Vec<DagSync> = catalog
        .dags
        .values()
        .map(|dag| DagSync {
            dag_id: dag.id.clone(),
            file: dag.file.display().to_string(),
            source: Some(std::fs::read_to_string(dags_dir.join(format!("{}.toml", dag.id))).unwrap()),
            parse_error: None,
            paused_at_creation: false,
        })
        .collect();
    store.sync_dags(&syncs).await.unwrap();
    let daily = catalog.dag("daily").unwrap();
    let manual = catalog.dag("manual_only").unwrap();
    let mut run_ids = Vec::new();
    let mut runs = Vec::new();
    for (dag, date, conf) in [
        (daily, Some("2026-03-01"), None),
        (daily, Some("2026-03-02"), Some(json!({"bucket": "other"}))),
        (daily, Some("2026-03-03"), None),
        (manual, None, Some(json!({"n": 1}))),
    ] {
        let request = TriggerRequest {
            logical_date: date.map(str::to_string),
            conf: conf.and_then(|c| c.as_object().cloned()),
            idempotency_key: None,
        };
        let t = actions::trigger(store, dag, &request, now()).await.unwrap();
        run_ids.push(t.run.run_id.clone());
        runs.push(store.run(t.run.id).await.unwrap().unwrap());
    }
    let backfill = BackfillRequest {
        from: "2026-03-05".into(),
        to: "2026-03-06".into(),
        rerun: Rerun::None,
        conf: None,
        dry_run: false,
    };
    for item in actions::backfill(store, daily, &backfill, now()).await.unwrap().runs {
        run_ids.push(item.run_id);
    }

    // The first run: a succeeded with an external id and a log, b failed once and is up for
    // retry, c waits. The run is running.
    let at = now();
    let first = &runs[0];
    store.set_run_state(first.id, RunState::Running, at).await.unwrap();
    store.set_task_states(first.id, &[("a".into(), TaskState::Scheduled)], at).await.unwrap();
    store.start_try(first.id, "a", at).await.unwrap();
    store.record_external_id(first.id, "a", 1, "pid", &json!(4242)).await.unwrap();
    let success = TryOutcome::Success { outputs: serde_json::Map::new() };
    store.finish_try(first.id, "a", 1, &success, at).await.unwrap();
    store.set_task_states(first.id, &[("b".into(), TaskState::Scheduled)], at).await.unwrap();
    store.start_try(first.id, "b", at).await.unwrap();
    let failed =
        TryOutcome::Failed { error: "exit status 1".into(), retry_at: Some(at + chrono::Duration::minutes(5)) };
    store.finish_try(first.id, "b", 1, &failed, at).await.unwrap();
    for t in store.tries(first.id, None).await.unwrap() {
        let log = TryView::new(first, &t, logs).log;
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, format!("[sluice] try {} of {} started\nhello\n", t.try_number, t.task_id)).unwrap();
    }
    // The second run: every task succeeded, the run too.
    let second = &runs[1];
    store.set_run_state(second.id, RunState::Running, at).await.unwrap();
    for task in ["a", "b", "c"] {
        store.set_task_states(second.id, &[(task.into(), TaskState::Scheduled)], at).await.unwrap();
        store.start_try(second.id, task, at).await.unwrap();
        store.finish_try(second.id, task, 1, &success, at).await.unwrap();
    }
    store.set_run_state(second.id, RunState::Success, at).await.unwrap();

    let task_ids = ["a", "b", "c", "only"].map(String::from).to_vec();
    Data { dag_ids: vec!["daily".into(), "manual_only".into()], run_ids, task_ids }
}

/// A TOML string array.
fn toml_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| Value::String(v.clone()).to_string()).collect();
    format!("[{}]", quoted.join(", "))
}

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let root = workspace_root();
    let python = ensure_venv(&root);
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: is schemathesis in tests/tooling/requirements.txt?",
        schemathesis.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dags_dir = dir.path().join("dags");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&dags_dir).unwrap();
    std::fs::write(dags_dir.join("daily.toml"), DAILY).unwrap();
    std::fs::write(dags_dir.join("manual_only.toml"), MANUAL).unwrap();
    std::fs::write(dags_dir.join("broken.toml"), "schedule = \"0 25 * * *\"\n[tasks.a]\noperator = \"noop\"\n")
        .unwrap();

    let (base, token, data, stop) = runtime.block_on(async {
        let url = format!("sqlite:{}", dir.path().join("sluice.db").display());
        let store = sluice_store::open(&url).await.unwrap();
        let folder = sluice_dag::load_folder(&dags_dir).unwrap();
        let catalog = Catalog::from_folder(folder, now());
        assert_eq!(catalog.dags.len(), 2, "{:?}", catalog.failed_files);
        let data = populate(store.as_ref(), &catalog, &dags_dir, &logs).await;
        // An admin token: a token schemathesis creates must not lock it out of the API.
        let admin = sluice_api::auth::create_token(store.as_ref(), "schemathesis-admin", Role::Admin, None, now())
            .await
            .unwrap();
        // Tokens for the fuzzer to list and revoke.
        for (name, role, expires) in
            [("ci", Role::Operator, Some(Duration::from_secs(86_400))), ("dashboard", Role::Viewer, None)]
        {
            sluice_api::auth::create_token(store.as_ref(), name, role, expires, now()).await.unwrap();
        }
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(catalog));
        let api = Api::builder(store, rx, logs.clone()).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _keep = tx;
            sluice_api::serve(listener, api, async move {
                let _ = stopped.await;
            })
            .await
        });
        (base, admin.token, data, stop)
    });

    let examples = std::env::var("SLUICE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let seed = std::env::var("SLUICE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into());
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[dictionaries.dag_ids]
values = {dags}

[dictionaries.run_ids]
values = {runs}

[dictionaries.task_ids]
values = {tasks}

[dictionaries.try_numbers]
values = [1, 2]

[dictionaries.token_names]
values = ["ci", "dashboard"]

[dictionaries.dates]
values = ["2026-03-01", "2026-03-04", "2026-03-02T05:00:00Z"]

[parameters]
"path.dag_id" = {{ dictionary = "dag_ids", probability = 0.6 }}
"query.dag_id" = {{ dictionary = "dag_ids", probability = 0.5 }}
"path.run_id" = {{ dictionary = "run_ids", probability = 0.6 }}
"query.run_id" = {{ dictionary = "run_ids", probability = 0.5 }}
"path.task_id" = {{ dictionary = "task_ids", probability = 0.6 }}
"path.try_number" = {{ dictionary = "try_numbers", probability = 0.6 }}
"path.name" = {{ dictionary = "token_names", probability = 0.6 }}
"body.from" = {{ dictionary = "dates", probability = 0.6 }}
"body.to" = {{ dictionary = "dates", probability = 0.6 }}
"body.logical_date" = {{ dictionary = "dates", probability = 0.5 }}
"#,
            dags = toml_list(&data.dag_ids),
            runs = toml_list(&data.run_ids),
            tasks = toml_list(&data.task_ids),
        ),
    )
    .unwrap();

    // Two runs: every operation but the revocation of tokens, then that one alone. A fuzzer
    // that reads token names from `GET /api/v1/tokens` revokes its own token (after which every
    // answer is a 401), so it does that last.
    let fuzz = |select: &[&str]| {
        let output = Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("{base}/api/v1/openapi.json"))
            .args(["--url", &base])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", &examples])
            .args(["--seed", &seed])
            .args(select)
            .args(["--header", &format!("Authorization: Bearer {token}")])
            // One worker: hypothesis's lambda descriptions break under threads on Python 3.11
            // ("AST constructor recursion depth mismatch").
            .args(["--workers", "1", "--request-timeout", "30", "--no-color", "--generation-database", "none"])
            .args(["--suppress-health-check", "all"])
            .current_dir(dir.path())
            .output()
            .expect("run schemathesis");
        let report =
            format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status, report)
    };
    let runs = [
        // Streams that end only with a run or a hang-up (see the module's doc) stay out.
        fuzz(&[
            "--exclude-operation-id",
            "waitRun",
            "--exclude-operation-id",
            "streamEvents",
            "--exclude-operation-id",
            "revokeToken",
        ]),
        fuzz(&["--include-operation-id", "revokeToken"]),
    ];
    let _ = stop.send(());
    runtime.shutdown_timeout(Duration::from_secs(10));
    for (status, report) in runs {
        println!("{report}");
        assert!(status.success(), "schemathesis found problems ({status}):\n{report}");
        assert!(report.contains("passed"), "schemathesis ran no test:\n{report}");
    }
}
