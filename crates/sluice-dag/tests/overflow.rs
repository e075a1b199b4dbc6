//! Dates and durations at the edges: validation rejects what cannot be computed, with its
//! line, and the library's date arithmetic answers "none" (or saturates) instead of
//! panicking when handed extreme values.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use sluice_dag::dag::{Backoff, RetryPolicy};
use sluice_dag::schedule::{parse_instant, resolve_local, rfc3339, TimeOfDay};
use sluice_dag::{parse_dag, Dag, Deadline, Diagnostic, Duration, Schedule};

fn errors(src: &str) -> Vec<Diagnostic> {
    let outcome = parse_dag(Path::new("edge.toml"), src);
    assert!(outcome.dag.is_none(), "accepted:\n{src}");
    outcome.diagnostics.into_iter().filter(Diagnostic::is_error).collect()
}

fn dag(src: &str) -> Dag {
    let outcome = parse_dag(Path::new("edge.toml"), src);
    outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
}

/// Asserts one error on `line` whose message holds `text`.
fn assert_error(src: &str, line: usize, text: &str) {
    let errs = errors(src);
    assert!(
        errs.iter().any(|d| d.line == Some(line) && d.message.contains(text)),
        "expected an error on line {line} containing {text:?}, got:\n{}",
        errs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
    );
}

fn new_york() -> Tz {
    "America/New_York".parse().unwrap()
}

/// The last instant chrono can hold, seen from a zone east of UTC: its wall clock is past the
/// end of chrono's calendar.
fn end_of_time_in(tz: Tz) -> DateTime<Tz> {
    DateTime::<Utc>::MAX_UTC.with_timezone(&tz)
}

#[test]
fn a_huge_deadline_is_rejected_with_its_line_instead_of_panicking() {
    let src = "schedule = \"@daily\"\nstart_date = \"2026-01-01\"\ndeadline = \"100000000000000000s\"\n[tasks.a]\noperator = \"noop\"\n";
    assert_error(src, 3, "longer than the limit");
}

#[test]
fn every_duration_key_over_the_limit_is_rejected_with_its_line() {
    let over = "\"3653d\"";
    let cases: Vec<(String, usize)> = vec![
        (format!("[tasks.a]\noperator = \"noop\"\ntimeout = {over}\n"), 3),
        (format!("[tasks.a]\noperator = \"noop\"\nretry_delay = {over}\n"), 3),
        (format!("[tasks.a]\noperator = \"noop\"\nmax_retry_delay = {over}\n"), 3),
        (format!("[defaults]\ntimeout = {over}\n[tasks.a]\noperator = \"noop\"\n"), 2),
        ("[defaults]\nretry_delay = 100000000000000000\n[tasks.a]\noperator = \"noop\"\n".to_string(), 2),
        (format!("[tasks.a]\noperator = \"wait\"\nduration = {over}\n"), 3),
        (format!("[tasks.a]\noperator = \"sensor\"\nkind = \"s3_key\"\nbucket = \"b\"\nkey = \"k\"\npoke_interval = {over}\n"), 6),
        (format!("[tasks.a]\noperator = \"terminate\"\ncluster_id = \"j-1\"\npoke_interval = {over}\n"), 4),
        (
            format!("[tasks.a]\noperator = \"emr_serverless\"\napplication_id = \"a\"\nexecution_role_arn = \"r\"\nentry_point = \"e\"\nexecution_timeout = {over}\n"),
            6,
        ),
        (
            format!("[tasks.a]\noperator = \"create_emr_cluster\"\nname = \"n\"\nrelease_label = \"emr-7.2.0\"\napplications = [\"Spark\"]\ninstance_type = \"m5.xlarge\"\ninstance_count = 1\nauto_termination_idle_timeout = {over}\n"),
            8,
        ),
        (format!("schedule = \"@daily\"\nstart_date = \"2026-01-01\"\ndeadline = {over}\n[tasks.a]\noperator = \"noop\"\n"), 3),
    ];
    for (src, line) in cases {
        assert_error(&src, line, "longer than the limit of 10 years");
    }
}

#[test]
fn a_huge_retries_count_is_rejected_with_its_line_instead_of_overflowing_the_try_count() {
    assert_error("[tasks.a]\noperator = \"noop\"\nretries = 4294967295\n", 3, "over the limit of 1000");
    assert_error("[defaults]\nretries = 1001\n[tasks.a]\noperator = \"noop\"\n", 2, "over the limit of 1000");
    assert_eq!(dag("[tasks.a]\noperator = \"noop\"\nretries = 1000\n").tasks[0].retry.retries, 1000);
}

