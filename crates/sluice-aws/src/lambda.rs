//! Lambda: the `lambda` operator.
//!
//! Invoke with `RequestResponse`: the call returns when the function has finished, with its
//! response payload (the task's output `payload`: the parsed JSON, or the text when it is not
//! JSON) or, when the function failed, `FunctionError` and the error it raised (`errorType`,
//! `errorMessage`), which fails the try with them.
//!
//! There is no id to re-attach to: an invocation is one request, answered when it ends. The
//! try records the function (`function_name`, `qualifier`) before it invokes, and the answer
//! (`request_id`, and `payload` or `function_error`) the moment it has it. A try that the
//! scheduler's restart cut off *after* the answer was recorded resumes with that answer, so
//! the function is not invoked again for it; one cut off *during* the invocation cannot be
//! picked up (its connection is gone with the old process): it is counted as failed and retried
//! by the task's `retries`, which invokes the function again. Functions that a retry must not
//! run twice should be idempotent, as Step Functions' own retries assume.

use std::sync::Arc;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::{json, Map, Value};
use sluice_dag::operators as ops;
use sluice_operator::{Outcome, TaskError, TaskOperator, TryContext};

use crate::clients::{one_line, Clients};
use crate::wait::{aws_error, call};

/// The largest answer recorded for a resume (Lambda answers up to 6 MB); a larger one is only
/// the task's output, and a try cut off before its outcome was saved is retried.
const MAX_RECORDED_PAYLOAD: usize = 256 * 1024;

/// A response payload as the task's output: its JSON, or its text when it is not JSON (`null`
/// when empty).
pub fn payload_value(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The try's error for an answer with `FunctionError` set (`Unhandled`, `Handled`): the
/// function's `errorType: errorMessage` from the payload, or the payload's text when it does
/// not have that shape.
pub fn function_error(function: &str, kind: &str, payload: &[u8]) -> String {
    let value = payload_value(payload);
    let field = |k: &str| value.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let what = match (field("errorType"), field("errorMessage")) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => match &value {
            Value::Null => "no error payload".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    format!("function {function} failed ({kind}): {}", one_line(&what, 500))
}

/// `lambda`.
pub struct Invoke {
    pub cfg: ops::Lambda,
    pub clients: Arc<Clients>,
    pub connection: Option<String>,
}

impl Invoke {
    /// The outcome a resumed try recorded, when it got its answer before the restart.
    fn recorded_outcome(&self, ctx: &TryContext) -> Option<Result<Outcome, TaskError>> {
        if let Some(error) = ctx.resumed("function_error").and_then(Value::as_str) {
            return Some(Err(TaskError::retryable(error.to_string())));
        }
        let payload = ctx.resumed("payload")?;
        Some(Ok(Outcome::Success(Map::from_iter([("payload".to_string(), payload.clone())]))))
    }
}

#[async_trait::async_trait]
impl TaskOperator for Invoke {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let c = &self.cfg;
        let function = c.function_name.as_str();
        if let Some(outcome) = self.recorded_outcome(ctx) {
            ctx.log.line(&format!("[aws] function {function} answered before the restart; taking that answer"));
            return outcome;
        }
        let client = self.clients.lambda(self.connection.as_deref()).await?;
        let body = serde_json::to_vec(&c.payload)
            .map_err(|e| TaskError::fatal(format!("`payload` cannot be written as JSON: {e}")))?;
        ctx.record("function_name", json!(function)).await?;
        if let Some(q) = &c.qualifier {
            ctx.record("qualifier", json!(q)).await?;
        }
        ctx.log.line(&format!("[aws] invoking function {function} ({} bytes of payload)", body.len()));
        // Sent again when Lambda refused it (throttled, its 5xx) or it could not be sent; not
        // when it was sent and its answer was lost: the function may have run.
        let out = call(ctx, || async {
            client
                .invoke()
                .function_name(function)
                .set_qualifier(c.qualifier.clone())
                .invocation_type(InvocationType::RequestResponse)
                .payload(Blob::new(body.clone()))
                .send()
                .await
                .map_err(|e| {
                    let answer_lost = matches!(e, SdkError::ResponseError(_) | SdkError::TimeoutError(_));
                    let mut error = aws_error("Invoke", e);
                    error.retryable &= !answer_lost;
                    error
                })
        })
        .await?;
        if let Some(id) = out.request_id() {
            ctx.record("request_id", json!(id)).await?;
        }
        let bytes = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        let version = out.executed_version().unwrap_or("?");
        if let Some(kind) = out.function_error().filter(|k| !k.is_empty()) {
            let error = function_error(function, kind, bytes);
            ctx.record("function_error", json!(error)).await?;
            return Err(TaskError::retryable(error));
        }
        let payload = payload_value(bytes);
        if bytes.len() <= MAX_RECORDED_PAYLOAD {
            ctx.record("payload", payload.clone()).await?;
        }
        ctx.log.line(&format!(
            "[aws] function {function} (version {version}) answered {} with {} bytes",
            out.status_code(),
            bytes.len()
        ));
        Ok(Outcome::Success(Map::from_iter([("payload".to_string(), payload)])))
    }

    /// Only a try whose answer was recorded resumes (see the module's doc).
    fn can_resume(&self, recorded: &Map<String, Value>) -> bool {
        recorded.contains_key("payload") || recorded.contains_key("function_error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_its_json_or_its_text() {
        assert_eq!(payload_value(br#"{"rows": 3}"#), json!({"rows": 3}));
        assert_eq!(payload_value(b"[1, 2]"), json!([1, 2]));
        assert_eq!(payload_value(b"Simple Lambda happy path OK"), json!("Simple Lambda happy path OK"));
        assert_eq!(payload_value(b""), Value::Null);
        assert_eq!(payload_value(b"\xff\xfe"), json!("\u{fffd}\u{fffd}"));
    }

    #[test]
    fn a_function_error_says_its_type_and_message() {
        let raised = br#"{"errorMessage": "no rows for 2026-03-01", "errorType": "ValueError", "stackTrace": []}"#;
        assert_eq!(
            function_error("load", "Unhandled", raised),
            "function load failed (Unhandled): ValueError: no rows for 2026-03-01"
        );
        assert_eq!(function_error("f", "Handled", br#"{"errorType": "Boom"}"#), "function f failed (Handled): Boom");
        assert_eq!(
            function_error("f", "Unhandled", b"error running docker"),
            "function f failed (Unhandled): error running docker"
        );
        assert_eq!(function_error("f", "Unhandled", b""), "function f failed (Unhandled): no error payload");
        assert_eq!(function_error("f", "Unhandled", b"{\"a\": 1}"), "function f failed (Unhandled): {\"a\":1}");
    }
}
