//! Alert rules, `default_alerts`, `[freshness]` and `max_duration`: what a DAG file may say,
//! what every mistake is reported as (file, line, message), and the check of channel
//! references against the channels `sluice.toml` declares.

use std::path::Path;

use serde::Deserialize;
use sluice_dag::alerts::undeclared_channel;
use sluice_dag::{
    check_channels, load_folder, load_folder_checked, parse_dag, AlertOn, AlertRule, ChannelKind, ChannelRef, Dag,
    Duration, Freshness, LoadChecks, Severity,
};

const TASK: &str = "[tasks.a]\noperator = \"noop\"\n";

fn valid(src: &str) -> Dag {
    let outcome = parse_dag(Path::new("dags/alerting.toml"), src);
    let errors: Vec<String> = outcome.diagnostics.iter().map(|d| d.to_string()).collect();
    outcome.dag.unwrap_or_else(|| panic!("rejected:\n{}", errors.join("\n")))
}

/// Every diagnostic of an invalid `src`, displayed.
fn rejected(src: &str) -> Vec<String> {
    let outcome = parse_dag(Path::new("dags/alerting.toml"), src);
    assert!(outcome.dag.is_none(), "accepted: {src}");
    outcome.diagnostics.iter().map(|d| d.to_string()).collect()
}

fn has(lines: &[String], text: &str) {
    assert!(lines.iter().any(|l| l.contains(text)), "no diagnostic contains {text:?}:\n{}", lines.join("\n"));
}

fn channel(s: &str) -> ChannelRef {
    s.parse().unwrap()
}

#[test]
fn every_alert_key_is_read() {
    let src = r#"default_alerts = false

[freshness]
max_age = "26h"

[defaults]
max_duration = "1h"

[[alerts]]
on = ["failure", "task_failed", "retry", "deadline_missed", "sla", "freshness", "recovered", "marked"]
to = [
  "slack:data-oncall",
  "sns:pipeline-alerts",
  "email:data-team",
  "webhook:pager.duty_1-x",
]
digest = "10m"

[[alerts]]
on = ["sla"]
to = ["slack:data-oncall"]

[tasks.a]
operator = "noop"

[tasks.b]
operator = "noop"
max_duration = 7200
"#;
    let dag = valid(src);
    assert!(!dag.default_alerts);
    assert_eq!(dag.freshness, Some(Freshness { max_age: Duration::from_secs(26 * 3600) }));
    assert_eq!(dag.alerts.len(), 2);
    let first = &dag.alerts[0];
    assert_eq!(first.on, AlertOn::ALL.to_vec());
    assert_eq!(
        first.to,
        vec![
            ChannelRef::new(ChannelKind::Slack, "data-oncall"),
            ChannelRef::new(ChannelKind::Sns, "pipeline-alerts"),
            ChannelRef::new(ChannelKind::Email, "data-team"),
            ChannelRef::new(ChannelKind::Webhook, "pager.duty_1-x"),
        ]
    );
    assert_eq!(first.digest, Some(Duration::from_secs(600)));
    assert_eq!((first.line, first.to_lines.as_slice()), (9, &[12, 13, 14, 15][..]));
    assert!(first.fires_on(AlertOn::Marked));
    let second = &dag.alerts[1];
    assert_eq!((second.on.as_slice(), second.digest, second.line), (&[AlertOn::Sla][..], None, 19));
    assert_eq!(second.to_lines, vec![21]);
    // `max_duration` from [defaults], or the task's own.
    assert_eq!(dag.task("a").unwrap().max_duration, Some(Duration::from_secs(3600)));
    assert_eq!(dag.task("b").unwrap().max_duration, Some(Duration::from_secs(7200)));
}

#[test]
fn without_alert_keys_a_dag_takes_the_defaults_and_has_no_rules() {
    let dag = valid(TASK);
    assert!(dag.alerts.is_empty());
    assert!(dag.default_alerts);
    assert_eq!(dag.freshness, None);
    assert_eq!(dag.task("a").unwrap().max_duration, None);
}

#[test]
fn rules_may_be_inline_tables() {
    let dag = valid(&format!(
        "alerts = [\n  {{ on = [\"failure\"], to = [\"slack:a\"] }},\n  {{ on = [\"recovered\"], to = [\"sns:b\"], digest = 60 }},\n]\n{TASK}"
    ));
    assert_eq!(dag.alerts.len(), 2);
    assert_eq!((dag.alerts[0].line, dag.alerts[1].line), (2, 3));
    assert_eq!(dag.alerts[1].to_lines, vec![3]);
    assert_eq!(dag.alerts[1].digest, Some(Duration::from_secs(60)));
}

