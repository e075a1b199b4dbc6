//! Alerts end to end: the `dagctl` daemon on a real SQLite file, a failing `command` task, and
//! a real HTTP server in this test receiving the webhook and Slack posts. Waiting is for the
//! event itself (a request arriving, an alert's state in the store), with a generous safety
//! limit; nothing is timed.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../sluice-aws/tests/support/mod.rs"]
mod support;

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{free_port, Daemon, SAFETY_LIMIT};
use serde_json::Value;

/// What the receiver got, and how many requests to `/hook` it answers 500 first.
#[derive(Default)]
struct Inbox {
    requests: Vec<(String, HeaderMap, String, u16)>,
    fail_first: usize,
}

type Shared = Arc<Mutex<Inbox>>;

async fn receive(State(inbox): State<Shared>, uri: Uri, headers: HeaderMap, body: String) -> StatusCode {
    let mut inbox = inbox.lock().unwrap();
    let path = uri.path().to_string();
    let failed_so_far = inbox.requests.iter().filter(|r| r.0 == "/hook" && r.3 == 500).count();
    let status = if path == "/hook" && failed_so_far < inbox.fail_first { 500 } else { 200 };
    inbox.requests.push((path, headers, body, status));
    StatusCode::from_u16(status).unwrap()
}

/// An HTTP server on `addr` (port 0: any free one) recording every request.
async fn receiver(addr: &str, fail_first: usize) -> (SocketAddr, Shared) {
    let inbox: Shared = Arc::new(Mutex::new(Inbox { fail_first, ..Inbox::default() }));
    let app = axum::Router::new().fallback(receive).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, inbox)
}

fn answered(inbox: &Shared, path: &str) -> Vec<Value> {
    let inbox = inbox.lock().unwrap();
    inbox
        .requests
        .iter()
        .filter(|r| r.0 == path && r.3 == 200)
        .map(|r| serde_json::from_str(&r.2).unwrap_or(Value::String(r.2.clone())))
        .collect()
}

/// A [`common::Env`] with `dags/boom.toml`, a `sluice.toml` declaring the channels, and the
/// receiver's URLs (secrets: passed in variables) set for every `dagctl`.
struct Env {
    env: common::Env,
    hook: String,
    slack: String,
}

impl Deref for Env {
    type Target = common::Env;

    fn deref(&self) -> &common::Env {
        &self.env
    }
}

impl Env {
    fn new(base: &str, dag: &str) -> Env {
        Env::with_config(base, dag, "")
    }

    /// As [`Env::new`], with `extra` added to sluice.toml.
    fn with_config(base: &str, dag: &str, extra: &str) -> Env {
        let (hook, slack) = (format!("{base}/hook"), format!("{base}/slack"));
        let env = common::Env::new()
            .env("TEST_HOOK_URL", &hook)
            .env("TEST_SLACK_URL", &slack)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        env.write_dag("boom.toml", dag);
        let config = r#"
[alerting]
base_url = "http://sluice.example.com:8080"

[channels.webhook.hook]
url_env = "TEST_HOOK_URL"
headers = { "Content-Type" = "application/json" }
body = '{"summary": {{ title | tojson }}, "dag": {{ dag_id | tojson }}, "rule": {{ rule | tojson }}, "error": {{ error | tojson }}}'

[channels.slack.team]
webhook_url_env = "TEST_SLACK_URL"
"#;
        std::fs::write(env.root().join("sluice.toml"), format!("{config}{extra}")).unwrap();
        Env { env, hook, slack }
    }

    /// `dagctl scheduler --no-api`, not waited for (the tests wait for what it does).
    fn daemon(&self) -> Daemon {
        self.spawn("scheduler", &["--no-api"])
    }

    fn alerts(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok(&["alerts", "list", "--json"])).unwrap().as_array().unwrap().clone()
    }
}

