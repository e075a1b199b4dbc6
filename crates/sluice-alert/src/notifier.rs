//! [`Notifier`]: the declared channels, and sending to one of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_aws::Clients;
use sluice_operator::Connection;

use crate::config::{ChannelsConfig, ConfigErrors, SlackChannel, WebhookChannel, DEFAULT_TIMEOUT};
use crate::http::{self, Http, Request};
use crate::message::AlertMessage;
use crate::secret::SecretSource;
use crate::{ChannelKind, ChannelRef, Notify, SendError};

/// Sends alerts to the channels of `sluice.toml`. Secrets are read at each send: a rotated
/// secret file or a changed variable is used from the next message on.
pub struct Notifier {
    config: ChannelsConfig,
    clients: Arc<Clients>,
    http: Http,
    default_timeout: Duration,
}

impl Notifier {
    /// The notifier of a validated `[channels]`, with `[connections]` for SNS.
    pub fn new(config: ChannelsConfig, connections: BTreeMap<String, Connection>) -> Result<Notifier, ConfigErrors> {
        let names: Vec<&str> = connections.keys().map(String::as_str).collect();
        config.validate(&names)?;
        Ok(Notifier::unchecked(config, Arc::new(Clients::new(connections))))
    }

    /// The same over given AWS clients (e.g. [`Clients::with_credentials`]); `connections` are
    /// the names those clients know.
    pub fn with_clients(
        config: ChannelsConfig,
        connections: &[&str],
        clients: Arc<Clients>,
    ) -> Result<Notifier, ConfigErrors> {
        config.validate(connections)?;
        Ok(Notifier::unchecked(config, clients))
    }

    fn unchecked(config: ChannelsConfig, clients: Arc<Clients>) -> Notifier {
        Notifier { config, clients, http: Http::new(), default_timeout: DEFAULT_TIMEOUT }
    }

    /// The time a send may take when its channel sets no `timeout` (default 10s).
    pub fn set_default_timeout(&mut self, timeout: Duration) {
        self.default_timeout = timeout;
    }

    pub fn config(&self) -> &ChannelsConfig {
        &self.config
    }

    /// Sends `msg` to `channel`, within the channel's timeout; `Ok` is what the channel
    /// answered (HTTP status and the start of the body, the SNS message id, the SMTP reply).
    pub async fn send(&self, channel: &ChannelRef, msg: &AlertMessage) -> Result<String, SendError> {
        let timeout = self.timeout(channel).ok_or_else(|| {
            SendError::fatal(
                channel,
                format!("not declared in sluice.toml ([channels.{}.{}])", channel.kind.name(), channel.name),
            )
        })?;
        let sent = tokio::time::timeout(timeout, self.send_now(channel, msg)).await;
        let result = sent.unwrap_or_else(|_| {
            Err(SendError::retryable(channel, format!("no answer within {}", sluice_dag::Duration(timeout))))
        });
        match &result {
            Ok(answer) => tracing::debug!(channel = %channel, answer = %answer, "alert sent"),
            Err(e) => {
                tracing::debug!(channel = %channel, error = %e.message, retryable = e.retryable, "alert not sent")
            }
        }
        result
    }

    fn timeout(&self, channel: &ChannelRef) -> Option<Duration> {
        let c = &self.config;
        let t = match channel.kind {
            ChannelKind::Slack => c.slack.get(&channel.name)?.timeout,
            ChannelKind::Sns => c.sns.get(&channel.name)?.timeout,
            ChannelKind::Email => c.email.get(&channel.name)?.timeout,
            ChannelKind::Webhook => c.webhook.get(&channel.name)?.timeout,
        };
        Some(t.map_or(self.default_timeout, |d| d.0))
    }

    async fn send_now(&self, channel: &ChannelRef, msg: &AlertMessage) -> Result<String, SendError> {
        let c = &self.config;
        match channel.kind {
            ChannelKind::Slack => self.slack(channel, &c.slack[&channel.name], msg).await,
            ChannelKind::Webhook => self.webhook(channel, &c.webhook[&channel.name], msg).await,
            ChannelKind::Sns => {
                let sns = &c.sns[&channel.name];
                let text = msg.text();
                let id = sluice_aws::sns::publish(
                    &self.clients,
                    sns.connection.as_deref(),
                    &sns.topic_arn,
                    &msg.title,
                    &text,
                )
                .await
                .map_err(|e| SendError { message: format!("{channel}: {}", e.message), retryable: e.retryable })?;
                Ok(format!("message id {id}"))
            }
            ChannelKind::Email => {
                let timeout = self.timeout(channel).unwrap_or(self.default_timeout);
                crate::email::send(channel, &c.email[&channel.name], msg, timeout).await
            }
        }
    }

    async fn slack(&self, channel: &ChannelRef, c: &SlackChannel, msg: &AlertMessage) -> Result<String, SendError> {
        let source = c.url().map_err(|m| SendError::fatal(channel, m))?;
        let url = source.read().map_err(|m| SendError::fatal(channel, format!("the webhook URL: {m}")))?;
        let link = msg.link.clone().or_else(|| run_link(c.ui_url.as_deref()?, &msg.dag_id, msg.run_id.as_deref()?));
        let body = crate::slack::payload(msg, link.as_deref()).to_string();
        let request = Request {
            method: "POST",
            url: &url,
            url_from: source.describe(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            secrets: Vec::new(),
        };
        http::send(&self.http, channel, request).await
    }

    async fn webhook(&self, channel: &ChannelRef, c: &WebhookChannel, msg: &AlertMessage) -> Result<String, SendError> {
        let source = c.url().map_err(|m| SendError::fatal(channel, m))?;
        let url = source.read().map_err(|m| SendError::fatal(channel, format!("the URL: {m}")))?;
        let mut secrets = Vec::new();
        let mut headers: Vec<(String, String)> = c.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, var) in &c.headers_env {
            let value = SecretSource::Env(var.clone())
                .read()
                .map_err(|m| SendError::fatal(channel, format!("header `{name}`: {m}")))?;
            secrets.push(value.expose().to_string());
            headers.push((name.clone(), value.expose().to_string()));
        }
        let body = match &c.body {
            Some(template) => {
                let (body, read) = crate::template::render(template, &msg.variables())
                    .map_err(|m| SendError::fatal(channel, crate::secret::scrub(&m, &secrets)))?;
                secrets.extend(read);
                body
            }
            None => serde_json::to_string(msg).unwrap_or_default(),
        };
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let request = Request { method: c.method(), url: &url, url_from: source.describe(), headers, body, secrets };
        http::send(&self.http, channel, request).await
    }
}

#[async_trait::async_trait]
impl Notify for Notifier {
    async fn send(&self, channel: &ChannelRef, msg: &AlertMessage) -> Result<String, SendError> {
        Notifier::send(self, channel, msg).await
    }

    fn declared(&self) -> Vec<ChannelRef> {
        self.config.declared()
    }
}

/// `<ui_url>/api/v1/dags/<dag>/runs/<run>`, the run in the HTTP API.
pub fn run_link(ui_url: &str, dag_id: &str, run_id: &str) -> Option<String> {
    Some(format!("{}/api/v1/dags/{}/runs/{}", ui_url.trim_end_matches('/'), encode(dag_id), encode(run_id)))
}

/// Percent-encodes all but the unreserved characters of a path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