#[test]
fn the_dag_serializes_its_rules_in_their_toml_forms() {
    let dag = valid(&format!(
        "[freshness]\nmax_age = \"1d\"\n[[alerts]]\non = [\"deadline_missed\"]\nto = [\"webhook:pagerduty\"]\ndigest = \"10m\"\n{TASK}max_duration = \"2h\"\n"
    ));
    let json = serde_json::to_value(&dag).unwrap();
    assert_eq!(
        json["alerts"],
        serde_json::json!([{ "on": ["deadline_missed"], "to": ["webhook:pagerduty"], "digest": "10m" }])
    );
    assert_eq!(json["default_alerts"], true);
    assert_eq!(json["freshness"], serde_json::json!({ "max_age": "1day" }));
    assert_eq!(json["tasks"][0]["max_duration"], "2h");
}

#[test]
fn unknown_events_and_kinds_are_errors_with_a_suggestion() {
    let lines =
        rejected(&format!("[[alerts]]\non = [\"failure\",\n  \"failur\"]\nto = [\"slak:data-oncall\"]\n{TASK}"));
    has(
        &lines,
        "dags/alerting.toml:3: error: key `on`: unknown alert event `failur` (did you mean `failure`?); expected one of failure, task_failed, retry, deadline_missed, sla, freshness, recovered, marked",
    );
    has(
        &lines,
        "dags/alerting.toml:4: error: key `to`: channel `slak:data-oncall`: unknown channel kind `slak` (did you mean `slack`?); expected one of slack, sns, email, webhook",
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn channel_references_must_be_kind_colon_name() {
    let lines = rejected(&format!(
        "[[alerts]]\non = [\"failure\"]\nto = [\n  \"slack\",\n  \"slack:\",\n  \"slack:data oncall\",\n  \"sns:a:b\",\n  \"pagerduty\",\n]\n{TASK}"
    ));
    has(&lines, "dags/alerting.toml:4: error: key `to`: channel `slack` is not a reference `kind:name`, e.g. `slack:<name>` (kinds: slack, sns, email, webhook)");
    has(&lines, "dags/alerting.toml:5: error: key `to`: channel `slack:`: the channel name is empty");
    has(&lines, "dags/alerting.toml:6: error: key `to`: channel `slack:data oncall`: channel name `data oncall` holds ' '; use letters, digits, `_`, `.` and `-`");
    has(&lines, "dags/alerting.toml:7: error: key `to`: channel `sns:a:b`: channel name `a:b` holds ':'");
    has(&lines, "dags/alerting.toml:8: error: key `to`: channel `pagerduty` is not a reference `kind:name`, e.g. `slack:data-oncall`");
}

#[test]
fn a_rule_needs_events_and_channels() {
    let lines = rejected(&format!("[[alerts]]\non = []\nto = []\n\n[[alerts]]\ndigest = \"1m\"\n{TASK}"));
    has(&lines, "dags/alerting.toml:2: error: key `on` lists no events: give at least one, e.g. [\"failure\"]");
    has(
        &lines,
        "dags/alerting.toml:3: error: key `to` lists no channels: give at least one, e.g. [\"slack:data-oncall\"]",
    );
    has(&lines, "dags/alerting.toml:5: error: an [[alerts]] rule needs `on`: the events it fires on");
    has(&lines, "dags/alerting.toml:5: error: an [[alerts]] rule needs `to`: the channels it sends to");
    assert_eq!(lines.len(), 4, "{lines:?}");
}

#[test]
fn durations_must_be_valid_and_longer_than_zero() {
    let src = r#"[freshness]
max_age = 0

[defaults]
max_duration = "0s"

[[alerts]]
on = ["failure"]
to = ["slack:a"]
digest = "soon"

[[alerts]]
on = ["failure"]
to = ["slack:a"]
digest = "0m"

[tasks.a]
operator = "noop"
max_duration = "3653d"

[tasks.b]
operator = "noop"
max_duration = -5
"#;
    let lines = rejected(src);
    has(&lines, "dags/alerting.toml:2: error: key `max_age`: must be longer than zero");
    has(&lines, "dags/alerting.toml:5: error: key `max_duration`: must be longer than zero");
    has(&lines, "dags/alerting.toml:10: error: key `digest`: invalid duration \"soon\"");
    has(&lines, "dags/alerting.toml:15: error: key `digest`: must be longer than zero");
    has(&lines, "dags/alerting.toml:19: error: task `a`: key `max_duration`: duration \"3653d\" is longer than the limit of 10 years");
    has(&lines, "dags/alerting.toml:23: error: task `b`: key `max_duration`: a duration cannot be negative");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn wrong_types_are_errors_at_their_line() {
    let src = r#"default_alerts = "no"
freshness = "26h"

[[alerts]]
on = "failure"
to = 1

[[alerts]]
on = [1]
to = [true]
digest = [1]

[tasks.a]
operator = "noop"
"#;
    let lines = rejected(src);
    has(&lines, "dags/alerting.toml:1: error: key `default_alerts`: invalid type: string \"no\", expected a boolean");
    has(&lines, "dags/alerting.toml:2: error: key `freshness`: expected a table `[freshness]` with `max_age`");
    has(&lines, "dags/alerting.toml:5: error: key `on`: expected a list of events");
    has(&lines, "dags/alerting.toml:6: error: key `to`: expected a list of channels");
    has(&lines, "dags/alerting.toml:9: error: key `on`: invalid type: integer `1`, expected a string");
    has(&lines, "dags/alerting.toml:10: error: key `to`: invalid type: boolean `true`, expected a string");
    has(&lines, "dags/alerting.toml:11: error: key `digest`: invalid type: sequence, expected a duration");
    assert_eq!(lines.len(), 7, "{lines:?}");

    for alerts in ["alerts = 1", "alerts = [\"slack:a\"]", "alerts = { on = [\"failure\"] }"] {
        let lines = rejected(&format!("{alerts}\n{TASK}"));
        has(&lines, "dags/alerting.toml:1: error: key `alerts`: expected `[[alerts]]` tables, each with `on` and `to`");
    }
}

#[test]
fn unknown_keys_get_a_suggestion() {
    let src = r#"alert = 1
default_alert = false

[freshness]
max_ag = "1h"

[[alerts]]
on = ["failure"]
to = ["slack:a"]
digets = "1m"

[tasks.a]
operator = "noop"
max_durations = "1h"
"#;
    let lines = rejected(src);
    has(&lines, "dags/alerting.toml:1: error: unknown key `alert` in the DAG (did you mean `alerts`?)");
    has(&lines, "dags/alerting.toml:2: error: unknown key `default_alert` in the DAG (did you mean `default_alerts`?)");
    has(&lines, "dags/alerting.toml:4: error: [freshness] needs `max_age`");
    has(&lines, "dags/alerting.toml:5: error: unknown key `max_ag` in [freshness] (did you mean `max_age`?)");
    has(&lines, "dags/alerting.toml:10: error: unknown key `digets` in an [[alerts]] rule (did you mean `digest`?)");
    has(&lines, "dags/alerting.toml:14: error: task `a`: unknown key `max_durations` in a `noop` task (did you mean `max_duration`?)");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn an_event_or_channel_named_twice_is_a_warning() {
    let src = format!("[[alerts]]\non = [\"failure\", \"failure\"]\nto = [\n  \"slack:a\",\n  \"slack:a\",\n]\n{TASK}");
    let outcome = parse_dag(Path::new("dags/alerting.toml"), &src);
    let lines: Vec<String> = outcome.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "dags/alerting.toml:2: warning: `on` names `failure` twice",
            "dags/alerting.toml:5: warning: `to` names `slack:a` twice",
        ]
    );
    let dag = outcome.dag.expect("warnings only");
    assert_eq!(dag.alerts[0].on, vec![AlertOn::Failure]);
    assert_eq!(dag.alerts[0].to, vec![channel("slack:a")]);
    assert_eq!(dag.alerts[0].to_lines, vec![4]);
}

#[test]
fn names_from_the_file_are_escaped_in_messages() {
    let lines = rejected(&format!("[[alerts]]\non = [\"fail\\nure\"]\nto = [\"sl\\u0007ck:x\"]\n{TASK}"));
    has(&lines, "dags/alerting.toml:2: error: key `on`: unknown alert event `fail\\nure`");
    has(&lines, "dags/alerting.toml:3: error: key `to`: channel `sl\\u{7}ck:x`: unknown channel kind `sl\\u{7}ck`");
    assert!(lines.iter().all(|l| !l.contains(['\n', '\u{7}'])), "{lines:?}");
}

#[test]
fn undeclared_channels_are_errors_at_their_entry_with_a_suggestion() {
    let dag = valid(&format!(
        "[[alerts]]\non = [\"failure\"]\nto = [\n  \"slack:data-oncall\",\n  \"slack:data-oncal\",\n]\n\n[[alerts]]\non = [\"sla\"]\nto = [\"email:team\"]\n{TASK}"
    ));
    let declared = vec![channel("slack:data-oncall"), channel("sns:pipeline-alerts")];
    let found: Vec<String> = check_channels(&dag, &declared).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        found,
        vec![
            "dags/alerting.toml:5: error: alert channel `slack:data-oncal` is not declared in sluice.toml ([channels.slack.data-oncal]); did you mean `slack:data-oncall`?",
            "dags/alerting.toml:10: error: alert channel `email:team` is not declared in sluice.toml ([channels.email.team])",
        ]
    );
    let all = [declared, vec![channel("slack:data-oncal"), channel("email:team")]].concat();
    assert!(check_channels(&dag, &all).is_empty());
    // The kind is part of the reference: a Slack channel does not declare an SNS one.
    let m = undeclared_channel(&channel("sns:data-oncall"), &[channel("slack:data-oncall")]).unwrap();
    assert!(m.ends_with("did you mean `slack:data-oncall`?"), "{m}");
}

#[test]
fn a_folder_loaded_with_the_declared_channels_fails_the_files_that_name_others() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, src: &str| std::fs::write(dir.path().join(name), src).unwrap();
    write("good.toml", &format!("[[alerts]]\non = [\"failure\"]\nto = [\"slack:data-oncall\"]\n{TASK}"));
    write(
        "typo.toml",
        &format!("[[alerts]]\non = [\"failure\", \"failure\"]\nto = [\"slack:data-oncal\"]\n{TASK}[tasks.b]\noperator = \"noop\"\nfoo = 1\n"),
    );
    write("quiet.toml", TASK);

    let checks = LoadChecks { channels: Some(vec![channel("slack:data-oncall")]) };
    let folder = load_folder_checked(dir.path(), &checks).unwrap();
    let ids: Vec<&str> = folder.dags.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec!["good", "quiet"]);
    assert!(folder.has_errors());
    let typo = folder.files.iter().find(|f| f.path.ends_with("typo.toml")).unwrap();
    assert_eq!(typo.dag_id.as_deref(), Some("typo"));
    // An invalid key stops the file before its channels are checked, as it always has.
    let lines: Vec<String> = typo.diagnostics.iter().map(|d| d.message.clone()).collect();
    assert!(lines.iter().any(|l| l.contains("unknown key `foo`")), "{lines:?}");

    // Without the invalid key, the undeclared channel is what fails the file, in line order
    // among its warnings.
    write("typo.toml", &format!("[[alerts]]\non = [\"failure\", \"failure\"]\nto = [\"slack:data-oncal\"]\n{TASK}"));
    let folder = load_folder_checked(dir.path(), &checks).unwrap();
    assert_eq!(folder.dags.len(), 2);
    let typo = folder.files.iter().find(|f| f.path.ends_with("typo.toml")).unwrap();
    let got: Vec<(Severity, Option<usize>)> = typo.diagnostics.iter().map(|d| (d.severity, d.line)).collect();
    assert_eq!(got, vec![(Severity::Warning, Some(2)), (Severity::Error, Some(3))]);
    assert!(typo.diagnostics[1].message.contains("did you mean `slack:data-oncall`?"));
    assert!(typo.has_errors());

    // No declared channels given: not checked. Declared, but none: every reference fails.
    assert_eq!(load_folder_checked(dir.path(), &LoadChecks::default()).unwrap().dags.len(), 3);
    assert_eq!(load_folder(dir.path()).unwrap().dags.len(), 3);
    let none = load_folder_checked(dir.path(), &LoadChecks { channels: Some(Vec::new()) }).unwrap();
    assert_eq!(none.dags.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["quiet"]);
}

