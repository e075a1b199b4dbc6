//! What a user can ask of Sluice besides reading: trigger a run, backfill a range, clear or
//! mark a run's tasks, pause a DAG. `dagctl` calls these functions, and the engine's command
//! channel calls the same ones, so an action means one thing whoever asks for it.
//!
//! A request is a plain serde struct (the HTTP API will take it as a JSON body); a result
//! holds views ([`crate::views`]) of what was done. Every action is given its `now`: it never
//! reads the system clock. With `dry_run`, an action computes exactly what it would create,
//! clear or mark, and writes nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_dag::schedule::rfc3339;
use sluice_dag::{Dag, RunDates, RunState, TaskState};
use sluice_store::{Created, Run, RunKind, Store, StoreError};

use crate::lookup::{self, LookupError, RunSelector};
use crate::runs;
use crate::views::RunView;

/// Why an action was refused or failed. Each displays as the one line a user reads.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The run or the task named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as written: a bad date or conf, an empty range, a
    /// backfill of a DAG without a schedule, a date naming several runs.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LookupError> for ActionError {
    fn from(e: LookupError) -> ActionError {
        match e {
            LookupError::NotFound(m) => ActionError::NotFound(m),
            LookupError::Store(e) => ActionError::Store(e),
            e @ (LookupError::Broken { .. } | LookupError::Ambiguous { .. } | LookupError::Invalid(_)) => {
                ActionError::Invalid(e.to_string())
            }
        }
    }
}

/// A manual run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// A date (the schedule's tick that day) or a timestamp; none: now, as in Airflow, with
    /// the last complete interval.
    #[serde(default)]
    pub logical_date: Option<String>,
    /// Merged over the DAG's `[params]`.
    #[serde(default)]
    pub conf: Option<Map<String, Value>>,
    /// A key that makes the trigger idempotent: a second trigger of the DAG with the same key
    /// finds the run the first one created (the API takes it from the `Idempotency-Key`
    /// header).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// What a trigger did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Triggered {
    /// False when a run for that logical date (or run id) already existed: it is left as it is.
    pub created: bool,
    pub run: RunView,
    /// The run's `ds` in the DAG's zone.
    pub ds: String,
    /// The run's logical date in the DAG's zone.
    pub logical_date: String,
}

/// Creates a manual run, or finds the one that exists for that logical date.
pub async fn trigger(
    store: &dyn Store,
    dag: &Dag,
    req: &TriggerRequest,
    now: DateTime<Utc>,
) -> Result<Triggered, ActionError> {
    let logical = req.logical_date.as_deref().map(|d| dag.logical_date(d)).transpose().map_err(ActionError::Invalid)?;
    let dates = runs::manual_dates(dag, logical, now);
    let key = req.idempotency_key.clone();
    let created = runs::create_run_keyed(store, dag, &dates, RunKind::Manual, req.conf.clone(), key).await?;
    Ok(Triggered {
        created: matches!(created, Created::New(_)),
        run: RunView::from(created.run()),
        ds: dates.ds(),
        logical_date: rfc3339(dates.logical_date),
    })
}

/// What a backfill does with runs it finds already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Rerun {
    /// Leave them as they are.
    #[default]
    None,
    /// Clear the failed tasks of failed runs.
    Failed,
    /// Clear every task.
    All,
}

/// The most runs one backfill creates or clears (a year of hourly runs is 8,760): a range
/// that holds more is refused, so one request cannot write millions of runs.
pub const MAX_BACKFILL_RUNS: usize = 10_000;

/// One run per schedule tick whose logical date is in `[from, to]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The first logical date: a date (from the start of that day) or a timestamp.
    pub from: String,
    /// The last logical date, inclusive: a date (to the end of that day) or a timestamp.
    pub to: String,
    #[serde(default)]
    pub rerun: Rerun,
    #[serde(default)]
    pub conf: Option<Map<String, Value>>,
    #[serde(default)]
    pub dry_run: bool,
}

/// What a backfill does for one logical date (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BackfillAction {
    /// A new run.
    Create,
    /// The run exists and is left as it is.
    LeaveAlone,
    /// The run exists; these tasks are cleared to run again.
    Clear { tasks: Vec<String> },
}

