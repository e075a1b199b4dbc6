//! Typed events: written with the change they describe, numbered for resuming, published
//! after commit.

use chrono::Duration;
use serde_json::Map;
use sluice_store::{
    DagSync, EventKind, EventQuery, FinishTry, NewEvent, Order, RunKind, RunState, Start, StoreError, TaskState,
    TryOutcome, TryResult,
};
use tokio::sync::broadcast::error::TryRecvError;

use crate::{all_events, create, events_after, kinds, last_id, new_run, start, t, Db};

fn dag(id: &str, source: Option<&str>, error: Option<&str>) -> DagSync {
    DagSync {
        dag_id: id.into(),
        file: format!("dags/{id}.toml"),
        source: source.map(str::to_string),
        parse_error: error.map(str::to_string),
        paused_at_creation: false,
    }
}

pub async fn every_change_writes_its_events_with_it(db: &Db) {
    let store = db.handle().await;
    let at = t("2026-03-02T00:00:00Z");

    // DAG rows: only the syncs that change a row, only pauses that change the flag.
    store.sync_dags(&[dag("d", Some("v1"), None)]).await.unwrap();
    store.sync_dags(&[dag("d", Some("v1"), None)]).await.unwrap();
    store.sync_dags(&[dag("d", None, Some("line 1: bad"))]).await.unwrap();
    store.sync_dags(&[dag("d", None, Some("line 1: bad"))]).await.unwrap();
    store.set_paused("d", true).await.unwrap();
    store.set_paused("d", true).await.unwrap();
    let dag_events = all_events(&store).await;
    assert_eq!(
        dag_events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [
            EventKind::DagLoaded { file: "dags/d.toml".into() },
            EventKind::DagBroken { file: "dags/d.toml".into(), error: "line 1: bad".into() },
            EventKind::DagPaused { paused: true },
        ]
    );
    assert!(dag_events.iter().all(|e| e.dag_id.as_deref() == Some("d") && e.run_id.is_none()));
    let mark = last_id(&store).await;

    // A run: created once, started once, its tasks scheduled, tried, retried, finished.
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.deadline = Some(at);
    let id = create(&store, &new).await;
    store.create_run(&new).await.unwrap();
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    assert_eq!(start(&store, id, "extract", at).await, 1);
    let retry_at = at + Duration::minutes(5);
    let failed = TryOutcome::Failed { error: "exit status 1".into(), retry_at: Some(retry_at) };
    store.finish_try(id, "extract", 1, &failed, at).await.unwrap();
    assert_eq!(start(&store, id, "extract", retry_at).await, 2);
    store.finish_try(id, "extract", 2, &TryOutcome::Success { outputs: Map::new() }, retry_at).await.unwrap();
    assert!(store.mark_deadline_missed(id, retry_at).await.unwrap());
    assert!(!store.mark_deadline_missed(id, retry_at).await.unwrap());
    store.set_task_states(id, &[("load".into(), TaskState::Skipped)], retry_at).await.unwrap();
    store.set_run_state(id, RunState::Success, retry_at).await.unwrap();
    store.clear_tasks(id, &[("load".into(), 1)], retry_at).await.unwrap();
    let kind = EventKind::DaemonStopping { running: 0 };
    let daemon = store.add_event(&NewEvent { dag_id: None, run_id: None, task_id: None, kind }).await.unwrap();

    let events = events_after(&store, mark).await;
    let finished = |n, outcome, error: Option<&str>, task_state| EventKind::TryFinished {
        try_number: n,
        outcome,
        error: error.map(str::to_string),
        task_state,
    };
    let e = Some("extract");
    assert_eq!(
        kinds(&events),
        [
            (None, EventKind::RunCreated { run_kind: RunKind::Scheduled, logical_date: new.logical_date }),
            (None, EventKind::RunStarted),
            (e, EventKind::TaskStateChanged { state: TaskState::Scheduled }),
            (e, EventKind::TryStarted { try_number: 1 }),
            (e, finished(1, TryResult::Failed, Some("exit status 1"), TaskState::UpForRetry)),
            (e, EventKind::RetryScheduled { try_number: 2, at: retry_at }),
            (e, EventKind::TaskStateChanged { state: TaskState::Scheduled }),
            (e, EventKind::TryStarted { try_number: 2 }),
            (e, finished(2, TryResult::Success, None, TaskState::Success)),
            (None, EventKind::DeadlineMissed { deadline: Some(at) }),
            (Some("load"), EventKind::TaskStateChanged { state: TaskState::Skipped }),
            (None, EventKind::RunFinished { state: RunState::Success }),
            (Some("load"), EventKind::TaskStateChanged { state: TaskState::None }),
            (None, EventKind::RunQueued),
            (None, EventKind::DaemonStopping { running: 0 }),
        ]
    );
    let (daemon_event, run_events) = events.split_last().unwrap();
    assert!(run_events.iter().all(|e| e.dag_id.as_deref() == Some("d") && e.run_id.as_deref() == Some("r")));
    assert_eq!((daemon_event.id, daemon_event.dag_id.as_deref()), (daemon, None));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "strictly increasing ids");
    // Each event has the time its change was made at.
    assert_eq!(events[4].at, at);
    assert_eq!(events[8].at, retry_at);
}

