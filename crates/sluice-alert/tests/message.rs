//! The alert message: its JSON form (what the store keeps), its text, and digests.

use chrono::{TimeZone, Utc};
use serde_json::json;
use sluice_alert::AlertMessage;

fn failed(day: u32) -> AlertMessage {
    let mut m = AlertMessage::new(
        "failure",
        format!("Run 2026-01-{day:02} of `sales` failed"),
        "sales",
        Utc.with_ymd_and_hms(2026, 2, 1, 0, day, 0).unwrap(),
    );
    m.run_id = Some(format!("backfill__2026-01-{day:02}"));
    m.state = Some("failed".into());
    m.error = Some(format!("task load: exit status {day}\nmore"));
    m.log_tail = Some("a\nb".into());
    m
}

#[test]
fn the_json_form_has_only_what_is_set_and_reads_back() {
    let m = AlertMessage::new(
        "freshness",
        "`sales` has had no success for 26h",
        "sales",
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    );
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        v,
        json!({ "rule": "freshness", "title": "`sales` has had no success for 26h", "dag_id": "sales", "at": "2026-01-02T03:04:05Z" })
    );
    assert_eq!(serde_json::from_value::<AlertMessage>(v).unwrap(), m);
    let full = failed(3);
    assert_eq!(serde_json::from_value::<AlertMessage>(serde_json::to_value(&full).unwrap()).unwrap(), full);
}

#[test]
fn the_text_has_one_line_per_field_then_the_error_and_log() {
    let mut m = failed(3);
    m.details.insert("deadline".into(), json!("07:00"));
    assert_eq!(
        m.text(),
        "Run 2026-01-03 of `sales` failed\n\n\
         DAG:          sales\n\
         Run:          backfill__2026-01-03\n\
         State:        failed\n\
         Event:        failure\n\
         At:           2026-02-01T00:03:00Z\n\
         deadline:     07:00\n\
         \nError:\ntask load: exit status 3\nmore\n\
         \nLast lines of the log:\na\nb\n"
    );
}

#[test]
fn a_digest_keeps_what_its_alerts_share_and_lists_them() {
    assert_eq!(AlertMessage::digest(&[failed(1)]), failed(1));
    let d = AlertMessage::digest(&[failed(2), failed(1), failed(3)]);
    assert_eq!(d.rule, "digest");
    assert_eq!(d.title, "3 failure alerts for `sales`");
    assert_eq!(d.dag_id, "sales");
    assert_eq!(d.state.as_deref(), Some("failed"));
    assert_eq!(d.run_id, None, "the runs differ");
    assert_eq!(d.at, failed(3).at, "the newest");
    assert_eq!(d.details["count"], 3);
    let listed: Vec<String> = d.digested().iter().map(|m| m.run_id.clone().unwrap()).collect();
    assert_eq!(listed, ["backfill__2026-01-01", "backfill__2026-01-02", "backfill__2026-01-03"], "oldest first");
    assert!(d.digested().iter().all(|m| m.log_tail.is_none()));
    assert!(
        d.text().ends_with(
            "\nAlerts:\n\
         - Run 2026-01-01 of `sales` failed (2026-02-01T00:01:00Z): task load: exit status 1\n\
         - Run 2026-01-02 of `sales` failed (2026-02-01T00:02:00Z): task load: exit status 2\n\
         - Run 2026-01-03 of `sales` failed (2026-02-01T00:03:00Z): task load: exit status 3\n"
        ),
        "{}",
        d.text()
    );

    // Past 50, the oldest are counted, not listed; an empty digest is no panic.
    let many: Vec<AlertMessage> = (1..=28).chain(1..=28).map(failed).collect();
    let d = AlertMessage::digest(&many);
    assert_eq!(d.digested().len(), 50);
    assert!(d.text().ends_with("- and 6 older ones\n"), "{}", d.text());
    let empty = AlertMessage::digest(&[]);
    assert_eq!((empty.title.as_str(), empty.details["count"].as_u64()), ("No alerts", Some(0)));
}
