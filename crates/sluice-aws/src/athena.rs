//! Athena: the `athena` operator and the `athena_query` sensor.
//!
//! Never the same query twice:
//! - StartQueryExecution carries a ClientRequestToken derived from (DAG, run, task, try)
//!   ([`idempotency_token`]): a request sent again by the same try (its answer lost, or the
//!   scheduler stopped before the id was recorded) names the same execution instead of
//!   starting another.
//! - the execution id is recorded the moment Athena returns it; a resumed try waits for that
//!   execution, and a retry re-attaches to the newest earlier try's execution while it is
//!   QUEUED, RUNNING or SUCCEEDED (and still runs the same SQL). Only a FAILED or CANCELLED
//!   query is submitted again. A task cleared after it succeeded runs its query again: a
//!   successful try is what a clear asks to redo, so nothing before it is re-attached to.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_athena::types::{QueryExecution, QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use serde_json::{json, Map, Value};
use sluice_dag::operators as ops;
use sluice_dag::TaskState;
use sluice_operator::{Outcome, TaskError, TaskOperator, Telemetry, TryContext};

use crate::clients::Clients;
use crate::telemetry::ATHENA_SCANNED_BYTES;
use crate::wait::{aws_error, call, AwsError, Poll, Waiter};

/// FNV-1a, 64 bits, from a given offset basis.
fn fnv1a64(basis: u64, parts: &[&[u8]]) -> u64 {
    let mut h = basis;
    for part in parts {
        for b in part.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// An idempotency token for one try's request: 32 hex digits of a stable hash of
/// (DAG, run, task), then `-try<n>`; 37 to 42 characters, which suits both Athena
/// (32-128) and EMR Serverless (1-64). The same try always sends the same token; another try
/// another one.
pub fn idempotency_token(dag_id: &str, run_id: &str, task_id: &str, try_number: u32) -> String {
    let parts: [&[u8]; 3] = [dag_id.as_bytes(), run_id.as_bytes(), task_id.as_bytes()];
    let a = fnv1a64(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv1a64(0x6c62_272e_07bb_0142, &parts);
    format!("{a:016x}{b:016x}-try{try_number}")
}

/// What one GetQueryExecution saw.
struct Execution {
    state: Option<QueryExecutionState>,
    query: Option<String>,
    output_location: Option<String>,
    why: String,
    /// `Statistics.DataScannedInBytes`, when Athena gives it.
    scanned: Option<i64>,
}

impl Execution {
    fn from(q: Option<&QueryExecution>) -> Execution {
        let status = q.and_then(|q| q.status());
        let reason = status.and_then(|s| s.state_change_reason()).filter(|r| !r.is_empty());
        let error = status.and_then(|s| s.athena_error()).and_then(|e| e.error_message()).filter(|m| !m.is_empty());
        let why = match (reason, error) {
            (Some(r), Some(e)) if r != e => format!("{r} ({e})"),
            (Some(r), _) => r.to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "no reason given".into(),
        };
        Execution {
            state: status.and_then(|s| s.state()).cloned(),
            query: q.and_then(|q| q.query()).map(str::to_string),
            output_location: q
                .and_then(|q| q.result_configuration())
                .and_then(|r| r.output_location())
                .map(str::to_string),
            why,
            scanned: q.and_then(|q| q.statistics()).and_then(|s| s.data_scanned_in_bytes()),
        }
    }

    fn state_name(&self) -> &str {
        self.state.as_ref().map_or("UNKNOWN", |s| s.as_str())
    }
}

async fn get(athena: &aws_sdk_athena::Client, id: &str) -> Result<Execution, AwsError> {
    let out = athena
        .get_query_execution()
        .query_execution_id(id)
        .send()
        .await
        .map_err(|e| aws_error("GetQueryExecution", e))?;
    Ok(Execution::from(out.query_execution()))
}

/// Waits for SUCCEEDED; FAILED or CANCELLED fail with Athena's reason. Returns the result
/// file's S3 URI when Athena gives one. With `usage` (the query is this task's), the bytes the
/// ended query scanned are counted for the try's DAG, once per query.
async fn wait_query(
    athena: &aws_sdk_athena::Client,
    ctx: &TryContext,
    id: &str,
    delay: Duration,
    usage: Option<&Telemetry>,
) -> Result<Option<String>, TaskError> {
    Waiter::new(format!("query {id}"), delay)
        .wait(ctx, || async {
            let e = get(athena, id).await?;
            let ended = matches!(
                e.state,
                Some(QueryExecutionState::Succeeded | QueryExecutionState::Failed | QueryExecutionState::Cancelled)
            );
            if let (true, Some(t), Some(bytes)) = (ended, usage, e.scanned) {
                t.add_usage(ATHENA_SCANNED_BYTES, id, &ctx.dag_id, u64::try_from(bytes).unwrap_or(0));
            }
            Ok(match &e.state {
                Some(QueryExecutionState::Succeeded) => Poll::Ready(e.output_location),
                Some(QueryExecutionState::Failed | QueryExecutionState::Cancelled) => {
                    Poll::Failed(format!("query {id} {}: {}", e.state_name(), e.why))
                }
                _ => Poll::Pending(e.state_name().to_string()),
            })
        })
        .await
}

/// `athena`.
pub struct AthenaQuery {
    pub cfg: ops::Athena,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl AthenaQuery {
    /// The newest earlier try's execution, when it is still queued or running, or succeeded,
    /// and runs the same SQL.
    async fn earlier(
        &self,
        athena: &aws_sdk_athena::Client,
        ctx: &TryContext,
        sql: &str,
    ) -> Result<Option<String>, TaskError> {
        for t in ctx.earlier_tries().await?.iter().rev() {
            if matches!(t.state, TaskState::Success | TaskState::Skipped) {
                // The task was cleared after it finished: run the query again.
                return Ok(None);
            }
            let Some(id) = t.external_ids.get("query_execution_id").and_then(Value::as_str) else { continue };
            let e = match call(ctx, || get(athena, id)).await {
                Ok(e) => e,
                Err(e) => {
                    ctx.log.line(&format!(
                        "[aws] try {}'s query {id} cannot be read ({}); submitting anew",
                        t.try_number, e.message
                    ));
                    return Ok(None);
                }
            };
            let reusable = matches!(
                e.state,
                Some(QueryExecutionState::Queued | QueryExecutionState::Running | QueryExecutionState::Succeeded)
            );
            if !reusable {
                ctx.log.line(&format!(
                    "[aws] try {}'s query {id} is {}; submitting anew",
                    t.try_number,
                    e.state_name()
                ));
                return Ok(None);
            }
            if e.query.as_deref().is_some_and(|q| q.trim() != sql.trim()) {
                ctx.log.line(&format!("[aws] try {}'s query {id} ran other SQL; submitting anew", t.try_number));
                return Ok(None);
            }
            ctx.log.line(&format!("[aws] try {}'s query {id} is {}; re-attaching", t.try_number, e.state_name()));
            return Ok(Some(id.to_string()));
        }
        Ok(None)
    }

    async fn submit(&self, athena: &aws_sdk_athena::Client, ctx: &TryContext, sql: &str) -> Result<String, TaskError> {
        let c = &self.cfg;
        let token = idempotency_token(&ctx.dag_id, &ctx.run_id, &ctx.task_id, ctx.try_number);
        // Before the request: a try cut off while it is in flight knows there may be a query
        // to stop (`cancel` finds it again by the token).
        ctx.record("query_token", json!(token)).await?;
        let id = self.start(athena, ctx, sql, &token).await?;
        ctx.record("query_execution_id", json!(id)).await?;
        ctx.log.line(&format!("[aws] started query {id} in {}.{} (workgroup {})", c.catalog, c.database, c.workgroup));
        Ok(id)
    }

    /// StartQueryExecution with this try's token: the same execution however often it is sent.
    async fn start(
        &self,
        athena: &aws_sdk_athena::Client,
        ctx: &TryContext,
        sql: &str,
        token: &str,
    ) -> Result<String, TaskError> {
        let c = &self.cfg;
        let context = QueryExecutionContext::builder().database(&c.database).catalog(&c.catalog).build();
        let results = ResultConfiguration::builder().output_location(&c.output_location).build();
        // Safe to send again on throttling: the token makes it the same execution.
        let out = call(ctx, || async {
            athena
                .start_query_execution()
                .query_string(sql)
                .client_request_token(token)
                .query_execution_context(context.clone())
                .result_configuration(results.clone())
                .work_group(&c.workgroup)
                .send()
                .await
                .map_err(|e| aws_error("StartQueryExecution", e))
        })
        .await?;
        Ok(out
            .query_execution_id()
            .ok_or_else(|| TaskError::retryable("StartQueryExecution returned no query execution id"))?
            .to_string())
    }
}

#[async_trait::async_trait]
impl TaskOperator for AthenaQuery {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let sql = self
            .cfg
            .query
            .as_deref()
            .ok_or_else(|| TaskError::fatal("the athena task has no `query` (nor a rendered `query_file`)"))?;
        let athena = self.clients.athena(self.connection.as_deref()).await?;
        let id = match ctx.resumed("query_execution_id").and_then(Value::as_str) {
            Some(id) => {
                ctx.log.line(&format!("[aws] re-attaching to query {id}"));
                id.to_string()
            }
            None => match self.earlier(&athena, ctx, sql).await? {
                Some(id) => {
                    ctx.record("query_execution_id", json!(id)).await?;
                    id
                }
                None => self.submit(&athena, ctx, sql).await?,
            },
        };
        let usage = Some(self.clients.telemetry().as_ref());
        let location = wait_query(&athena, ctx, &id, self.cfg.poke_interval.as_std(), usage).await?;
        let location =
            location.unwrap_or_else(|| format!("{}/{id}.csv", self.cfg.output_location.trim_end_matches('/')));
        ctx.log.line(&format!("[aws] query {id} succeeded; results in {location}"));
        Ok(Outcome::Success(Map::from_iter([
            ("query_execution_id".to_string(), json!(id)),
            ("output_location".to_string(), json!(location)),
        ])))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }

    /// Timed out: the query is stopped.
    async fn cancel(&self, ctx: &TryContext) {
        let recorded = ctx.recorded().await;
        let Ok(athena) = self.clients.athena(self.connection.as_deref()).await else { return };
        let id = match recorded.get("query_execution_id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                // Cut off while StartQueryExecution was in flight: the same request, with the
                // same token, answers the id of the query it started (or starts it now, to be
                // stopped at once), so no query is left running unseen.
                let (Some(token), Some(sql)) = (recorded.get("query_token").and_then(Value::as_str), &self.cfg.query)
                else {
                    return;
                };
                match self.start(&athena, ctx, sql, token).await {
                    Ok(id) => {
                        ctx.log.line(&format!("[aws] cut off while submitting: query {id} is the one submitted"));
                        let _ = ctx.record("query_execution_id", json!(id)).await;
                        id
                    }
                    Err(e) => {
                        ctx.log.line(&format!("[aws] cut off while submitting; cannot find its query: {}", e.message));
                        return;
                    }
                }
            }
        };
        {
            let r = athena.stop_query_execution().query_execution_id(&id).send().await;
            ctx.log.line(&format!(
                "[aws] stopping query {id}: {}",
                match r {
                    Ok(_) => "requested".to_string(),
                    Err(e) => aws_error("StopQueryExecution", e).message,
                }
            ));
        }
    }
}

/// `sensor` of kind `athena_query`: the query SUCCEEDED; FAILED or CANCELLED fail.
pub struct QuerySensor {
    pub query_execution_id: String,
    pub poke_interval: Duration,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

#[async_trait::async_trait]
impl TaskOperator for QuerySensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let athena = self.clients.athena(self.connection.as_deref()).await?;
        // Someone else's query (perhaps an athena task's, which counts its own bytes).
        wait_query(&athena, ctx, &self.query_execution_id, self.poke_interval, None).await?;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_distinct_and_within_the_limits() {
        let t = idempotency_token("dag", "manual__2024-01-01T00:00:00+00:00", "q", 1);
        assert_eq!(t, idempotency_token("dag", "manual__2024-01-01T00:00:00+00:00", "q", 1));
        assert_ne!(t, idempotency_token("dag", "manual__2024-01-01T00:00:00+00:00", "q", 2));
        assert_ne!(t, idempotency_token("dag", "manual__2024-01-02T00:00:00+00:00", "q", 1));
        // The parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(idempotency_token("ab", "c", "t", 1), idempotency_token("a", "bc", "t", 1));
        assert!((32..=64).contains(&t.len()), "{t}");
        assert!(idempotency_token("d", "r", "t", u32::MAX).len() <= 64);
        // A known FNV-1a 64 value: the empty input is the offset basis.
        assert_eq!(fnv1a64(0xcbf2_9ce4_8422_2325, &[]), 0xcbf2_9ce4_8422_2325);
    }
}
