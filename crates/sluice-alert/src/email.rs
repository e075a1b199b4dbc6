//! Email over SMTP (lettre): STARTTLS required by default, implicit TLS, or plain text to a
//! loopback relay; the password read at each send; a plain-text body, the title as subject.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailChannel, EmailTls};
use crate::message::AlertMessage;
use crate::secret::scrub;
use crate::{ChannelRef, SendError};

pub(crate) async fn send(
    channel: &ChannelRef,
    c: &EmailChannel,
    msg: &AlertMessage,
    timeout: Duration,
) -> Result<String, SendError> {
    let fatal = |m: String| SendError::fatal(channel, m);
    let from: Mailbox = c.from.parse().map_err(|e| fatal(format!("`from` {:?}: {e}", c.from)))?;
    let mut builder = Message::builder().from(from).subject(one_line(&msg.title)).header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        let mailbox: Mailbox = to.parse().map_err(|e| fatal(format!("`to` {to:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    let email = builder.body(msg.text()).map_err(|e| fatal(format!("cannot build the message: {e}")))?;

    let transport = match c.tls {
        EmailTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host),
        EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host),
        EmailTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)),
    };
    let mut transport = transport
        .map_err(|e| fatal(format!("cannot set up TLS for {}: {e}", c.host)))?
        .port(c.port())
        .timeout(Some(timeout));
    let mut secrets = Vec::new();
    if let Some(user) = &c.username {
        let source = c.password().ok_or_else(|| fatal("`username` is set without a password source".into()))?;
        let password = source.read().map_err(|m| fatal(format!("the SMTP password: {m}")))?;
        secrets.push(password.expose().to_string());
        transport = transport.credentials(Credentials::new(user.clone(), password.expose().to_string()));
    }
    let transport = transport.build();
    match transport.send(email).await {
        Ok(resp) => {
            let text = resp.message().collect::<Vec<_>>().join(" ");
            Ok(scrub(&format!("{} {}", resp.code(), crate::message::cut_chars(&text, 200)), &secrets))
        }
        Err(e) => {
            let what = scrub(&error_text(&e), &secrets);
            let message = format!("SMTP {}:{}: {what}", c.host, c.port());
            Err(SendError { message: format!("{channel}: {message}"), retryable: retryable(&e) })
        }
    }
}

/// 4xx answers are transient by SMTP's definition, 5xx refusals; a connection that failed or
/// timed out may work later; a TLS failure (a certificate refused), an unexpected answer or a
/// server that lacks what is asked of it (STARTTLS, an authentication mechanism) will not.
fn retryable(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_transient() || e.is_timeout() {
        return true;
    }
    // What is left is a network or connection error.
    !(e.is_permanent() || e.is_tls() || e.is_client() || e.is_response() || e.is_transport_shutdown())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn error_text(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = s.source();
    }
    crate::message::cut_chars(&one_line(&text), 300)
}