/// `sluice.toml` reads its default rules with serde: the same types, the same checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    alerts: Vec<AlertRule>,
}

fn config(src: &str) -> Result<Vec<AlertRule>, String> {
    toml::from_str::<Config>(src).map(|c| c.alerts).map_err(|e| e.to_string())
}

#[test]
fn rules_deserialize_with_serde_as_sluice_toml_reads_them() {
    let rules = config(
        "[[alerts]]\non = [\"failure\", \"recovered\"]\nto = [\"slack:data-oncall\", \"webhook:pagerduty\"]\ndigest = \"10m\"\n",
    )
    .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].on, vec![AlertOn::Failure, AlertOn::Recovered]);
    assert_eq!(rules[0].to, vec![channel("slack:data-oncall"), channel("webhook:pagerduty")]);
    assert_eq!(rules[0].digest, Some(Duration::from_secs(600)));
    assert_eq!((rules[0].line, rules[0].to_lines.len()), (0, 0));
    assert!(rules[0].warnings().is_empty());

    // And back to the same TOML.
    #[derive(serde::Serialize)]
    struct Out<'a> {
        alerts: &'a [AlertRule],
    }
    let text = toml::to_string(&Out { alerts: &rules }).unwrap();
    assert_eq!(config(&text).unwrap(), rules);
    assert!(text.contains("\"slack:data-oncall\""), "{text}");

    let dup = config("[[alerts]]\non = [\"sla\", \"sla\"]\nto = [\"sns:a\", \"sns:a\"]\n").unwrap();
    assert_eq!(dup[0].warnings(), vec!["`on` names `sla` twice", "`to` names `sns:a` twice"]);
}

