//! The operator trait every task runs through, and the local operators.
//!
//! An operator gets a [`TryContext`]: the task's rendered keys, a log file, and a way to
//! persist an external id (a process id, a cluster id, a query id) *the moment it has one*.
//! When the scheduler stops while a try runs, the next scheduler hands the recorded ids back
//! in [`TryContext::resumed`]; an operator that can pick its work up again from them says so
//! in [`TaskOperator::can_resume`], and is then run again for the *same* try instead of a new
//! one. The AWS operators plug in through [`OperatorProvider`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sluice_dag::Operator;
use sluice_store::Store;

mod command;
mod wait;

pub use command::{kill_orphan, CommandOperator, TRY_MARKER_ENV};
pub use wait::WaitOperator;

/// How a try ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with the outputs downstream templates read as `tasks.<id>.<field>`.
    Success(Map<String, Value>),
    /// The task ends skipped, with the reason.
    Skipped(String),
}

/// How a try failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub message: String,
    /// False for failures a retry cannot fix (bad keys, an operator missing from the build).
    pub retryable: bool,
}

impl TaskError {
    pub fn retryable(message: impl Into<String>) -> TaskError {
        TaskError { message: message.into(), retryable: true }
    }

    pub fn fatal(message: impl Into<String>) -> TaskError {
        TaskError { message: message.into(), retryable: false }
    }
}

/// A try's log file: `<logs>/<dag>/<run>/<task>/<try>.log`.
#[derive(Clone)]
pub struct TryLog {
    file: Arc<Mutex<std::fs::File>>,
    pub path: PathBuf,
}

impl TryLog {
    pub fn create(path: PathBuf) -> std::io::Result<TryLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(TryLog { file: Arc::new(Mutex::new(file)), path })
    }

    /// Appends one line (a newline is added).
    pub fn line(&self, text: &str) {
        use std::io::Write;
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{text}");
    }
}

/// Everything an operator needs for one try.
pub struct TryContext {
    pub store: Arc<dyn Store>,
    pub run: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// The DAG file, for keys relative to it (`cwd`, `query_file`).
    pub dag_file: PathBuf,
    /// External ids this same try recorded before the scheduler stopped; empty when fresh.
    pub resumed: Map<String, Value>,
    pub log: TryLog,
    /// Environment for local processes: `SLUICE_DAG_ID`, `SLUICE_RUN_ID`, `SLUICE_DS`, ...
    pub env: Vec<(String, String)>,
}

impl TryContext {
    /// Persists an external id at once; the try is not started over for it after a crash.
    pub async fn record(&self, key: &str, value: Value) -> Result<(), TaskError> {
        self.store
            .record_external_id(self.run, &self.task_id, self.try_number, key, &value)
            .await
            .map_err(|e| TaskError::retryable(format!("cannot record {key}: {e}")))
    }

    /// A recorded id from before a restart.
    pub fn resumed(&self, key: &str) -> Option<&Value> {
        self.resumed.get(key)
    }
}

/// A task's behaviour.
#[async_trait::async_trait]
pub trait TaskOperator: Send + Sync {
    /// Runs the try, or continues it when `ctx.resumed` holds ids from before a restart.
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError>;

    /// Whether a try that recorded `recorded` before the scheduler stopped can be continued
    /// (rather than counted as failed and retried).
    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        false
    }
}

/// Builds operators from rendered task keys. The scheduler asks each provider in turn.
pub trait OperatorProvider: Send + Sync {
    fn build(&self, op: &Operator, dag_file: &std::path::Path) -> Option<Box<dyn TaskOperator>>;
}

/// `command`, `wait` and `noop`.
pub struct LocalOperators;

impl OperatorProvider for LocalOperators {
    fn build(&self, op: &Operator, dag_file: &std::path::Path) -> Option<Box<dyn TaskOperator>> {
        match op {
            Operator::Command(c) => Some(Box::new(CommandOperator::new(c, dag_file))),
            Operator::Wait(w) => Some(Box::new(WaitOperator { duration: w.duration.as_std() })),
            Operator::Noop(_) => Some(Box::new(NoopOperator)),
            _ => None,
        }
    }
}

/// `noop`: succeeds at once.
pub struct NoopOperator;

#[async_trait::async_trait]
impl TaskOperator for NoopOperator {
    async fn run(&self, _ctx: &TryContext) -> Result<Outcome, TaskError> {
        Ok(Outcome::Success(Map::new()))
    }
}