#[test]
fn a_duration_of_exactly_the_limit_is_accepted() {
    let d = dag("[tasks.a]\noperator = \"wait\"\nduration = \"10y\"\ntimeout = 315576000\n");
    assert_eq!(d.tasks[0].timeout, Some(Duration::LIMIT));
    assert_eq!("10y".parse::<Duration>().unwrap(), Duration::LIMIT);
    assert!("10y 1s".parse::<Duration>().is_err());
}

#[test]
fn dates_outside_years_1970_to_9999_are_rejected_with_their_line() {
    for (date, ok) in [
        ("\"0000-01-01\"", false),
        ("0000-01-01", false),
        ("\"1969-12-31T23:59\"", false),
        ("\"262143-12-31\"", false),
        ("\"+262143-12-31\"", false),
        ("\"10000-01-01T00:00:00Z\"", false),
        ("\"1970-01-01\"", true),
        ("\"9999-12-31T23:59\"", true),
        ("9999-12-31T23:59:00", true),
    ] {
        let src = format!(
            "schedule = \"@daily\"\nstart_date = \"1970-01-01\"\nend_date = {date}\n[tasks.a]\noperator = \"noop\"\n"
        );
        if ok {
            dag(&src);
        } else {
            assert_error(&src, 3, "key `end_date`");
        }
    }
    assert_error("start_date = \"0001-01-01\"\n[tasks.a]\noperator = \"noop\"\n", 1, "years 1970 to 9999");
}

#[test]
fn parse_instant_refuses_years_outside_the_supported_range() {
    let err = parse_instant("0000-01-01T00:00:00Z", Tz::UTC).unwrap_err();
    assert!(err.contains("years 1970 to 9999"), "{err}");
    assert!(parse_instant("9999-12-31T23:59:59Z", Tz::UTC).is_ok());
}

#[test]
fn a_deadline_that_cannot_be_computed_is_none_instead_of_a_panic() {
    let fire = Utc.with_ymd_and_hms(2026, 3, 2, 5, 0, 0).unwrap().with_timezone(&Tz::UTC);
    let huge = Deadline::After(Duration(std::time::Duration::MAX));
    assert_eq!(huge.for_fire_time(fire), None);
    let late = Deadline::After(Duration::from_secs(3600));
    assert_eq!(late.for_fire_time(DateTime::<Utc>::MAX_UTC.with_timezone(&Tz::UTC)), None);
    let at = Deadline::At("07:00".parse().unwrap());
    assert_eq!(at.for_fire_time(end_of_time_in("Pacific/Kiritimati".parse().unwrap())), None);
    assert_eq!(rfc3339(late.for_fire_time(fire).unwrap()), "2026-03-02T06:00:00+00:00");
}

#[test]
fn a_time_of_day_after_the_last_representable_day_does_not_panic() {
    let last = NaiveDateTime::MAX.and_utc().with_timezone(&Tz::UTC);
    let t: TimeOfDay = "00:00".parse().unwrap();
    // No later midnight exists: the search saturates at its start.
    assert_eq!(t.next_at_or_after(last), last);
    let _ = t.next_at_or_after(end_of_time_in("Pacific/Kiritimati".parse().unwrap()));
    assert_eq!(t.checked_next_at_or_after(last), None);
}

#[test]
fn resolving_a_wall_clock_time_past_the_end_of_time_does_not_panic() {
    // In New York the last wall-clock times have no UTC instant.
    let _ = resolve_local(new_york(), NaiveDateTime::MAX);
    let _ = resolve_local(new_york(), NaiveDateTime::MIN);
    let _ = resolve_local("Asia/Tokyo".parse().unwrap(), NaiveDateTime::MIN);
}

#[test]
fn schedule_searches_at_the_ends_of_time_return_none_instead_of_panicking() {
    let s = Schedule::parse("0 5 * * *").unwrap();
    let min = DateTime::<Utc>::MIN_UTC.with_timezone(&Tz::UTC);
    let kiritimati: Tz = "Pacific/Kiritimati".parse().unwrap();
    for t in [min, DateTime::<Utc>::MIN_UTC.with_timezone(&new_york()), end_of_time_in(kiritimati)] {
        let _ = s.at_or_after(t);
        let _ = s.prev_before(t);
        let _ = s.next_after(t);
    }
    assert_eq!(s.next_after(end_of_time_in(kiritimati)), None);
}

