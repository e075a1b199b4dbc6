//! Sluice's persistent state, behind one trait.
//!
//! The [`Store`] trait is everything the scheduler and the CLI read or write: DAG rows (paused
//! flag, last parse error), runs, task instances, each try of a task (with the external ids
//! its operator reported), task outputs (what templates read as `tasks.<id>.<field>`) and
//! events (deadline missed, retries, recoveries).
//!
//! Every method that changes state is one transaction, so a crash between any two calls
//! leaves a state the daemon can resume from. SQLite ([`SqliteStore`]) is the default
//! backend: one file, WAL mode, created and migrated on first open. A PostgreSQL backend can
//! follow behind the same trait without touching the scheduler.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
pub use sluice_dag::{RunState, TaskState};

pub mod lock;
#[cfg(feature = "sqlite")]
mod sqlite;
pub use lock::{LockError, SchedulerLock};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}` (use sqlite:PATH or a file path)")]
    UnsupportedUrl(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Scheduled,
    Manual,
    Backfill,
    /// Created by `dagctl test` and run in that process; a daemon leaves it alone.
    Test,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
            RunKind::Backfill => "backfill",
            RunKind::Test => "test",
        }
    }

    pub fn from_name(s: &str) -> Option<RunKind> {
        [RunKind::Scheduled, RunKind::Manual, RunKind::Backfill, RunKind::Test].into_iter().find(|k| k.name() == s)
    }
}

/// A DAG as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub file: Option<String>,
    pub paused: bool,
    /// The error of the last load of its file, when it failed (the last good version keeps
    /// running).
    pub parse_error: Option<String>,
    /// Why the scheduler stopped scheduling the DAG although its file loads (a schedule that
    /// could not be computed); cleared when a new version of the file loads.
    pub schedule_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What a folder load found for one DAG id, for [`Store::sync_dags`].
#[derive(Debug, Clone, PartialEq)]
pub struct DagSync {
    pub dag_id: String,
    pub file: String,
    /// The text of the version that loaded; `None` when the file failed to load (the last
    /// good source is kept).
    pub source: Option<String>,
    /// The file's errors when it failed to load.
    pub parse_error: Option<String>,
    /// The DAG's row, when it is created now, starts paused (Airflow's
    /// `is_paused_upon_creation`). An existing row keeps its paused flag.
    pub paused_at_creation: bool,
}

/// A run to create, with all its tasks (created in state `none`).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub dag_id: String,
    pub run_id: String,
    pub kind: RunKind,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: Option<Map<String, Value>>,
    /// When the run must be finished by, if the DAG has a deadline.
    pub deadline: Option<DateTime<Utc>>,
    /// (task id, max tries = retries + 1)
    pub tasks: Vec<(String, u32)>,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
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
    /// When the run's latest attempt started: a run cleared after it ended starts again.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run first started (before any clear).
    pub first_started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub deadline_missed: bool,
}

/// `create_run` either created the run or found the one that already exists for that
/// (dag, logical date) or (dag, run id).
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Run),
    Existing(Run),
}

impl Created {
    pub fn run(&self) -> &Run {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    /// Empty: any state.
    pub states: Vec<RunState>,
    pub limit: Option<u32>,
}

/// One task in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInstance {
    pub run: i64,
    pub task_id: String,
    pub state: TaskState,
    /// Tries started so far (0 before the first).
    pub try_number: u32,
    /// The task may start tries while `try_number < max_tries`.
    pub max_tries: u32,
    /// For `up_for_retry`: when the next try may start.
    pub next_try_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One try of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Try {
    pub run: i64,
    pub task_id: String,
    /// 1 for the first try.
    pub try_number: u32,
    /// `running`, then `success`, `failed` or `skipped`.
    pub state: TaskState,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What the operator reported the moment it knew (`cluster_id`, `step_ids`, `pid`, ...).
    pub external_ids: Map<String, Value>,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TryOutcome {
    /// The task succeeded; its outputs become `tasks.<id>.<field>` for downstream templates.
    Success { outputs: Map<String, Value> },
    /// The try failed; with `retry_at`, the task goes `up_for_retry` until then, else `failed`.
    Failed { error: String, retry_at: Option<DateTime<Utc>> },
    /// The task ends skipped (e.g. a sensor with `soft_fail` that timed out).
    Skipped { reason: String },
}

/// One try to end with [`Store::finish_tries`].
#[derive(Debug, Clone, PartialEq)]
pub struct FinishTry {
    pub run: i64,
    pub task_id: String,
    pub try_number: u32,
    pub outcome: TryOutcome,
    pub at: DateTime<Utc>,
}

/// Something worth telling people about: `deadline_missed`, `retry`, `recovered`, ...
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub dag_id: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub dag_id: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// Everything the scheduler and the CLI read and write. Every method that changes state is
/// one transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // --- DAGs ---
    /// Records that `dag_id` was loaded from `file` with its text `source` (then
    /// `parse_error` is `None`), or that its file failed to load (`source` `None`, the last
    /// good source is kept). Creates the row if needed; never changes `paused`.
    async fn sync_dag(&self, dag_id: &str, file: &str, source: Option<&str>, parse_error: Option<&str>) -> Result<()> {
        let sync = DagSync {
            dag_id: dag_id.to_string(),
            file: file.to_string(),
            source: source.map(str::to_string),
            parse_error: parse_error.map(str::to_string),
            paused_at_creation: false,
        };
        self.sync_dags(std::slice::from_ref(&sync)).await
    }
    /// Records several DAGs as [`Store::sync_dag`] does, in one transaction; a DAG whose row is
    /// created here starts paused when its `paused_at_creation` says so. A DAG that loaded
    /// (`source` given) has its `schedule_error` cleared.
    async fn sync_dags(&self, dags: &[DagSync]) -> Result<()>;
    /// Records (or clears, with `None`) why the scheduler stopped scheduling a DAG whose file
    /// loads: what `dagctl list` shows.
    async fn set_schedule_error(&self, dag_id: &str, error: Option<&str>) -> Result<()>;
    /// The file and the text of the last version of `dag_id` that loaded, if one was recorded:
    /// what the CLI falls back to while the file is broken.
    async fn dag_source(&self, dag_id: &str) -> Result<Option<(String, String)>>;
    /// Pauses or unpauses a DAG, creating its row if needed.
    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()>;
    async fn dags(&self) -> Result<Vec<DagRow>>;

    // --- Runs ---
    /// Creates a run and its task instances in one transaction. A run is never created twice
    /// for the same (dag, logical date) or (dag, run id), also when several processes race:
    /// the loser gets `Created::Existing`.
    async fn create_run(&self, new: &NewRun) -> Result<Created>;
    async fn run(&self, id: i64) -> Result<Option<Run>>;
    async fn run_by_run_id(&self, dag_id: &str, run_id: &str) -> Result<Option<Run>>;
    async fn run_by_logical_date(&self, dag_id: &str, logical_date: DateTime<Utc>) -> Result<Option<Run>>;
    /// Runs, newest logical date first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// Sets a run's state: `started_at` is set each time it becomes running (a cleared run
    /// starts again; `first_started_at` keeps the first start), `ended_at`
    /// when it finishes (and cleared if it runs again).
    async fn set_run_state(&self, run: i64, state: RunState, at: DateTime<Utc>) -> Result<()>;
    /// Marks a run's deadline missed and records a `deadline_missed` event, once. Returns
    /// whether it was newly marked.
    async fn mark_deadline_missed(&self, run: i64, at: DateTime<Utc>) -> Result<bool>;

    // --- Task instances and tries ---
    async fn task_instances(&self, run: i64) -> Result<Vec<TaskInstance>>;
    /// Sets the state of several task instances of a run in one transaction (scheduled,
    /// queued, skipped, upstream_failed, removed, or a manual success/failed mark).
    async fn set_task_states(&self, run: i64, states: &[(String, TaskState)], at: DateTime<Utc>) -> Result<()>;
    /// Starts the next try: `try_number + 1`, task `running`, a new try row. Returns the try
    /// number.
    async fn start_try(&self, run: i64, task_id: &str, at: DateTime<Utc>) -> Result<u32>;
    /// Merges `key = value` into the try's external ids, at once and durably.
    async fn record_external_id(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        key: &str,
        value: &Value,
    ) -> Result<()>;
    /// Ends a try: the try row, the task instance, its outputs (on success) and a `retry`
    /// event (on a retry), in one transaction. The task instance follows only while this try
    /// is its current running one: a task cleared or marked while the try ran keeps what was
    /// decided meanwhile. Returns the task instance's state after the call.
    async fn finish_try(
        &self,
        run: i64,
        task_id: &str,
        try_number: u32,
        outcome: &TryOutcome,
        at: DateTime<Utc>,
    ) -> Result<TaskState>;
    /// Starts the next try of each `(run, task id)`, as [`Store::start_try`] does, all in one
    /// transaction (a scheduler starting many tasks at once commits once). Returns the try
    /// numbers, in order.
    async fn start_tries(&self, tasks: &[(i64, String)], at: DateTime<Utc>) -> Result<Vec<u32>> {
        let mut numbers = Vec::with_capacity(tasks.len());
        for (run, task_id) in tasks {
            numbers.push(self.start_try(*run, task_id, at).await?);
        }
        Ok(numbers)
    }
    /// Ends several tries, each as [`Store::finish_try`] does, all in one transaction. Returns
    /// each task instance's state after the call, in order.
    async fn finish_tries(&self, tries: &[FinishTry]) -> Result<Vec<TaskState>> {
        let mut states = Vec::with_capacity(tries.len());
        for t in tries {
            states.push(self.finish_try(t.run, &t.task_id, t.try_number, &t.outcome, t.at).await?);
        }
        Ok(states)
    }
    /// The tries of a run (of one task, when given), oldest first.
    async fn tries(&self, run: i64, task_id: Option<&str>) -> Result<Vec<Try>>;
    /// Every try still `running`, with its run: what a restarted daemon must recover.
    async fn running_tries(&self) -> Result<Vec<(Run, Try)>>;
    /// Outputs of a run's tasks: task id -> field -> value.
    async fn outputs(&self, run: i64) -> Result<BTreeMap<String, Map<String, Value>>>;
    /// Resets tasks to `none` so they run again (Airflow's clear): their outputs are deleted,
    /// their tries kept, `max_tries` becomes `try_number + retries + 1` (given per task), and a
    /// finished run goes back to `queued`.
    async fn clear_tasks(&self, run: i64, tasks: &[(String, u32)], at: DateTime<Utc>) -> Result<()>;

    // --- Events ---
    async fn add_event(&self, event: &NewEvent) -> Result<()>;
    /// Events, newest first.
    async fn events(&self, dag_id: Option<&str>, run_id: Option<&str>, limit: u32) -> Result<Vec<Event>>;

    /// Hands memory the backend caches but does not need now back to the system (SQLite's
    /// page cache after the DAG sources were synced). Changes no state.
    async fn release_memory(&self) -> Result<()> {
        Ok(())
    }

    /// True when another process has committed a change since the last call (SQLite's
    /// `data_version`); lets the daemon notice CLI writes without rescanning tables.
    async fn changed_elsewhere(&self) -> Result<bool>;
}
