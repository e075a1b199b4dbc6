//! SNS: publishing a message to a topic, for the alert channels (`[channels.sns.NAME]`).
//!
//! A thin client on [`Clients`]: the topic's connection gives the region, profile, role and
//! endpoint like any operator's, and every request is counted under `sns` in the telemetry.
//! Errors are [`AwsError`]s: throttling, server errors and broken connections say that another
//! attempt may help; a refusal for credentials, an unknown topic or a bad request do not.

use aws_sdk_sns::error::SdkError;

use crate::clients::Clients;
use crate::wait::{aws_error, AwsError};

/// SNS limits a subject to 100 characters.
pub const SUBJECT_MAX_CHARS: usize = 100;

/// An SNS client for connection `connection` (`None`: the default one).
pub async fn client(clients: &Clients, connection: Option<&str>) -> Result<aws_sdk_sns::Client, AwsError> {
    let config = clients.config(connection).await.map_err(|e| AwsError {
        retryable: e.is_retryable(),
        message: e.message,
        credentials: true,
    })?;
    let config = aws_sdk_sns::config::Builder::from(&config)
        .interceptor(crate::telemetry::Counting::new(clients.telemetry(), "sns"))
        .build();
    Ok(aws_sdk_sns::Client::from_conf(config))
}

/// Publishes `message` to `topic_arn` with `subject` (cut to [`SUBJECT_MAX_CHARS`] on one line,
/// as SNS requires; empty: none) and returns the message id SNS gave it.
pub async fn publish(
    clients: &Clients,
    connection: Option<&str>,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<String, AwsError> {
    let sns = client(clients, connection).await?;
    let subject = subject_line(subject);
    let mut request = sns.publish().topic_arn(topic_arn).message(message);
    if !subject.is_empty() {
        request = request.subject(subject);
    }
    match request.send().await {
        Ok(out) => Ok(out.message_id().unwrap_or_default().to_string()),
        Err(e) => Err(publish_error(e)),
    }
}

fn publish_error(e: SdkError<aws_sdk_sns::operation::publish::PublishError>) -> AwsError {
    aws_error("SNS Publish", e)
}

/// A subject SNS accepts: printable characters on one line (SNS refuses control characters and
/// line breaks), at most [`SUBJECT_MAX_CHARS`] characters, cut with `...`.
pub fn subject_line(subject: &str) -> String {
    let flat: String =
        subject.split_whitespace().collect::<Vec<_>>().join(" ").chars().filter(|c| !c.is_control()).collect();
    if flat.chars().count() <= SUBJECT_MAX_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(SUBJECT_MAX_CHARS - 3).collect();
    format!("{}...", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_line_and_at_most_100_characters() {
        assert_eq!(subject_line("  dag `x`\nfailed\t "), "dag `x` failed");
        let long = "é".repeat(150);
        let s = subject_line(&long);
        assert_eq!(s.chars().count(), 100);
        assert!(s.ends_with("..."));
        assert_eq!(subject_line(&"a".repeat(100)), "a".repeat(100));
        assert_eq!(subject_line(""), "");
    }
}
