//! event ids in commit order with several writers at once, change notices between handles,
//! migrations when several processes open a new schema at once, the one-scheduler claim.
#![cfg(feature = "postgres")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sluice_store::{EventQuery, NewRun, PgStore, RunKind, Store, StoreError};

/// A hang guard only: every wait below ends on the event it waits for.
const SAFETY_LIMIT: Duration = Duration::from_secs(60);

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn new_run(dag: &str, n: u32) -> NewRun {
    let logical = at("2026-01-01T00:00:00Z") + chrono::Duration::hours(i64::from(n));
    NewRun {
        dag_id: dag.into(),
        run_id: format!("manual__{n}"),
        kind: RunKind::Manual,
        logical_date: logical,
        data_interval_start: logical,
        data_interval_end: logical,
        conf: None,
        deadline: None,
        tasks: vec![("a".into(), 1), ("b".into(), 1)],
        idempotency_key: None,
    }
}

async fn events_after(store: &dyn Store, after: i64) -> Vec<i64> {
    let query = EventQuery { after: Some(after), limit: u32::MAX, ..EventQuery::default() };
    store.events(&query).await.unwrap().into_iter().map(|e| e.id).collect()
}

/// A reader that resumes after the last id it saw, while four handles write at once, sees
/// every event exactly once: no id becomes visible before a smaller one that commits later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_resuming_by_id_misses_no_event_of_concurrent_writers() {
    let url = sluice_store::testing::new_schema().await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = sluice_store::open(&url).await.unwrap();
        writers.push(tokio::spawn(async move {
            for n in 0..40 {
                let id =
                    sluice_store::Created::run(&store.create_run(&new_run(&format!("dag{w}"), n)).await.unwrap()).id;
                let states = [("a".to_string(), sluice_store::TaskState::Scheduled)];
                store.set_task_states(id, &states, Utc::now()).await.unwrap();
            }
        }));
    }
    let reader = sluice_store::open(&url).await.unwrap();
    let mut seen: Vec<i64> = Vec::new();
    let mut last = 0;
    let started = Instant::now();
    while !writers.iter().all(|w| w.is_finished()) {
        assert!(started.elapsed() < SAFETY_LIMIT, "the writers did not finish");
        let ids = events_after(reader.as_ref(), last).await;
        if let Some(&max) = ids.last() {
            last = max;
        }
        seen.extend(ids);
    }
    for w in writers {
        w.await.unwrap();
    }
    seen.extend(events_after(reader.as_ref(), last).await);
    let all = events_after(reader.as_ref(), 0).await;
    assert_eq!(all.len(), 4 * 40 * 2, "a run_created and a task_state_changed per run");
    let missed: BTreeSet<i64> = all.iter().copied().filter(|id| !seen.contains(id)).collect();
    assert!(missed.is_empty(), "the reader missed events {missed:?}: an id became visible before a smaller one");
    assert_eq!(seen, all, "the reader saw every event once, in id order");
}

/// Another handle's commit is noticed (the daemon's "the CLI changed something"); the first
/// call, before anything was listened to, says "changed".
#[tokio::test(flavor = "multi_thread")]
async fn changed_elsewhere_notices_another_handles_commit() {
    let url = sluice_store::testing::new_schema().await;
    let (a, b) = (sluice_store::open(&url).await.unwrap(), sluice_store::open(&url).await.unwrap());
    assert!(a.changed_elsewhere().await.unwrap(), "the first answer is: maybe");
    b.set_paused("d", true).await.unwrap();
    let started = Instant::now();
    while !a.changed_elsewhere().await.unwrap() {
        assert!(started.elapsed() < SAFETY_LIMIT, "the change was never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!a.changed_elsewhere().await.unwrap(), "a notice is reported once");
}

/// Four processes opening a new schema at once migrate it once, and all open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_handles_opening_a_new_schema_at_once_migrate_it_once() {
    let url = sluice_store::testing::new_schema().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&mut conn).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/postgres")).unwrap().count();
    assert_eq!(applied, files as i64, "each migration applied once");
}

/// One scheduler per schema: a second claim is refused naming the holder, and the claim goes
/// with the holder's handle.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_scheduler_is_refused_until_the_first_goes() {
    let url = sluice_store::testing::new_schema().await;
    let other = sluice_store::testing::new_schema().await;
    let first = PgStore::open(&url).await.unwrap();
    first.claim_scheduler().await.unwrap();
    let second = PgStore::open(&url).await.unwrap();
    match second.claim_scheduler().await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("another scheduler is already running"), "{message}");
            assert!(message.contains(&format!("pid {}", std::process::id())), "the holder is named: {message}");
        }
        other => panic!("the second claim must be refused: {other:?}"),
    }
    // Another schema of the same database is another Sluice.
    PgStore::open(&other).await.unwrap().claim_scheduler().await.unwrap();
    first.close().await.unwrap();
    let started = Instant::now();
    while second.claim_scheduler().await.is_err() {
        assert!(started.elapsed() < SAFETY_LIMIT, "the claim was not released with its handle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A search path naming no schema gets an error that says what to do, not a half-made store.
#[tokio::test]
async fn a_missing_schema_is_a_clear_error() {
    let url = sluice_store::testing::new_schema().await;
    let missing = url.replace("search_path]=", "search_path]=no_such_");
    let err = PgStore::open(&missing).await.unwrap_err().to_string();
    assert!(err.contains("no schema to create Sluice's tables in"), "{err}");
}
