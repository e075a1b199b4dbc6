//! Waiting for remote work, one mechanism for every operator.
//!
//! A wait is a poll (one describe call) that answers [`Poll::Ready`] (the success states),
//! [`Poll::Failed`] (the failure states, with the reason AWS gives) or [`Poll::Pending`]
//! (anything else, with the state's name for the log), repeated every `delay` (the task's
//! `poke_interval`), for at most `max_wait` when set and otherwise until the task's `timeout`
//! cuts it off (then the operator's `cancel` stops the remote work). A poll that fails with a
//! throttling or server error (429, 5xx, `ThrottlingException`, `SlowDown`, timeouts, broken
//! connections) is not a failure of the task: it is tried again with exponential backoff
//! (from 1 s, doubling, up to 30 s), after the SDK's own retries. A call refused for its
//! credentials (none found, an invalid key, an expired token, access denied) is the opposite:
//! it fails the try at once, and no retry of the task is made for it.

use std::future::Future;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_emr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sluice_operator::{TaskError, TryContext};

use crate::clients::{refused, Refusal};

/// What one poll saw.
#[derive(Debug)]
pub enum Poll<T> {
    Ready(T),
    Pending(String),
    Failed(String),
}

/// An AWS call that failed, and whether trying it again may help.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub message: String,
    pub retryable: bool,
    /// Refused for its credentials: the try fails for good, without a retry of the task.
    pub credentials: bool,
}

impl From<AwsError> for TaskError {
    fn from(e: AwsError) -> TaskError {
        if e.credentials {
            TaskError::fatal(e.message)
        } else {
            TaskError::retryable(e.message)
        }
    }
}

/// Error codes of a request refused for rate, over the services' protocols (also what the
/// telemetry counts as a throttle).
pub(crate) const RATE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
];

/// Error codes of a server-side failure worth another attempt.
const SERVER_ERROR_CODES: &[&str] =
    &["ServiceUnavailable", "InternalError", "InternalFailure", "InternalServerException", "InternalServerError"];

/// Codes of a request whose credentials AWS does not accept, over the services' protocols.
const REJECTED_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AuthFailure",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "InvalidToken",
    "TokenRefreshRequired",
];

const EXPIRED_CODES: &[&str] = &["ExpiredToken", "ExpiredTokenException"];

const DENIED_CODES: &[&str] = &["AccessDenied", "AccessDeniedException"];

/// Why a request was refused for its credentials, if it was: a credential lookup that failed
/// under it (somewhere in its source chain), or AWS's error code; S3 answers a HEAD request
/// with a bare 403.
fn refusal<E>(e: &SdkError<E>) -> Option<(Refusal, Option<&CredentialsError>)>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some((Refusal::Missing, Some(c)));
        }
        cur = err.source();
    }
    let SdkError::ServiceError(se) = e else { return None };
    let status = se.raw().status().as_u16();
    match se.err().code() {
        Some(c) if REJECTED_CODES.contains(&c) => Some((Refusal::Rejected, None)),
        Some(c) if EXPIRED_CODES.contains(&c) => Some((Refusal::Expired, None)),
        Some(c) if DENIED_CODES.contains(&c) => Some((Refusal::Denied, None)),
        None if status == 401 => Some((Refusal::Rejected, None)),
        None if status == 403 => Some((Refusal::Forbidden, None)),
        _ => None,
    }
}

/// Names an SDK error, and says whether it is worth trying again.
pub fn aws_error<E>(call: &str, e: SdkError<E>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some((why, source)) = refusal(&e) {
        let detail = match e.code() {
            Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
            None => crate::clients::short_reason(&e),
        };
        let message = refused(call, why, &detail, source).message;
        return AwsError { message, retryable: false, credentials: true };
    }
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            status == 429
                || status >= 500
                || se.err().code().is_some_and(|c| RATE_CODES.contains(&c) || SERVER_ERROR_CODES.contains(&c))
        }
        _ => false,
    };
    let detail = match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
        None => DisplayErrorContext(&e).to_string(),
    };
    AwsError { message: format!("{call}: {detail}"), retryable, credentials: false }
}

/// Retries a single call (not a wait) on throttling and server errors, like [`Waiter`] does.
pub async fn call<T, F, Fut>(ctx: &TryContext, mut f: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        match f().await {
            Err(e) if e.retryable => {
                ctx.log.line(&format!("[aws] {} (trying again in {}s)", e.message, backoff.as_secs()));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Polls until the remote work is done.
pub struct Waiter {
    /// What is awaited, for the log: "cluster j-1 to be WAITING".
    pub what: String,
    /// Time between two polls.
    pub delay: Duration,
    /// Give up after this long (the task's `timeout` bounds every wait anyway).
    pub max_wait: Option<Duration>,
}

impl Waiter {
    pub fn new(what: impl Into<String>, delay: Duration) -> Waiter {
        Waiter { what: what.into(), delay, max_wait: None }
    }

    pub async fn wait<T, F, Fut>(&self, ctx: &TryContext, mut poll: F) -> Result<T, TaskError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, AwsError>>,
    {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut last = String::new();
        ctx.log.line(&format!("[aws] waiting for {}", self.what));
        loop {
            let pause = match poll().await {
                Ok(Poll::Ready(t)) => return Ok(t),
                Ok(Poll::Failed(why)) => return Err(TaskError::retryable(why)),
                Ok(Poll::Pending(state)) => {
                    if state != last {
                        ctx.log.line(&format!("[aws] {}: {state}", self.what));
                        last = state;
                    }
                    backoff = Duration::from_secs(1);
                    self.delay
                }
                Err(e) if e.retryable => {
                    ctx.log.line(&format!("[aws] {} (trying again in {}s)", e.message, backoff.as_secs()));
                    let b = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    b
                }
                Err(e) => return Err(e.into()),
            };
            if self.max_wait.is_some_and(|m| started.elapsed() + pause > m) {
                return Err(TaskError::retryable(format!(
                    "gave up waiting for {} after {:?}",
                    self.what,
                    started.elapsed()
                )));
            }
            tokio::time::sleep(pause).await;
        }
    }
}
