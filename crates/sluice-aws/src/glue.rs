//! Glue: the `crawler` and `glue_job` operators and the `glue_crawler` sensor.
//!
//! A crawler has no run id, so a crawl is told apart by its start time: before StartCrawler
//! the task records `previous_crawl_start` (the start of the crawler's last crawl, or null),
//! after it `crawler` (the name). A crawl whose `LastCrawl.StartTime` differs from the one
//! recorded, or a crawler seen RUNNING since, is this task's crawl. So a resumed try never
//! starts a second crawl: while the crawler is RUNNING or STOPPING it waits; when it is READY
//! after a crawl newer than the recorded one it only reads that crawl's outcome; it starts
//! the crawler only when no newer crawl happened. When StartCrawler answers that the crawler
//! is already running, the task waits for that crawl and takes its outcome.
//!
//! Success is READY with the last crawl SUCCEEDED (AWS) or COMPLETED (what moto says); a
//! FAILED, CANCELLED (or moto's STOPPED) crawl fails the task with Glue's error message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{Crawler, CrawlerState, CrawlerTargets, JobRunState, S3Target, WorkerType};
use aws_smithy_types::date_time::Format;
use serde_json::{json, Map, Value};
use sluice_dag::operators as ops;
use sluice_dag::TaskState;
use sluice_operator::{Outcome, TaskError, TaskOperator, TryContext};

use crate::clients::Clients;
use crate::wait::{aws_error, call, AwsError, Poll, Waiter};

/// The start of a crawler's last crawl, as recorded (RFC 3339 with fractions).
fn last_crawl_start(c: &Crawler) -> Option<String> {
    c.last_crawl().and_then(|l| l.start_time()).and_then(|t| t.fmt(Format::DateTime).ok())
}

/// A crawler's state, or `None` when it does not exist.
async fn get_crawler(glue: &aws_sdk_glue::Client, name: &str) -> Result<Option<Crawler>, AwsError> {
    match glue.get_crawler().name(name).send().await {
        Ok(out) => Ok(out.crawler().cloned()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_not_found_exception()) => Ok(None),
        Err(e) => Err(aws_error("GetCrawler", e)),
    }
}

fn state_name(c: &Crawler) -> &str {
    c.state().map_or("UNKNOWN", |s| s.as_str())
}

/// What a READY crawler's last crawl says: done well, failed (why), or still nothing to read.
fn last_crawl_outcome(name: &str, c: &Crawler) -> Poll<()> {
    let Some(last) = c.last_crawl() else {
        return Poll::Pending("READY, never crawled".into());
    };
    let status = last.status().map(|s| s.as_str()).unwrap_or("UNKNOWN");
    match status {
        "SUCCEEDED" | "COMPLETED" => Poll::Ready(()),
        "FAILED" | "CANCELLED" | "STOPPED" => Poll::Failed(format!(
            "crawler {name}: last crawl {status}: {}",
            last.error_message().filter(|m| !m.is_empty()).unwrap_or("no error message given")
        )),
        other => Poll::Pending(format!("READY, last crawl {other}")),
    }
}

/// Waits until the crawler is READY after this task's crawl (one newer than `previous`, or
/// any crawl once the crawler was seen running), then reads that crawl's outcome.
async fn wait_crawl(
    glue: &aws_sdk_glue::Client,
    ctx: &TryContext,
    name: &str,
    previous: Option<&str>,
    seen_running: bool,
    delay: Duration,
) -> Result<(), TaskError> {
    let seen_running = AtomicBool::new(seen_running);
    Waiter::new(format!("crawler {name} to be READY"), delay)
        .wait(ctx, || async {
            let Some(c) = get_crawler(glue, name).await? else {
                return Ok(Poll::Failed(format!("crawler {name} does not exist")));
            };
            Ok(match c.state() {
                Some(CrawlerState::Ready) => {
                    let newer = last_crawl_start(&c).as_deref() != previous;
                    if seen_running.load(Ordering::Relaxed) || newer {
                        last_crawl_outcome(name, &c)
                    } else {
                        Poll::Pending("READY, the crawl has not started yet".into())
                    }
                }
                Some(CrawlerState::Running | CrawlerState::Stopping) => {
                    seen_running.store(true, Ordering::Relaxed);
                    Poll::Pending(state_name(&c).to_string())
                }
                _ => Poll::Pending(state_name(&c).to_string()),
            })
        })
        .await
}

