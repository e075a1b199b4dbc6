//! Schedules through whole DAGs: fire times, logical dates, DST days, ranges.

use std::path::Path;

use chrono::NaiveDate;
use sluice_dag::schedule::{parse_instant, rfc3339};
use sluice_dag::{parse_dag, Dag};

fn dag(src: &str) -> Dag {
    let outcome = parse_dag(Path::new("test.toml"), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

fn london_daily(at: &str) -> Dag {
    dag(&format!(
        "schedule = \"{at}\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-01-01\"\n[tasks.a]\noperator = \"noop\"\n"
    ))
}

/// Fire times (local RFC 3339) and ds of the first `n` runs firing after `after`.
fn fires(dag: &Dag, after: &str, n: usize) -> Vec<(String, String)> {
    let after = parse_instant(after, dag.timezone).unwrap();
    dag.runs_firing_after(after).take(n).map(|r| (rfc3339(r.fire_time()), r.ds())).collect()
}

#[test]
fn daily_run_fires_after_its_interval_with_the_previous_day_as_ds() {
    let d = london_daily("0 5 * * *");
    assert_eq!(fires(&d, "2026-03-01T06:00", 1), vec![("2026-03-02T05:00:00+00:00".into(), "2026-03-01".into())]);
}

#[test]
fn spring_forward_day_has_exactly_one_run_at_the_first_instant_after_the_gap() {
    // Europe/London, 2026-03-29: 01:00 GMT jumps to 02:00 BST, so 01:30 does not exist.
    let d = london_daily("30 1 * * *");
    let got = fires(&d, "2026-03-27T12:00", 4);
    assert_eq!(
        got,
        vec![
            ("2026-03-28T01:30:00+00:00".into(), "2026-03-27".into()),
            ("2026-03-29T02:00:00+01:00".into(), "2026-03-28".into()),
            ("2026-03-30T01:30:00+01:00".into(), "2026-03-29".into()),
            ("2026-03-31T01:30:00+01:00".into(), "2026-03-30".into()),
        ]
    );
}

#[test]
fn fall_back_day_has_exactly_one_run() {
    // Europe/London, 2026-10-25: 02:00 BST falls back to 01:00 GMT, so 01:30 happens twice.
    let d = london_daily("30 1 * * *");
    let got = fires(&d, "2026-10-23T12:00", 3);
    assert_eq!(
        got,
        vec![
            ("2026-10-24T01:30:00+01:00".into(), "2026-10-23".into()),
            ("2026-10-25T01:30:00+01:00".into(), "2026-10-24".into()),
            ("2026-10-26T01:30:00+00:00".into(), "2026-10-25".into()),
        ]
    );
}

#[test]
fn a_year_of_daily_runs_has_one_run_per_day_across_both_dst_changes() {
    let d = london_daily("30 1 * * *");
    let runs: Vec<_> = d.runs_firing_after(parse_instant("2026-01-01T12:00", d.timezone).unwrap()).take(365).collect();
    for pair in runs.windows(2) {
        let (a, b) = (pair[0].logical_date.date_naive(), pair[1].logical_date.date_naive());
        assert_eq!(b, a.succ_opt().unwrap(), "day skipped or doubled between {a} and {b}");
    }
}

#[test]
fn hourly_in_new_york_keeps_every_real_hour_on_the_fall_back_day() {
    let d = dag("schedule = \"@hourly\"\ntimezone = \"America/New_York\"\nstart_date = \"2026-01-01\"\n[tasks.a]\noperator = \"noop\"\n");
    // 2026-11-01 02:00 EDT -> 01:00 EST: the day has 25 hours, and 25 hourly runs.
    let from = parse_instant("2026-11-01T00:00:00-04:00", d.timezone).unwrap();
    let to = parse_instant("2026-11-02T00:00:00-05:00", d.timezone).unwrap();
    let runs = d.runs_between(from, to);
    assert_eq!(runs.len(), 26, "25 hours in the day, plus the tick at midnight that ends it");
    for pair in runs.windows(2) {
        assert_eq!(pair[1].logical_date - pair[0].logical_date, chrono::Duration::hours(1));
    }
}

#[test]
fn runs_respect_start_and_end_dates() {
    let d = dag("schedule = \"0 5 * * *\"\nstart_date = \"2026-03-10\"\nend_date = \"2026-03-12\"\n[tasks.a]\noperator = \"noop\"\n");
    let ds: Vec<String> =
        d.runs_firing_after(parse_instant("2026-01-01", d.timezone).unwrap()).map(|r| r.ds()).collect();
    assert_eq!(ds, vec!["2026-03-10", "2026-03-11"], "2026-03-12 05:00 is after end_date");
    let from = parse_instant("2026-03-01", d.timezone).unwrap();
    let to = parse_instant("2026-03-31", d.timezone).unwrap();
    assert_eq!(d.runs_between(from, to).len(), 2);
}

#[test]
fn a_calendar_date_names_the_tick_on_that_day() {
    let d = london_daily("0 5 * * *");
    let l = d.logical_date_on(NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()).unwrap();
    assert_eq!(rfc3339(l), "2026-07-01T05:00:00+01:00");
    let weekly = dag("schedule = \"0 5 * * 1\"\nstart_date = \"2026-01-01\"\n[tasks.a]\noperator = \"noop\"\n");
    let err = weekly.logical_date_on(NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()).unwrap_err();
    assert!(err.contains("has no tick on 2026-07-01"), "{err}");
}

#[test]
fn deadline_is_on_the_morning_the_run_fires() {
    let d = dag("schedule = \"0 5 * * *\"\ntimezone = \"Europe/London\"\nstart_date = \"2026-01-01\"\ndeadline = \"07:00\"\n[tasks.a]\noperator = \"noop\"\n");
    let run = d.runs_firing_after(parse_instant("2026-06-30T12:00", d.timezone).unwrap()).next().unwrap();
    assert_eq!(rfc3339(d.deadline.unwrap().for_fire_time(run.fire_time()).unwrap()), "2026-07-01T07:00:00+01:00");
}

#[test]
fn a_date_or_a_timestamp_names_a_logical_date() {
    let d = london_daily("30 1 * * *");
    assert_eq!(rfc3339(d.logical_date("2026-03-29").unwrap()), "2026-03-29T02:00:00+01:00", "after the gap");
    assert_eq!(rfc3339(d.logical_date("2026-03-01T07:15").unwrap()), "2026-03-01T07:15:00+00:00");
    assert!(d.logical_date("2026-13-01").unwrap_err().contains("invalid date"));
}

#[test]
fn range_bounds_cover_whole_days_in_the_dags_zone() {
    let d = london_daily("0 5 * * *");
    // 2026-03-29 is 23 hours long in London: its last instant is 23:59:59.999999999 BST.
    let from = d.logical_bound("2026-03-29", false).unwrap();
    let to = d.logical_bound("2026-03-29", true).unwrap();
    assert_eq!(rfc3339(from), "2026-03-29T00:00:00+00:00");
    assert_eq!(to.to_rfc3339(), "2026-03-29T23:59:59.999999999+01:00");
    assert_eq!(d.runs_between(from, to).len(), 1);
    assert_eq!(rfc3339(d.logical_bound("2026-03-29T12:00", true).unwrap()), "2026-03-29T12:00:00+01:00");
    assert!(d.logical_bound("0100-01-01", false).unwrap_err().contains("outside the supported years"));
}
