//! Errors as RFC 7807 problem details (`application/problem+json`): a status, a short title,
//! and a detail a person can act on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_scheduler::actions::ActionError;
use sluice_scheduler::CommandError;
use sluice_store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "about:blank"))]
    pub kind: &'static str,
    pub title: String,
    #[schemars(range(min = 400, max = 599))]
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            e => {
                tracing::error!(error = %e, "the API's store call failed");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("the state store failed: {e}; try again"))
            }
        }
    }
}

impl From<ActionError> for Problem {
    fn from(e: ActionError) -> Problem {
        match e {
            ActionError::NotFound(m) => Problem::not_found(m),
            ActionError::Invalid(m) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            ActionError::Store(e) => Problem::from(e),
        }
    }
}

impl From<CommandError> for Problem {
    fn from(e: CommandError) -> Problem {
        match e {
            CommandError::Action(e) => Problem::from(e),
            CommandError::EngineGone => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the scheduler is stopping; send the request again")
            }
        }
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, Problem>;