pub async fn refused_and_rolled_back_changes_write_no_events(db: &Db) {
    let store = db.handle().await;
    let at = t("2026-03-02T00:00:00Z");
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let before = all_events(&store).await;

    // Rolled back: one unknown task fails the whole call.
    let states = [("extract".to_string(), TaskState::Scheduled), ("nope".to_string(), TaskState::Scheduled)];
    assert!(matches!(store.set_task_states(id, &states, at).await, Err(StoreError::NotFound(_))));
    let keys = [(id, "extract".to_string()), (id, "nope".to_string())];
    store.set_task_states(id, &states[..1], at).await.unwrap();
    let scheduled = last_id(&store).await;
    assert!(matches!(store.start_tries(&keys, at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.clear_tasks(id, &[("nope".into(), 1)], at).await, Err(StoreError::NotFound(_))));
    assert_eq!(last_id(&store).await, scheduled, "nothing of the failed calls was written");
    assert_eq!(store.task_instances(id).await.unwrap()[0].state, TaskState::Scheduled);
    assert!(store.running_tries().await.unwrap().is_empty());

    // Refused: a try does not start from `none`, nor end twice.
    assert_eq!(store.start_try(id, "load", at).await.unwrap(), Start::NotStartable(TaskState::None));
    assert_eq!(store.start_try(id, "extract", at).await.unwrap(), Start::Started(1));
    let ok = FinishTry {
        run: id,
        task_id: "extract".into(),
        try_number: 1,
        outcome: TryOutcome::Success { outputs: Map::new() },
        at,
    };
    store.finish_tries(std::slice::from_ref(&ok)).await.unwrap();
    let done = last_id(&store).await;
    assert_eq!(store.finish_tries(&[ok]).await.unwrap(), [sluice_store::Finish::NotRunning(TaskState::Success)]);
    assert_eq!(last_id(&store).await, done);
    let started: Vec<_> = events_after(&store, before.last().map_or(0, |e| e.id))
        .await
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::TryStarted { .. } | EventKind::TryFinished { .. }))
        .map(|e| e.task_id.unwrap())
        .collect();
    assert_eq!(started, ["extract", "extract"], "one start and one end, of the try that ran");
}

pub async fn after_resumes_with_every_event_exactly_once(db: &Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    let at = t("2026-03-02T00:00:00Z");
    let mut seen = Vec::new();
    let mut after = 0;
    for round in 0..5 {
        // Both handles write between two reads; the reader uses a third.
        let id = create(&a, &new_run("d", &format!("r{round}"), &format!("2026-03-0{}T00:00:00Z", round + 1))).await;
        start(&b, id, "extract", at).await;
        start(&a, id, "load", at).await;
        let reader = db.handle().await;
        loop {
            let page = reader.events(&EventQuery { after: Some(after), limit: 2, ..EventQuery::default() }).await;
            let page = page.unwrap();
            let Some(last) = page.last() else { break };
            after = last.id;
            seen.extend(page);
        }
    }
    let all = all_events(&a).await;
    assert_eq!(seen, all, "paged reads resumed by id see every event once, in order");
    // Per round: run_created, and for each of two tasks task_state_changed and try_started.
    assert_eq!(all.len(), 5 * 5);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(events_after(&a, after).await.is_empty());
}

