//! Slack and webhook channels against a real HTTP server on loopback (axum): the bodies and
//! headers received, and what each kind of failure is (500 and no answer: retry; 400: not),
//! with no secret in any error or `Debug` output.

use std::sync::Once;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use sluice_alert::{AlertMessage, ChannelRef, ChannelsConfig, Notifier};
use tokio::sync::mpsc;

/// Secrets the tests set once, before any notifier exists.
const ROUTING_KEY: &str = "rk-secret-7f3a0c";
const AUTH: &str = "Token tok-secret-91c2bb";

fn set_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("SLUICE_TEST_PD_ROUTING_KEY", ROUTING_KEY);
        std::env::set_var("SLUICE_TEST_PD_AUTH", AUTH);
    });
}

/// One request the server received.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A receiver on a loopback port: `/ok*` answers 200 `ok`, `/500` 500, `/400` 400, `/echo` 400
/// with the request's body, `/hang` never answers. Every request is handed to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Seen>) {
    async fn handle(
        State(tx): State<mpsc::UnboundedSender<Seen>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        let path = uri.path().to_string();
        let _ = tx.send(Seen { method, path: path.clone(), headers, body: body.clone() });
        match path.as_str() {
            "/500" => (StatusCode::INTERNAL_SERVER_ERROR, "overloaded, try later").into_response(),
            "/400" => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
            "/echo" => (StatusCode::BAD_REQUEST, format!("bad request: {body}")).into_response(),
            "/hang" => std::future::pending::<Response>().await,
            _ => (StatusCode::OK, "ok").into_response(),
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().fallback(handle).with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

fn message() -> AlertMessage {
    let mut m = AlertMessage::new(
        "failure",
        "Run 2026-01-01 of `sales` failed",
        "sales",
        Utc.with_ymd_and_hms(2026, 1, 2, 7, 0, 0).unwrap(),
    );
    m.run_id = Some("scheduled__2026-01-01T00:00:00+00:00".into());
    m.task_id = Some("load".into());
    m.state = Some("failed".into());
    m.error = Some("exit status 1".into());
    m.log_tail = Some((1..=30).map(|i| format!("line {i} <of> the log")).collect::<Vec<_>>().join("\n"));
    m.logical_date = Some("2026-01-01".into());
    m
}

/// A file holding `url`: the channels read their URL from it at each send.
fn url_file(dir: &tempfile::TempDir, name: &str, url: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{url}\n")).unwrap();
    path.display().to_string()
}

fn notifier(toml: &str) -> Notifier {
    set_env();
    let config = ChannelsConfig::from_sluice_toml(toml).unwrap();
    Notifier::new(config, Default::default()).unwrap()
}

fn channel(s: &str) -> ChannelRef {
    s.parse().unwrap()
}

#[tokio::test]
async fn slack_gets_a_readable_message_with_the_log_tail_and_a_link() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "slack", &format!("{base}/ok/services/T0/B0/slack-secret-token"));
    let n = notifier(&format!(
        "[channels.slack.data-oncall]\nwebhook_url_file = {file:?}\nui_url = \"http://sluice.internal:8080/\"\n"
    ));
    let answer = n.send(&channel("slack:data-oncall"), &message()).await.unwrap();
    assert_eq!(answer, "200 OK: ok");

    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/ok/services/T0/B0/slack-secret-token");
    assert_eq!(req.headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["text"], "Run 2026-01-01 of `sales` failed (task load: exit status 1)");
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Run 2026-01-01 of `sales` failed");
    let fields: Vec<&str> =
        blocks[1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "*DAG*\nsales",
            "*Run*\nscheduled__2026-01-01T00:00:00+00:00",
            "*Task*\nload",
            "*State*\nfailed",
            "*Logical date*\n2026-01-01"
        ]
    );
    assert_eq!(blocks[2]["text"]["text"], "*Error*\n```exit status 1```");
    // The last 20 lines of the log, escaped for mrkdwn, in a code block.
    let log = blocks[3]["text"]["text"].as_str().unwrap();
    assert!(log.starts_with("*Last lines of the log*\n```line 11 &lt;of&gt; the log\n"), "{log}");
    assert!(log.ends_with("line 30 &lt;of&gt; the log```"), "{log}");
    assert!(!log.contains("line 10 "), "{log}");
    assert_eq!(
        blocks[4]["text"]["text"],
        "<http://sluice.internal:8080/api/v1/dags/sales/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00|Open the run>"
    );
    assert_eq!(blocks[5]["elements"][0]["text"], "Sluice · `failure` · 2026-01-02T07:00:00Z");
}

