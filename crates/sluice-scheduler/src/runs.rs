//! Creating and changing runs: what the daemon's cron and the actions (`trigger`, `backfill`,
//! `clear`, `mark`; see [`crate::actions`]) share. Every change goes through the store in one
//! transaction; a running daemon notices it within a second.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use sluice_dag::{Dag, RunDates, RunState, TaskState};
use sluice_store::{Created, NewRun, Run, RunFilter, RunKind, Store, StoreError, TaskInstance};

use crate::actions::ActionError;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Creates the run for `dates` with all its tasks (or finds the one that exists for that
/// logical date). Only scheduled runs carry a deadline: a manual or backfill run for a past
/// date would miss it at once.
pub async fn create_run(
    store: &dyn Store,
    dag: &Dag,
    dates: &RunDates,
    kind: RunKind,
    conf: Option<Map<String, Value>>,
) -> Result<Created> {
    create_run_keyed(store, dag, dates, kind, conf, None).await
}

/// [`create_run`] with an idempotency key: a run of the DAG that already has the key is
/// returned as `Created::Existing`, whatever its logical date.
pub async fn create_run_keyed(
    store: &dyn Store,
    dag: &Dag,
    dates: &RunDates,
    kind: RunKind,
    conf: Option<Map<String, Value>>,
    idempotency_key: Option<String>,
) -> Result<Created> {
    let deadline = match kind {
        RunKind::Scheduled => {
            dag.deadline.and_then(|d| d.for_fire_time(dates.fire_time())).map(|t| t.with_timezone(&Utc))
        }
        _ => None,
    };
    let new = NewRun {
        dag_id: dag.id.clone(),
        run_id: sluice_dag::run_id(kind.name(), dates),
        kind,
        logical_date: dates.logical_date.with_timezone(&Utc),
        data_interval_start: dates.data_interval_start.with_timezone(&Utc),
        data_interval_end: dates.data_interval_end.with_timezone(&Utc),
        conf,
        deadline,
        idempotency_key,
        tasks: dag.tasks.iter().map(|t| (t.id.clone(), t.retry.retries + 1)).collect(),
    };
    store.create_run(&new).await
}

/// The scheduled runs due at `now` that do not exist yet. Without catchup, only the latest
/// due run (the one whose interval ended last); with catchup, every run after the latest
/// scheduled one, oldest first.
pub async fn due_runs(store: &dyn Store, dag: &Dag, now: DateTime<Utc>) -> Result<Vec<RunDates>> {
    let (Some(schedule), Some(first)) = (&dag.schedule, dag.first_logical_date()) else { return Ok(Vec::new()) };
    let now = now.with_timezone(&dag.timezone);
    if !dag.catchup {
        let Some(fire) = schedule.prev_before(now + chrono::Duration::seconds(1)) else { return Ok(Vec::new()) };
        let Some(logical) = schedule.prev_before(fire) else { return Ok(Vec::new()) };
        if logical < first || dag.runs_between(logical, logical).is_empty() {
            return Ok(Vec::new());
        }
        if store.run_by_logical_date(&dag.id, logical.with_timezone(&Utc)).await?.is_some() {
            return Ok(Vec::new());
        }
        return Ok(vec![dag.run_dates(logical)]);
    }
    let filter = RunFilter { dag_id: Some(dag.id.clone()), ..Default::default() };
    let last =
        store.runs(&filter).await?.into_iter().filter(|r| r.kind == RunKind::Scheduled).map(|r| r.logical_date).max();
    let from = match last {
        Some(l) => match schedule.next_after(l.with_timezone(&dag.timezone)) {
            Some(t) => t,
            None => return Ok(Vec::new()),
        },
        None => first,
    };
    Ok(dag.runs_between(from, now).into_iter().filter(|r| r.fire_time() <= now).collect())
}

/// The dates of a manual run. With a logical date, the run covers that tick's interval. Without
/// one, as in Airflow, the logical date is now and the interval is the last complete one.
pub fn manual_dates(dag: &Dag, logical: Option<DateTime<Tz>>, now: DateTime<Utc>) -> RunDates {
    if let Some(l) = logical {
        return dag.run_dates(l);
    }
    let now = now.with_timezone(&dag.timezone);
    let interval = dag.schedule.as_ref().and_then(|s| {
        let end = s.prev_before(now + chrono::Duration::seconds(1))?;
        Some((s.prev_before(end)?, end))
    });
    let (start, end) = interval.unwrap_or((now, now));
    RunDates { logical_date: now, data_interval_start: start, data_interval_end: end }
}

/// The tasks a clear resets: one task (with `downstream` its descendants too) or the whole
/// run; with `failed_only`, only those of them that failed or are `upstream_failed`.
pub fn clear_targets(
    dag: &Dag,
    tis: &[TaskInstance],
    task: Option<&str>,
    downstream: bool,
    upstream: bool,
    failed_only: bool,
) -> Result<Vec<String>, ActionError> {
    let mut targets: Vec<String> = match task {
        Some(t) => {
            let task = dag
                .task(t)
                .ok_or_else(|| ActionError::NotFound(format!("task `{t}` in DAG `{}` not found", dag.id)))?;
            let mut v = Vec::new();
            if upstream {
                v.extend(dag.ancestors(t).into_iter().map(|d| d.id.clone()));
            }
            v.push(task.id.clone());
            if downstream {
                v.extend(dag.descendants(t).into_iter().map(|d| d.id.clone()));
            }
            v
        }
        None if downstream || upstream => {
            return Err(ActionError::Invalid("downstream and upstream need a task".into()))
        }
        None => dag.tasks.iter().map(|t| t.id.clone()).collect(),
    };
    if failed_only {
        targets.retain(|t| tis.iter().any(|ti| &ti.task_id == t && ti.state.is_failure()));
    }
    Ok(targets)
}

/// Airflow's clear: the chosen tasks ([`clear_targets`]) go back to `none` and run again, each
/// with its full retries.
// The flags are `clear_targets`'s, passed through as they are.
#[allow(clippy::too_many_arguments)]
pub async fn clear(
    store: &dyn Store,
    dag: &Dag,
    run: &Run,
    task: Option<&str>,
    downstream: bool,
    upstream: bool,
    failed_only: bool,
    now: DateTime<Utc>,
) -> Result<Vec<String>, ActionError> {
    let tis = if failed_only { store.task_instances(run.id).await? } else { Vec::new() };
    let targets = clear_targets(dag, &tis, task, downstream, upstream, failed_only)?;
    let with_tries: Vec<(String, u32)> =
        targets.iter().filter_map(|t| dag.task(t).map(|task| (t.clone(), task.retry.retries + 1))).collect();
    if !with_tries.is_empty() {
        store.clear_tasks(run.id, &with_tries, now).await?;
    }
    Ok(targets)
}

/// The tasks a mark sets: one task, or every unfinished task of the run.
pub fn mark_targets(run: &Run, tis: &[TaskInstance], task: Option<&str>) -> Result<Vec<String>, ActionError> {
    match task {
        Some(t) if !tis.iter().any(|ti| ti.task_id == t) => {
            Err(ActionError::NotFound(format!("task `{t}` in run {} not found", run.run_id)))
        }
        Some(t) => Ok(vec![t.to_string()]),
        None => Ok(tis.iter().filter(|ti| !ti.state.is_finished()).map(|ti| ti.task_id.clone()).collect()),
    }
}

/// The state a whole run is marked with its tasks.
pub fn marked_run_state(state: TaskState) -> RunState {
    if state == TaskState::Success {
        RunState::Success
    } else {
        RunState::Failed
    }
}

/// Marks one task, or every unfinished task and the run itself, `state` (success or failed).
pub async fn mark(
    store: &dyn Store,
    run: &Run,
    task: Option<&str>,
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<Vec<String>, ActionError> {
    let tis = store.task_instances(run.id).await?;
    let targets = mark_targets(run, &tis, task)?;
    let changes: Vec<(String, TaskState)> = targets.iter().map(|t| (t.clone(), state)).collect();
    store.set_task_states(run.id, &changes, now).await?;
    if task.is_none() {
        store.set_run_state(run.id, marked_run_state(state), now).await?;
    }
    Ok(targets)
}