/// One logical date of a backfill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BackfillItem {
    pub run_id: String,
    pub ds: String,
    pub logical_date: String,
    #[serde(flatten)]
    pub action: BackfillAction,
    /// The run as it is now; none for a run a dry run would create.
    pub run: Option<RunView>,
}

/// What a backfill did, oldest date first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Backfilled {
    pub dry_run: bool,
    /// Empty when no schedule tick falls in the range.
    pub runs: Vec<BackfillItem>,
}

/// Creates a `backfill` run per schedule tick in the range (the daemon runs them under
/// `max_active_runs`); runs already there are left alone or cleared as `rerun` says.
pub async fn backfill(
    store: &dyn Store,
    dag: &Dag,
    req: &BackfillRequest,
    now: DateTime<Utc>,
) -> Result<Backfilled, ActionError> {
    let from = dag.logical_bound(&req.from, false).map_err(ActionError::Invalid)?;
    let to = dag.logical_bound(&req.to, true).map_err(ActionError::Invalid)?;
    if from > to {
        return Err(ActionError::Invalid(format!(
            "--from {} is after --to {}: the range holds no date",
            req.from, req.to
        )));
    }
    if dag.schedule.is_none() {
        return Err(ActionError::Invalid(format!("DAG `{}` has no schedule: a backfill needs schedule ticks", dag.id)));
    }
    let ticks: Vec<RunDates> = dag.iter_runs_between(from, to).take(MAX_BACKFILL_RUNS + 1).collect();
    if ticks.len() > MAX_BACKFILL_RUNS {
        return Err(ActionError::Invalid(format!(
            "the range {} to {} holds more than {MAX_BACKFILL_RUNS} runs of `{}`: backfill it in parts",
            req.from, req.to, dag.id
        )));
    }
    let mut out = Vec::new();
    for dates in ticks {
        let (action, run) = if req.dry_run {
            match existing_run(store, dag, &dates).await? {
                None => (BackfillAction::Create, None),
                Some(run) => (rerun_plan(store, dag, &run, req.rerun).await?, Some(run)),
            }
        } else {
            match runs::create_run(store, dag, &dates, RunKind::Backfill, req.conf.clone()).await? {
                Created::New(run) => (BackfillAction::Create, Some(run)),
                Created::Existing(run) => (rerun_existing(store, dag, &run, req.rerun, now).await?, Some(run)),
            }
        };
        out.push(BackfillItem {
            run_id: run
                .as_ref()
                .map_or_else(|| sluice_dag::run_id(RunKind::Backfill.name(), &dates), |r| r.run_id.clone()),
            ds: dates.ds(),
            logical_date: rfc3339(dates.logical_date),
            action,
            run: run.as_ref().map(RunView::from),
        });
    }
    Ok(Backfilled { dry_run: req.dry_run, runs: out })
}

/// The run `create_run` would find instead of creating one: the same logical date, or the
/// same run id.
async fn existing_run(store: &dyn Store, dag: &Dag, dates: &RunDates) -> Result<Option<Run>, StoreError> {
    if let Some(run) = store.run_by_logical_date(&dag.id, dates.logical_date.with_timezone(&Utc)).await? {
        return Ok(Some(run));
    }
    store.run_by_run_id(&dag.id, &sluice_dag::run_id(RunKind::Backfill.name(), dates)).await
}

/// Whether `rerun` touches an existing run: only failed runs for `failed`.
fn reruns(run: &Run, rerun: Rerun) -> Option<bool> {
    match rerun {
        Rerun::None => None,
        Rerun::Failed if run.state != RunState::Failed => None,
        Rerun::Failed => Some(true),
        Rerun::All => Some(false),
    }
}

async fn rerun_plan(store: &dyn Store, dag: &Dag, run: &Run, rerun: Rerun) -> Result<BackfillAction, ActionError> {
    let Some(failed_only) = reruns(run, rerun) else { return Ok(BackfillAction::LeaveAlone) };
    let tis = store.task_instances(run.id).await?;
    Ok(BackfillAction::Clear { tasks: runs::clear_targets(dag, &tis, None, false, false, failed_only)? })
}

