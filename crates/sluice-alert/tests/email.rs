//! The email channel through a real SMTP server on loopback: aiosmtpd from the project's venv,
//! its Maildir handler writing each message it accepts to a folder the test reads back.

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sluice_alert::{AlertMessage, ChannelRef, ChannelsConfig, Notifier};

/// An aiosmtpd server; killed when dropped.
struct Smtpd {
    port: u16,
    maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// How long the server may take to accept connections (Python's start), as a safety net only.
const START_LIMIT: Duration = Duration::from_secs(60);

impl Smtpd {
    fn start() -> Smtpd {
        let root = support::workspace_root();
        let python = support::ensure_venv(&root);
        let dir = tempfile::tempdir().unwrap();
        // Maildir creates its folders only when the path does not exist yet.
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd from the venv");
        let mut smtpd = Smtpd { port, maildir, child, _dir: dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = smtpd.child.try_wait() {
                panic!("aiosmtpd exited with {status}; its error is above in stderr");
            }
            assert!(started.elapsed() < START_LIMIT, "aiosmtpd did not listen within {START_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        smtpd
    }

    /// The messages received, as their raw text.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files.iter().map(|f: &PathBuf| std::fs::read_to_string(Path::new(f)).unwrap()).collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
