//! `[channels]` of sluice.toml: every key accepted, and every mistake named by channel and key.

use sluice_alert::{ChannelKind, ChannelRef, ChannelsConfig, EmailTls};

const ALL: &str = r#"
[connections.default]
region = "eu-west-1"

[channels.slack.data-oncall]
webhook_url_env = "SLACK_DATA_ONCALL_URL"
ui_url = "http://sluice.internal:8080"
timeout = "5s"

[channels.webhook.pagerduty]
url_env = "PD_EVENTS_URL"
method = "POST"
headers = { "Content-Type" = "application/json" }
headers_env = { "Authorization" = "PD_AUTH" }
body = '''{"routing_key": "{{ secret('PD_ROUTING_KEY') }}", "event_action": "trigger", "payload": {"summary": {{ title | tojson }}, "source": "sluice", "severity": "error"}}'''

[channels.sns.pipeline-alerts]
topic_arn = "arn:aws:sns:eu-west-1:123456789012:pipeline-alerts"
connection = "default"

[channels.email.data-team]
to = ["data-team@example.com"]
from = "sluice@example.com"
host = "smtp.example.com"
port = 587
tls = "starttls"
username = "sluice"
password_env = "SMTP_PASSWORD"
"#;

#[test]
fn every_key_of_the_documented_example_is_accepted() {
    let c = ChannelsConfig::from_sluice_toml(ALL).unwrap();
    c.validate(&["default"]).unwrap();
    let names: Vec<String> = c.declared().iter().map(ToString::to_string).collect();
    assert_eq!(names, ["slack:data-oncall", "sns:pipeline-alerts", "email:data-team", "webhook:pagerduty"]);
    assert!(c.contains(&ChannelRef { kind: ChannelKind::Sns, name: "pipeline-alerts".into() }));
    assert!(!c.contains(&"sns:data-oncall".parse().unwrap()));
    assert_eq!(c.email["data-team"].tls, EmailTls::Starttls);
    assert_eq!(c.slack["data-oncall"].timeout.unwrap().0, std::time::Duration::from_secs(5));
    assert_eq!(ChannelsConfig::from_sluice_toml("[connections.x]\n").unwrap(), ChannelsConfig::default());
}

#[test]
fn unknown_keys_and_kinds_are_refused_by_name() {
    let e = ChannelsConfig::from_sluice_toml("[channels.slack.x]\nwebhook_url = \"https://hooks.slack.com/x\"\n")
        .unwrap_err();
    assert!(
        e.starts_with("sluice.toml [channels]: unknown field `webhook_url`, expected one of `webhook_url_env`"),
        "{e}"
    );
    let e = ChannelsConfig::from_sluice_toml("[channels.teams.x]\nurl_env = \"X\"\n").unwrap_err();
    assert!(e.contains("unknown field `teams`"), "{e}");
    let e = ChannelsConfig::from_sluice_toml(
        "[channels.email.x]\nto = []\nfrom = \"a@b.c\"\nhost = \"h\"\ntls = \"ssl\"\n",
    )
    .unwrap_err();
    assert!(e.contains("unknown variant `ssl`, expected one of `starttls`, `tls`, `none`"), "{e}");
    let e = ChannelsConfig::from_sluice_toml("[channels.slack.x]\nwebhook_url_env = \"X\"\ntimeout = \"soon\"\n")
        .unwrap_err();
    assert!(e.starts_with("sluice.toml [channels]: "), "{e}");
}

