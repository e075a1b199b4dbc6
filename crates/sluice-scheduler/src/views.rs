//! What a listing shows, as typed structs: `dagctl --json` prints them and the coming HTTP API
//! serializes the same ones, so a run, a task or a DAG has one shape wherever it is read.
//!
//! Views are built from store rows (and the `Dag` where the zone, the schedule or the task
//! order is needed); they hold no logic beyond the arithmetic a reader would otherwise repeat
//! (durations, the next fire time).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sluice_dag::schedule::rfc3339;
use sluice_dag::{Dag, Diagnostic, Folder, LoadedFile, RunDates, RunState, TaskState};
use sluice_store::{DagRow, Run, RunKind, Store, StoreError, TaskInstance, Try};

/// The time from `start` to `end` in milliseconds, once both are known (never negative: a
/// clock stepped back does not make a task take less than nothing).
fn duration_ms(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<i64> {
    Some((end? - start?).num_milliseconds().max(0))
}

/// A run: its dates, state, times and deadline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunView {
    /// The store's key for the run.
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub kind: RunKind,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub state: RunState,
    pub conf: Option<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started (a cleared run starts again).
    pub started_at: Option<DateTime<Utc>>,
    /// When the run first started, before any clear.
    pub first_started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The latest attempt's duration, once it ended.
    pub duration_ms: Option<i64>,
    pub deadline: Option<DateTime<Utc>>,
    pub deadline_missed: bool,
    /// The key a trigger gave to make itself idempotent (`Idempotency-Key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> RunView {
        RunView {
            id: r.id,
            dag_id: r.dag_id.clone(),
            run_id: r.run_id.clone(),
            kind: r.kind,
            logical_date: r.logical_date,
            data_interval_start: r.data_interval_start,
            data_interval_end: r.data_interval_end,
            state: r.state,
            conf: r.conf.clone(),
            created_at: r.created_at,
            started_at: r.started_at,
            first_started_at: r.first_started_at,
            ended_at: r.ended_at,
            duration_ms: duration_ms(r.started_at, r.ended_at),
            deadline: r.deadline,
            deadline_missed: r.deadline_missed,
            idempotency_key: r.idempotency_key.clone(),
        }
    }
}

/// One try of a task, with where its output is written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TryView {
    pub task_id: String,
    /// 1 for the first try.
    pub try_number: u32,
    pub state: TaskState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// What the operator reported the moment it knew (`cluster_id`, `step_ids`, `pid`...).
    pub external_ids: Map<String, Value>,
    /// The try's log file (absent while nothing was written to it).
    pub log: PathBuf,
}

impl TryView {
    pub fn new(run: &Run, t: &Try, logs: &Path) -> TryView {
        TryView {
            task_id: t.task_id.clone(),
            try_number: t.try_number,
            state: t.state,
            started_at: t.started_at,
            ended_at: t.ended_at,
            duration_ms: duration_ms(Some(t.started_at), t.ended_at),
            error: t.error.clone(),
            external_ids: t.external_ids.clone(),
            log: crate::engine::log_path(logs, &run.dag_id, &run.run_id, &t.task_id, t.try_number),
        }
    }
}

/// One task of one run, with its tries (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskInstanceView {
    pub task_id: String,
    pub state: TaskState,
    /// Tries started so far (0 before the first).
    pub try_number: u32,
    pub max_tries: u32,
    /// For `up_for_retry`: when the next try may start.
    pub next_try_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub tries: Vec<TryView>,
}

impl TaskInstanceView {
    /// The last try, the one whose error and external ids a listing shows.
    pub fn last_try(&self) -> Option<&TryView> {
        self.tries.iter().max_by_key(|t| t.try_number)
    }
}

/// A run with its tasks: `dagctl tasks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetailView {
    pub run: RunView,
    /// The DAG's tasks in topological order, then any the run has that the DAG no longer has.
    pub tasks: Vec<TaskInstanceView>,
}