async fn rerun_existing(
    store: &dyn Store,
    dag: &Dag,
    run: &Run,
    rerun: Rerun,
    now: DateTime<Utc>,
) -> Result<BackfillAction, ActionError> {
    let Some(failed_only) = reruns(run, rerun) else { return Ok(BackfillAction::LeaveAlone) };
    Ok(BackfillAction::Clear { tasks: runs::clear(store, dag, run, None, false, false, failed_only, now).await? })
}

/// Airflow's clear: tasks of a run go back to `none` and run again, each with its full retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    pub run: RunSelector,
    /// Only this task; none: every task of the run.
    #[serde(default)]
    pub task: Option<String>,
    /// With `task`: its downstream tasks too.
    #[serde(default)]
    pub downstream: bool,
    /// With `task`: its upstream tasks too.
    #[serde(default)]
    pub upstream: bool,
    /// Only tasks that failed (or are `upstream_failed`).
    #[serde(default)]
    pub failed_only: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// What a clear did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Cleared {
    pub dry_run: bool,
    /// The run as it was before the clear.
    pub run: RunView,
    /// The tasks cleared (or, with `dry_run`, that would be), in the DAG's order.
    pub tasks: Vec<String>,
}

pub async fn clear(
    store: &dyn Store,
    dag: &Dag,
    req: &ClearRequest,
    now: DateTime<Utc>,
) -> Result<Cleared, ActionError> {
    let run = lookup::find_run(store, dag, &req.run).await?;
    let task = req.task.as_deref();
    let tasks = if req.dry_run {
        let tis = store.task_instances(run.id).await?;
        runs::clear_targets(dag, &tis, task, req.downstream, req.upstream, req.failed_only)?
    } else {
        runs::clear(store, dag, &run, task, req.downstream, req.upstream, req.failed_only, now).await?
    };
    Ok(Cleared { dry_run: req.dry_run, run: RunView::from(&run), tasks })
}

/// The states a task or a run can be marked with by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MarkState {
    Success,
    Failed,
}

impl From<MarkState> for TaskState {
    fn from(s: MarkState) -> TaskState {
        match s {
            MarkState::Success => TaskState::Success,
            MarkState::Failed => TaskState::Failed,
        }
    }
}

/// Marks one task, or every unfinished task and the run itself, success or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    pub run: RunSelector,
    /// Only this task; none: every unfinished task, and the run.
    #[serde(default)]
    pub task: Option<String>,
    pub state: MarkState,
    #[serde(default)]
    pub dry_run: bool,
}

/// What a mark did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Marked {
    pub dry_run: bool,
    pub state: MarkState,
    /// The run as it was before the mark.
    pub run: RunView,
    /// The tasks marked (or, with `dry_run`, that would be).
    pub tasks: Vec<String>,
    /// The state the run itself is given, when the whole run is marked.
    pub run_state: Option<RunState>,
}

pub async fn mark(store: &dyn Store, dag: &Dag, req: &MarkRequest, now: DateTime<Utc>) -> Result<Marked, ActionError> {
    let run = lookup::find_run(store, dag, &req.run).await?;
    let task = req.task.as_deref();
    let state = TaskState::from(req.state);
    let tasks = if req.dry_run {
        runs::mark_targets(&run, &store.task_instances(run.id).await?, task)?
    } else {
        runs::mark(store, &run, task, state, now).await?
    };
    let run_state = task.is_none().then(|| runs::marked_run_state(state));
    Ok(Marked { dry_run: req.dry_run, state: req.state, run: RunView::from(&run), tasks, run_state })
}

/// What a pause or unpause did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Paused {
    pub dag_id: String,
    pub paused: bool,
}

/// Pauses (no new runs start; runs in flight finish) or unpauses a DAG. The caller has found
/// the DAG (in the folder, or its last good version): a DAG the store has not seen yet gets
/// its row now, paused or not.
pub async fn set_paused(store: &dyn Store, dag_id: &str, paused: bool) -> Result<Paused, ActionError> {
    store.set_paused(dag_id, paused).await?;
    Ok(Paused { dag_id: dag_id.to_string(), paused })
}
