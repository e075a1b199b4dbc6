//! The interface between the scheduler and the operators, in a crate of its own so that an
//! operator family (the AWS operators) builds against it without compiling the engine.
//!
//! An operator gets a [`TryContext`]: the task's rendered keys, a log file, and a way to
//! persist an external id (a process id, a cluster id, a query id) *the moment it has one*.
//! When the scheduler stops while a try runs, the next scheduler hands the recorded ids back
//! in [`TryContext::resumed`]; an operator that can pick its work up again from them says so
//! in [`TaskOperator::can_resume`], and is then run again for the *same* try instead of a new
//! one. Operator families plug in through [`OperatorProvider`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_dag::{Dag, Operator, RunDates, Task};
use sluice_store::{Run, Store};

pub mod telemetry;

pub use telemetry::{CallCounts, Meter, ServiceCalls, Telemetry};

/// How a try ended well. A skip is an outcome, not an error: the task ends `skipped`, which
/// counts as done for its downstream (a sensor timing out with `soft_fail`, a task whose
/// upstream produced no outputs to read).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with the outputs downstream templates read as `tasks.<id>.<field>`.
    Success(Map<String, Value>),
    /// The task ends skipped, with the reason.
    Skipped(String),
}

/// Whether another try could end differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another try may succeed (a process that failed, a timeout, AWS throttling or a remote
    /// failure): the task is retried while its retry policy allows.
    Retryable,
    /// No retry can fix it (keys that do not render, an operator missing from this build,
    /// credentials refused, a sensor that timed out): the task fails now.
    Fatal,
}