impl RunDetailView {
    pub fn new(dag: &Dag, run: &Run, tis: &[TaskInstance], tries: &[Try], logs: &Path) -> RunDetailView {
        let order = |ti: &&TaskInstance| dag.task_index(&ti.task_id).unwrap_or(usize::MAX);
        let mut sorted: Vec<&TaskInstance> = tis.iter().collect();
        sorted.sort_by_key(order);
        let tasks = sorted
            .into_iter()
            .map(|ti| {
                let mut mine: Vec<TryView> =
                    tries.iter().filter(|t| t.task_id == ti.task_id).map(|t| TryView::new(run, t, logs)).collect();
                mine.sort_by_key(|t| t.try_number);
                TaskInstanceView {
                    task_id: ti.task_id.clone(),
                    state: ti.state,
                    try_number: ti.try_number,
                    max_tries: ti.max_tries,
                    next_try_at: ti.next_try_at,
                    started_at: ti.started_at,
                    ended_at: ti.ended_at,
                    duration_ms: duration_ms(ti.started_at, ti.ended_at),
                    tries: mine,
                }
            })
            .collect();
        RunDetailView { run: RunView::from(run), tasks }
    }

    /// Reads the run's task instances and tries from the store.
    pub async fn load(store: &dyn Store, dag: &Dag, run: &Run, logs: &Path) -> Result<RunDetailView, StoreError> {
        let tis = store.task_instances(run.id).await?;
        let tries = store.tries(run.id, None).await?;
        Ok(RunDetailView::new(dag, run, &tis, &tries, logs))
    }
}

/// The dates of one scheduled run, in the DAG's zone: `dagctl next`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDatesView {
    pub fire_time: String,
    pub logical_date: String,
    pub ds: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
    /// When the run must be finished by, if the DAG has a deadline.
    pub deadline: Option<String>,
}

impl RunDatesView {
    pub fn new(dag: &Dag, r: &RunDates) -> RunDatesView {
        RunDatesView {
            fire_time: rfc3339(r.fire_time()),
            logical_date: rfc3339(r.logical_date),
            ds: r.ds(),
            data_interval_start: rfc3339(r.data_interval_start),
            data_interval_end: rfc3339(r.data_interval_end),
            deadline: dag.deadline.and_then(|d| d.for_fire_time(r.fire_time())).map(rfc3339),
        }
    }
}

/// A DAG of the folder with what the store knows of it: `dagctl list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DagView {
    pub id: String,
    pub file: PathBuf,
    /// The cron expression; none for a DAG that runs only when triggered.
    pub schedule: Option<String>,
    pub timezone: String,
    pub next_fire_time: Option<String>,
    pub next_ds: Option<String>,
    pub tasks: usize,
    pub paused: bool,
    /// Why the scheduler stopped scheduling it although its file loads.
    pub schedule_error: Option<String>,
    pub tags: Vec<String>,
}

impl DagView {
    /// `dag` as of `now`, with what its store row says: a DAG the store does not know yet is
    /// shown as the scheduler will create it, paused when it says `paused_at_creation`.
    pub fn new(dag: &Dag, row: Option<&DagRow>, now: DateTime<Utc>) -> DagView {
        let next = dag.runs_firing_after(now.with_timezone(&dag.timezone)).next();
        DagView {
            id: dag.id.clone(),
            file: dag.file.clone(),
            schedule: dag.schedule.as_ref().map(|s| s.expr().to_string()),
            timezone: dag.timezone.name().to_string(),
            next_fire_time: next.map(|r| rfc3339(r.fire_time())),
            next_ds: next.map(|r| r.ds()),
            tasks: dag.tasks.len(),
            paused: row.map_or(dag.paused_at_creation, |r| r.paused),
            schedule_error: row.and_then(|r| r.schedule_error.clone()),
            tags: dag.tags.clone(),
        }
    }
}

/// A DAG file that does not load, with its errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FailedFileView {
    pub file: PathBuf,
    pub dag_id: Option<String>,
    pub errors: Vec<Diagnostic>,
}

/// The folder's DAGs and the files that fail: `dagctl list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagListView {
    pub dags: Vec<DagView>,
    pub failed_files: Vec<FailedFileView>,
}