#[test]
fn serde_errors_say_as_much_as_the_parser() {
    for (src, line, text) in [
        (
            "[[alerts]]\non = [\"failur\"]\nto = [\"slack:a\"]\n",
            2,
            "unknown alert event `failur` (did you mean `failure`?)",
        ),
        (
            "[[alerts]]\non = [\"failure\"]\nto = [\"slak:a\"]\n",
            3,
            "unknown channel kind `slak` (did you mean `slack`?)",
        ),
        ("[[alerts]]\non = [\"failure\"]\nto = [\"slack\"]\n", 3, "is not a reference `kind:name`"),
        ("[[alerts]]\non = []\nto = [\"slack:a\"]\n", 2, "key `on` lists no events"),
        ("[[alerts]]\non = [\"failure\"]\nto = []\n", 3, "key `to` lists no channels"),
        (
            "[[alerts]]\non = [\"failure\"]\nto = [\"slack:a\"]\ndigest = \"0s\"\n",
            4,
            "key `digest` must be longer than zero",
        ),
        ("[[alerts]]\non = [\"failure\"]\nto = [\"slack:a\"]\ndigest = \"soon\"\n", 4, "invalid duration"),
        ("[[alerts]]\non = [\"failure\"]\nto = [\"slack:a\"]\ndigets = \"1m\"\n", 4, "unknown field `digets`"),
        ("[[alerts]]\non = [1]\nto = [\"slack:a\"]\n", 2, "expected an alert event name"),
        ("[[alerts]]\nto = [\"slack:a\"]\n", 1, "missing field `on`"),
    ] {
        let e = config(src).unwrap_err();
        assert!(e.contains(text), "{src:?}: {e}");
        assert!(e.contains(&format!("line {line}")), "{src:?}: expected line {line}: {e}");
    }
}

