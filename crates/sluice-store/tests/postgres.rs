//! event ids in commit order with several writers at once, change notices between handles,
//! migrations when several processes open a new schema at once, schedulers' leases, takeovers
//! and the fences they put up.
#![cfg(feature = "postgres")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_store::{
    Claim, EventKind, EventQuery, Finish, Limits, NewRun, PgStore, RunFilter, RunKind, RunState, Start, Store,
    StoreError, TaskLimits, TaskState, TryOutcome,
};

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

const LEASE: Duration = Duration::from_secs(30);

/// Ends scheduler `id`'s lease now, as if its last renewal were a lease ago (the database's
/// clock decides, so the test needs no waiting).
async fn expire(url: &str, id: i64) {
    set_lease(url, id, "now() - interval '1 second'").await;
}

/// Sets scheduler `id`'s lease to end at `until` (SQL).
async fn set_lease(url: &str, id: i64, until: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("UPDATE schedulers SET lease_until = {until} WHERE id = $1"))
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn scheduler(url: &str) -> (PgStore, i64) {
    let store = PgStore::open(url).await.unwrap();
    let Claim::Leased { id, lease } = store.claim_scheduler(LEASE).await.unwrap() else {
        panic!("a PostgreSQL scheduler holds a lease")
    };
    assert_eq!(lease, LEASE);
    (store, id)
}

/// A run with task `a` scheduled.
async fn scheduled_run(store: &dyn Store, n: u32) -> i64 {
    let run = sluice_store::Created::run(&store.create_run(&new_run("shared", n)).await.unwrap()).id;
    store.set_task_states(run, &[("a".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    run
}

/// A scheduler whose lease ran out loses its tries to the one that takes them over: each of
/// its later writes for them is refused and changes nothing, its renewal fails, and the new
/// owner's writes go through.
#[tokio::test(flavor = "multi_thread")]
async fn a_try_taken_over_refuses_every_later_write_of_its_old_owner() {
    let url = sluice_store::testing::new_schema().await;
    let (old, old_id) = scheduler(&url).await;
    let (new, _) = scheduler(&url).await;
    let run = scheduled_run(&old, 0).await;
    assert_eq!(old.start_try(run, "a", Utc::now()).await.unwrap(), Start::Started(1));
    assert!(new.take_over_tries().await.unwrap().is_empty(), "a live scheduler's tries are not taken");
    assert_eq!(old.schedulers().await.unwrap().len(), 2);

    expire(&url, old_id).await;
    let taken = new.take_over_tries().await.unwrap();
    assert_eq!(
        taken.iter().map(|(r, t)| (r.id, t.task_id.as_str(), t.try_number)).collect::<Vec<_>>(),
        [(run, "a", 1)]
    );
    assert!(new.take_over_tries().await.unwrap().is_empty(), "taken once");
    assert_eq!(new.schedulers().await.unwrap().iter().map(|s| s.tries_held).collect::<Vec<_>>(), [1]);

    assert!(!old.renew_lease().await.unwrap(), "a lease that ran out is not renewed");
    let refused = old.record_external_id(run, "a", 1, "cluster_id", &json!("j-OLD")).await;
    assert!(matches!(refused, Err(StoreError::TakenOver(_))), "{refused:?}");
    let success = TryOutcome::Success { outputs: Default::default() };
    assert_eq!(old.finish_try(run, "a", 1, &success, Utc::now()).await.unwrap(), Finish::TakenOver(TaskState::Running));
    let t = &new.tries(run, Some("a")).await.unwrap()[0];
    assert_eq!((t.state, t.external_ids.is_empty()), (TaskState::Running, true), "nothing of the old owner's landed");

    new.record_external_id(run, "a", 1, "cluster_id", &json!("j-NEW")).await.unwrap();
    assert_eq!(new.finish_try(run, "a", 1, &success, Utc::now()).await.unwrap(), Finish::Applied(TaskState::Success));
    let t = &new.tries(run, Some("a")).await.unwrap()[0];
    assert_eq!((t.state, t.external_ids.get("cluster_id")), (TaskState::Success, Some(&json!("j-NEW"))));
    let events = new.events(&EventQuery::default()).await.unwrap();
    let ends = events.iter().filter(|e| matches!(e.kind, EventKind::TryFinished { .. })).count();
    assert_eq!(ends, 1, "one end recorded: {events:#?}");
}

/// A clean stop ends the lease at once: another scheduler takes what it left running without
/// waiting for the lease to run out.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_hands_its_tries_over_at_once() {
    let url = sluice_store::testing::new_schema().await;
    let (old, _) = scheduler(&url).await;
    let (new, _) = scheduler(&url).await;
    let run = scheduled_run(&old, 0).await;
    old.start_try(run, "a", Utc::now()).await.unwrap();
    old.release_claim().await.unwrap();
    assert_eq!(new.take_over_tries().await.unwrap().len(), 1);
    assert_eq!(new.schedulers().await.unwrap().len(), 1, "the stopped one is not listed");
}

/// Two schedulers that decide the same retry at the same instant create one new try: the
/// second's state change finds the task changed and its start finds it running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_scheduled_by_two_schedulers_at_once_creates_one_try() {
    let url = sluice_store::testing::new_schema().await;
    let (a, _) = scheduler(&url).await;
    let (b, _) = scheduler(&url).await;
    for n in 0..10 {
        let run = scheduled_run(&a, n).await;
        a.start_try(run, "a", Utc::now()).await.unwrap();
        let failed = TryOutcome::Failed { error: "boom".into(), retry_at: Some(Utc::now()) };
        assert_eq!(
            a.finish_try(run, "a", 1, &failed, Utc::now()).await.unwrap(),
            Finish::Applied(TaskState::UpForRetry)
        );
        let (x, y) = tokio::join!(retry(&a, run), retry(&b, run));
        let started: Vec<Start> = x.into_iter().chain(y).filter(|s| matches!(s, Start::Started(_))).collect();
        assert_eq!(started, [Start::Started(2)], "one new try");
        assert_eq!(a.tries(run, Some("a")).await.unwrap().len(), 2);
        let query = EventQuery { run_id: Some(format!("manual__{n}")), limit: 100, ..EventQuery::default() };
        let scheduled = a
            .events(&query)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::TaskStateChanged { state: TaskState::Scheduled })
            .count();
        assert_eq!(scheduled, 2, "scheduled at the start and once for the retry");
    }
}

