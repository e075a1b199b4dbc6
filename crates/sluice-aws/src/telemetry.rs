//! What the AWS operators count for `/metrics` (a [`Telemetry`] of family `aws`):
//!
//! - every request to a service, through an SDK interceptor on each client [`Clients`] builds
//!   ([`Counting`]): a call per attempt sent (the SDK's own retries included), an error per
//!   attempt that got no answer or an error answer, a throttle per error answer refusing the
//!   request for rate (HTTP 429, or a code such as `ThrottlingException` or `SlowDown`);
//! - per DAG, what AWS reports the work used, read off answers the operators already get:
//!   [`ATHENA_SCANNED_BYTES`] (GetQueryExecution's `Statistics.DataScannedInBytes` when a query
//!   an `athena` task ran has ended) and [`EMR_NORMALIZED_INSTANCE_HOURS`] (DescribeCluster's
//!   `NormalizedInstanceHours` when a cluster Sluice created, as its tags say, is seen
//!   terminated), each query or cluster counted once.
//!
//! [`Clients`]: crate::Clients

use std::sync::Arc;

use aws_sdk_emr::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef};
use aws_sdk_emr::config::{ConfigBag, Intercept, RuntimeComponents};
use sluice_operator::{Meter, ServiceCalls, Telemetry};

/// The family name of the AWS operators' [`Telemetry`] (`sluice_aws_api_calls_total`...).
pub const FAMILY: &str = "aws";

/// Bytes the Athena queries of a DAG's `athena` tasks scanned, as Athena reports them.
pub const ATHENA_SCANNED_BYTES: Meter = Meter {
    name: "athena_scanned_bytes",
    help: "Bytes scanned by the Athena queries of a DAG's athena tasks (GetQueryExecution's Statistics.DataScannedInBytes, once the query ended)",
};

/// EMR normalized instance hours of the clusters a DAG created, as EMR reports them.
pub const EMR_NORMALIZED_INSTANCE_HOURS: Meter = Meter {
    name: "emr_normalized_instance_hours",
    help: "Normalized instance hours of the EMR clusters a DAG created (DescribeCluster's NormalizedInstanceHours, once the cluster terminated)",
};

/// Counts the requests of one service's client on its [`ServiceCalls`].
#[derive(Debug, Clone)]
pub(crate) struct Counting {
    calls: Arc<ServiceCalls>,
}

impl Counting {
    pub(crate) fn new(telemetry: &Telemetry, service: &'static str) -> Counting {
        Counting { calls: telemetry.service(service) }
    }
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "SluiceCounting"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_emr::error::BoxError> {
        self.calls.called();
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_emr::error::BoxError> {
        match (context.response(), context.output_or_error()) {
            (Some(r), _) if r.status().as_u16() >= 400 => {
                let header = r.headers().get("x-amzn-errortype");
                self.calls.failed(is_throttle(r.status().as_u16(), header, r.body().bytes()));
            }
            (_, Some(Ok(_))) => {}
            // Sent but not answered (a timeout, a broken connection), or an answer that could
            // not be read. An attempt that failed before it was sent (no credentials) is no call.
            (Some(_), Some(Err(_))) => self.calls.failed(false),
            (None, Some(Err(e))) if e.is_timeout_error() || e.is_connector_error() => self.calls.failed(false),
            _ => {}
        }
        Ok(())
    }
}

/// Whether an error answer refused the request for rate: HTTP 429, or a rate code in the
/// `x-amzn-ErrorType` header, a JSON body's `__type` / `code`, or an XML body's `<Code>`.
pub(crate) fn is_throttle(status: u16, error_type: Option<&str>, body: Option<&[u8]>) -> bool {
    if status == 429 {
        return true;
    }
    let rate = |code: &str| {
        // `ThrottlingException:http://internal.amazon.com/...`, `aws.protocols#ThrottlingException`.
        let code = code.split(':').next().unwrap_or(code);
        let code = code.rsplit('#').next().unwrap_or(code);
        crate::wait::RATE_CODES.contains(&code.trim())
    };
    if error_type.is_some_and(rate) {
        return true;
    }
    let Some(body) = body.and_then(|b| std::str::from_utf8(b).ok()) else { return false };
    if let Ok(serde_json::Value::Object(json)) = serde_json::from_str::<serde_json::Value>(body) {
        return ["__type", "code", "Code"].iter().filter_map(|k| json.get(*k)?.as_str()).any(rate);
    }
    match (body.find("<Code>"), body.find("</Code>")) {
        (Some(start), Some(end)) if start + 6 <= end => rate(&body[start + 6..end]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_are_told_from_other_errors_over_every_protocol() {
        assert!(is_throttle(429, None, None));
        assert!(is_throttle(400, Some("ThrottlingException:http://internal.amazon.com/coral/"), None));
        assert!(is_throttle(
            400,
            None,
            Some(br#"{"__type":"com.amazonaws#ThrottlingException","message":"Rate exceeded"}"#)
        ));
        assert!(is_throttle(400, None, Some(br#"{"code":"TooManyRequestsException"}"#)));
        assert!(is_throttle(
            503,
            None,
            Some(b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>")
        ));
        assert!(is_throttle(400, None, Some(b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>")));
        assert!(!is_throttle(400, Some("ValidationException"), Some(br#"{"__type":"ValidationException"}"#)));
        assert!(!is_throttle(500, None, Some(br#"{"__type":"InternalServerException"}"#)));
        assert!(!is_throttle(404, None, Some(b"<Error><Code>NoSuchKey</Code></Error>")));
        assert!(!is_throttle(400, None, Some(b"not json, no code")));
        assert!(!is_throttle(400, None, None));
    }
}