pub async fn filters_and_newest_first(db: &Db) {
    let store = db.handle().await;
    let at = t("2026-03-02T00:00:00Z");
    for (dag_id, run_id, date) in
        [("a", "r1", "2026-03-01T00:00:00Z"), ("b", "r1", "2026-03-01T00:00:00Z"), ("a", "r2", "2026-03-02T00:00:00Z")]
    {
        let id = create(&store, &new_run(dag_id, run_id, date)).await;
        store.set_run_state(id, RunState::Running, at).await.unwrap();
    }
    let names = |events: Vec<sluice_store::Event>| {
        events
            .into_iter()
            .map(|e| format!("{}/{}:{}", e.dag_id.unwrap(), e.run_id.unwrap(), e.kind.name()))
            .collect::<Vec<_>>()
    };
    let q = |dag_id: Option<&str>, run_id: Option<&str>, limit, order| EventQuery {
        after: None,
        dag_id: dag_id.map(str::to_string),
        run_id: run_id.map(str::to_string),
        limit,
        order,
    };
    let read = |query: EventQuery| {
        let store = store.clone();
        async move { names(store.events(&query).await.unwrap()) }
    };
    assert_eq!(
        read(q(Some("a"), None, 10, Order::Oldest)).await,
        ["a/r1:run_created", "a/r1:run_started", "a/r2:run_created", "a/r2:run_started"]
    );
    assert_eq!(
        read(q(None, Some("r1"), 10, Order::Newest)).await,
        ["b/r1:run_started", "b/r1:run_created", "a/r1:run_started", "a/r1:run_created"]
    );
    assert_eq!(read(q(Some("a"), Some("r1"), 1, Order::Newest)).await, ["a/r1:run_started"]);
    assert_eq!(read(q(None, None, 2, Order::Oldest)).await, ["a/r1:run_created", "a/r1:run_started"]);
    assert!(read(q(Some("c"), None, 10, Order::Oldest)).await.is_empty());
    let newest = store.events(&q(None, None, 1, Order::Newest)).await.unwrap().remove(0);
    let before = EventQuery { after: Some(newest.id - 1), ..q(None, None, 10, Order::Newest) };
    assert_eq!(store.events(&before).await.unwrap(), [newest], "`after` bounds newest-first reads too");
}

pub async fn subscribers_get_this_handles_committed_events_in_store_order(db: &Db) {
    let store = db.handle().await;
    let other = db.handle().await;
    let mut rx = store.subscribe();
    let at = t("2026-03-02T00:00:00Z");
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.tasks = (0..300).map(|i| (format!("t{i}"), 1)).collect();
    let id = create(&store, &new).await;
    let all: Vec<(i64, String)> = new.tasks.iter().map(|(task, _)| (id, task.clone())).collect();
    let scheduled: Vec<(String, TaskState)> =
        new.tasks.iter().map(|(t, _)| (t.clone(), TaskState::Scheduled)).collect();
    store.set_task_states(id, &scheduled, at).await.unwrap();
    // A rolled-back call publishes nothing.
    assert!(store.start_tries(&[(id, "t0".into()), (id, "nope".into())], at).await.is_err());
    store.start_tries(&all, at).await.unwrap();
    // Another handle's events reach its own subscribers only.
    other.set_paused("d", true).await.unwrap();
    let done: Vec<FinishTry> = all
        .iter()
        .map(|(run, task)| FinishTry {
            run: *run,
            task_id: task.clone(),
            try_number: 1,
            outcome: TryOutcome::Success { outputs: Map::new() },
            at,
        })
        .collect();
    store.finish_tries(&done).await.unwrap();

    // Every send happened before the call that committed it returned.
    let mut received = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => received.push((*e).clone()),
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let stored: Vec<_> =
        all_events(&store).await.into_iter().filter(|e| !matches!(e.kind, EventKind::DagPaused { .. })).collect();
    assert_eq!(received.len(), 1 + 3 * 300);
    assert_eq!(received, stored, "the same events, with their ids, in store order");
    assert!(all_events(&store).await.iter().any(|e| matches!(e.kind, EventKind::DagPaused { .. })));
}
