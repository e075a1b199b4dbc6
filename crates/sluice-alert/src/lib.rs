//! Sluice's alert channels: where alerts go and how they get there.
//!
//! - [`config`]; `[channels.<kind>.<name>]` of `sluice.toml` ([`ChannelsConfig`]) and its
//!   validation, every problem naming the channel and the key.
//! - [`message`]; what an alert says ([`AlertMessage`], the JSON the store keeps), digests.
//! - [`secret`]; secrets named by `*_env` / `*_file`, read at each send, never shown.
//! - [`template`]; webhook body templates (minijinja, `secret('VAR')`).
//! - [`Notifier`] (feature `send`, on by default); sends to Slack (incoming webhook), any
//!   webhook, SNS (through sluice-aws's connections) and email (SMTP, STARTTLS required unless
//!   told otherwise), each send bounded by the channel's timeout.
//!
//! The scheduler knows channels only through [`Notify`] (this crate without the `send`
//! feature has no HTTP, SMTP or AWS in it); dagctl hands it a [`Notifier`].
//!
//! What a send answers is short and holds no secret; a [`SendError`] says whether another
//! attempt may help, and shows a URL by its host only.

pub mod channel;
pub mod config;
pub mod message;
pub mod secret;
pub mod template;

#[cfg(feature = "send")]
mod email;
#[cfg(feature = "send")]
mod http;
#[cfg(feature = "send")]
mod notifier;
#[cfg(feature = "send")]
pub mod slack;

pub use channel::{ChannelKind, ChannelRef};
pub use config::{ChannelsConfig, ConfigError, ConfigErrors, EmailTls, DEFAULT_TIMEOUT};
pub use message::AlertMessage;
#[cfg(feature = "send")]
pub use notifier::Notifier;

/// A send that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// One line, starting with the channel (`slack:data-oncall: ...`); no secret in it.
    pub message: String,
    /// Whether another attempt may succeed (a 5xx or 429 answer, no connection, no answer in
    /// time); not for a refusal (4xx) or a configuration problem (a missing secret).
    pub retryable: bool,
}

impl SendError {
    pub fn retryable(channel: &ChannelRef, message: impl std::fmt::Display) -> SendError {
        SendError { message: format!("{channel}: {message}"), retryable: true }
    }

    pub fn fatal(channel: &ChannelRef, message: impl std::fmt::Display) -> SendError {
        SendError { message: format!("{channel}: {message}"), retryable: false }
    }
}

/// Sending to channels, as the scheduler's alert sender sees it.
#[async_trait::async_trait]
pub trait Notify: Send + Sync {
    /// Sends `msg` to `channel`; `Ok` is what the channel answered (short, no secret).
    async fn send(&self, channel: &ChannelRef, msg: &AlertMessage) -> Result<String, SendError>;

    /// The channels it can send to.
    fn declared(&self) -> Vec<ChannelRef>;
}