/// How a try failed: its kind and one line saying why.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TaskError {
    pub fn retryable(message: impl Into<String>) -> TaskError {
        TaskError { kind: ErrorKind::Retryable, message: message.into() }
    }

    pub fn fatal(message: impl Into<String>) -> TaskError {
        TaskError { kind: ErrorKind::Fatal, message: message.into() }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

/// A try's log file: `<logs>/<dag>/<run>/<task>/<try>.log`, created (with its folders) when
/// its first line is written, so a try that says nothing (a `noop`) costs no inode. A
/// [`TryLog::header`] waits in memory and goes in before the first line; a
/// [`TryLog::footer`] goes only into a file that exists.
#[derive(Clone)]
pub struct TryLog {
    state: Arc<Mutex<LogState>>,
    pub path: PathBuf,
}

#[derive(Default)]
struct LogState {
    file: Option<std::fs::File>,
    header: Vec<String>,
    /// Why the file could not be created: it is not tried again for this try.
    error: Option<String>,
}

impl TryLog {
    /// The log of a try at `path`; nothing is created until a line is written.
    pub fn new(path: PathBuf) -> TryLog {
        TryLog { state: Arc::new(Mutex::new(LogState::default())), path }
    }

    /// A line that is written before the first [`TryLog::line`], and only if one is.
    pub fn header(&self, text: &str) {
        let mut state = self.lock();
        match &mut state.file {
            Some(f) => write_line(f, text),
            None => state.header.push(text.to_string()),
        }
    }

    /// Appends one line (a newline is added), creating the file first.
    pub fn line(&self, text: &str) {
        let mut state = self.lock();
        if state.file.is_none() && state.error.is_none() {
            match open(&self.path) {
                Ok(mut f) => {
                    for h in std::mem::take(&mut state.header) {
                        write_line(&mut f, &h);
                    }
                    state.file = Some(f);
                }
                Err(e) => state.error = Some(format!("cannot create the log file {}: {e}", self.path.display())),
            }
        }
        if let Some(f) = &mut state.file {
            write_line(f, text);
        }
    }

    /// Appends a line only to a file that exists: a closing word ("success") that is not
    /// worth a file of its own.
    pub fn footer(&self, text: &str) {
        if let Some(f) = &mut self.lock().file {
            write_line(f, text);
        }
    }

    /// Why the file could not be created, if a line was written and it could not.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

fn write_line(f: &mut std::fs::File, text: &str) {
    use std::io::Write;
    let _ = writeln!(f, "{text}");
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
    /// The run's dates, in the DAG's zone.
    pub dates: RunDates,
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

    /// What this try has recorded so far (read back from the store).
    pub async fn recorded(&self) -> Map<String, Value> {
        match self.store.tries(self.run, Some(&self.task_id)).await {
            Ok(tries) => {
                tries.into_iter().find(|t| t.try_number == self.try_number).map(|t| t.external_ids).unwrap_or_default()
            }
            Err(_) => self.resumed.clone(),
        }
    }

    /// The earlier tries of this task in this run, oldest first: a retry re-attaches to remote
    /// work they started that is still running or already succeeded.
    pub async fn earlier_tries(&self) -> Result<Vec<sluice_store::Try>, TaskError> {
        let tries = self
            .store
            .tries(self.run, Some(&self.task_id))
            .await
            .map_err(|e| TaskError::retryable(format!("reading earlier tries: {e}")))?;
        Ok(tries.into_iter().filter(|t| t.try_number < self.try_number).collect())
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

    /// The try was cut off (its `timeout`) while `run` was waiting: stop the remote work it
    /// started (cancel the steps, stop the query) so nothing keeps running and billing.
    async fn cancel(&self, _ctx: &TryContext) {}
}

/// Builds operators from rendered task keys. The scheduler asks each provider in turn.
#[async_trait::async_trait]
pub trait OperatorProvider: Send + Sync {
    /// The operator for a task, with its keys rendered into `op`; `None` when this provider
    /// does not know the operator.
    fn build(&self, op: &Operator, dag: &Dag, task: &Task) -> Option<Box<dyn TaskOperator>>;

    /// A run has ended: clean up what its tasks left behind (the AWS provider terminates the
    /// clusters the run created and did not terminate).
    async fn run_finished(&self, _dag: &Dag, _run: &Run, _store: &dyn Store) {}

    /// What this family counts about the services it calls ([`Telemetry`]), for the exporter;
    /// `None` when it calls none.
    fn telemetry(&self) -> Option<Arc<Telemetry>> {
        None
    }
}

/// The operator families of a build, asked in order: the one place a family is added (see
/// `dagctl`'s `context::providers`, where the daemon's and `dagctl test`'s registry is made).
#[derive(Clone, Default)]
pub struct OperatorRegistry {
    providers: Vec<Arc<dyn OperatorProvider>>,
}

impl OperatorRegistry {
    pub fn new() -> OperatorRegistry {
        OperatorRegistry::default()
    }

    /// The registry with one more family, asked after those already in it.
    pub fn with(mut self, provider: impl OperatorProvider + 'static) -> OperatorRegistry {
        self.providers.push(Arc::new(provider));
        self
    }

    /// The operator for a task from the first family that knows it.
    pub fn build(&self, op: &Operator, dag: &Dag, task: &Task) -> Result<Box<dyn TaskOperator>, TaskError> {
        build(&self.providers, op, dag, task)
    }
}

impl From<OperatorRegistry> for Vec<Arc<dyn OperatorProvider>> {
    fn from(registry: OperatorRegistry) -> Self {
        registry.providers
    }
}

/// The operator for a task from the first of `providers` that knows it; a fatal error (no
/// retry can add an operator to the build) naming the operator when none does.
pub fn build(
    providers: &[Arc<dyn OperatorProvider>],
    op: &Operator,
    dag: &Dag,
    task: &Task,
) -> Result<Box<dyn TaskOperator>, TaskError> {
    providers
        .iter()
        .find_map(|p| p.build(op, dag, task))
        .ok_or_else(|| TaskError::fatal(format!("operator `{}` is not available in this build of Sluice", op.kind())))
}

/// How to reach AWS: one `[connections.NAME]` of `sluice.toml`. Credentials never appear here
/// nor in DAG files: they come from the default chain (environment, profile, instance role),
/// optionally through `profile` and `role_arn`. Declared here rather than with the scheduler's
/// config so that the AWS operators read it without depending on the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// AWS region, e.g. "eu-west-2".
    #[serde(default)]
    pub region: Option<String>,
    /// A named profile of the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume (STS AssumeRole) on top of those credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Another endpoint for every service (an emulator, a VPC endpoint); S3 then uses
    /// path-style addressing.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A family that knows only `noop`, and says which instance built it.
    struct Noops(&'static str);

    struct Built(&'static str);

    #[async_trait::async_trait]
    impl TaskOperator for Built {
        async fn run(&self, _ctx: &TryContext) -> Result<Outcome, TaskError> {
            Ok(Outcome::Skipped(self.0.into()))
        }

        fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
            self.0 == "second"
        }
    }

    impl OperatorProvider for Noops {
        fn build(&self, op: &Operator, _dag: &Dag, _task: &Task) -> Option<Box<dyn TaskOperator>> {
            matches!(op, Operator::Noop(_)).then(|| Box::new(Built(self.0)) as Box<dyn TaskOperator>)
        }
    }

    fn dag() -> Dag {
        let src = "[tasks.quiet]\noperator = \"noop\"\n[tasks.loud]\noperator = \"command\"\ncommand = \"true\"\n";
        sluice_dag::parse_dag(std::path::Path::new("r.toml"), src).dag.expect("valid")
    }

    #[test]
    fn the_first_family_that_knows_an_operator_builds_it_and_none_is_a_fatal_error() {
        let dag = dag();
        let registry = OperatorRegistry::new().with(Noops("first")).with(Noops("second"));
        let quiet = dag.task("quiet").unwrap();
        let op = registry.build(&quiet.operator, &dag, quiet).expect("noop is known");
        assert!(!op.can_resume(&Map::new()), "built by the first family");
        let loud = dag.task("loud").unwrap();
        let e = registry.build(&loud.operator, &dag, loud).err().expect("command is not known");
        assert_eq!(e, TaskError::fatal("operator `command` is not available in this build of Sluice"));
        assert_eq!(Vec::<Arc<dyn OperatorProvider>>::from(registry).len(), 2);
    }

    #[test]
    fn a_log_with_only_a_header_and_a_footer_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dag/run/task/1.log");
        let log = TryLog::new(path.clone());
        log.header("[sluice] try 1 started");
        log.footer("[sluice] success");
        assert!(!path.exists());
        assert!(!dir.path().join("dag").exists(), "no folder either");
        assert_eq!(log.error(), None);
    }

    #[test]
    fn the_header_goes_in_before_the_first_line_and_the_footer_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dag/run/task/1.log");
        let log = TryLog::new(path.clone());
        log.header("header");
        log.clone().line("one");
        log.header("late header");
        log.line("two");
        log.footer("footer");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "header\none\nlate header\ntwo\nfooter\n");
    }

    #[test]
    fn a_log_that_cannot_be_created_says_why_once_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dag"), "a file where the folder should be").unwrap();
        let log = TryLog::new(dir.path().join("dag/run/task/1.log"));
        log.line("one");
        log.line("two");
        let error = log.error().expect("an error");
        assert!(error.starts_with("cannot create the log file ") && error.contains("1.log"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
