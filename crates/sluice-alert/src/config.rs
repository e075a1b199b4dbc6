//! The channels of `sluice.toml`, `[channels.<kind>.<name>]`, and their validation.
//!
//! Read with serde (`deny_unknown_fields`: a misspelt key is an error naming the valid ones),
//! then [`ChannelsConfig::validate`] checks what serde cannot: one source per secret, a body
//! template that compiles and names only the message's fields, a header that HTTP accepts, an
//! SNS topic ARN, `tls = "none"` only to a loopback host, a connection that is declared. Every
//! problem names its channel (`[channels.webhook.pagerduty]`) and its key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use sluice_dag::Duration;

use crate::channel::{ChannelKind, ChannelRef};
use crate::secret::SecretSource;

/// How long one send may take when the channel sets no `timeout`.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `[channels]`: every declared channel, by kind and name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    pub slack: BTreeMap<String, SlackChannel>,
    pub sns: BTreeMap<String, SnsChannel>,
    pub email: BTreeMap<String, EmailChannel>,
    pub webhook: BTreeMap<String, WebhookChannel>,
}

/// `[channels.slack.NAME]`: a Slack incoming webhook.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// The environment variable holding the webhook URL.
    pub webhook_url_env: Option<String>,
    /// The file holding the webhook URL.
    pub webhook_url_file: Option<PathBuf>,
    /// The base URL of Sluice's HTTP API as people reach it: messages link to the run there
    /// (`<ui_url>/api/v1/dags/<dag>/runs/<run>`) unless the alert carries its own link.
    pub ui_url: Option<String>,
    /// The longest a send may take (default 10s).
    pub timeout: Option<Duration>,
}

/// `[channels.webhook.NAME]`: any HTTP endpoint (PagerDuty, Opsgenie, Teams, ...).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// The environment variable holding the URL (a URL often carries a token: it is a secret).
    pub url_env: Option<String>,
    /// The file holding the URL.
    pub url_file: Option<PathBuf>,
    /// The HTTP method (default POST).
    pub method: Option<String>,
    /// Headers sent as written.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets: header name to environment variable.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// A minijinja template of the body, with the message's fields as variables and
    /// `secret('VAR')` for an environment variable's value. Default: the message as JSON.
    pub body: Option<String>,
    /// The longest a send may take (default 10s).
    pub timeout: Option<Duration>,
}

/// `[channels.sns.NAME]`: an SNS topic.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnsChannel {
    pub topic_arn: String,
    /// A `[connections.NAME]` of sluice.toml; default: `default` when declared, else the
    /// default credential chain.
    pub connection: Option<String>,
    /// The longest a send may take (default 10s).
    pub timeout: Option<Duration>,
}

/// `[channels.email.NAME]`: SMTP.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub to: Vec<String>,
    pub from: String,
    pub host: String,
    /// Default: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: EmailTls,
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
    /// The longest a send may take (default 10s).
    pub timeout: Option<Duration>,
}

/// How SMTP is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmailTls {
    /// STARTTLS, required: a server that does not offer it is not sent to.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// Plain text: only to a loopback host (a local relay).
    None,
}

impl EmailChannel {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        })
    }

    /// The password's source, when a username is set.
    pub fn password(&self) -> Option<SecretSource> {
        SecretSource::from_pair("password", self.password_env.as_deref(), self.password_file.as_deref()).ok()
    }
}

impl SlackChannel {
    pub fn url(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair("webhook_url", self.webhook_url_env.as_deref(), self.webhook_url_file.as_deref())
    }
}

impl WebhookChannel {
    pub fn url(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair("url", self.url_env.as_deref(), self.url_file.as_deref())
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("POST")
    }
}

/// The HTTP methods a webhook may use.
pub const METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET", "DELETE"];