#[test]
fn run_date_questions_at_the_ends_of_time_do_not_panic() {
    let d = dag("schedule = \"0 5 * * *\"\ntimezone = \"America/New_York\"\nstart_date = \"2026-01-01\"\n[tasks.a]\noperator = \"noop\"\n");
    let end = end_of_time_in(d.timezone);
    let min = DateTime::<Utc>::MIN_UTC.with_timezone(&d.timezone);
    assert_eq!(d.runs_firing_after(end).take(3).count(), 0);
    assert!(d.runs_between(end, end).is_empty());
    let _ = d.runs_between(min, min);
    let _ = d.run_dates(end);
    let _ = d.run_dates(min);
    assert!(d.logical_date_on(NaiveDate::MAX).is_err());
    assert!(d.logical_date_on(NaiveDate::MIN).is_err());
    let manual = dag("timezone = \"America/New_York\"\n[tasks.a]\noperator = \"noop\"\n");
    let _ = manual.logical_date_on(NaiveDate::MAX);
    let _ = manual.logical_date_on(NaiveDate::MIN);
    let _ = rfc3339(end);
    // Formatting an instant whose wall clock chrono cannot hold does not panic either.
    let _ = rfc3339(end_of_time_in("Pacific/Kiritimati".parse().unwrap()));
}

#[test]
fn retry_delays_stay_bounded_by_the_duration_limit() {
    let p = RetryPolicy {
        retries: 100,
        delay: Duration(std::time::Duration::MAX),
        backoff: Backoff::Exponential,
        max_delay: None,
    };
    for t in [0, 1, 2, 3, 40, u32::MAX] {
        assert!(p.delay_before(t) <= Duration::LIMIT.as_std(), "try {t}");
    }
    let fixed = RetryPolicy { backoff: Backoff::Fixed, ..p };
    assert_eq!(fixed.delay_before(2), Duration::LIMIT.as_std());
    let capped = RetryPolicy { max_delay: Some(Duration::from_secs(60)), ..p };
    assert_eq!(capped.delay_before(40).as_secs(), 60);
}

fn render(command: &str) -> Result<String, String> {
    let d = dag(&format!("[tasks.a]\noperator = \"command\"\ncommand = \"{command}\"\n"));
    let logical = resolve_local(Tz::UTC, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_time(NaiveTime::MIN));
    let dates = d.run_dates(logical);
    let ctx = d.template_context("a", "manual__x", &dates, Option::<&Map<String, Value>>::None);
    d.render_task(&d.tasks[0], &ctx)
        .map(|(keys, _)| keys["command"].as_str().unwrap().to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn ds_add_with_a_huge_day_count_is_a_render_error_instead_of_a_panic() {
    for days in ["99999999999999999", "-99999999999999999", "3000000", "9223372036854775807"] {
        let err = render(&format!("{{{{ ds_add(ds, {days}) }}}}")).unwrap_err();
        assert!(err.contains("ds_add"), "{err}");
    }
    assert_eq!(render("{{ ds_add(ds, -1) }}").unwrap(), "2026-02-28");
}

#[test]
fn ds_format_with_an_invalid_format_is_a_render_error_instead_of_a_panic() {
    let err = render("{{ ds_format(ds, '%Y-%m-%d', '%Q') }}").unwrap_err();
    assert!(err.contains("ds_format"), "{err}");
    let err = render("{{ ds_format(ds, '%Y-%m-%d', '%') }}").unwrap_err();
    assert!(err.contains("ds_format"), "{err}");
    assert_eq!(render("{{ ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}").unwrap(), "01/03/2026");
}

#[test]
fn a_calendar_date_outside_the_supported_years_is_an_error_for_any_dag() {
    let manual = dag("[tasks.a]\noperator = \"noop\"\n");
    let scheduled = dag("schedule = \"@daily\"\nstart_date = \"1970-01-01\"\n[tasks.a]\noperator = \"noop\"\n");
    for d in [&manual, &scheduled] {
        for date in [NaiveDate::from_ymd_opt(1969, 12, 31).unwrap(), NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap()] {
            let err = d.logical_date_on(date).unwrap_err();
            assert!(err.contains("outside the supported years 1970 to 9999"), "{err}");
        }
        assert!(d.logical_date_on(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).is_ok());
    }
}
