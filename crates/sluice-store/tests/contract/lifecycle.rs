//! Runs, task instances, tries, outputs and DAG rows: what the scheduler and the CLI rely on.

use chrono::Duration;
use serde_json::{json, Map, Value};
use sluice_store::{
    Created, EventKind, EventQuery, Finish, FinishTry, RunFilter, RunKind, RunState, Start, StoreError, TaskState,
    TryOutcome, TryResult,
};

use crate::{all_events, create, map, new_run, start, t, Db};

pub async fn create_run_returns_the_existing_run_for_the_same_logical_date_or_run_id(db: &Db) {
    let store = db.handle().await;
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

pub async fn the_try_lifecycle(db: &Db) {
    let store = db.handle().await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let t0 = t("2026-03-02T00:00:00Z");

    // First try of `extract` fails and is retried.
    assert_eq!(start(&store, id, "extract", t0).await, 1);
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
    let query = EventQuery { dag_id: Some("d".into()), run_id: Some("r".into()), ..EventQuery::default() };
    let retry = store.events(&query).await.unwrap().pop().unwrap();
    assert_eq!(retry.kind, EventKind::RetryScheduled { try_number: 2, at: retry_at });
    assert_eq!(retry.task_id.as_deref(), Some("extract"));
    assert_eq!(retry.at, t0 + Duration::minutes(1));

    // Second try: external ids merge, success stores outputs.
    let t1 = t0 + Duration::minutes(6);
    assert_eq!(start(&store, id, "extract", t1).await, 2);
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
    start(&store, id, "load", t2).await;
    let no_retry = TryOutcome::Failed { error: "boom".into(), retry_at: None };
    store.finish_try(id, "load", 1, &no_retry, t2 + Duration::seconds(1)).await.unwrap();
    let load = &store.task_instances(id).await.unwrap()[1];
    assert_eq!((load.state, load.ended_at), (TaskState::Failed, Some(t2 + Duration::seconds(1))));
    assert_eq!(store.tries(id, Some("load")).await.unwrap()[0].state, TaskState::Failed);
    let retries = all_events(&store).await.into_iter().filter(|e| matches!(e.kind, EventKind::RetryScheduled { .. }));
    assert_eq!(retries.count(), 1);
    // Both tasks' tries, oldest first.
    let all: Vec<_> = store.tries(id, None).await.unwrap().into_iter().map(|t| (t.task_id, t.try_number)).collect();
    assert_eq!(all, [("extract".to_string(), 1), ("extract".to_string(), 2), ("load".to_string(), 1)]);
    // Nothing running any more.
    assert!(store.running_tries().await.unwrap().is_empty());
}

pub async fn a_skipped_try_records_its_reason(db: &Db) {
    let store = db.handle().await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    start(&store, id, "extract", at).await;
    let skipped = TryOutcome::Skipped { reason: "sensor timed out (soft_fail)".into() };
    store.finish_try(id, "extract", 1, &skipped, at + Duration::hours(1)).await.unwrap();
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!((ti.state, ti.ended_at), (TaskState::Skipped, Some(at + Duration::hours(1))));
    let tr = &store.tries(id, Some("extract")).await.unwrap()[0];
    assert_eq!((tr.state, tr.error.as_deref()), (TaskState::Skipped, Some("sensor timed out (soft_fail)")));
    assert!(store.outputs(id).await.unwrap().is_empty());
}

pub async fn unknown_runs_tasks_and_tries_are_not_found(db: &Db) {
    let store = db.handle().await;
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
    assert_eq!(start(&store, id, "extract", at).await, 1);
}

pub async fn task_and_run_states_keep_their_times(db: &Db) {
    let store = db.handle().await;
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

pub async fn runs_filter_by_dag_and_state_newest_first(db: &Db) {
    let store = db.handle().await;
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
    let a_running = RunFilter { dag_id: Some("a".into()), states: vec![RunState::Running], ..Default::default() };
    assert_eq!(ids(store.runs(&a_running).await.unwrap()), [a2]);
    let latest = RunFilter { limit: Some(2), ..Default::default() };
    assert_eq!(ids(store.runs(&latest).await.unwrap()), [b1, a3]);
    assert_eq!(store.run_by_logical_date("a", t("2026-03-03T00:00:00Z")).await.unwrap().unwrap().id, a3);
    assert!(store.run_by_logical_date("b", t("2026-03-03T00:00:00Z")).await.unwrap().is_none());
}

pub async fn clear_tasks_resets_them_deletes_outputs_and_requeues_the_run(db: &Db) {
    let store = db.handle().await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    for task in ["extract", "load"] {
        start(&store, id, task, at).await;
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
    assert_eq!(start(&store, id, "load", at + Duration::hours(2)).await, 2);

    // Clearing a task of an unfinished run leaves the run's state alone.
    store.set_run_state(id, RunState::Running, at).await.unwrap();
    store.clear_tasks(id, &[("extract".to_string(), 1)], at).await.unwrap();
    assert_eq!(store.run(id).await.unwrap().unwrap().state, RunState::Running);
    assert!(store.outputs(id).await.unwrap().is_empty());
}

pub async fn a_try_finishing_after_its_task_was_cleared_changes_only_the_try(db: &Db) {
    let store = db.handle().await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-02T00:00:00Z");
    start(&store, id, "extract", at).await;
    store.clear_tasks(id, &[("extract".to_string(), 1)], at).await.unwrap();
    let outputs = map(json!({"stale": true}));
    let done = store.finish_try(id, "extract", 1, &TryOutcome::Success { outputs }, at).await.unwrap();
    assert_eq!(done, Finish::TaskChanged(TaskState::None));
    let ti = &store.task_instances(id).await.unwrap()[0];
    assert_eq!(ti.state, TaskState::None, "the clear wins");
    assert!(store.outputs(id).await.unwrap().is_empty());
    assert_eq!(store.tries(id, Some("extract")).await.unwrap()[0].state, TaskState::Success);
}

pub async fn paused_survives_sync_dag(db: &Db) {
    let store = db.handle().await;
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
pub async fn a_cleared_run_that_runs_again_counts_its_duration_from_its_new_start(db: &Db) {
    let store = db.handle().await;
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
pub async fn sync_dags_pauses_only_new_dags_and_clears_schedule_errors_on_load(db: &Db) {
    use sluice_store::DagSync;
    let store = db.handle().await;
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

pub async fn a_deadline_is_marked_missed_once(db: &Db) {
    let store = db.handle().await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.deadline = Some(t("2026-03-02T06:00:00Z"));
    let id = create(&store, &new).await;
    let at = t("2026-03-02T06:00:01Z");
    assert!(store.mark_deadline_missed(id, at).await.unwrap());
    assert!(!store.mark_deadline_missed(id, at + Duration::minutes(1)).await.unwrap());
    assert!(store.run(id).await.unwrap().unwrap().deadline_missed);
    let missed = |events: Vec<sluice_store::Event>| {
        events.into_iter().filter(|e| matches!(e.kind, EventKind::DeadlineMissed { .. })).collect::<Vec<_>>()
    };
    let events = missed(all_events(&store).await);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::DeadlineMissed { deadline: new.deadline });
    assert_eq!((events[0].dag_id.as_deref(), events[0].run_id.as_deref(), events[0].at), (Some("d"), Some("r"), at));
    assert_eq!(events[0].task_id, None);
    // The flag holds for another handle.
    let other = db.handle().await;
    assert!(!other.mark_deadline_missed(id, at).await.unwrap());
    assert_eq!(missed(all_events(&other).await).len(), 1);
}

pub async fn batched_starts_and_finishes_do_what_the_single_calls_do(db: &Db) {
    let store = db.handle().await;
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

    // Started across two runs, in the order asked; a task not scheduled is not started.
    store.set_task_states(b, &[("extract".into(), TaskState::Queued)], t0).await.unwrap();
    let keys: Vec<(i64, String)> = vec![
        (a, "t3".into()),
        (b, "extract".into()),
        (a, "t0".into()),
        (b, "load".into()),
        (a, "t1".into()),
        (a, "t2".into()),
    ];
    let started = store.start_tries(&keys, t0).await.unwrap();
    let s1 = Start::Started(1);
    assert_eq!(started, vec![s1, s1, s1, Start::NotStartable(TaskState::None), s1, s1]);
    assert_eq!(store.running_tries().await.unwrap().len(), 5);
    assert!(store.tries(b, Some("load")).await.unwrap().is_empty());
    assert!(matches!(store.start_tries(&[(a, "nope".into())], t0).await, Err(StoreError::NotFound(_))));
    // A task named twice (and already running) starts no second try.
    let twice = store.start_tries(&[(a, "t3".into()), (a, "t3".into())], t0).await.unwrap();
    assert_eq!(twice, vec![Start::NotStartable(TaskState::Running); 2]);
    store.set_task_states(a, &[("t4".into(), TaskState::Scheduled)], t0).await.unwrap();
    let twice = store.start_tries(&[(a, "t4".into()), (a, "t4".into())], t0).await.unwrap();
    assert_eq!(twice, vec![s1, Start::NotStartable(TaskState::Running)]);

    // t2 is cleared while its try runs: its try ends, the task keeps `none`.
    store.clear_tasks(a, &[("t2".into(), 2)], t0).await.unwrap();
    let t1 = t0 + Duration::seconds(3);
    let ok = |o: Value| TryOutcome::Success { outputs: map(o) };
    let finish = |run: i64, task: &str, n: u32, outcome: TryOutcome| FinishTry {
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
        finish(a, "t3", 1, ok(json!({"output": "y", "n": 2}))),
    ];
    let states = store.finish_tries(&batch).await.unwrap();
    assert_eq!(
        states,
        vec![
            Finish::Applied(TaskState::Success),
            Finish::Applied(TaskState::UpForRetry),
            Finish::Applied(TaskState::Success),
            Finish::TaskChanged(TaskState::None),
            Finish::Applied(TaskState::Success),
        ]
    );
    // Finishing them again changes nothing.
    let again = store.finish_tries(&batch[..1]).await.unwrap();
    assert_eq!(again, vec![Finish::NotRunning(TaskState::Success)]);
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
    let r2 = EventQuery { run_id: Some("r2".into()), ..EventQuery::default() };
    let retry = store.events(&r2).await.unwrap().pop().unwrap();
    assert_eq!(retry.kind, EventKind::RetryScheduled { try_number: 2, at: t1 + Duration::minutes(1) });
    // The try of t4 is still running.
    assert_eq!(store.running_tries().await.unwrap().len(), 1);
    let unknown = store.finish_tries(&[finish(a, "t4", 2, ok(json!({})))]).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))));
}

pub async fn batches_larger_than_one_statement_are_complete(db: &Db) {
    let store = db.handle().await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.tasks = (0..300).map(|i| (format!("t{i}"), 1)).collect();
    let id = create(&store, &new).await;
    let t0 = t("2026-03-03T00:00:00Z");
    let all: Vec<(i64, String)> = new.tasks.iter().map(|(t, _)| (id, t.clone())).collect();
    let scheduled: Vec<(String, TaskState)> =
        new.tasks.iter().map(|(t, _)| (t.clone(), TaskState::Scheduled)).collect();
    store.set_task_states(id, &scheduled, t0).await.unwrap();
    assert_eq!(store.start_tries(&all, t0).await.unwrap(), vec![Start::Started(1); 300]);
    assert_eq!(store.running_tries().await.unwrap().len(), 300);
    let done: Vec<FinishTry> = all
        .iter()
        .map(|(run, task)| FinishTry {
            run: *run,
            task_id: task.clone(),
            try_number: 1,
            outcome: TryOutcome::Success { outputs: map(json!({"output": task})) },
            at: t0 + Duration::seconds(1),
        })
        .collect();
    assert_eq!(store.finish_tries(&done).await.unwrap(), vec![Finish::Applied(TaskState::Success); 300]);
    assert!(store.task_instances(id).await.unwrap().iter().all(|ti| ti.state == TaskState::Success));
    assert!(store.running_tries().await.unwrap().is_empty());
    let outputs = store.outputs(id).await.unwrap();
    assert_eq!(outputs.len(), 300);
    assert_eq!(outputs["t299"]["output"], json!("t299"));
}

pub async fn a_large_run_keeps_its_tasks_in_the_dag_order_with_their_ids_and_tries(db: &Db) {
    let store = db.handle().await;
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    // Not in any sorted order, with ids a text encoding could get wrong.
    new.tasks = (0..5000).rev().map(|i| (format!("t{i}"), 1 + i % 4)).collect();
    new.tasks[7].0 = "quote\"back\\slash".into();
    new.tasks[8].0 = "ünï-cødé.task".into();
    let id = create(&store, &new).await;
    let tis = store.task_instances(id).await.unwrap();
    let got: Vec<(String, u32)> = tis.iter().map(|ti| (ti.task_id.clone(), ti.max_tries)).collect();
    assert_eq!(got, new.tasks);
    assert!(tis.iter().all(|ti| ti.run == id && ti.state == TaskState::None && ti.try_number == 0));
    assert!(tis.iter().all(|ti| ti.started_at.is_none() && ti.ended_at.is_none() && ti.next_try_at.is_none()));
    // The times a task instance gains are read back too.
    let at = t("2026-03-03T00:00:00Z");
    assert_eq!(start(&store, id, "quote\"back\\slash", at).await, 1);
    let ti = store.task_instances(id).await.unwrap().into_iter().nth(7).unwrap();
    assert_eq!((ti.state, ti.try_number, ti.started_at), (TaskState::Running, 1, Some(at)));
}

pub async fn running_tries_survive_a_new_handle(db: &Db) {
    let at = t("2026-03-02T00:00:00Z");
    let store = db.handle().await;
    let id = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let other = create(&store, &new_run("d", "r2", "2026-03-02T00:00:00Z")).await;
    start(&store, id, "extract", at).await;
    store.record_external_id(id, "extract", 1, "cluster_id", &json!("j-9")).await.unwrap();
    start(&store, other, "load", at).await;
    store.finish_try(other, "load", 1, &TryOutcome::Success { outputs: Map::new() }, at).await.unwrap();
    drop(store);
    // "Restart": a new handle on the same database.
    let store = db.handle().await;
    let running = store.running_tries().await.unwrap();
    assert_eq!(running.len(), 1);
    let (run, tr) = &running[0];
    assert_eq!((run.id, run.run_id.as_str(), run.dag_id.as_str()), (id, "r", "d"));
    assert_eq!((tr.task_id.as_str(), tr.try_number, tr.state), ("extract", 1, TaskState::Running));
    assert_eq!(tr.external_ids, map(json!({"cluster_id": "j-9"})));
    assert_eq!((tr.started_at, tr.ended_at), (at, None));
    let finished = store.tries(other, Some("load")).await.unwrap();
    assert_eq!((finished[0].state, finished[0].try_number), (TaskState::Success, 1));
    let outcome = all_events(&store).await.into_iter().find_map(|e| match e.kind {
        EventKind::TryFinished { outcome, .. } => Some(outcome),
        _ => None,
    });
    assert_eq!(outcome, Some(TryResult::Success));
}

/// A turn's decisions and starts together: the states are set first, so a task scheduled in
/// the same call starts; one that is not scheduled is refused without losing the rest; the
/// events come in the order of the changes; an unknown task in the states writes nothing.
pub async fn set_states_and_start_sets_the_states_then_starts_the_tries(db: &Db) {
    let store = db.handle().await;
    let run = create(&store, &new_run("d", "r", "2026-03-01T00:00:00Z")).await;
    let at = t("2026-03-01T01:00:00Z");
    let before = crate::last_id(&store).await;
    let states = vec![(run, vec![("extract".to_string(), TaskState::Scheduled)])];
    let tasks = vec![(run, "extract".to_string()), (run, "load".to_string())];
    let starts = store.set_states_and_start(&states, &tasks, at).await.unwrap();
    assert_eq!(starts, [Start::Started(1), Start::NotStartable(TaskState::None)]);
    let tis = store.task_instances(run).await.unwrap();
    let state = |id: &str| tis.iter().find(|t| t.task_id == id).map(|t| (t.state, t.try_number)).unwrap();
    assert_eq!((state("extract"), state("load")), ((TaskState::Running, 1), (TaskState::None, 0)));
    let events = crate::events_after(&store, before).await;
    assert_eq!(
        crate::kinds(&events),
        [
            (Some("extract"), EventKind::TaskStateChanged { state: TaskState::Scheduled }),
            (Some("extract"), EventKind::TryStarted { try_number: 1 }),
        ]
    );

    let last = crate::last_id(&store).await;
    let bad = vec![(run, vec![("load".to_string(), TaskState::Scheduled), ("nope".to_string(), TaskState::Scheduled)])];
    assert!(store.set_states_and_start(&bad, &[(run, "load".to_string())], at).await.is_err());
    assert_eq!(crate::last_id(&store).await, last, "nothing written");
    let tis = store.task_instances(run).await.unwrap();
    assert_eq!(tis.iter().find(|t| t.task_id == "load").unwrap().state, TaskState::None);
}