#[tokio::test]
async fn a_webhook_renders_its_template_with_secrets_and_headers() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "pd", &format!("{base}/ok/v2/enqueue"));
    let n = notifier(&format!(
        r#"
[channels.webhook.pagerduty]
url_file = {file:?}
method = "PUT"
headers = {{ "Content-Type" = "application/json", "X-Source" = "sluice" }}
headers_env = {{ "Authorization" = "SLUICE_TEST_PD_AUTH" }}
body = '''{{"routing_key": "{{{{ secret('SLUICE_TEST_PD_ROUTING_KEY') }}}}", "event_action": "trigger", "dedup_key": {{{{ (dag_id ~ "/" ~ run_id) | tojson }}}}, "payload": {{"summary": {{{{ title | tojson }}}}, "source": "sluice", "severity": "error", "custom_details": {{"task": {{{{ task_id | tojson }}}}, "missing": {{{{ link | tojson }}}}}}}}}}'''
"#
    ));
    let answer = n.send(&channel("webhook:pagerduty"), &message()).await.unwrap();
    assert_eq!(answer, "200 OK: ok");
    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, Method::PUT);
    assert_eq!(req.headers["authorization"], AUTH);
    assert_eq!(req.headers["x-source"], "sluice");
    assert_eq!(req.headers.get_all("content-type").iter().count(), 1);
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "sales/scheduled__2026-01-01T00:00:00+00:00",
            "payload": {
                "summary": "Run 2026-01-01 of `sales` failed",
                "source": "sluice",
                "severity": "error",
                "custom_details": { "task": "load", "missing": null },
            },
        })
    );
}

#[tokio::test]
async fn a_webhook_without_a_template_posts_the_message_as_json() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "hook", &format!("{base}/ok"));
    let n = notifier(&format!("[channels.webhook.plain]\nurl_file = {file:?}\n"));
    n.send(&channel("webhook:plain"), &message()).await.unwrap();
    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.headers["content-type"], "application/json");
    let back: AlertMessage = serde_json::from_str(&req.body).unwrap();
    assert_eq!(back, message());
}

#[tokio::test]
async fn a_secret_file_is_read_at_each_send() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "slack", &format!("{base}/ok/first"));
    let n = notifier(&format!("[channels.slack.x]\nwebhook_url_file = {file:?}\n"));
    n.send(&channel("slack:x"), &message()).await.unwrap();
    url_file(&dir, "slack", &format!("{base}/ok/rotated"));
    n.send(&channel("slack:x"), &message()).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/ok/first");
    assert_eq!(seen.recv().await.unwrap().path, "/ok/rotated");
}

#[tokio::test]
async fn server_errors_may_be_retried_refusals_not() {
    let (base, _seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let f500 = url_file(&dir, "500", &format!("{base}/500"));
    let f400 = url_file(&dir, "400", &format!("{base}/400"));
    let n = notifier(&format!(
        "[channels.slack.down]\nwebhook_url_file = {f500:?}\n[channels.webhook.picky]\nurl_file = {f400:?}\n"
    ));
    let port = base.rsplit(':').next().unwrap();
    let e = n.send(&channel("slack:down"), &message()).await.unwrap_err();
    assert!(e.retryable);
    assert_eq!(e.message, "slack:down: 127.0.0.1 answered 500 Internal Server Error: overloaded, try later");
    assert!(!e.message.contains(port), "the URL is shown by its host only: {}", e.message);

    let e = n.send(&channel("webhook:picky"), &message()).await.unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.message, "webhook:picky: 127.0.0.1 answered 400 Bad Request: invalid_payload");
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_cut_off_by_the_timeout() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "hang", &format!("{base}/hang"));
    let n = notifier(&format!("[channels.webhook.slow]\nurl_file = {file:?}\ntimeout = \"200ms\"\n"));
    let e = n.send(&channel("webhook:slow"), &message()).await.unwrap_err();
    assert!(e.retryable);
    assert_eq!(e.message, "webhook:slow: no answer within 200ms");
    assert_eq!(seen.recv().await.unwrap().path, "/hang", "the request did reach the receiver");
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error_that_may_be_retried() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "gone", &format!("http://127.0.0.1:{port}/services/slack-secret-token"));
    let n = notifier(&format!("[channels.slack.gone]\nwebhook_url_file = {file:?}\n"));
    let e = n.send(&channel("slack:gone"), &message()).await.unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert!(e.message.starts_with("slack:gone: cannot connect to 127.0.0.1: "), "{}", e.message);
    assert!(!e.message.contains("slack-secret-token") && !format!("{e:?}").contains("slack-secret-token"));
}