impl DagListView {
    /// The folder's DAGs as of `now`, with the paused flags and schedule errors of `rows`. A
    /// DAG the store does not know yet is shown as the scheduler will create it: paused when
    /// it says `paused_at_creation`.
    pub fn new(folder: &Folder, rows: &[DagRow], now: DateTime<Utc>) -> DagListView {
        let dags =
            folder.dags.iter().map(|dag| DagView::new(dag, rows.iter().find(|r| r.dag_id == dag.id), now)).collect();
        let failed_files = folder.files.iter().filter(|f| f.has_errors()).map(FailedFileView::of).collect();
        DagListView { dags, failed_files }
    }
}

impl FailedFileView {
    /// A loaded file with its errors (its warnings left out).
    pub fn of(f: &LoadedFile) -> FailedFileView {
        let errors = f.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        FailedFileView { file: f.path.clone(), dag_id: f.dag_id.clone(), errors }
    }
}

/// One checked file: `dagctl validate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheckView {
    pub file: PathBuf,
    pub dag_id: Option<String>,
    pub valid: bool,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// The verdict on a set of files: `dagctl validate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationView {
    pub valid: bool,
    pub files: Vec<FileCheckView>,
}

impl From<&Folder> for ValidationView {
    fn from(folder: &Folder) -> ValidationView {
        let files: Vec<FileCheckView> = folder
            .files
            .iter()
            .map(|f| FileCheckView {
                file: f.path.clone(),
                dag_id: f.dag_id.clone(),
                valid: !f.has_errors(),
                diagnostics: f.diagnostics.clone(),
            })
            .collect();
        ValidationView { valid: files.iter().all(|f| f.valid), files }
    }
}

/// One day of a DAG's calendar: the runs whose logical date falls on it, in the DAG's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CalendarDay {
    /// `YYYY-MM-DD` in the DAG's zone.
    pub date: String,
    pub runs: u32,
    pub success: u32,
    pub failed: u32,
    /// Queued or running.
    pub active: u32,
    /// What the day's cell shows: `failed` if any run failed, else `running` if any is
    /// unfinished, else `success`.
    pub state: RunState,
}

/// A year of a DAG's runs by logical date: the UI's calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CalendarView {
    pub dag_id: String,
    pub year: i32,
    pub timezone: String,
    /// Only days with runs, oldest first.
    pub days: Vec<CalendarDay>,
}

impl CalendarView {
    /// The runs of `year` (logical dates in the DAG's zone) counted by day.
    pub fn new(dag: &Dag, year: i32, runs: &[Run]) -> CalendarView {
        let mut days: std::collections::BTreeMap<String, CalendarDay> = std::collections::BTreeMap::new();
        for r in runs {
            let local = r.logical_date.with_timezone(&dag.timezone);
            if chrono::Datelike::year(&local) != year {
                continue;
            }
            let date = local.format("%Y-%m-%d").to_string();
            let day = days.entry(date.clone()).or_insert(CalendarDay {
                date,
                runs: 0,
                success: 0,
                failed: 0,
                active: 0,
                state: RunState::Success,
            });
            day.runs += 1;
            match r.state {
                RunState::Success => day.success += 1,
                RunState::Failed => day.failed += 1,
                RunState::Queued | RunState::Running => day.active += 1,
            }
            day.state = if day.failed > 0 {
                RunState::Failed
            } else if day.active > 0 {
                RunState::Running
            } else {
                RunState::Success
            };
        }
        CalendarView {
            dag_id: dag.id.clone(),
            year,
            timezone: dag.timezone.name().to_string(),
            days: days.into_values().collect(),
        }
    }

    /// The logical-date range of `year` in the DAG's zone, as UTC instants (start inclusive,
    /// end inclusive): what to ask the store for.
    pub fn range(dag: &Dag, year: i32) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        use chrono::TimeZone;
        let start = chrono::NaiveDate::from_ymd_opt(year, 1, 1)?.and_hms_opt(0, 0, 0)?;
        let end = chrono::NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?.and_hms_opt(0, 0, 0)?;
        let from = dag.timezone.from_local_datetime(&start).earliest()?.with_timezone(&Utc);
        let to =
            dag.timezone.from_local_datetime(&end).earliest()?.with_timezone(&Utc) - chrono::Duration::microseconds(1);
        Some((from, to))
    }
}
