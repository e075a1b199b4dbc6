//! One try of one task, run in its own tokio task: render the task's keys for its run, build
//! its operator, run it under its timeout (cancelling the remote work when cut off), and say
//! how it ended. The engine only spawns [`Job::execute`] and records the [`TryDone`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Utc;
use serde_json::{Map, Value};
use sluice_dag::{Dag, RenderError, RunDates, Task};
use sluice_store::{Run, Store};
use tracing::warn;

use crate::operators::{OperatorProvider, Outcome, TaskError, TryContext, TryLog};

/// How long an operator may take to cancel its remote work after a timeout.
const CANCEL_LIMIT: StdDuration = StdDuration::from_secs(60);

/// A try that finished (or was cut off).
pub(crate) struct TryDone {
    pub(crate) run: i64,
    pub(crate) task: usize,
    pub(crate) try_number: u32,
    pub(crate) result: Result<Outcome, TaskError>,
}

/// Where a try's log is: `<logs>/<dag>/<run>/<task>/<try>.log`.
pub fn log_path(logs: &std::path::Path, dag: &str, run_id: &str, task: &str, try_number: u32) -> PathBuf {
    logs.join(dag).join(run_id).join(task).join(format!("{try_number}.log"))
}

/// The run dates of a stored run, in the DAG's zone.
pub fn run_dates(dag: &Dag, run: &Run) -> RunDates {
    RunDates {
        logical_date: run.logical_date.with_timezone(&dag.timezone),
        data_interval_start: run.data_interval_start.with_timezone(&dag.timezone),
        data_interval_end: run.data_interval_end.with_timezone(&dag.timezone),
    }
}

/// Renders a task for a run, with the outputs its upstreams stored. `Err` is how the try ends
/// without running: skipped when a template reads an output an upstream never produced (the
/// upstream failed or was skipped: a terminate after a cluster that was never created has
/// nothing to do), failed otherwise.
pub(crate) async fn render(
    store: &Arc<dyn Store>,
    dag: &Dag,
    run: &Run,
    i: usize,
) -> Result<sluice_dag::Operator, Result<Outcome, TaskError>> {
    let task = &dag.tasks[i];
    if task.is_static() {
        // Nothing to render (a `noop`, a command without templates): as parsed.
        return Ok(task.operator.clone());
    }
    let dates = run_dates(dag, run);
    let mut ctx = dag.template_context(&task.id, &run.run_id, &dates, run.conf.as_ref());
    if task.reads_outputs {
        ctx.tasks =
            store.outputs(run.id).await.map_err(|e| Err(TaskError::retryable(format!("reading outputs: {e}"))))?;
    }
    match dag.render_task(task, &ctx) {
        Ok((_, op)) => Ok(op),
        Err(RenderError::Undefined(e)) => {
            let missing = dag
                .ancestors(&task.id)
                .into_iter()
                .find(|up| !up.operator.kind().outputs().is_empty() && !ctx.tasks.contains_key(&up.id));
            match missing {
                Some(up) => Err(Ok(Outcome::Skipped(format!("upstream `{}` produced no outputs ({e})", up.id)))),
                None => Err(Err(TaskError::fatal(e))),
            }
        }
        Err(e @ RenderError::Other(_)) => Err(Err(TaskError::fatal(e.to_string()))),
    }
}

/// Everything a try needs, moved into its own tokio task.
pub(crate) struct Job {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) providers: Arc<Vec<Arc<dyn OperatorProvider>>>,
    pub(crate) dag: Arc<Dag>,
    pub(crate) run: Run,
    pub(crate) task: usize,
    pub(crate) try_number: u32,
    pub(crate) resumed: Map<String, Value>,
    pub(crate) log_path: PathBuf,
    pub(crate) max_poke_interval: Option<sluice_dag::Duration>,
    pub(crate) task_env: Arc<Vec<(String, String)>>,
}

impl Job {
    pub(crate) async fn execute(self) -> TryDone {
        let result = self.attempt().await;
        TryDone { run: self.run.id, task: self.task, try_number: self.try_number, result }
    }