fn errors(toml: &str) -> Vec<String> {
    let c = ChannelsConfig::from_sluice_toml(toml).unwrap();
    match c.validate(&["default", "analytics"]) {
        Ok(()) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_problem_names_the_channel_and_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[channels.slack.a]\n",
            "sluice.toml [channels.slack.a] `webhook_url_env`: set `webhook_url_env` (an environment variable) or \
             `webhook_url_file` (a file) to give the webhook_url: it is a secret and is never written in sluice.toml",
        ),
        (
            "[channels.slack.a]\nwebhook_url_env = \"A\"\nwebhook_url_file = \"/a\"\n",
            "sluice.toml [channels.slack.a] `webhook_url_env`: set one of `webhook_url_env` and `webhook_url_file`, not both",
        ),
        (
            "[channels.webhook.a]\nurl_file = \"\"\n",
            "sluice.toml [channels.webhook.a] `url_file`: `url_file` is empty: give a file's path",
        ),
        (
            "[channels.slack.a]\nwebhook_url_env = \"A\"\nui_url = \"sluice.internal\"\n",
            "sluice.toml [channels.slack.a] `ui_url`: `sluice.internal` is not an http:// or https:// URL",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nbody = \"{{ title \"\n",
            "sluice.toml [channels.webhook.a] `body`: the template does not compile: syntax error: unexpected end of \
             input, expected end of variable block (line 1 of the template)",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nbody = \"{{ titel }}\"\n",
            "sluice.toml [channels.webhook.a] `body`: the template uses `titel`, which is not a field of the message \
             (rule, title, dag_id, run_id, task_id, state, error, log_tail, logical_date, at, link, details); did you \
             mean `title`?",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nmethod = \"SEND\"\n",
            "sluice.toml [channels.webhook.a] `method`: `SEND` is not one of POST, PUT, PATCH, GET, DELETE",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nheaders = { \"Bad Header\" = \"x\" }\n",
            "sluice.toml [channels.webhook.a] `headers`: `Bad Header` is not a valid header name",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nheaders = { \"X\" = \"a\\nb\" }\n",
            "sluice.toml [channels.webhook.a] `headers`: the value of header `X` holds a control character",
        ),
        (
            "[channels.webhook.a]\nurl_env = \"A\"\nheaders = { \"Authorization\" = \"x\" }\nheaders_env = { \"authorization\" = \"B\" }\n",
            "sluice.toml [channels.webhook.a] `headers_env`: header `authorization` is also in `headers`: give it once",
        ),
        (
            "[channels.sns.a]\ntopic_arn = \"pipeline-alerts\"\n",
            "sluice.toml [channels.sns.a] `topic_arn`: `pipeline-alerts` is not an SNS topic ARN \
             (arn:aws:sns:REGION:ACCOUNT:TOPIC)",
        ),
        (
            "[channels.sns.a]\ntopic_arn = \"arn:aws:sns:eu-west-1:1:t\"\nconnection = \"analytic\"\n",
            "sluice.toml [channels.sns.a] `connection`: connection `analytic` is not declared in [connections]; did \
             you mean `analytics`?",
        ),
        (
            "[channels.email.a]\nto = []\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\n",
            "sluice.toml [channels.email.a] `to`: give at least one address",
        ),
        (
            "[channels.email.a]\nto = [\"data team\"]\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\n",
            "sluice.toml [channels.email.a] `to`: `data team` is not an email address (name@example.com)",
        ),
        (
            "[channels.email.a]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\ntls = \"none\"\n",
            "sluice.toml [channels.email.a] `tls`: `none` sends mail (and the password) in clear text: only allowed \
             to a loopback host, not `smtp.example.com`; use `starttls` or `tls`",
        ),
        (
            "[channels.email.a]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\nusername = \"u\"\n",
            "sluice.toml [channels.email.a] `password_env`: set `password_env` (an environment variable) or \
             `password_file` (a file) to give the password: it is a secret and is never written in sluice.toml",
        ),
        (
            "[channels.email.a]\nto = [\"a@example.com\"]\nfrom = \"sluice@example.com\"\nhost = \"smtp.example.com\"\npassword_env = \"P\"\n",
            "sluice.toml [channels.email.a] `username`: a password is set but no `username`",
        ),
        (
            "[channels.slack.a]\nwebhook_url_env = \"A\"\ntimeout = \"0s\"\n",
            "sluice.toml [channels.slack.a] `timeout`: must be more than 0s",
        ),
        (
            "[channels.slack.\"on call\"]\nwebhook_url_env = \"A\"\n",
            "sluice.toml [channels.slack.on call]: a channel name may only hold letters, digits, `_`, `.` and `-`",
        ),
    ];
    for (toml, want) in cases {
        assert_eq!(errors(toml), [want.to_string()], "for {toml}");
    }
    // Loopback hosts may take plain text; every problem of a file is reported at once.
    assert_eq!(
        errors("[channels.email.a]\nto = [\"a@x.io\"]\nfrom = \"s@x.io\"\nhost = \"::1\"\ntls = \"none\"\n"),
        Vec::<String>::new()
    );
    assert_eq!(errors("[channels.slack.a]\n[channels.slack.b]\n[channels.sns.c]\ntopic_arn = \"x\"\n").len(), 3);
}