/// One problem of `[channels]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `slack:data-oncall`.
    pub channel: String,
    /// The key at fault (`webhook_url_env`), or empty for the channel as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let section = match self.channel.split_once(':') {
            Some((kind, name)) => format!("[channels.{kind}.{name}]"),
            None => format!("[channels.{}]", self.channel),
        };
        if self.key.is_empty() {
            write!(f, "sluice.toml {section}: {}", self.message)
        } else {
            write!(f, "sluice.toml {section} `{}`: {}", self.key, self.message)
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ChannelsConfig {
    /// The `[channels]` table of a whole `sluice.toml` text (other tables are not looked at);
    /// no table: no channels. Not validated: see [`ChannelsConfig::validate`].
    pub fn from_sluice_toml(text: &str) -> Result<ChannelsConfig, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| format!("sluice.toml: {}", e.message()))?;
        match doc.get("channels") {
            None => Ok(ChannelsConfig::default()),
            Some(v) => {
                v.clone().try_into().map_err(|e: toml::de::Error| format!("sluice.toml [channels]: {}", e.message()))
            }
        }
    }

    /// Every declared channel, in kind then name order.
    pub fn declared(&self) -> Vec<ChannelRef> {
        let mut out = Vec::new();
        let mut add = |kind: ChannelKind, names: Vec<&String>| {
            out.extend(names.into_iter().map(|n| ChannelRef { kind, name: n.clone() }));
        };
        add(ChannelKind::Slack, self.slack.keys().collect());
        add(ChannelKind::Sns, self.sns.keys().collect());
        add(ChannelKind::Email, self.email.keys().collect());
        add(ChannelKind::Webhook, self.webhook.keys().collect());
        out.sort();
        out
    }

    /// Whether `channel` is declared.
    pub fn contains(&self, channel: &ChannelRef) -> bool {
        let name = &channel.name;
        match channel.kind {
            ChannelKind::Slack => self.slack.contains_key(name),
            ChannelKind::Sns => self.sns.contains_key(name),
            ChannelKind::Email => self.email.contains_key(name),
            ChannelKind::Webhook => self.webhook.contains_key(name),
        }
    }

    /// Checks every channel; `connections` are the names of `[connections]` (an SNS channel's
    /// `connection` must be one). Reads no secret.
    pub fn validate(&self, connections: &[&str]) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        for (name, c) in &self.slack {
            let mut err = problem(&mut errors, ChannelKind::Slack, name);
            if let Err(m) = c.url() {
                err(&key_of(&m, "webhook_url"), m);
            }
            if let Some(u) = &c.ui_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    err("ui_url", format!("`{u}` is not an http:// or https:// URL"));
                }
            }
            check_timeout(&mut err, c.timeout);
        }
        for (name, c) in &self.webhook {
            let mut err = problem(&mut errors, ChannelKind::Webhook, name);
            if let Err(m) = c.url() {
                err(&key_of(&m, "url"), m);
            }
            if !METHODS.contains(&c.method()) {
                err("method", format!("`{}` is not one of {}", c.method(), METHODS.join(", ")));
            }
            for (h, v) in &c.headers {
                if let Some(m) = bad_header(h, Some(v)) {
                    err("headers", m);
                }
            }
            for (h, var) in &c.headers_env {
                if let Some(m) = bad_header(h, None) {
                    err("headers_env", m);
                } else if var.trim().is_empty() {
                    err("headers_env", format!("header `{h}` names no environment variable"));
                } else if c.headers.keys().any(|k| k.eq_ignore_ascii_case(h)) {
                    err("headers_env", format!("header `{h}` is also in `headers`: give it once"));
                }
            }
            if let Some(body) = &c.body {
                if let Err(m) = crate::template::check(body) {
                    err("body", m);
                }
            }
            check_timeout(&mut err, c.timeout);
        }
        for (name, c) in &self.sns {
            let mut err = problem(&mut errors, ChannelKind::Sns, name);
            if !is_sns_arn(&c.topic_arn) {
                err(
                    "topic_arn",
                    format!(
                        "`{}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)",
                        c.topic_arn.escape_debug()
                    ),
                );
            }
            if let Some(conn) = &c.connection {
                if !connections.contains(&conn.as_str()) {
                    let hint = sluice_dag::diagnostic::suggest(conn, connections.iter().copied())
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    err("connection", format!("connection `{conn}` is not declared in [connections]{hint}"));
                }
            }
            check_timeout(&mut err, c.timeout);
        }
        for (name, c) in &self.email {
            let mut err = problem(&mut errors, ChannelKind::Email, name);
            if c.to.is_empty() {
                err("to", "give at least one address".to_string());
            }
            for a in &c.to {
                if let Some(m) = bad_address(a) {
                    err("to", m);
                }
            }
            if let Some(m) = bad_address(&c.from) {
                err("from", m);
            }
            if c.host.trim().is_empty() {
                err("host", "give the SMTP server's host name".to_string());
            }
            if c.port == Some(0) {
                err("port", "0 is not a port".to_string());
            }
            if c.tls == EmailTls::None && !is_loopback(&c.host) {
                err(
                    "tls",
                    format!(
                        "`none` sends mail (and the password) in clear text: only allowed to a loopback host, not `{}`; \
                         use `starttls` or `tls`",
                        c.host
                    ),
                );
            }
            let password = SecretSource::from_pair("password", c.password_env.as_deref(), c.password_file.as_deref());
            match (&c.username, password) {
                (Some(_), Err(m)) => err(&key_of(&m, "password"), m),
                (None, Ok(_)) => err("username", "a password is set but no `username`".to_string()),
                (Some(u), Ok(_)) if u.is_empty() => err("username", "is empty".to_string()),
                _ => {}
            }
            check_timeout(&mut err, c.timeout);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// A function recording problems of one channel (and first its name's).
fn problem<'a>(errors: &'a mut Vec<ConfigError>, kind: ChannelKind, name: &str) -> impl FnMut(&str, String) + use<'a> {
    let channel = format!("{}:{name}", kind.name());
    if sluice_dag::alerts::check_channel_name(name).is_err() {
        errors.push(ConfigError {
            channel: channel.clone(),
            key: String::new(),
            message: "a channel name may only hold letters, digits, `_`, `.` and `-`".to_string(),
        });
    }
    move |key: &str, message: String| {
        errors.push(ConfigError { channel: channel.clone(), key: key.to_string(), message })
    }
}

