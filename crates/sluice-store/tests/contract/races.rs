//! Lost races: two handles on one database (two schedulers, a scheduler and the CLI) acting
//! on the same try. The store serializes them and tells the loser.

use std::sync::Arc;

use serde_json::Map;
use sluice_store::{EventKind, Finish, FinishTry, Start, Store, TaskState, TryOutcome};

use crate::{all_events, create, new_run, t, Db};

/// A run of `n` tasks, all scheduled.
async fn scheduled_run(store: &Arc<dyn Store>, n: usize) -> (i64, Vec<String>) {
    let mut new = new_run("d", "r", "2026-03-01T00:00:00Z");
    new.tasks = (0..n).map(|i| (format!("t{i}"), 2)).collect();
    let id = create(store, &new).await;
    let tasks: Vec<String> = new.tasks.into_iter().map(|(task, _)| task).collect();
    let states: Vec<(String, TaskState)> = tasks.iter().map(|task| (task.clone(), TaskState::Scheduled)).collect();
    store.set_task_states(id, &states, t("2026-03-02T00:00:00Z")).await.unwrap();
    (id, tasks)
}

fn count_events(events: &[sluice_store::Event], task: &str, started: bool) -> usize {
    events
        .iter()
        .filter(|e| e.task_id.as_deref() == Some(task))
        .filter(|e| match e.kind {
            EventKind::TryStarted { .. } => started,
            EventKind::TryFinished { .. } => !started,
            _ => false,
        })
        .count()
}

pub async fn two_handles_starting_the_same_try_one_wins(db: &Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    let (id, tasks) = scheduled_run(&a, 20).await;
    let at = t("2026-03-02T00:00:00Z");
    for task in &tasks {
        let (x, y) = tokio::join!(a.start_try(id, task, at), b.start_try(id, task, at));
        let mut results = [x.unwrap(), y.unwrap()];
        results.sort_by_key(|s| matches!(s, Start::NotStartable(_)));
        assert_eq!(results, [Start::Started(1), Start::NotStartable(TaskState::Running)], "{task}");
    }
    let events = all_events(&a).await;
    for task in &tasks {
        assert_eq!(a.tries(id, Some(task)).await.unwrap().len(), 1, "{task}: one try row");
        assert_eq!(count_events(&events, task, true), 1, "{task}: one try_started");
    }
}

pub async fn two_handles_starting_the_same_batch_start_each_try_once(db: &Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    let (id, tasks) = scheduled_run(&a, 600).await;
    let at = t("2026-03-02T00:00:00Z");
    let keys: Vec<(i64, String)> = tasks.iter().map(|task| (id, task.clone())).collect();
    let mut reversed = keys.clone();
    reversed.reverse();
    let (x, y) = tokio::join!(a.start_tries(&keys, at), b.start_tries(&reversed, at));
    let (x, mut y) = (x.unwrap(), y.unwrap());
    y.reverse();
    for ((task, x), y) in tasks.iter().zip(x).zip(y) {
        let won = [x, y].iter().filter(|s| **s == Start::Started(1)).count();
        assert_eq!(won, 1, "{task}: {x:?} / {y:?}");
        assert!([x, y].contains(&Start::NotStartable(TaskState::Running)), "{task}");
    }
    assert_eq!(a.running_tries().await.unwrap().len(), 600);
}

pub async fn two_handles_finishing_the_same_try_one_applies(db: &Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    let (id, tasks) = scheduled_run(&a, 20).await;
    let at = t("2026-03-02T00:00:00Z");
    let keys: Vec<(i64, String)> = tasks.iter().map(|task| (id, task.clone())).collect();
    a.start_tries(&keys, at).await.unwrap();
    for task in &tasks {
        let finish = |outcome| FinishTry { run: id, task_id: task.clone(), try_number: 1, outcome, at };
        let ok = [finish(TryOutcome::Success { outputs: Map::new() })];
        let failed = [finish(TryOutcome::Failed { error: "lost".into(), retry_at: None })];
        let (x, y) = tokio::join!(a.finish_tries(&ok), b.finish_tries(&failed));
        let (x, y) = (x.unwrap()[0], y.unwrap()[0]);
        let try_state = a.tries(id, Some(task)).await.unwrap()[0].state;
        let ti_state = a.task_instances(id).await.unwrap().iter().find(|ti| &ti.task_id == task).unwrap().state;
        assert_eq!(try_state, ti_state, "{task}: the try and the task agree");
        // The winner's outcome stands; the loser is told, with the state it lost to.
        match (x, y) {
            (Finish::Applied(s), Finish::NotRunning(l)) | (Finish::NotRunning(l), Finish::Applied(s)) => {
                assert_eq!((s, l), (try_state, try_state), "{task}");
            }
            other => panic!("{task}: expected one Applied and one NotRunning, got {other:?}"),
        }
    }
    let events = all_events(&a).await;
    for task in &tasks {
        assert_eq!(count_events(&events, task, false), 1, "{task}: one try_finished");
    }
}