#[test]
fn the_examples_of_the_alerts_section_of_the_format_reference_are_valid() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dag-format.md")).unwrap();
    let section = doc.split("\n## Alerts\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut checked = 0;
    for block in section.split("```toml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.contains("[channels.") {
            // sluice.toml's side: the channels it declares are what the DAG examples use.
            let declared = ["slack:data-oncall", "slack:data-team", "webhook:pagerduty"];
            assert!(declared.iter().any(|c| block.contains(&ChannelRef::table(&channel(c)))), "{block}");
            continue;
        }
        let src = if block.contains("[tasks.") { block.to_string() } else { format!("{block}{TASK}") };
        let dag = valid(&src);
        let declared: Vec<ChannelRef> =
            ["slack:data-oncall", "slack:data-team", "email:data-team", "webhook:pagerduty"].map(channel).to_vec();
        assert!(check_channels(&dag, &declared).is_empty(), "{block}");
        checked += 1;
    }
    assert!(checked >= 4, "{checked} examples checked");
}

#[test]
fn a_rule_with_a_great_many_channels_is_read_and_checked() {
    // Duplicates are found with a set and declared channels looked up in one: a quadratic
    // search would take minutes here.
    let n = 60_000;
    let to: Vec<String> = (0..n).map(|i| format!("\"slack:c{i}\"")).collect();
    let src = format!("[[alerts]]\non = [\"failure\"]\nto = [{}, \"slack:c0\"]\n{TASK}", to.join(", "));
    let outcome = parse_dag(Path::new("dags/alerting.toml"), &src);
    assert_eq!(outcome.diagnostics.len(), 1, "{:?}", outcome.diagnostics.first());
    assert!(outcome.diagnostics[0].message.contains("`to` names `slack:c0` twice"));
    let dag = outcome.dag.unwrap();
    assert_eq!(dag.alerts[0].to.len(), n);
    let declared: Vec<ChannelRef> = dag.alerts[0].to.clone();
    assert!(check_channels(&dag, &declared).is_empty());
    // Every reference undeclared: the first 1000 are reported, then a count of the rest.
    let found = check_channels(&dag, &declared[..1]);
    assert_eq!(found.len(), 1001);
    assert_eq!(found[1000].message, format!("{} more undeclared alert channels not shown", n - 1 - 1000));
}
