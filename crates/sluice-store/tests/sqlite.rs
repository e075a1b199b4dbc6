//! The SQLite store against real database files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use sluice_store::{
    Created, EventKind, EventQuery, NewEvent, NewRun, RunFilter, RunKind, RunState, SqliteStore, Start, Store,
    StoreError, TaskState,
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
        idempotency_key: None,
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
    assert_eq!(applied, vec![20261123000000, 20261201000000, 20261215000000, 20261222000000, 20261229000000]);
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        tables,
        [
            "alert_attempts",
            "alerts",
            "api_tokens",
            "cursors",
            "dags",
            "events",
            "outputs",
            "runs",
            "task_instances",
            "tries"
        ]
    );
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
                    store.set_task_states(id, &[("extract".into(), TaskState::Scheduled)], date).await?;
                    store.start_try(id, "extract", date).await.map(|s| assert_eq!(s, Start::Started(1)))
                } else {
                    let kind = EventKind::DaemonStarted { pid: i, version: format!("k{h}") };
                    let event = NewEvent { dag_id: None, run_id: None, task_id: None, kind };
                    store.add_event(&event).await.map(|_| ())
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
    let events = store.events(&EventQuery { limit: 10_000, ..EventQuery::default() }).await.unwrap();
    assert_eq!(events.iter().filter(|e| matches!(e.kind, EventKind::DaemonStarted { .. })).count(), 200);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ids increase across both handles");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_factory_opens_sqlite_urls_and_names_what_it_cannot_open() {
    let dir = TempDir::new().unwrap();
    let store = sluice_store::open(&url(&dir)).await.unwrap();
    store.set_paused("d", true).await.unwrap();
    assert!(db_path(&dir).exists());
    assert!(sluice_store::open("sqlite::memory:").await.unwrap().dags().await.unwrap().is_empty());
    // A server URL goes to PostgreSQL when the build has it (here the server refuses the
    // unknown role), and is refused by name when it does not; the password is in no answer.
    match sluice_store::open("postgres://no_such_role:secret@127.0.0.1/test").await {
        #[cfg(not(feature = "postgres"))]
        Err(e @ StoreError::NotBuilt(_)) => {
            let text = e.to_string();
            assert!(text.contains("PostgreSQL") && !text.contains("secret"), "{text}");
        }
        #[cfg(feature = "postgres")]
        Err(e @ StoreError::Db(_)) => {
            let text = e.to_string();
            assert!(text.contains("no_such_role") && !text.contains("secret"), "{text}");
        }
        other => panic!("expected the backend's refusal, got {:?}", other.map(|_| ())),
    }
    match sluice_store::open("mysql://localhost/db").await {
        Err(e @ StoreError::UnsupportedUrl(_)) => assert!(e.to_string().contains("sqlite:PATH"), "{e}"),
        other => panic!("expected UnsupportedUrl, got {:?}", other.map(|_| ())),
    }
}

