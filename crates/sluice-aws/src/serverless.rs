//! EMR Serverless: the `emr_serverless` operator and the `emr_serverless_job` sensor.
//!
//! Never the same job twice, as for Athena: StartJobRun carries a clientToken derived from
//! (DAG, run, task, try) ([`crate::athena::idempotency_token`]), the job run id is recorded the
//! moment EMR Serverless returns it, a resumed try waits for that run, and a retry re-attaches
//! to the newest earlier try's run on the same application while it is SUBMITTED, PENDING,
//! SCHEDULED, QUEUED, RUNNING or SUCCESS. Only a FAILED or CANCELLED run is started again; a
//! task cleared after it succeeded starts a new run.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_emrserverless::types::{
    ConfigurationOverrides, JobDriver, JobRunState, MonitoringConfiguration, S3MonitoringConfiguration, SparkSubmit,
};
use serde_json::{json, Map, Value};
use sluice_dag::operators as ops;
use sluice_dag::TaskState;
use sluice_operator::{Outcome, TaskError, TaskOperator, TryContext};

use crate::athena::idempotency_token;
use crate::clients::Clients;
use crate::emr::{TAG_DAG, TAG_RUN, TAG_TASK};
use crate::wait::{aws_error, call, AwsError, Poll, Waiter};

/// A job run's state and what EMR Serverless says about it.
async fn get(client: &aws_sdk_emrserverless::Client, app: &str, id: &str) -> Result<(JobRunState, String), AwsError> {
    let out =
        client.get_job_run().application_id(app).job_run_id(id).send().await.map_err(|e| aws_error("GetJobRun", e))?;
    Ok(match out.job_run() {
        Some(r) => (r.state().clone(), r.state_details().to_string()),
        None => (JobRunState::Pending, String::new()),
    })
}

fn is_failed(s: &JobRunState) -> bool {
    matches!(s, JobRunState::Failed | JobRunState::Cancelled)
}

/// Waits for SUCCESS; FAILED or CANCELLED fail with the run's state details.
async fn wait_job_run(
    client: &aws_sdk_emrserverless::Client,
    ctx: &TryContext,
    app: &str,
    id: &str,
    delay: Duration,
) -> Result<(), TaskError> {
    Waiter::new(format!("job run {id} on application {app}"), delay)
        .wait(ctx, || async {
            let (state, details) = get(client, app, id).await?;
            Ok(match state {
                JobRunState::Success => Poll::Ready(()),
                s if is_failed(&s) => Poll::Failed(format!(
                    "job run {id} {}: {}",
                    s.as_str(),
                    if details.is_empty() { "no details given" } else { &details }
                )),
                s => Poll::Pending(s.as_str().to_string()),
            })
        })
        .await
}