/// Pools, `max_active_tasks` and `parallelism` hold across schedulers: the tries one runs
/// count against what another may start, and a start without room writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn shared_limits_count_every_schedulers_tries() {
    let url = sluice_store::testing::new_schema().await;
    let (a, _) = scheduler(&url).await;
    let (b, _) = scheduler(&url).await;
    let (r1, r2) = (scheduled_run(&a, 0).await, scheduled_run(&a, 1).await);
    for run in [r1, r2] {
        a.set_task_states(run, &[("b".into(), TaskState::Scheduled)], Utc::now()).await.unwrap();
    }
    let in_pool = |slots| TaskLimits { max_active_tasks: 100, pool: Some(("p".into(), slots)) };
    let limits = |parallelism, tasks: Vec<TaskLimits>| Limits { parallelism, tasks };
    // A pool of two slots: one taken by `a`, one left for `b`'s two tasks.
    assert_eq!(start(&a, vec![(r1, "a")], limits(100, vec![in_pool(2)])).await, [Start::Started(1)]);
    let got = start(&b, vec![(r1, "b"), (r2, "a")], limits(100, vec![in_pool(2), in_pool(2)])).await;
    assert_eq!(got, [Start::Started(1), Start::NoRoom]);
    let tis = b.task_instances(r2).await.unwrap();
    assert_eq!(tis.iter().find(|t| t.task_id == "a").unwrap().state, TaskState::Scheduled, "no room: unchanged");
    assert!(b.tries(r2, Some("a")).await.unwrap().is_empty());
    // A slot freed by one scheduler is room for the other.
    let success = TryOutcome::Success { outputs: Default::default() };
    a.finish_try(r1, "a", 1, &success, Utc::now()).await.unwrap();
    assert_eq!(start(&b, vec![(r2, "a")], limits(100, vec![in_pool(2)])).await, [Start::Started(1)]);
    // Two tries of the DAG run now (one per scheduler): its max_active_tasks of 2 is full, and
    // so is a parallelism of 2.
    let dag_limit = |n| TaskLimits { max_active_tasks: n, pool: None };
    assert_eq!(start(&a, vec![(r2, "b")], limits(100, vec![dag_limit(2)])).await, [Start::NoRoom]);
    assert_eq!(start(&a, vec![(r2, "b")], limits(2, vec![dag_limit(100)])).await, [Start::NoRoom]);
    assert_eq!(start(&a, vec![(r2, "b")], limits(3, vec![dag_limit(3)])).await, [Start::Started(1)]);
}