#[tokio::test]
async fn a_missing_secret_is_an_error_naming_it_that_is_not_retried() {
    set_env();
    let (base, _seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "hook", &format!("{base}/ok"));
    let n = notifier(&format!(
        r#"
[channels.slack.unset]
webhook_url_env = "SLUICE_TEST_NEVER_SET_URL"
[channels.slack.nofile]
webhook_url_file = "/nonexistent/sluice/slack-url"
[channels.webhook.key]
url_file = {file:?}
body = "{{{{ secret('SLUICE_TEST_NEVER_SET_KEY') }}}}"
[channels.webhook.header]
url_file = {file:?}
headers_env = {{ "Authorization" = "SLUICE_TEST_NEVER_SET_AUTH" }}
"#
    ));
    let cases = [
        ("slack:unset", "slack:unset: the webhook URL: environment variable `SLUICE_TEST_NEVER_SET_URL` is not set"),
        (
            "slack:nofile",
            "slack:nofile: the webhook URL: cannot read file `/nonexistent/sluice/slack-url`: entity not found",
        ),
        (
            "webhook:key",
            "webhook:key: the body template failed: invalid operation: secret(): environment variable \
             `SLUICE_TEST_NEVER_SET_KEY` is not set (line 1 of the template)",
        ),
        (
            "webhook:header",
            "webhook:header: header `Authorization`: environment variable `SLUICE_TEST_NEVER_SET_AUTH` is not set",
        ),
    ];
    for (c, want) in cases {
        let e = n.send(&channel(c), &message()).await.unwrap_err();
        assert!(!e.retryable, "{c}");
        assert_eq!(e.message, want);
    }
    let e = n.send(&channel("slack:undeclared"), &message()).await.unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.message, "slack:undeclared: not declared in sluice.toml ([channels.slack.undeclared])");
}

#[tokio::test]
async fn no_secret_in_what_a_refusal_echoes_nor_in_debug_output() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "echo", &format!("{base}/echo"));
    let n = notifier(&format!(
        r#"
[channels.webhook.echo]
url_file = {file:?}
headers_env = {{ "Authorization" = "SLUICE_TEST_PD_AUTH" }}
body = "key={{{{ secret('SLUICE_TEST_PD_ROUTING_KEY') }}}} auth=SLUICE_TEST_PD_AUTH"
"#
    ));
    let e = n.send(&channel("webhook:echo"), &message()).await.unwrap_err();
    assert_eq!(seen.recv().await.unwrap().body, format!("key={ROUTING_KEY} auth=SLUICE_TEST_PD_AUTH"));
    assert_eq!(
        e.message,
        "webhook:echo: 127.0.0.1 answered 400 Bad Request: bad request: key=*** auth=SLUICE_TEST_PD_AUTH"
    );
    for shown in [e.message.clone(), format!("{e:?}"), format!("{:?}", n.config())] {
        assert!(!shown.contains(ROUTING_KEY) && !shown.contains(AUTH), "{shown}");
    }
}

#[tokio::test]
async fn a_digest_lists_its_alerts() {
    let (base, mut seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let file = url_file(&dir, "slack", &format!("{base}/ok"));
    let n = notifier(&format!("[channels.slack.d]\nwebhook_url_file = {file:?}\n"));
    let alerts: Vec<AlertMessage> = (1..=3)
        .map(|d| {
            let mut m = message();
            m.title = format!("Run 2026-01-0{d} of `sales` failed");
            m.run_id = Some(format!("backfill__2026-01-0{d}"));
            m.at = Utc.with_ymd_and_hms(2026, 1, 2, 7, d, 0).unwrap();
            m
        })
        .collect();
    let digest = AlertMessage::digest(&alerts);
    n.send(&channel("slack:d"), &digest).await.unwrap();
    let body: Value = serde_json::from_str(&seen.recv().await.unwrap().body).unwrap();
    assert_eq!(body["text"], "3 failure alerts for `sales`");
    let list = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b["text"]["text"].as_str().filter(|t| t.starts_with("• ")));
    assert_eq!(
        list.unwrap(),
        "• Run 2026-01-03 of `sales` failed (2026-01-02T07:03:00Z): exit status 1\n\
         • Run 2026-01-02 of `sales` failed (2026-01-02T07:02:00Z): exit status 1\n\
         • Run 2026-01-01 of `sales` failed (2026-01-02T07:01:00Z): exit status 1"
    );
}