/// `emr_serverless`.
pub struct JobRun {
    pub cfg: ops::EmrServerless,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl JobRun {
    /// The newest earlier try's run on this application, when it is not failed or cancelled.
    async fn earlier(
        &self,
        client: &aws_sdk_emrserverless::Client,
        ctx: &TryContext,
    ) -> Result<Option<String>, TaskError> {
        let app = self.cfg.application_id.as_str();
        for t in ctx.earlier_tries().await?.iter().rev() {
            if matches!(t.state, TaskState::Success | TaskState::Skipped) {
                // The task was cleared after it finished: run the job again.
                return Ok(None);
            }
            let Some(id) = t.external_ids.get("job_run_id").and_then(Value::as_str) else { continue };
            if t.external_ids.get("application_id").and_then(Value::as_str).is_some_and(|a| a != app) {
                return Ok(None);
            }
            let state = match call(ctx, || get(client, app, id)).await {
                Ok((state, _)) => state,
                Err(e) => {
                    ctx.log.line(&format!(
                        "[aws] try {}'s job run {id} cannot be read ({}); starting anew",
                        t.try_number, e.message
                    ));
                    return Ok(None);
                }
            };
            let reusable = matches!(
                state,
                JobRunState::Submitted
                    | JobRunState::Pending
                    | JobRunState::Scheduled
                    | JobRunState::Queued
                    | JobRunState::Running
                    | JobRunState::Success
            );
            ctx.log.line(&format!(
                "[aws] try {}'s job run {id} is {}; {}",
                t.try_number,
                state.as_str(),
                if reusable { "re-attaching" } else { "starting anew" }
            ));
            return Ok(reusable.then(|| id.to_string()));
        }
        Ok(None)
    }

    async fn start(&self, client: &aws_sdk_emrserverless::Client, ctx: &TryContext) -> Result<String, TaskError> {
        let token = idempotency_token(&ctx.dag_id, &ctx.run_id, &ctx.task_id, ctx.try_number);
        // Before the request: a try cut off while it is in flight knows there may be a job run
        // to cancel (`cancel` finds it again by the token).
        ctx.record("client_token", json!(token)).await?;
        let id = self.send_start(client, ctx, &token).await?;
        ctx.record("job_run_id", json!(id)).await?;
        ctx.log.line(&format!("[aws] started job run {id} on application {}", self.cfg.application_id));
        Ok(id)
    }

    /// StartJobRun with this try's client token: the same job run however often it is sent.
    async fn send_start(
        &self,
        client: &aws_sdk_emrserverless::Client,
        ctx: &TryContext,
        token: &str,
    ) -> Result<String, TaskError> {
        let c = &self.cfg;
        let spark = SparkSubmit::builder()
            .entry_point(&c.entry_point)
            .set_entry_point_arguments(Some(c.entry_point_args.clone()))
            .set_spark_submit_parameters(c.spark_submit_parameters.clone())
            .build()
            .map_err(|e| TaskError::fatal(format!("invalid spark-submit job driver: {e}")))?;
        let mut tags = c.tags.clone();
        for (k, v) in [(TAG_DAG, &ctx.dag_id), (TAG_RUN, &ctx.run_id), (TAG_TASK, &ctx.task_id)] {
            tags.insert(k.to_string(), v.clone());
        }
        let overrides = c.log_uri.as_ref().map(|uri| {
            ConfigurationOverrides::builder()
                .monitoring_configuration(
                    MonitoringConfiguration::builder()
                        .s3_monitoring_configuration(S3MonitoringConfiguration::builder().log_uri(uri).build())
                        .build(),
                )
                .build()
        });
        let timeout_minutes = c.execution_timeout.map(|d| d.as_std().as_secs().div_ceil(60).max(1) as i64);
        // Safe to send again on throttling: the token makes it the same job run.
        let out = call(ctx, || async {
            client
                .start_job_run()
                .application_id(&c.application_id)
                .client_token(token)
                .execution_role_arn(&c.execution_role_arn)
                .job_driver(JobDriver::SparkSubmit(spark.clone()))
                .set_configuration_overrides(overrides.clone())
                .set_tags(Some(tags.clone().into_iter().collect()))
                .set_execution_timeout_minutes(timeout_minutes)
                .set_name(c.name.clone())
                .send()
                .await
                .map_err(|e| aws_error("StartJobRun", e))
        })
        .await?;
        let id = out.job_run_id().to_string();
        if id.is_empty() {
            return Err(TaskError::retryable("StartJobRun returned no job run id"));
        }
        Ok(id)
    }
}

#[async_trait::async_trait]
impl TaskOperator for JobRun {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let client = self.clients.emr_serverless(self.connection.as_deref()).await?;
        let app = self.cfg.application_id.as_str();
        let id = match ctx.resumed("job_run_id").and_then(Value::as_str) {
            Some(id) => {
                ctx.log.line(&format!("[aws] re-attaching to job run {id}"));
                id.to_string()
            }
            None => {
                ctx.record("application_id", json!(app)).await?;
                match self.earlier(&client, ctx).await? {
                    Some(id) => {
                        ctx.record("job_run_id", json!(id)).await?;
                        id
                    }
                    None => self.start(&client, ctx).await?,
                }
            }
        };
        wait_job_run(&client, ctx, app, &id, self.cfg.poke_interval.as_std()).await?;
        ctx.log.line(&format!("[aws] job run {id} succeeded"));
        Ok(Outcome::Success(Map::from_iter([("job_run_id".to_string(), json!(id))])))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out: the job run is cancelled.
    async fn cancel(&self, ctx: &TryContext) {
        let recorded = ctx.recorded().await;
        let Ok(client) = self.clients.emr_serverless(self.connection.as_deref()).await else { return };
        let id = match recorded.get("job_run_id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                // Cut off while StartJobRun was in flight: the same request, with the same
                // client token, answers the job run it started (or starts it now, to be
                // cancelled at once), so no job run is left running unseen.
                let Some(token) = recorded.get("client_token").and_then(Value::as_str) else { return };
                match self.send_start(&client, ctx, token).await {
                    Ok(id) => {
                        ctx.log.line(&format!("[aws] cut off while submitting: job run {id} is the one submitted"));
                        let _ = ctx.record("job_run_id", json!(id)).await;
                        id
                    }
                    Err(e) => {
                        ctx.log
                            .line(&format!("[aws] cut off while submitting; cannot find its job run: {}", e.message));
                        return;
                    }
                }
            }
        };
        {
            let r = client.cancel_job_run().application_id(&self.cfg.application_id).job_run_id(&id).send().await;
            ctx.log.line(&format!(
                "[aws] cancelling job run {id}: {}",
                match r {
                    Ok(_) => "requested".to_string(),
                    Err(e) => aws_error("CancelJobRun", e).message,
                }
            ));
        }
    }
}

/// `sensor` of kind `emr_serverless_job`: the job run reached SUCCESS; FAILED or CANCELLED
/// fail.
pub struct JobRunSensor {
    pub cfg: ops::EmrServerlessJobSensor,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

#[async_trait::async_trait]
impl TaskOperator for JobRunSensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let client = self.clients.emr_serverless(self.connection.as_deref()).await?;
        wait_job_run(&client, ctx, &self.cfg.application_id, &self.cfg.job_run_id, self.poke_interval).await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}