/// The key a secret's problem is reported on: `x_file` when only that form is at fault, else
/// `x_env` (the form a reader looks for first).
fn key_of(message: &str, key: &str) -> String {
    if message.starts_with(&format!("`{key}_file` is empty")) {
        format!("{key}_file")
    } else {
        format!("{key}_env")
    }
}

fn check_timeout(err: &mut impl FnMut(&str, String), timeout: Option<Duration>) {
    if let Some(t) = timeout {
        if t.0.is_zero() {
            err("timeout", "must be more than 0s".to_string());
        } else if t.0 > std::time::Duration::from_secs(600) {
            err("timeout", "must be at most 10m: a send that takes longer holds up the alerts behind it".to_string());
        }
    }
}

fn bad_header(name: &str, value: Option<&str>) -> Option<String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Some(format!("`{}` is not a valid header name", name.escape_debug()));
    }
    if let Some(v) = value {
        if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Some(format!("the value of header `{name}` holds a control character"));
        }
    }
    None
}

fn bad_address(a: &str) -> Option<String> {
    let addr = match (a.rfind('<'), a.ends_with('>')) {
        (Some(i), true) => &a[i + 1..a.len() - 1],
        _ => a,
    };
    let ok = match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    };
    (!ok).then(|| format!("`{}` is not an email address (name@example.com)", a.escape_debug()))
}

fn is_sns_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && !parts[5].is_empty()
}

/// `localhost`, or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