/// Events recorded before they were typed are kept, as `legacy` events with their kind and
/// text, and new events number on after them.
#[tokio::test(flavor = "multi_thread")]
async fn the_typed_events_migration_keeps_old_events() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut conn = raw(&db_path(&dir)).await;
    // The table as version 1 made it, with rows as the old scheduler wrote them.
    sqlx::raw_sql(
        "DROP TABLE events; \
         CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, dag_id TEXT NOT NULL, \
         run_id TEXT, task_id TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL); \
         INSERT INTO events (id, at, dag_id, run_id, task_id, kind, detail) VALUES \
         (7, '2026-03-01T00:00:00.000000Z', 'd', 'r', 't', 'retry', 'try 1 failed: boom'), \
         (9, '2026-03-01T00:01:00.000000Z', 'd', 'r', NULL, 'deadline_missed', 'run r missed its deadline');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let migration = include_str!("../../../migrations/sqlite/20261215000000_typed_events.sql");
    sqlx::raw_sql(migration).execute(&mut conn).await.unwrap();

    let events = store.events(&EventQuery::default()).await.unwrap();
    let seen: Vec<_> = events.iter().map(|e| (e.id, e.dag_id.as_deref(), e.task_id.as_deref(), &e.kind)).collect();
    let legacy = |kind: &str, detail: &str| EventKind::Legacy { kind: kind.into(), detail: detail.into() };
    assert_eq!(
        seen,
        [
            (7, Some("d"), Some("t"), &legacy("retry", "try 1 failed: boom")),
            (9, Some("d"), None, &legacy("deadline_missed", "run r missed its deadline")),
        ]
    );
    let kind = EventKind::DaemonStopping { running: 0 };
    let id = store.add_event(&NewEvent { dag_id: None, run_id: None, task_id: None, kind }).await.unwrap();
    assert_eq!(id, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_writable_fails_while_another_connection_holds_the_write_lock() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let other = open(&dir).await;
    store.check_writable().await.unwrap();
    assert!(!other.changed_elsewhere().await.unwrap(), "the probe changes nothing");

    let mut holder = raw(&db_path(&dir)).await;
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
    match store.check_writable().await {
        Err(StoreError::Db(e)) => assert!(e.to_string().contains("database is locked"), "{e}"),
        other => panic!("expected a locked database, got {other:?}"),
    }
    // The writer waits with its usual busy timeout again after the probe: a write started
    // while the lock is held for longer than the probe waits still commits once it is let go.
    // (If the write only starts after the commit, it commits too; the test cannot fail by
    // being slow.)
    let pausing = tokio::spawn(async move {
        store.set_paused("d", true).await.unwrap();
        store
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let store = pausing.await.unwrap();
    assert!(store.dags().await.unwrap()[0].paused);
    store.check_writable().await.unwrap();
}

/// The listings the API pages through read their indexes in the listing order (no sort of
/// the table): the statements as `SqliteStore` builds them.
#[tokio::test(flavor = "multi_thread")]
async fn the_run_listings_use_their_indexes() {
    let dir = TempDir::new().unwrap();
    let _store = open(&dir).await;
    let mut conn = raw(&db_path(&dir)).await;
    let cursor = "r.logical_date <= 'x' AND (r.logical_date < 'x' OR r.id < 5)";
    let order = "ORDER BY r.logical_date DESC, r.id DESC LIMIT 7";
    let cases = [
        (format!("SELECT r.* FROM runs r {order}"), "runs_logical_date"),
        (format!("SELECT r.* FROM runs r WHERE {cursor} {order}"), "runs_logical_date (logical_date<?)"),
        (format!("SELECT r.* FROM runs r WHERE r.dag_id = 'a' {order}"), "sqlite_autoindex_runs_1 (dag_id=?)"),
        (
            format!("SELECT r.* FROM runs r WHERE r.dag_id = 'a' AND {cursor} {order}"),
            "sqlite_autoindex_runs_1 (dag_id=? AND logical_date<?)",
        ),
    ];
    for (sql, index) in cases {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, 3))
            .collect();
        assert!(plan.iter().any(|step| step.ends_with(&format!("USING INDEX {index}"))), "{sql}: {plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_reads_use_their_indexes() {
    let dir = TempDir::new().unwrap();
    let _store = open(&dir).await;
    let mut conn = raw(&db_path(&dir)).await;
    let previous = "SELECT id, ended_at FROM runs WHERE dag_id = 'd' AND state = 'success' AND ended_at <= 'x' \
                    AND id != 3 ORDER BY ended_at DESC, id DESC LIMIT 1";
    let cases = [
        (
            "SELECT * FROM alerts WHERE state = 'pending' AND next_attempt_at <= 'x' ORDER BY next_attempt_at, id LIMIT 7"
                .to_string(),
            "alerts_due (next_attempt_at<?)",
        ),
        ("SELECT * FROM alerts WHERE dag_id = 'd' ORDER BY id DESC LIMIT 7".to_string(), "alerts_dag (dag_id=?)"),
        (previous.to_string(), "runs_dag_state (dag_id=? AND state=? AND ended_at<?)"),
    ];
    for (sql, index) in cases {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, 3))
            .collect();
        // A covering index is as good (the previous run's id and end are in it).
        let uses = |step: &String| step.contains(" USING ") && step.ends_with(&format!("INDEX {index}"));
        assert!(plan.iter().any(uses), "{sql}: {plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}