/// Starts `tasks` (run, task id) within `l`.
async fn start(s: &PgStore, tasks: Vec<(i64, &str)>, l: Limits) -> Vec<Start> {
    let tasks: Vec<(i64, String)> = tasks.into_iter().map(|(r, t)| (r, t.to_string())).collect();
    s.set_states_and_start_within(&[], &tasks, &l, Utc::now()).await.unwrap()
}

/// What a scheduler does with a task whose retry is due: scheduled again and started, at once.
async fn retry(s: &PgStore, run: i64) -> Vec<Start> {
    let states = vec![(run, vec![("a".to_string(), TaskState::Scheduled)])];
    s.set_states_and_start(&states, &[(run, "a".to_string())], Utc::now()).await.unwrap()
}

/// `max_active_runs` holds across schedulers: four starting four queued runs of a DAG whose
/// limit is one start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_schedulers_starting_runs_at_once_keep_max_active_runs() {
    let url = sluice_store::testing::new_schema().await;
    let mut stores = Vec::new();
    let mut runs = Vec::new();
    for n in 0..4 {
        let (s, _) = scheduler(&url).await;
        runs.push(sluice_store::Created::run(&s.create_run(&new_run("limited", n)).await.unwrap()).id);
        stores.push(std::sync::Arc::new(s));
    }
    let mut starts = Vec::new();
    for (s, run) in stores.iter().zip(&runs) {
        let (s, run) = (s.clone(), *run);
        starts.push(tokio::spawn(async move { s.start_run(run, 1, Utc::now()).await.unwrap() }));
    }
    let mut started = 0;
    for s in starts {
        started += usize::from(s.await.unwrap());
    }
    assert_eq!(started, 1);
    let filter = RunFilter { dag_id: Some("limited".into()), states: vec![RunState::Running], ..RunFilter::default() };
    let running = stores[0].runs(&filter).await.unwrap();
    assert_eq!(running.len(), 1);
    assert!(!stores[1].start_run(running[0].id, 5, Utc::now()).await.unwrap(), "a running run is not started again");
    let events = stores[0].events(&EventQuery::default()).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::RunStarted).count(), 1, "{events:#?}");
}

/// A takeover racing the old owner's completion: exactly one of them wins, and the loser
/// writes nothing (the completion is never overwritten, nor recorded after the takeover).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_racing_a_completion_never_overwrites_it() {
    let url = sluice_store::testing::new_schema().await;
    let (old, old_id) = scheduler(&url).await;
    let (new, _) = scheduler(&url).await;
    let mut outcomes = BTreeSet::new();
    for n in 0..20 {
        let run = scheduled_run(&old, n).await;
        old.start_try(run, "a", Utc::now()).await.unwrap();
        // The old owner froze past its lease, then finishes as the new one takes over.
        expire(&url, old_id).await;
        let success = TryOutcome::Success { outputs: Default::default() };
        let (finish, taken) = tokio::join!(old.finish_try(run, "a", 1, &success, Utc::now()), new.take_over_tries());
        let (finish, taken) = (finish.unwrap(), taken.unwrap());
        let t = &new.tries(run, Some("a")).await.unwrap()[0];
        match finish {
            Finish::Applied(TaskState::Success) => {
                assert!(taken.is_empty(), "a finished try is not taken over");
                assert_eq!(t.state, TaskState::Success);
                outcomes.insert("completion first");
            }
            Finish::TakenOver(TaskState::Running) => {
                assert_eq!(taken.len(), 1);
                assert_eq!(t.state, TaskState::Running, "the new owner decides");
                outcomes.insert("takeover first");
            }
            other => panic!("{other:?}"),
        }
        // The next round: the old scheduler comes back with a fresh lease.
        set_lease(&url, old_id, "now() + interval '1 hour'").await;
    }
    assert!(!outcomes.is_empty());
}

/// A search path naming no schema gets an error that says what to do, not a half-made store.
#[tokio::test]
async fn a_missing_schema_is_a_clear_error() {
    let url = sluice_store::testing::new_schema().await;
    let missing = url.replace("search_path]=", "search_path]=no_such_");
    let err = PgStore::open(&missing).await.unwrap_err().to_string();
    assert!(err.contains("no schema to create Sluice's tables in"), "{err}");
}