/// `crawler`.
pub struct CrawlerOperator {
    pub cfg: ops::Crawler,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl CrawlerOperator {
    /// Whether an existing crawler already has the role, database, targets, prefix and
    /// description given (then it is not updated: no new crawler version for nothing).
    fn up_to_date(&self, current: &Crawler) -> bool {
        let c = &self.cfg;
        let paths: Vec<&str> =
            current.targets().map(|t| t.s3_targets().iter().filter_map(|t| t.path()).collect()).unwrap_or_default();
        let text = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        current.role() == c.role.as_deref()
            && current.database_name() == c.database.as_deref()
            && paths == c.s3_targets.iter().map(String::as_str).collect::<Vec<_>>()
            && text(current.table_prefix()) == text(c.table_prefix.as_deref())
            && text(current.description()) == text(c.description.as_deref())
    }

    /// Creates the crawler, or updates it when it exists (given role, database and targets).
    async fn create_or_update(&self, glue: &aws_sdk_glue::Client, ctx: &TryContext) -> Result<(), TaskError> {
        let c = &self.cfg;
        let (Some(role), Some(database)) = (&c.role, &c.database) else { return Ok(()) };
        if c.s3_targets.is_empty() {
            return Ok(());
        }
        let targets = CrawlerTargets::builder()
            .set_s3_targets(Some(c.s3_targets.iter().map(|p| S3Target::builder().path(p).build()).collect()))
            .build();
        let existing = call(ctx, || get_crawler(glue, &c.name)).await?;
        if let Some(current) = &existing {
            if self.up_to_date(current) {
                ctx.log.line(&format!("[aws] crawler {} is up to date", c.name));
                return Ok(());
            }
        } else {
            let created = glue
                .create_crawler()
                .name(&c.name)
                .role(role)
                .database_name(database)
                .targets(targets.clone())
                .set_table_prefix(c.table_prefix.clone())
                .set_description(c.description.clone())
                .send()
                .await;
            match created {
                Ok(_) => {
                    ctx.log.line(&format!("[aws] created crawler {}", c.name));
                    return Ok(());
                }
                // Created meanwhile by someone else: update it below.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_already_exists_exception()) => {}
                Err(e) => return Err(aws_error("CreateCrawler", e).into()),
            }
        }
        let updated = glue
            .update_crawler()
            .name(&c.name)
            .role(role)
            .database_name(database)
            .targets(targets)
            .set_table_prefix(c.table_prefix.clone())
            .set_description(c.description.clone())
            .send()
            .await;
        match updated {
            Ok(_) => ctx.log.line(&format!("[aws] updated crawler {}", c.name)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_crawler_running_exception()) => {
                ctx.log.line(&format!("[aws] crawler {} is running; not updated (its crawl is awaited)", c.name))
            }
            Err(e) => return Err(aws_error("UpdateCrawler", e).into()),
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TaskOperator for CrawlerOperator {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let glue = self.clients.glue(self.connection.as_deref()).await?;
        let name = self.cfg.name.as_str();
        let delay = self.cfg.poke_interval.as_std();

        // Resumed after a restart: wait for the crawl this try started, if it did.
        if ctx.resumed("previous_crawl_start").is_some() || ctx.resumed("crawler").is_some() {
            let previous = ctx.resumed("previous_crawl_start").and_then(Value::as_str).map(str::to_string);
            let started = ctx.resumed("crawler").is_some();
            let Some(c) = call(ctx, || get_crawler(&glue, name)).await? else {
                return Err(TaskError::retryable(format!("crawler {name} does not exist")));
            };
            let running = matches!(c.state(), Some(CrawlerState::Running | CrawlerState::Stopping));
            let newer = last_crawl_start(&c) != previous;
            if running || newer {
                ctx.log.line(&format!("[aws] re-attaching to crawler {name} ({})", state_name(&c)));
                if !started {
                    ctx.record("crawler", json!(name)).await?;
                }
                wait_crawl(&glue, ctx, name, previous.as_deref(), running, delay).await?;
                return Ok(Outcome::Success(Map::new()));
            }
            ctx.log.line(&format!("[aws] crawler {name} did not crawl since; starting it"));
        } else {
            self.create_or_update(&glue, ctx).await?;
        }

        let Some(c) = call(ctx, || get_crawler(&glue, name)).await? else {
            return Err(TaskError::fatal(format!(
                "crawler {name} does not exist (give `role`, `database` and `s3_targets` to create it)"
            )));
        };
        let previous = last_crawl_start(&c);
        ctx.record("previous_crawl_start", json!(previous)).await?;
        let already_running = call(ctx, || async {
            match glue.start_crawler().name(name).send().await {
                Ok(_) => Ok(false),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_crawler_running_exception()) => Ok(true),
                Err(e) => Err(aws_error("StartCrawler", e)),
            }
        })
        .await?;
        ctx.log.line(&if already_running {
            format!("[aws] crawler {name} is already running; waiting for that crawl")
        } else {
            format!("[aws] started crawler {name}")
        });
        ctx.record("crawler", json!(name)).await?;
        wait_crawl(&glue, ctx, name, previous.as_deref(), already_running, delay).await?;
        ctx.log.line(&format!("[aws] crawler {name} finished its crawl"));
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out: the crawl is stopped.
    async fn cancel(&self, ctx: &TryContext) {
        let recorded = ctx.recorded().await;
        // `previous_crawl_start` is recorded just before StartCrawler: before it, nothing started.
        if !recorded.contains_key("previous_crawl_start") {
            return;
        }
        let Ok(glue) = self.clients.glue(self.connection.as_deref()).await else { return };
        if !recorded.contains_key("crawler") {
            // Cut off while StartCrawler was in flight: the crawler is stopped if it runs (the
            // crawl this try started, or the one it would have waited for).
            let Ok(Some(c)) = get_crawler(&glue, &self.cfg.name).await else { return };
            if !matches!(c.state(), Some(CrawlerState::Running)) {
                return;
            }
            ctx.log.line(&format!("[aws] cut off while starting crawler {}: it runs", self.cfg.name));
        }
        {
            let r = glue.stop_crawler().name(&self.cfg.name).send().await;
            ctx.log.line(&format!(
                "[aws] stopping crawler {}: {}",
                self.cfg.name,
                match r {
                    Ok(_) => "requested".to_string(),
                    Err(e) if e.code() == Some("CrawlerNotRunningException") => "it is not running".to_string(),
                    Err(e) => aws_error("StopCrawler", e).message,
                }
            ));
        }
    }
}

/// `sensor` of kind `glue_crawler`: the crawler is READY and its last crawl succeeded. A
/// crawler that does not exist (yet) is waited for; a failed last crawl fails the task.
pub struct CrawlerSensor {
    pub name: String,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

#[async_trait::async_trait]
impl TaskOperator for CrawlerSensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let glue = self.clients.glue(self.connection.as_deref()).await?;
        let name = self.name.as_str();
        Waiter::new(format!("crawler {name} to be READY after a successful crawl"), self.poke_interval)
            .wait(ctx, || async {
                let Some(c) = get_crawler(&glue, name).await? else {
                    return Ok(Poll::Pending(format!("crawler {name} does not exist yet")));
                };
                Ok(match c.state() {
                    Some(CrawlerState::Ready) => last_crawl_outcome(name, &c),
                    _ => Poll::Pending(state_name(&c).to_string()),
                })
            })
            .await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

/// A Glue job run's state and its error message (empty when Glue gives none).
async fn get_job_run(glue: &aws_sdk_glue::Client, job: &str, id: &str) -> Result<(JobRunState, String), AwsError> {
    let out = glue.get_job_run().job_name(job).run_id(id).send().await.map_err(|e| aws_error("GetJobRun", e))?;
    Ok(match out.job_run() {
        Some(r) => (
            r.job_run_state().cloned().unwrap_or(JobRunState::Starting),
            r.error_message().unwrap_or_default().to_string(),
        ),
        None => (JobRunState::Starting, String::new()),
    })
}

/// What one look at a job run says: SUCCEEDED is done; FAILED, ERROR, TIMEOUT, STOPPED and
/// EXPIRED fail with Glue's `ErrorMessage`; anything else (STARTING, RUNNING, WAITING,
/// STOPPING) is still pending.
pub fn job_run_outcome(job: &str, id: &str, state: &JobRunState, error: &str) -> Poll<()> {
    match state {
        JobRunState::Succeeded => Poll::Ready(()),
        JobRunState::Failed
        | JobRunState::Error
        | JobRunState::Timeout
        | JobRunState::Stopped
        | JobRunState::Expired => Poll::Failed(format!(
            "Glue job {job} run {id} {}: {}",
            state.as_str(),
            if error.is_empty() { "no error message given" } else { error }
        )),
        other => Poll::Pending(other.as_str().to_string()),
    }
}

/// Whether an earlier try's job run is worth waiting for instead of starting another.
fn reusable(state: &JobRunState) -> bool {
    matches!(state, JobRunState::Starting | JobRunState::Running | JobRunState::Waiting | JobRunState::Succeeded)
}

/// How much earlier than the recorded `submitted_at` Glue's clock may put a run's start.
pub const CLOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// `glue_job`.
///
/// The job run id is recorded the moment StartJobRun returns it; a resumed try waits for that
/// run, and a retry re-attaches to the newest earlier try's run of the same job while it is
/// STARTING, RUNNING, WAITING or SUCCEEDED (a task cleared after it succeeded starts a new run).
/// StartJobRun has no idempotency token, so the try records `submitted_at` just before it: a
/// try cut off while the request was in flight finds its run again as the job's earliest run
/// started since then (less [`CLOCK_SLACK`]) with this try's arguments and not another try's,
/// to wait for it (resumed, retried) or to stop it (cancelled). A run of the same job with the
/// same arguments started by someone else in that window would be taken for it.
pub struct GlueJobRun {
    pub cfg: ops::GlueJob,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl GlueJobRun {
    /// The run a try that recorded `submitted_at` (RFC 3339) but no id started, if Glue has it:
    /// the earliest run of the job started since then with this task's arguments that no
    /// other try recorded.
    async fn submitted(
        &self,
        glue: &aws_sdk_glue::Client,
        ctx: &TryContext,
        submitted_at: &str,
    ) -> Result<Option<String>, TaskError> {
        let Ok(since) = aws_smithy_types::DateTime::from_str(submitted_at, Format::DateTime) else {
            return Ok(None);
        };
        let since = since.secs() - CLOCK_SLACK.as_secs() as i64;
        let known: Vec<String> = ctx
            .earlier_tries()
            .await?
            .iter()
            .filter_map(|t| t.external_ids.get("job_run_id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let job = self.cfg.job_name.as_str();
        let runs = call(ctx, || async {
            glue.get_job_runs().job_name(job).send().await.map_err(|e| aws_error("GetJobRuns", e))
        })
        .await?;
        let ours = |r: &&aws_sdk_glue::types::JobRun| {
            let args = r.arguments();
            r.started_on().is_some_and(|t| t.secs() >= since)
                && r.id().is_some_and(|id| !known.iter().any(|k| k == id))
                && self.cfg.arguments.iter().all(|(k, v)| args.and_then(|a| a.get(k)) == Some(v))
        };
        let found = runs.job_runs().iter().filter(ours).min_by_key(|r| r.started_on().map(|t| t.as_nanos()));
        Ok(found.and_then(|r| r.id()).map(str::to_string))
    }

    /// The newest earlier try's run of this job, when it can still succeed or has.
    async fn earlier(&self, glue: &aws_sdk_glue::Client, ctx: &TryContext) -> Result<Option<String>, TaskError> {
        let job = self.cfg.job_name.as_str();
        for t in ctx.earlier_tries().await?.iter().rev() {
            if matches!(t.state, TaskState::Success | TaskState::Skipped) {
                return Ok(None);
            }
            if t.external_ids.get("job_name").and_then(Value::as_str).is_some_and(|j| j != job) {
                return Ok(None);
            }
            let found;
            let id = match t.external_ids.get("job_run_id").and_then(Value::as_str) {
                Some(id) => id,
                None => {
                    // Cut off while its StartJobRun was in flight: the run it may have started.
                    let Some(at) = t.external_ids.get("submitted_at").and_then(Value::as_str) else { continue };
                    found = self.submitted(glue, ctx, at).await?;
                    match &found {
                        Some(id) => id.as_str(),
                        None => continue,
                    }
                }
            };
            let state = match call(ctx, || get_job_run(glue, job, id)).await {
                Ok((state, _)) => state,
                Err(e) => {
                    ctx.log.line(&format!(
                        "[aws] try {}'s Glue job run {id} cannot be read ({}); starting anew",
                        t.try_number, e.message
                    ));
                    return Ok(None);
                }
            };
            let again = reusable(&state);
            ctx.log.line(&format!(
                "[aws] try {}'s Glue job run {id} is {}; {}",
                t.try_number,
                state.as_str(),
                if again { "re-attaching" } else { "starting anew" }
            ));
            return Ok(again.then(|| id.to_string()));
        }
        Ok(None)
    }

    /// The run of a try with no recorded id: the one this try submitted when it was cut off
    /// in flight, else an earlier try's, else a new one.
    async fn find_or_start(&self, glue: &aws_sdk_glue::Client, ctx: &TryContext) -> Result<String, TaskError> {
        let job = self.cfg.job_name.as_str();
        ctx.record("job_name", json!(job)).await?;
        if let Some(at) = ctx.resumed("submitted_at").and_then(Value::as_str) {
            if let Some(id) = self.submitted(glue, ctx, at).await? {
                ctx.log.line(&format!("[aws] cut off while submitting: Glue job {job} run {id} is the one submitted"));
                ctx.record("job_run_id", json!(id)).await?;
                return Ok(id);
            }
        }
        if let Some(id) = self.earlier(glue, ctx).await? {
            ctx.record("job_run_id", json!(id)).await?;
            return Ok(id);
        }
        self.start(glue, ctx).await
    }

    async fn start(&self, glue: &aws_sdk_glue::Client, ctx: &TryContext) -> Result<String, TaskError> {
        let c = &self.cfg;
        let workers = c
            .number_of_workers
            .map(|n| i32::try_from(n).map_err(|_| TaskError::fatal(format!("number_of_workers {n} is too large"))))
            .transpose()?;
        let timeout_minutes =
            c.execution_timeout.map(|d| i32::try_from(d.as_std().as_secs().div_ceil(60).max(1)).unwrap_or(i32::MAX));
        let arguments: std::collections::HashMap<String, String> =
            c.arguments.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Before the request: a try cut off while it is in flight can find its run again.
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        ctx.record("submitted_at", json!(now.fmt(Format::DateTime).unwrap_or_default())).await?;
        // Not sent again on an error: without a token a second request could be a second run.
        let out = glue
            .start_job_run()
            .job_name(&c.job_name)
            .set_arguments((!arguments.is_empty()).then_some(arguments))
            .set_worker_type(c.worker_type.as_deref().map(WorkerType::from))
            .set_number_of_workers(workers)
            .set_timeout(timeout_minutes)
            .send()
            .await
            .map_err(|e| start_error(&c.job_name, e))?;
        let Some(id) = out.job_run_id().filter(|id| !id.is_empty()).map(str::to_string) else {
            return Err(TaskError::retryable("StartJobRun returned no job run id"));
        };
        ctx.record("job_run_id", json!(id)).await?;
        ctx.log.line(&format!("[aws] started Glue job {} run {id}", c.job_name));
        Ok(id)
    }
}

/// StartJobRun's error: a job that does not exist fails the try for good (a retry cannot
/// create it), with what to do.
fn start_error(
    job: &str,
    e: aws_sdk_glue::error::SdkError<aws_sdk_glue::operation::start_job_run::StartJobRunError>,
) -> TaskError {
    if e.as_service_error().is_some_and(|s| s.is_entity_not_found_exception()) {
        return TaskError::fatal(format!(
            "Glue job {job} does not exist: create it (in the console, CloudFormation or Terraform) or fix `job_name`"
        ));
    }
    aws_error("StartJobRun", e).into()
}

#[async_trait::async_trait]
impl TaskOperator for GlueJobRun {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let glue = self.clients.glue(self.connection.as_deref()).await?;
        let job = self.cfg.job_name.as_str();
        let id = match ctx.resumed("job_run_id").and_then(Value::as_str) {
            Some(id) => {
                ctx.log.line(&format!("[aws] re-attaching to Glue job {job} run {id}"));
                id.to_string()
            }
            None => self.find_or_start(&glue, ctx).await?,
        };
        Waiter::new(format!("Glue job {job} run {id}"), self.cfg.poke_interval.as_std())
            .wait(ctx, || async {
                let (state, error) = get_job_run(&glue, job, &id).await?;
                Ok(job_run_outcome(job, &id, &state, &error))
            })
            .await?;
        ctx.log.line(&format!("[aws] Glue job {job} run {id} succeeded"));
        Ok(Outcome::Success(Map::from_iter([("job_run_id".to_string(), json!(id))])))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out: the job run is stopped (BatchStopJobRun).
    async fn cancel(&self, ctx: &TryContext) {
        let recorded = ctx.recorded().await;
        let job = self.cfg.job_name.as_str();
        let Ok(glue) = self.clients.glue(self.connection.as_deref()).await else { return };
        let id = match recorded.get("job_run_id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                // Cut off while StartJobRun was in flight: the run it started, if it reached Glue.
                let Some(at) = recorded.get("submitted_at").and_then(Value::as_str) else { return };
                match self.submitted(&glue, ctx, at).await {
                    Ok(Some(id)) => {
                        ctx.log.line(&format!(
                            "[aws] cut off while submitting: Glue job {job} run {id} is the one submitted"
                        ));
                        let _ = ctx.record("job_run_id", json!(id)).await;
                        id
                    }
                    Ok(None) => {
                        ctx.log.line(&format!("[aws] cut off while submitting: no run of Glue job {job} was started"));
                        return;
                    }
                    Err(e) => {
                        ctx.log
                            .line(&format!("[aws] cut off while submitting; cannot look for its run: {}", e.message));
                        return;
                    }
                }
            }
        };
        let id = id.as_str();
        let r = glue.batch_stop_job_run().job_name(job).job_run_ids(id).send().await;
        ctx.log.line(&format!(
            "[aws] stopping Glue job {job} run {id}: {}",
            match r {
                Ok(out) => match out.errors().first() {
                    Some(err) => format!(
                        "refused: {}",
                        err.error_detail().and_then(|d| d.error_message()).unwrap_or("no reason given")
                    ),
                    None => "requested".to_string(),
                },
                Err(e) => aws_error("BatchStopJobRun", e).message,
            }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_terminal_job_run_state_but_succeeded_fails_with_glues_message() {
        assert!(matches!(job_run_outcome("j", "jr_1", &JobRunState::Succeeded, ""), Poll::Ready(())));
        for state in
            [JobRunState::Failed, JobRunState::Error, JobRunState::Timeout, JobRunState::Stopped, JobRunState::Expired]
        {
            let Poll::Failed(why) = job_run_outcome("j", "jr_1", &state, "Out of memory") else {
                panic!("{state:?} fails")
            };
            assert_eq!(why, format!("Glue job j run jr_1 {}: Out of memory", state.as_str()));
        }
        let Poll::Failed(why) = job_run_outcome("j", "jr_1", &JobRunState::Timeout, "") else { panic!() };
        assert!(why.ends_with("TIMEOUT: no error message given"), "{why}");
        for state in [JobRunState::Starting, JobRunState::Running, JobRunState::Waiting, JobRunState::Stopping] {
            assert!(matches!(job_run_outcome("j", "jr_1", &state, ""), Poll::Pending(_)), "{state:?} waits");
        }
        assert!(reusable(&JobRunState::Running) && reusable(&JobRunState::Succeeded));
        assert!(!reusable(&JobRunState::Failed) && !reusable(&JobRunState::Stopped));
    }
}
