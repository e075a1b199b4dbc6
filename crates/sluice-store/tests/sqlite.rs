//! The SQLite store against real database files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use sluice_store::{
    Created, NewEvent, NewRun, RunFilter, RunKind, RunState, SqliteStore, Store, StoreError, TaskState, TryOutcome,
};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("sluice.db")
}

fn url(dir: &TempDir) -> String {
    format!("sqlite:{}", db_path(dir).display())
}

async fn open(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&url(dir)).await.unwrap()
}

/// A raw connection, to look at what the store wrote.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}

fn new_run(dag_id: &str, run_id: &str, logical_date: &str) -> NewRun {
    let start = t(logical_date);
    NewRun {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        kind: RunKind::Scheduled,
        logical_date: start,
        data_interval_start: start,
        data_interval_end: start + Duration::days(1),
        conf: None,
        deadline: None,
        tasks: vec![("extract".into(), 3), ("load".into(), 1)],
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Creates a run and returns its id, asserting it is new.
async fn create(store: &SqliteStore, new: &NewRun) -> i64 {
    match store.create_run(new).await.unwrap() {
        Created::New(run) => run.id,
        Created::Existing(run) => panic!("run {} already existed", run.run_id),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn open_creates_and_migrates_the_file_in_wal_mode() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    assert!(!path.exists());
    let store = open(&dir).await;
    assert!(path.exists());
    assert!(store.dags().await.unwrap().is_empty());

    let mut conn = raw(&path).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(journal, "wal");
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut conn).await.unwrap();
    assert_eq!(applied, vec![20261123000000, 20261201000000]);
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tables, ["dags", "events", "outputs", "runs", "task_instances", "tries"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_url_form_opens_the_same_file() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let plain = path.display().to_string();
    let a = SqliteStore::open(&plain).await.unwrap();
    a.set_paused("from_bare_path", true).await.unwrap();
    let b = SqliteStore::open(&format!("sqlite://{plain}")).await.unwrap();
    b.set_paused("from_sqlite_slashes", false).await.unwrap();
    let c = SqliteStore::open(&format!("sqlite:{plain}")).await.unwrap();
    let ids: Vec<String> = c.dags().await.unwrap().into_iter().map(|d| d.dag_id).collect();
    assert_eq!(ids, ["from_bare_path", "from_sqlite_slashes"]);

    let memory = SqliteStore::open("sqlite::memory:").await.unwrap();
    let id = create(&memory, &new_run("d", "r1", "2026-03-01T00:00:00Z")).await;
    assert_eq!(memory.task_instances(id).await.unwrap().len(), 2);
    // A second in-memory handle is a different database.
    let other = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert!(other.run(id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_urls_are_refused() {
    for url in ["postgres://user@localhost/sluice", "mysql://localhost/db", "postgresql:sluice", "", "sqlite:"] {
        match SqliteStore::open(url).await {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            other => panic!("{url}: expected UnsupportedUrl, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reopening_keeps_the_data() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.sync_dag("daily", "dags/daily.toml", Some("v1"), None).await.unwrap();
    let mut new = new_run("daily", "scheduled__2026-03-01", "2026-03-01T05:00:00Z");
    new.conf = Some(map(json!({"region": "eu", "n": 3})));
    new.deadline = Some(t("2026-03-02T07:00:00Z"));
    let id = create(&store, &new).await;
    store.close().await.unwrap();

    let store = open(&dir).await;
    let dags = store.dags().await.unwrap();
    assert_eq!(dags.len(), 1);
    assert_eq!(dags[0].file.as_deref(), Some("dags/daily.toml"));
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!(run.run_id, "scheduled__2026-03-01");
    assert_eq!(run.kind, RunKind::Scheduled);
    assert_eq!(run.state, RunState::Queued);
    assert_eq!(run.logical_date, t("2026-03-01T05:00:00Z"));
    assert_eq!(run.data_interval_end, t("2026-03-02T05:00:00Z"));
    assert_eq!(run.conf, new.conf);
    assert_eq!(run.deadline, new.deadline);
    assert!(!run.deadline_missed);
    assert_eq!(run.started_at, None);
    let tis = store.task_instances(id).await.unwrap();
    let summary: Vec<_> = tis.iter().map(|ti| (ti.task_id.as_str(), ti.state, ti.try_number, ti.max_tries)).collect();
    assert_eq!(summary, [("extract", TaskState::None, 0, 3), ("load", TaskState::None, 0, 1)]);
    // A second open of an up-to-date file applies nothing and still works.
    let again = open(&dir).await;
    assert_eq!(again.run_by_run_id("daily", "scheduled__2026-03-01").await.unwrap().unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn times_are_stored_as_fixed_width_utc_text() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut new = new_run("d", "r", "2026-03-01T05:00:00Z");
    // Given in another zone and with nanoseconds: stored in UTC, to the microsecond.
    new.logical_date = "2026-03-01T06:00:00.123456789+01:00".parse::<DateTime<chrono::FixedOffset>>().unwrap().into();
    let id = create(&store, &new).await;
    let mut conn = raw(&db_path(&dir)).await;
    let (date, state): (String, String) = sqlx::query_as("SELECT logical_date, state FROM runs WHERE id = ?")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(date, "2026-03-01T05:00:00.123456Z");
    assert_eq!(state, "queued");
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!(run.logical_date, t("2026-03-01T05:00:00.123456Z"));
    // Lookup by the same instant finds it (both sides truncated alike).
    assert_eq!(store.run_by_logical_date("d", new.logical_date).await.unwrap().unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_states_are_reported_as_corrupt() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let mut conn = raw(&db_path(&dir)).await;
    sqlx::query("UPDATE task_instances SET state = 'exploded' WHERE run = ? AND task_id = 'load'")
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET state = 'sideways' WHERE id = ?").bind(id).execute(&mut conn).await.unwrap();
    match store.task_instances(id).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("exploded"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match store.run(id).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("sideways"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_run_returns_the_existing_run_for_the_same_logical_date_or_run_id() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let first = create(&store, &new_run("d", "scheduled__1", "2026-03-01T00:00:00Z")).await;

    // Same logical date, another run id.
    let mut same_date = new_run("d", "manual__x", "2026-03-01T00:00:00Z");
    same_date.kind = RunKind::Manual;
    same_date.tasks = vec![("other".into(), 1)];
    match store.create_run(&same_date).await.unwrap() {
        Created::Existing(run) => {
            assert_eq!(run.id, first);
            assert_eq!(run.run_id, "scheduled__1");
            assert_eq!(run.kind, RunKind::Scheduled);
        }
        Created::New(_) => panic!("created a second run for the same logical date"),
    }
    // Same run id, another logical date.
    let same_id = new_run("d", "scheduled__1", "2026-03-05T00:00:00Z");
    match store.create_run(&same_id).await.unwrap() {
        Created::Existing(run) => assert_eq!(run.id, first),
        Created::New(_) => panic!("created a second run with the same run id"),
    }
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 1);
    let tasks: Vec<String> = store.task_instances(first).await.unwrap().into_iter().map(|ti| ti.task_id).collect();
    assert_eq!(tasks, ["extract", "load"], "the loser's tasks were not added");

    // Another DAG may use the same date and run id.
    let other = store.create_run(&new_run("e", "scheduled__1", "2026-03-01T00:00:00Z")).await.unwrap();
    assert!(matches!(other, Created::New(ref r) if r.id != first && r.dag_id == "e"));
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_processes_create_a_run_exactly_once() {
    let dir = TempDir::new().unwrap();
    let url = url(&dir);
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut handles = Vec::new();
    for i in 0..8 {
        let url = url.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            // Each its own handle (own connections), opening the fresh file at the same time.
            let store = SqliteStore::open(&url).await.unwrap();
            barrier.wait().await;
            let created = store.create_run(&new_run("d", &format!("run_{i}"), "2026-03-01T00:00:00Z")).await.unwrap();
            (store, created)
        }));
    }
    // A task that failed to open would never reach the barrier: bound the wait so that shows
    // as a failure, not a hang.
    let mut results = Vec::new();
    for h in handles {
        results
            .push(tokio::time::timeout(std::time::Duration::from_secs(60), h).await.expect("no open hangs").unwrap());
    }
    let new: Vec<_> = results.iter().filter(|(_, c)| matches!(c, Created::New(_))).collect();
    assert_eq!(new.len(), 1, "exactly one creator");
    let id = new[0].1.run().id;
    assert!(results.iter().all(|(_, c)| c.run().id == id && c.run().run_id == new[0].1.run().run_id));

    let store = &results[0].0;
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 1);
    assert_eq!(store.task_instances(id).await.unwrap().len(), 2);
    let mut conn = raw(&db_path(&dir)).await;
    let (runs, tis): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM task_instances)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((runs, tis), (1, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_try_lifecycle() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let t0 = t("2026-03-02T00:00:00Z");

    // First try of `extract` fails and is retried.
    assert_eq!(store.start_try(id, "extract", t0).await.unwrap(), 1);
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!((ti.state, ti.try_number, ti.started_at), (TaskState::Running, 1, Some(t0)));
    store.record_external_id(id, "extract", 1, "pid", &json!(4242)).await.unwrap();
    let retry_at = t0 + Duration::minutes(5);
    let failed = TryOutcome::Failed { error: "exit status 1".into(), retry_at: Some(retry_at) };
    store.finish_try(id, "extract", 1, &failed, t0 + Duration::minutes(1)).await.unwrap();
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!(ti.state, TaskState::UpForRetry);
    assert_eq!(ti.next_try_at, Some(retry_at));
    assert_eq!(ti.ended_at, None);
    let events = store.events(Some("d"), Some("r"), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "retry");
    assert_eq!(events[0].task_id.as_deref(), Some("extract"));
    assert_eq!(events[0].at, t0 + Duration::minutes(1));
    assert!(events[0].detail.contains("exit status 1"), "{}", events[0].detail);
    assert!(events[0].detail.contains("2026-03-02T00:05:00"), "{}", events[0].detail);

    // Second try: external ids merge, success stores outputs.
    let t1 = t0 + Duration::minutes(6);
    assert_eq!(store.start_try(id, "extract", t1).await.unwrap(), 2);
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!((ti.state, ti.try_number, ti.next_try_at), (TaskState::Running, 2, None));
    store.record_external_id(id, "extract", 2, "cluster_id", &json!("j-1")).await.unwrap();
    store.record_external_id(id, "extract", 2, "step_ids", &json!(["s-1"])).await.unwrap();
    store.record_external_id(id, "extract", 2, "step_ids", &json!(["s-1", "s-2"])).await.unwrap();
    let outputs = map(json!({"rows": 10, "path": "s3://b/k", "meta": {"a": [1, 2]}}));
    let t2 = t1 + Duration::minutes(2);
    store.finish_try(id, "extract", 2, &TryOutcome::Success { outputs: outputs.clone() }, t2).await.unwrap();
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!((ti.state, ti.ended_at), (TaskState::Success, Some(t2)));
    assert_eq!(store.outputs(id).await.unwrap().get("extract"), Some(&outputs));

    let tries = store.tries(id, Some("extract")).await.unwrap();
    assert_eq!(tries.len(), 2);
    assert_eq!((tries[0].try_number, tries[0].state), (1, TaskState::Failed));
    assert_eq!(tries[0].error.as_deref(), Some("exit status 1"));
    assert_eq!(tries[0].external_ids, map(json!({"pid": 4242})));
    assert_eq!((tries[1].try_number, tries[1].state), (2, TaskState::Success));
    assert_eq!(tries[1].started_at, t1);
    assert_eq!(tries[1].ended_at, Some(t2));
    assert_eq!(tries[1].error, None);
    assert_eq!(tries[1].external_ids, map(json!({"cluster_id": "j-1", "step_ids": ["s-1", "s-2"]})));

    // `load` fails for good; no retry event.
    store.start_try(id, "load", t2).await.unwrap();
    let no_retry = TryOutcome::Failed { error: "boom".into(), retry_at: None };
    store.finish_try(id, "load", 1, &no_retry, t2 + Duration::seconds(1)).await.unwrap();
    let load = &store.task_instances(id).await.unwrap()[1];
    assert_eq!((load.state, load.ended_at), (TaskState::Failed, Some(t2 + Duration::seconds(1))));
    assert_eq!(store.tries(id, Some("load")).await.unwrap()[0].state, TaskState::Failed);
    assert_eq!(store.events(None, None, 10).await.unwrap().len(), 1);
    // Both tasks' tries, oldest first.
    let all: Vec<_> = store.tries(id, None).await.unwrap().into_iter().map(|t| (t.task_id, t.try_number)).collect();
    assert_eq!(all, [("extract".to_string(), 1), ("extract".to_string(), 2), ("load".to_string(), 1)]);
    // Nothing running any more.
    assert!(store.running_tries().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skipped_try_records_its_reason() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    store.start_try(id, "extract", at).await.unwrap();
    let skipped = TryOutcome::Skipped { reason: "sensor timed out (soft_fail)".into() };
    store.finish_try(id, "extract", 1, &skipped, at + Duration::hours(1)).await.unwrap();
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!((ti.state, ti.ended_at), (TaskState::Skipped, Some(at + Duration::hours(1))));
    let tr = &store.tries(id, Some("extract")).await.unwrap()[0];
    assert_eq!((tr.state, tr.error.as_deref()), (TaskState::Skipped, Some("sensor timed out (soft_fail)")));
    assert!(store.outputs(id).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_runs_tasks_and_tries_are_not_found() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    assert!(matches!(store.start_try(id, "nope", at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.start_try(id + 1, "extract", at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.record_external_id(id, "extract", 1, "k", &json!(1)).await, Err(StoreError::NotFound(_))));
    let ok = TryOutcome::Success { outputs: Map::new() };
    assert!(matches!(store.finish_try(id, "extract", 1, &ok, at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_run_state(id + 1, RunState::Running, at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.mark_deadline_missed(id + 1, at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.clear_tasks(id + 1, &[], at).await, Err(StoreError::NotFound(_))));
    // One unknown task rolls the whole call back.
    let states = [("extract".to_string(), TaskState::Scheduled), ("nope".to_string(), TaskState::Scheduled)];
    assert!(matches!(store.set_task_states(id, &states, at).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.task_instances(id).await.unwrap()[0].state, TaskState::None);
    assert!(store.run(id + 1).await.unwrap().is_none());
    assert!(store.run_by_run_id("d", "other").await.unwrap().is_none());
    // The failed transactions left the handle usable.
    assert_eq!(store.start_try(id, "extract", at).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_and_run_states_keep_their_times() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let t1 = t("2026-03-02T01:00:00Z");
    let t2 = t("2026-03-02T02:00:00Z");
    let t3 = t("2026-03-02T03:00:00Z");

    store.set_run_state(id, RunState::Running, t1).await.unwrap();
    store.set_run_state(id, RunState::Running, t2).await.unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.state, run.started_at, run.ended_at), (RunState::Running, Some(t1), None));
    store.set_run_state(id, RunState::Failed, t2).await.unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.state, run.ended_at), (RunState::Failed, Some(t2)));
    store.set_run_state(id, RunState::Running, t3).await.unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    // Running again (after a clear): the attempt starts now, the first start is kept.
    assert_eq!((run.state, run.started_at, run.ended_at), (RunState::Running, Some(t3), None));
    assert_eq!(run.first_started_at, Some(t1));
    store.set_run_state(id, RunState::Success, t3).await.unwrap();
    store.set_run_state(id, RunState::Queued, t3).await.unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.state, run.ended_at), (RunState::Queued, None));

    let states = [("extract".to_string(), TaskState::UpstreamFailed), ("load".to_string(), TaskState::Skipped)];
    store.set_task_states(id, &states, t1).await.unwrap();
    let tis = store.task_instances(id).await.unwrap();
    assert_eq!((tis[0].state, tis[0].ended_at), (TaskState::UpstreamFailed, Some(t1)));
    assert_eq!((tis[1].state, tis[1].ended_at), (TaskState::Skipped, Some(t1)));
    store.set_task_states(id, &[("extract".to_string(), TaskState::Queued)], t2).await.unwrap();
    let tis = store.task_instances(id).await.unwrap();
    assert_eq!((tis[0].state, tis[0].ended_at), (TaskState::Queued, None));
    assert_eq!(tis[1].state, TaskState::Skipped);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_filter_by_dag_and_state_newest_first() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let a1 = create(&store, &new_run("a", "a1", "2026-03-01T00:00:00Z")).await;
    let a3 = create(&store, &new_run("a", "a3", "2026-03-03T00:00:00Z")).await;
    let a2 = create(&store, &new_run("a", "a2", "2026-03-02T00:00:00Z")).await;
    let b1 = create(&store, &new_run("b", "b1", "2026-03-04T00:00:00Z")).await;
    let at = t("2026-03-05T00:00:00Z");
    store.set_run_state(a2, RunState::Running, at).await.unwrap();
    store.set_run_state(b1, RunState::Success, at).await.unwrap();

    let ids = |runs: Vec<sluice_store::Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.runs(&RunFilter::default()).await.unwrap()), [b1, a3, a2, a1]);
    let only_a = RunFilter { dag_id: Some("a".into()), ..Default::default() };
    assert_eq!(ids(store.runs(&only_a).await.unwrap()), [a3, a2, a1]);
    let active = RunFilter { states: vec![RunState::Queued, RunState::Running], ..Default::default() };
    assert_eq!(ids(store.runs(&active).await.unwrap()), [a3, a2, a1]);
    let a_running = RunFilter { dag_id: Some("a".into()), states: vec![RunState::Running], limit: None };
    assert_eq!(ids(store.runs(&a_running).await.unwrap()), [a2]);
    let latest = RunFilter { limit: Some(2), ..Default::default() };
    assert_eq!(ids(store.runs(&latest).await.unwrap()), [b1, a3]);
    assert_eq!(store.run_by_logical_date("a", t("2026-03-03T00:00:00Z")).await.unwrap().unwrap().id, a3);
    assert!(store.run_by_logical_date("b", t("2026-03-03T00:00:00Z")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_tasks_resets_them_deletes_outputs_and_requeues_the_run() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    for task in ["extract", "load"] {
        store.start_try(id, task, at).await.unwrap();
        let outputs = map(json!({ "who": task }));
        store.finish_try(id, task, 1, &TryOutcome::Success { outputs }, at).await.unwrap();
    }
    store.set_run_state(id, RunState::Success, at).await.unwrap();

    store.clear_tasks(id, &[("load".to_string(), 2)], at + Duration::hours(1)).await.unwrap();
    let tis = store.task_instances(id).await.unwrap();
    let load = &tis[1];
    assert_eq!(load.state, TaskState::None);
    assert_eq!((load.try_number, load.max_tries), (1, 3), "two more tries from now");
    assert_eq!((load.started_at, load.ended_at, load.next_try_at), (None, None, None));
    assert_eq!(tis[0].state, TaskState::Success, "other tasks untouched");
    let outputs = store.outputs(id).await.unwrap();
    assert!(outputs.contains_key("extract"));
    assert!(!outputs.contains_key("load"));
    assert_eq!(store.tries(id, Some("load")).await.unwrap().len(), 1, "tries are kept");
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!((run.state, run.ended_at, run.started_at), (RunState::Queued, None, Some(at)));

    // The next try continues the numbering.
    assert_eq!(store.start_try(id, "load", at + Duration::hours(2)).await.unwrap(), 2);

    // Clearing a task of an unfinished run leaves the run's state alone.
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    store.clear_tasks(id, &[("extract".to_string(), 1)], at).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().state, RunState::Running);
    assert!(store.outputs(id).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_try_finishing_after_its_task_was_cleared_changes_only_the_try() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    store.start_try(id, "extract", at).await.unwrap();
    store.clear_tasks(id, &[("extract".to_string(), 1)], at).await.unwrap();
    let outputs = map(json!({"stale": true}));
    store.finish_try(id, "extract", 1, &TryOutcome::Success { outputs }, at).await.unwrap();
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!(ti.state, TaskState::None, "the clear wins");
    assert!(store.outputs(id).await.unwrap().is_empty());
    assert_eq!(store.tries(id, Some("extract")).await.unwrap()[0].state, TaskState::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_survives_sync_dag() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.set_paused("fresh", true).await.unwrap();
    store.sync_dag("fresh", "dags/fresh.toml", Some("fresh v1"), None).await.unwrap();
    store.sync_dag("other", "dags/other.toml", Some("other v1"), None).await.unwrap();
    store.set_paused("other", true).await.unwrap();
    store.sync_dag("other", "dags/other.toml", None, Some("line 3: unknown key `shedule`")).await.unwrap();
    // The last good source survives a failed load.
    let (file, source) = store.dag_source("other").await.unwrap().unwrap();
    assert_eq!((file.as_str(), source.as_str()), ("dags/other.toml", "other v1"));
    assert_eq!(store.dag_source("never_loaded").await.unwrap(), None);

    let dags = store.dags().await.unwrap();
    assert_eq!(dags.len(), 2);
    let (fresh, other) = (&dags[0], &dags[1]);
    assert_eq!((fresh.dag_id.as_str(), fresh.paused, fresh.file.as_deref()), ("fresh", true, Some("dags/fresh.toml")));
    assert_eq!(fresh.parse_error, None);
    assert!(other.paused);
    assert_eq!(other.parse_error.as_deref(), Some("line 3: unknown key `shedule`"));

    store.set_paused("other", false).await.unwrap();
    store.sync_dag("other", "dags/other.toml", Some("other v2"), None).await.unwrap();
    assert_eq!(store.dag_source("other").await.unwrap().unwrap().1, "other v2");
    let other = &store.dags().await.unwrap()[1];
    assert!(!other.paused);
    assert_eq!(other.parse_error, None, "a good load clears the error");
}

/// `dagctl runs` showed 56 s for a 0.01 s re-run after `clear`: the duration counted from the
/// run's first start.
#[tokio::test(flavor = "multi_thread")]
async fn a_cleared_run_that_runs_again_counts_its_duration_from_its_new_start() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let (t1, t2) = (t("2026-03-02T01:00:00Z"), t("2026-03-02T01:00:56Z"));
    store.set_run_state(id, RunState::Running, t1).await.unwrap();
    store.set_run_state(id, RunState::Success, t1 + Duration::seconds(5)).await.unwrap();
    store.clear_tasks(id, &[("load".into(), 1)], t2).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().state, RunState::Queued);
    store.set_run_state(id, RunState::Running, t2).await.unwrap();
    store.set_run_state(id, RunState::Success, t2 + Duration::milliseconds(10)).await.unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    assert_eq!(run.started_at, Some(t2));
    assert_eq!(run.ended_at.unwrap() - run.started_at.unwrap(), Duration::milliseconds(10));
    assert_eq!(run.first_started_at, Some(t1));
}

/// `paused_at_creation` pauses a DAG seen for the first time, never one the store knows; a
/// schedule error is kept while the file fails and cleared when a version loads.
#[tokio::test(flavor = "multi_thread")]
async fn sync_dags_pauses_only_new_dags_and_clears_schedule_errors_on_load() {
    use sluice_store::DagSync;
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.sync_dag("known", "dags/known.toml", Some("v1"), None).await.unwrap();
    let sync = |id: &str, source: Option<&str>, error: Option<&str>| DagSync {
        dag_id: id.into(),
        file: format!("dags/{id}.toml"),
        source: source.map(str::to_string),
        parse_error: error.map(str::to_string),
        paused_at_creation: true,
    };
    store.sync_dags(&[sync("known", Some("v2"), None), sync("aws", Some("a1"), None)]).await.unwrap();
    let dags = store.dags().await.unwrap();
    assert_eq!(
        dags.iter().map(|d| (d.dag_id.as_str(), d.paused)).collect::<Vec<_>>(),
        [("aws", true), ("known", false)]
    );

    store.set_schedule_error("known", Some("deadline cannot be computed")).await.unwrap();
    store.sync_dags(&[sync("known", None, Some("line 1: bad"))]).await.unwrap();
    let known = store.dags().await.unwrap().into_iter().find(|d| d.dag_id == "known").unwrap();
    assert_eq!(known.schedule_error.as_deref(), Some("deadline cannot be computed"));
    assert_eq!(known.parse_error.as_deref(), Some("line 1: bad"));
    store.sync_dags(&[sync("known", Some("v3"), None)]).await.unwrap();
    let known = store.dags().await.unwrap().into_iter().find(|d| d.dag_id == "known").unwrap();
    assert_eq!((known.schedule_error, known.parse_error), (None, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_is_marked_missed_once() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.deadline = Some(t("2026-03-02T06:00:00Z"));
    let id = create(&store, &new).await;
    let at = t("2026-03-02T06:00:01Z");
    assert!(store.mark_deadline_missed(id, at).await.unwrap());
    assert!(!store.mark_deadline_missed(id, at + Duration::minutes(1)).await.unwrap());
    assert!(store.run(id).await.unwrap().unwrap().deadline_missed);
    let events = store.events(Some("d"), None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].run_id.as_deref(), events[0].at),
        ("deadline_missed", Some("r"), at)
    );
    assert_eq!(events[0].task_id, None);
    // The flag survives a reopen, from another handle.
    let other = open(&dir).await;
    assert!(!other.mark_deadline_missed(id, at).await.unwrap());
    assert_eq!(other.events(None, None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn running_tries_finds_what_a_restarted_daemon_must_recover() {
    let dir = TempDir::new().unwrap();
    let at = t("2026-03-02T00:00:00Z");
    let (id, other) = {
        let store = open(&dir).await;
        let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
        let other = create(&store, &new_run("d", "r2", "2026-03-02T00:00:00Z")).await;
        store.start_try(id, "extract", at).await.unwrap();
        store.record_external_id(id, "extract", 1, "cluster_id", &json!("j-9")).await.unwrap();
        store.start_try(other, "load", at).await.unwrap();
        store.finish_try(other, "load", 1, &TryOutcome::Success { outputs: Map::new() }, at).await.unwrap();
        store.close().await.unwrap();
        (id, other)
    };
    // "Restart": a new handle on the same file.
    let store = open(&dir).await;
    let running = store.running_tries().await.unwrap();
    assert_eq!(running.len(), 1);
    let (run, tr) = &running[0];
    assert_eq!((run.id, run.run_id.as_str(), run.dag_id.as_str()), (id, "r", "d"));
    assert_ne!(run.id, other);
    assert_eq!((tr.task_id.as_str(), tr.try_number, tr.state), ("extract", 1, TaskState::Running));
    assert_eq!(tr.external_ids, map(json!({"cluster_id": "j-9"})));
    assert_eq!((tr.started_at, tr.ended_at), (at, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_newest_first_filtered_and_limited() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let ev = |dag: &str, run: Option<&str>, kind: &str| NewEvent {
        dag_id: dag.into(),
        run_id: run.map(Into::into),
        task_id: None,
        kind: kind.into(),
        detail: format!("{kind} detail"),
    };
    store.add_event(&ev("a", Some("r1"), "one")).await.unwrap();
    store.add_event(&ev("a", Some("r2"), "two")).await.unwrap();
    store.add_event(&ev("b", Some("r1"), "three")).await.unwrap();
    store.add_event(&ev("a", None, "four")).await.unwrap();

    let kinds = |events: Vec<sluice_store::Event>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(kinds(store.events(None, None, 10).await.unwrap()), ["four", "three", "two", "one"]);
    assert_eq!(kinds(store.events(None, None, 2).await.unwrap()), ["four", "three"]);
    assert_eq!(kinds(store.events(Some("a"), None, 10).await.unwrap()), ["four", "two", "one"]);
    assert_eq!(kinds(store.events(Some("a"), Some("r1"), 10).await.unwrap()), ["one"]);
    assert_eq!(kinds(store.events(None, Some("r1"), 10).await.unwrap()), ["three", "one"]);
    assert!(store.events(Some("c"), None, 10).await.unwrap().is_empty());
    let first = store.events(None, None, 1).await.unwrap().remove(0);
    assert_eq!((first.dag_id.as_str(), first.run_id, first.detail.as_str()), ("a", None, "four detail"));
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_elsewhere_sees_other_handles_writes_only() {
    let dir = TempDir::new().unwrap();
    let daemon = open(&dir).await;
    let cli = open(&dir).await;
    assert!(!daemon.changed_elsewhere().await.unwrap(), "nothing happened since open");

    cli.set_paused("d", true).await.unwrap();
    assert!(daemon.changed_elsewhere().await.unwrap());
    assert!(!daemon.changed_elsewhere().await.unwrap(), "reported once");

    // Reads, and the handle's own writes, are not changes elsewhere.
    cli.dags().await.unwrap();
    daemon.dags().await.unwrap();
    create(&daemon, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    daemon.sync_dag("d", "d.toml", Some("src"), None).await.unwrap();
    assert!(!daemon.changed_elsewhere().await.unwrap());
    // ...but they are for the other handle.
    assert!(cli.changed_elsewhere().await.unwrap());
    assert!(!cli.changed_elsewhere().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_two_handles_do_not_hit_database_is_locked() {
    let dir = TempDir::new().unwrap();
    let handles = [Arc::new(open(&dir).await), Arc::new(open(&dir).await)];
    let mut tasks = tokio::task::JoinSet::new();
    for (h, store) in handles.iter().enumerate() {
        for i in 0..200 {
            let store = store.clone();
            tasks.spawn(async move {
                // Alternate multi-statement transactions and single-statement writes.
                if i % 2 == 0 {
                    let date = t("2026-01-01T00:00:00Z") + Duration::hours(i64::from(i) * 2 + h as i64);
                    let id = create(&store, &new_run("d", &format!("r{h}_{i}"), &date.to_rfc3339())).await;
                    store.start_try(id, "extract", date).await.map(|_| ())
                } else {
                    let event = NewEvent {
                        dag_id: "d".into(),
                        run_id: None,
                        task_id: None,
                        kind: format!("k{h}"),
                        detail: i.to_string(),
                    };
                    store.add_event(&event).await
                }
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let store = &handles[0];
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 200);
    assert_eq!(store.running_tries().await.unwrap().len(), 200);
    assert_eq!(store.events(None, None, 1000).await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_starts_and_finishes_do_what_the_single_calls_do() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.tasks = (0..5).map(|i| (format!("t{i}"), 2)).collect();
    let a = create(&store, &new).await;
    let b = create(&store, &new_run("d", "r2", "2026-03-02T00:00:00Z")).await;
    let t0 = t("2026-03-03T00:00:00Z");

    // Scheduled in one call, per state.
    let scheduled: Vec<(String, TaskState)> = (0..5).map(|i| (format!("t{i}"), TaskState::Scheduled)).collect();
    store.set_task_states(a, &scheduled, t0).await.unwrap();
    assert!(store.task_instances(a).await.unwrap().iter().all(|ti| ti.state == TaskState::Scheduled));
    let queued = [("t0".to_string(), TaskState::Queued), ("nope".to_string(), TaskState::Queued)];
    let missing = store.set_task_states(a, &queued, t0).await;
    assert!(matches!(missing, Err(StoreError::NotFound(m)) if m.contains("nope")));
    // The failed call changed nothing.
    assert_eq!(store.task_instances(a).await.unwrap()[0].state, TaskState::Scheduled);

    // Started across two runs, in the order asked.
    let keys: Vec<(i64, String)> =
        vec![(a, "t3".into()), (b, "extract".into()), (a, "t0".into()), (a, "t1".into()), (a, "t2".into())];
    assert_eq!(store.start_tries(&keys, t0).await.unwrap(), vec![1, 1, 1, 1, 1]);
    assert_eq!(store.running_tries().await.unwrap().len(), 5);
    assert!(matches!(store.start_tries(&[(a, "nope".into())], t0).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.start_tries(&[(a, "t3".into()), (a, "t3".into())], t0).await.unwrap(), vec![2, 3]);

    // t2 is cleared while its try runs: its try ends, the task keeps `none`.
    store.clear_tasks(a, &[("t2".into(), 2)], t0).await.unwrap();
    let t1 = t0 + Duration::seconds(3);
    let ok = |o: Value| TryOutcome::Success { outputs: map(o) };
    let finish = |run: i64, task: &str, n: u32, outcome: TryOutcome| sluice_store::FinishTry {
        run,
        task_id: task.into(),
        try_number: n,
        outcome,
        at: t1,
    };
    let batch = vec![
        finish(a, "t0", 1, ok(json!({"output": "x"}))),
        finish(b, "extract", 1, TryOutcome::Failed { error: "boom".into(), retry_at: Some(t1 + Duration::minutes(1)) }),
        finish(a, "t1", 1, ok(json!({}))),
        finish(a, "t2", 1, ok(json!({"output": "stale"}))),
        finish(a, "t3", 3, ok(json!({"output": "y", "n": 2}))),
    ];
    let states = store.finish_tries(&batch).await.unwrap();
    assert_eq!(
        states,
        vec![TaskState::Success, TaskState::UpForRetry, TaskState::Success, TaskState::None, TaskState::Success]
    );
    let tis = store.task_instances(a).await.unwrap();
    let state_of = |id: &str| tis.iter().find(|ti| ti.task_id == id).map(|ti| (ti.state, ti.ended_at)).unwrap();
    assert_eq!(state_of("t0"), (TaskState::Success, Some(t1)));
    assert_eq!(state_of("t2"), (TaskState::None, None));
    let outputs = store.outputs(a).await.unwrap();
    assert_eq!(outputs.get("t0"), Some(&map(json!({"output": "x"}))));
    assert_eq!(outputs.get("t3"), Some(&map(json!({"output": "y", "n": 2}))));
    assert!(!outputs.contains_key("t2"), "a stale try leaves no outputs");
    let tries = store.tries(a, Some("t2")).await.unwrap();
    assert_eq!((tries[0].state, tries[0].ended_at), (TaskState::Success, Some(t1)));
    assert_eq!(store.events(Some("d"), Some("r2"), 10).await.unwrap()[0].kind, "retry");
    // Tries 1 and 2 of t3 are still running (only 3 was finished).
    assert_eq!(store.running_tries().await.unwrap().len(), 2);
    let unknown = store.finish_tries(&[finish(a, "t4", 1, ok(json!({})))]).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_larger_than_one_statement_are_complete() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.tasks = (0..300).map(|i| (format!("t{i}"), 1)).collect();
    let id = create(&store, &new).await;
    let t0 = t("2026-03-03T00:00:00Z");
    let all: Vec<(i64, String)> = new.tasks.iter().map(|(t, _)| (id, t.clone())).collect();
    let scheduled: Vec<(String, TaskState)> =
        new.tasks.iter().map(|(t, _)| (t.clone(), TaskState::Scheduled)).collect();
    store.set_task_states(id, &scheduled, t0).await.unwrap();
    assert_eq!(store.start_tries(&all, t0).await.unwrap(), vec![1; 300]);
    assert_eq!(store.running_tries().await.unwrap().len(), 300);
    let done: Vec<sluice_store::FinishTry> = all
        .iter()
        .map(|(run, task)| sluice_store::FinishTry {
            run: *run,
            task_id: task.clone(),
            try_number: 1,
            outcome: TryOutcome::Success { outputs: map(json!({"output": task})) },
            at: t0 + Duration::seconds(1),
        })
        .collect();
    assert_eq!(store.finish_tries(&done).await.unwrap(), vec![TaskState::Success; 300]);
    assert!(store.task_instances(id).await.unwrap().iter().all(|ti| ti.state == TaskState::Success));
    assert!(store.running_tries().await.unwrap().is_empty());
    let outputs = store.outputs(id).await.unwrap();
    assert_eq!(outputs.len(), 300);
    assert_eq!(outputs["t299"]["output"], json!("t299"));
}