    /// Runs the try and writes how it ended to its log. The log's opening line is only kept in
    /// memory until something else is written: a try that succeeds without a word (a `noop`)
    /// leaves no file, while a failure or a skip always writes its reason.
    async fn attempt(&self) -> Result<Outcome, TaskError> {
        let task = &self.dag.tasks[self.task];
        let log = TryLog::new(self.log_path.clone());
        log.header(&format!(
            "[sluice] {} try {} of task {} in run {} ({})",
            Utc::now().to_rfc3339(),
            self.try_number,
            task.id,
            self.run.run_id,
            if self.resumed.is_empty() { "started" } else { "resumed" }
        ));
        let result = self.run_operator(task, &log).await;
        match &result {
            Ok(Outcome::Success(_)) => log.footer("[sluice] success"),
            Ok(Outcome::Skipped(r)) => log.line(&format!("[sluice] skipped: {r}")),
            Err(e) => log.line(&format!("[sluice] failed: {}", e.message)),
        }
        if let Some(e) = log.error() {
            // The work is done either way: a log that cannot be written does not undo it.
            warn!(dag = %self.dag.id, run = %self.run.run_id, task = %task.id, r#try = self.try_number, error = %e, "try log not written");
        }
        result
    }

    /// Renders the task, builds its operator and runs it, cut off at the task's `timeout`.
    async fn run_operator(&self, task: &Task, log: &TryLog) -> Result<Outcome, TaskError> {
        let mut op = match render(&self.store, &self.dag, &self.run, self.task).await {
            Ok(op) => op,
            Err(ended) => return ended,
        };
        if let (Some(cap), Some(p)) = (self.max_poke_interval, op.poke_interval_mut()) {
            *p = (*p).min(cap);
        }
        let operator = sluice_operator::build(&self.providers, &op, &self.dag, task)?;
        let dates = run_dates(&self.dag, &self.run);
        let ctx = TryContext {
            store: self.store.clone(),
            run: self.run.id,
            dag_id: self.dag.id.clone(),
            run_id: self.run.run_id.clone(),
            task_id: task.id.clone(),
            try_number: self.try_number,
            dag_file: self.dag.file.clone(),
            dates,
            resumed: self.resumed.clone(),
            log: log.clone(),
            env: self
                .task_env
                .iter()
                .cloned()
                .chain([
                    ("SLUICE_DAG_ID".into(), self.dag.id.clone()),
                    ("SLUICE_RUN_ID".into(), self.run.run_id.clone()),
                    ("SLUICE_TASK_ID".into(), task.id.clone()),
                    ("SLUICE_TRY_NUMBER".into(), self.try_number.to_string()),
                    ("SLUICE_DS".into(), dates.ds()),
                    ("SLUICE_LOGICAL_DATE".into(), dates.ts()),
                ])
                .collect(),
        };
        match task.timeout {
            Some(t) => match tokio::time::timeout(t.as_std(), operator.run(&ctx)).await {
                Ok(r) => r,
                Err(_) => {
                    log.line(&format!("[sluice] timed out after {t}; cancelling what the try started"));
                    if tokio::time::timeout(CANCEL_LIMIT, operator.cancel(&ctx)).await.is_err() {
                        log.line("[sluice] cancelling took too long; given up");
                    }
                    match &op {
                        // A sensor's timeout is its answer, as in Airflow: no retry, and with
                        // `soft_fail` the task ends skipped.
                        sluice_dag::Operator::Sensor(s) if s.soft_fail => {
                            Ok(Outcome::Skipped(format!("sensor timed out after {t} (soft_fail)")))
                        }
                        sluice_dag::Operator::Sensor(_) => Err(TaskError::fatal(format!("sensor timed out after {t}"))),
                        _ => Err(TaskError::retryable(format!("timed out after {t}"))),
                    }
                }
            },
            None => operator.run(&ctx).await,
        }
    }
}