/// Polls `probe` until it gives something (the safety limit only turns a hang into a failure).
async fn until<T>(what: &str, daemon: &Daemon, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SAFETY_LIMIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        assert!(Instant::now() < deadline, "timed out waiting for {what}; daemon log:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const FAILING: &str = r#"
[[alerts]]
on = ["failure", "task_failed"]
to = ["webhook:hook", "slack:team"]

[tasks.boom]
operator = "command"
command = "echo about to fail; echo the real cause >&2; exit 3"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reaches_slack_and_a_webhook_and_a_500_is_tried_again() {
    let (addr, inbox) = receiver("127.0.0.1:0", 1).await;
    let env = Env::new(&format!("http://{addr}"), FAILING);
    let daemon = env.daemon();
    env.ok(&["trigger", "boom"]);

    // Slack: one message per alert (failure, task_failed), readable, with the log's end.
    let slack = until("two Slack posts", &daemon, || Some(answered(&inbox, "/slack")).filter(|v| v.len() == 2)).await;
    for post in &slack {
        let text = post.to_string();
        assert!(post["text"].as_str().is_some_and(|t| t.contains("boom")), "{post}");
        assert!(post["blocks"].is_array(), "{post}");
        assert!(text.contains("about to fail") || text.contains("the real cause"), "the log's end: {post}");
        assert!(text.contains("http://sluice.example.com:8080/api/v1/dags/boom/runs/"), "a link to the run: {post}");
    }
    // The webhook answered 500 once: that alert is tried again (after the backoff) and then
    // delivered; each alert arrives once with a 200.
    let hook =
        until("two webhook posts answered 200", &daemon, || Some(answered(&inbox, "/hook")).filter(|v| v.len() == 2))
            .await;
    let mut rules: Vec<&str> = hook.iter().map(|h| h["rule"].as_str().unwrap()).collect();
    rules.sort();
    assert_eq!(rules, ["failure", "task_failed"]);
    assert!(hook.iter().all(|h| h["dag"] == "boom"), "{hook:?}");
    let task_failed = hook.iter().find(|h| h["rule"] == "task_failed").unwrap();
    assert!(task_failed["error"].as_str().is_some_and(|e| e.contains("3")), "the error: {task_failed}");
    {
        let inbox = inbox.lock().unwrap();
        let hook_requests: Vec<u16> = inbox.requests.iter().filter(|r| r.0 == "/hook").map(|r| r.3).collect();
        assert_eq!(hook_requests.iter().filter(|s| **s == 500).count(), 1, "{hook_requests:?}");
        let with_type =
            inbox.requests.iter().filter(|r| r.0 == "/hook").all(|r| r.1["content-type"] == "application/json");
        assert!(with_type);
    }
    // The store says the same: four alerts delivered, the one that met the 500 in two attempts.
    let alerts = until("every alert delivered in the store", &daemon, || {
        let a = env.alerts();
        a.iter().all(|x| x["state"] == "delivered").then_some(a)
    })
    .await;
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    let mut attempts: Vec<u64> = alerts.iter().map(|a| a["attempts"].as_u64().unwrap()).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 1, 1, 2]);
    let table = env.ok(&["alerts", "list"]);
    assert!(table.contains("webhook:hook") && table.contains("delivered"), "{table}");
    // No secret in the daemon's log: the URLs carry the receiver's address.
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains(&env.hook) && !log.contains(&env.slack), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_before_delivery_delivers_after_restart_once() {
    // A port with nobody on it: the first attempt fails (the alert stays pending).
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = Env::new(
        &base,
        &FAILING.replace("\"failure\", \"task_failed\"", "\"failure\"").replace(", \"slack:team\"", ""),
    );
    let mut daemon = env.daemon();
    env.ok(&["trigger", "boom"]);
    let pending = until("the alert tried once and pending", &daemon, || {
        let a = env.alerts();
        a.first().filter(|x| x["state"] == "pending" && x["attempts"] == 1).cloned()
    })
    .await;
    assert_eq!(pending["rule"], "failure");
    // kill -9: nothing is delivered, nothing is lost.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let (_, inbox) = receiver(&format!("127.0.0.1:{port}"), 0).await;
    let daemon = env.daemon();
    let alerts = until("the alert delivered after the restart", &daemon, || {
        let a = env.alerts();
        a.iter().all(|x| x["state"] == "delivered").then_some(a)
    })
    .await;
    assert_eq!(alerts.len(), 1, "one incident, one alert: {alerts:?}");
    assert_eq!(alerts[0]["attempts"], 2);
    let hook = answered(&inbox, "/hook");
    assert_eq!(hook.len(), 1, "delivered once: {hook:?}");
    assert_eq!(hook[0]["rule"], "failure");
    drop(daemon);
    // A third start finds nothing left to send.
    let daemon = env.daemon();
    until("the third daemon running", &daemon, || {
        std::fs::read_to_string(&daemon.log).unwrap_or_default().contains("scheduler running").then_some(())
    })
    .await;
    env.ok(&["trigger", "boom"]);
    until("the second run's alert delivered", &daemon, || (answered(&inbox, "/hook").len() == 2).then_some(())).await;
    assert_eq!(env.alerts().len(), 2, "a second failure is a second incident");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_success_for_longer_than_max_age_alerts_once_across_restarts() {
    let (addr, inbox) = receiver("127.0.0.1:0", 0).await;
    let dag = r#"
schedule = "0 5 * * *"
start_date = "2020-01-01"
paused_at_creation = true

[freshness]
max_age = "26h"

[[alerts]]
on = ["freshness"]
to = ["webhook:hook"]

[tasks.load]
operator = "noop"
"#;
    let env = Env::new(&format!("http://{addr}"), dag);
    // The DAG never ran (paused since it was first seen): its data is years old the moment a
    // daemon starts.
    let daemon = env.daemon();
    let hook =
        until("the freshness alert", &daemon, || Some(answered(&inbox, "/hook")).filter(|v| !v.is_empty())).await;
    assert_eq!(hook[0]["rule"], "freshness");
    assert!(hook[0]["summary"].as_str().unwrap().contains("no run has succeeded"), "{hook:?}");
    // Stopped once the delivery is recorded (a kill between the channel's answer and its
    // record would send it again: delivery is at least once across that instant).
    until("the delivery recorded", &daemon, || env.alerts().iter().all(|a| a["state"] == "delivered").then_some(()))
        .await;
    drop(daemon);
    // Down and up again: the same staleness is the same incident.
    let daemon = env.daemon();
    until("the second daemon running", &daemon, || {
        std::fs::read_to_string(&daemon.log).unwrap_or_default().contains("scheduler running").then_some(())
    })
    .await;
    let alerts = env.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(answered(&inbox, "/hook").len(), 1);
}

#[test]
fn an_undeclared_channel_is_an_error_of_the_dag_file_with_its_line() {
    let env = Env::new("http://127.0.0.1:9", &FAILING.replace("slack:team", "slack:teem"));
    let o = env.command().arg("validate").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("boom.toml:4") && err.contains("slack:teem") && err.contains("did you mean `slack:team`"),
        "{err}"
    );
}

#[test]
fn alerts_test_reports_what_the_channel_answered() {
    // Nobody listens on port 9 of loopback: the channel is down.
    let env = Env::new("http://127.0.0.1:9", FAILING);
    let o = env.command().args(["alerts", "test", "webhook:hook"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("webhook:hook") && err.contains("may work later"), "{err}");
    assert!(!err.contains("127.0.0.1:9/hook"), "the URL is a secret: {err}");
    let o = env.command().args(["alerts", "test", "webhook:other"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not declared"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dagctl_server_shows_a_dag_with_an_undeclared_channel_as_a_broken_file() {
    let env = Env::new("http://127.0.0.1:9", &FAILING.replace("slack:team", "slack:teem"));
    let server = env.spawn("server", &["--api-bind", "127.0.0.1:0"]);
    let base = until("the server's address", &server, || {
        let text = std::fs::read_to_string(&server.log).unwrap_or_default();
        let at = text.find("address=http://")?;
        Some(text[at + "address=".len()..].split_whitespace().next()?.to_string())
    })
    .await;
    let list: Value = reqwest::get(format!("{base}/api/v1/dags")).await.unwrap().json().await.unwrap();
    assert_eq!(list["dags"], serde_json::json!([]), "{list}");
    let text = list["failed_files"].to_string();
    assert!(text.contains("boom.toml") && text.contains("slack:teem") && text.contains("slack:team"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_publishes_to_sns_on_the_emulator_and_mails_through_smtp() {
    let moto = support::Moto::start();
    let smtpd = support::Smtpd::start();
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new(support::REGION))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                support::ACCESS_KEY_ID,
                support::SECRET_ACCESS_KEY,
                None,
                None,
                "tests",
            ))
            .build(),
    );
    let arn = sns.create_topic().name("pipeline-alerts").send().await.unwrap().topic_arn().unwrap().to_string();
    let extra = format!(
        "\n[connections.default]\nendpoint_url = \"{}\"\nregion = \"{}\"\n\n\
         [channels.sns.pipeline-alerts]\ntopic_arn = \"{arn}\"\n\n\
         [channels.email.data-team]\nto = [\"data-team@example.com\"]\nfrom = \"sluice@example.com\"\n\
         host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        moto.endpoint,
        support::REGION,
        smtpd.port
    );
    let dag = FAILING
        .replace("\"failure\", \"task_failed\"", "\"failure\"")
        .replace("to = [\"webhook:hook\", \"slack:team\"]", "to = [\"sns:pipeline-alerts\", \"email:data-team\"]");
    let env = Env::with_config("http://127.0.0.1:9", &dag, &extra);
    env.ok(&["validate"]);
    let daemon = env.daemon();
    env.ok(&["trigger", "boom"]);
    let alerts = until("both alerts delivered", &daemon, || {
        let a = env.alerts();
        (a.len() == 2 && a.iter().all(|x| x["state"] == "delivered")).then_some(a)
    })
    .await;
    assert!(alerts.iter().all(|a| a["attempts"] == 1 && a["rule"] == "failure"), "{alerts:?}");

    // What moto recorded as published to the topic: one message, the failure.
    let data: Value =
        reqwest::get(format!("{}/moto-api/data.json", moto.endpoint)).await.unwrap().json().await.unwrap();
    let topic = data["sns"]["Topic"].as_array().unwrap().iter().find(|t| t["arn"] == arn.as_str()).unwrap().clone();
    let sent = topic["sent_notifications"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (message, subject) = (sent[0][1].as_str().unwrap(), sent[0][2].as_str().unwrap_or_default());
    assert!(subject.contains("boom"), "{subject}");
    assert!(message.contains("boom") && message.contains("the real cause"), "{message}");

    // The mail, read back from the server's mailbox.
    let mails = smtpd.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("To: data-team@example.com") && mails[0].contains("Subject: "), "{}", mails[0]);
    assert!(mails[0].contains("the real cause"), "the log's end: {}", mails[0]);
}
