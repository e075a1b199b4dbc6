//! The email channel through a real SMTP server on loopback: aiosmtpd from the project's venv
//! (`support::Smtpd`), its Maildir handler writing each message it accepts to a folder the test
//! reads back.

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use chrono::{TimeZone, Utc};
use sluice_alert::{AlertMessage, ChannelRef, ChannelsConfig, Notifier};
use support::Smtpd;

fn message() -> AlertMessage {
    let mut m = AlertMessage::new(
        "task_failed",
        "Task `load` of `sales` failed (run 2026-01-01)",
        "sales",
        Utc.with_ymd_and_hms(2026, 1, 2, 7, 0, 0).unwrap(),
    );
    m.run_id = Some("scheduled__2026-01-01".into());
    m.task_id = Some("load".into());
    m.error = Some("exit status 1".into());
    m.log_tail = Some("reading s3://raw/sales\nKeyError: 'amount'".into());
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_is_delivered_with_the_title_as_subject_and_a_plain_text_body() {
    let smtpd = Smtpd::start();
    let config = ChannelsConfig::from_sluice_toml(&format!(
        "[channels.email.data-team]\nto = [\"data-team@example.com\", \"Oncall <oncall@example.com>\"]\n\
         from = \"sluice@example.com\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        smtpd.port
    ))
    .unwrap();
    let notifier = Notifier::new(config, Default::default()).unwrap();
    let channel: ChannelRef = "email:data-team".parse().unwrap();
    let answer = notifier.send(&channel, &message()).await.unwrap();
    assert!(answer.starts_with("250 "), "{answer}");

    let received = smtpd.messages();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert!(mail.contains("Subject: Task `load` of `sales` failed (run 2026-01-01)"), "{mail}");
    assert!(mail.contains("From: sluice@example.com"), "{mail}");
    assert!(mail.contains("To: data-team@example.com, Oncall <oncall@example.com>"), "{mail}");
    assert!(mail.contains("Content-Type: text/plain; charset=utf-8"), "{mail}");
    assert!(mail.contains("X-RcptTo: data-team@example.com, oncall@example.com"), "{mail}");
    let body = mail.split_once("\n\n").map(|(_, b)| b).unwrap_or_default().replace("\r\n", "\n");
    assert!(body.contains("Task:         load\n"), "{body}");
    assert!(body.contains("Last lines of the log:\nreading s3://raw/sales\nKeyError: 'amount'\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_is_required_so_a_server_without_it_gets_nothing() {
    let smtpd = Smtpd::start();
    let config = ChannelsConfig::from_sluice_toml(&format!(
        "[channels.email.strict]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"localhost\"\nport = {}\n",
        smtpd.port
    ))
    .unwrap();
    let notifier = Notifier::new(config, Default::default()).unwrap();
    let e = notifier.send(&"email:strict".parse().unwrap(), &message()).await.unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.starts_with(&format!("email:strict: SMTP localhost:{}: ", smtpd.port)), "{}", e.message);
    assert!(e.message.contains("STARTTLS"), "{}", e.message);
    assert!(smtpd.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_password_is_named_and_not_retried() {
    let config = ChannelsConfig::from_sluice_toml(
        "[channels.email.auth]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\n\
         username = \"sluice\"\npassword_file = \"/nonexistent/sluice/smtp-password\"\n",
    )
    .unwrap();
    let notifier = Notifier::new(config, Default::default()).unwrap();
    let e = notifier.send(&"email:auth".parse().unwrap(), &message()).await.unwrap_err();
    assert!(!e.retryable);
    assert_eq!(
        e.message,
        "email:auth: the SMTP password: cannot read file `/nonexistent/sluice/smtp-password`: entity not found"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_not_there_may_be_tried_again() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ChannelsConfig::from_sluice_toml(&format!(
        "[channels.email.down]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"127.0.0.1\"\n\
         port = {port}\ntls = \"none\"\n"
    ))
    .unwrap();
    let notifier = Notifier::new(config, Default::default()).unwrap();
    let e = notifier.send(&"email:down".parse().unwrap(), &message()).await.unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert!(e.message.starts_with(&format!("email:down: SMTP 127.0.0.1:{port}: ")), "{}", e.message);
}
