//! One HTTP request to a channel (Slack, a webhook): TLS by rustls with the system's roots, no
//! redirects followed (a secret header is not sent on to another place), the answer
//! read up to [`ANSWER_MAX_BYTES`], every error classified (retry or not) and shown with the
//! URL's host only.

use std::sync::OnceLock;

use crate::secret::{scrub, Secret};
use crate::{ChannelRef, SendError};

/// The most of an answer's body that is read (and at most 200 characters of it shown).
pub const ANSWER_MAX_BYTES: usize = 4096;

/// The HTTP client every channel shares, built at the first request.
pub(crate) struct Http(OnceLock<Result<reqwest::Client, String>>);

impl Http {
    pub(crate) fn new() -> Http {
        Http(OnceLock::new())
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.0.get_or_init(build).as_ref().map_err(Clone::clone)
    }
}

fn build() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", e.without_url()))
}

/// What to send.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Secret,
    /// Where the URL came from, for messages ("environment variable `X`").
    pub url_from: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Values to keep out of every message (the URL, secret header values, template secrets).
    pub secrets: Vec<String>,
}

/// Sends `req`; `Ok` is "STATUS: answer" (short, scrubbed).
pub(crate) async fn send(http: &Http, channel: &ChannelRef, req: Request<'_>) -> Result<String, SendError> {
    let client = http.client().map_err(|m| SendError::fatal(channel, m))?;
    let url = reqwest::Url::parse(req.url.expose())
        .map_err(|_| SendError::fatal(channel, format!("the URL in {} is not a valid URL", req.url_from)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SendError::fatal(channel, format!("the URL in {} is not an http(s) URL", req.url_from)));
    }
    let host = url.host_str().unwrap_or("?").to_string();
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| SendError::fatal(channel, format!("`{}` is not an HTTP method", req.method)))?;
    let mut secrets = req.secrets;
    secrets.push(req.url.expose().to_string());
    let mut builder = client.request(method, url);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let shown = |text: &str| scrub(text, &secrets);
    let resp = match builder.body(req.body).send().await {
        Ok(r) => r,
        Err(e) => {
            let e = e.without_url();
            let why = reason(&e);
            let message = if e.is_timeout() {
                format!("no answer from {host}")
            } else if e.is_connect() {
                format!("cannot connect to {host}: {why}")
            } else if e.is_builder() {
                return Err(SendError::fatal(channel, shown(&format!("cannot build the request to {host}: {why}"))));
            } else {
                format!("the request to {host} failed: {why}")
            };
            return Err(SendError::retryable(channel, shown(&message)));
        }
    };
    let status = resp.status();
    let answer = shown(&read_answer(resp).await);
    let said = if answer.is_empty() { status.to_string() } else { format!("{status}: {answer}") };
    if status.is_success() {
        Ok(said)
    } else if status.as_u16() == 429 || status.is_server_error() {
        Err(SendError::retryable(channel, format!("{host} answered {said}")))
    } else if status.is_redirection() {
        Err(SendError::fatal(
            channel,
            format!("{host} answered {said} (redirects are not followed: give the final URL)"),
        ))
    } else {
        Err(SendError::fatal(channel, format!("{host} answered {said}")))
    }
}

/// The answer's body, at most [`ANSWER_MAX_BYTES`] read and 200 characters kept, on one line.
async fn read_answer(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ANSWER_MAX_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ANSWER_MAX_BYTES);
    let text = String::from_utf8_lossy(&body);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::message::cut_chars(&flat, 200)
}

/// The innermost cause of an error (given without its URL).
fn reason(e: &reqwest::Error) -> String {
    let mut last = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !t.trim().is_empty() {
            last = t;
        }
        cur = s.source();
    }
    if last.is_empty() {
        last = e.to_string();
    }
    crate::message::cut_chars(&last.split_whitespace().collect::<Vec<_>>().join(" "), 200)
}
