//! Cron expressions: a bad one is reported with its field, its value and what the field
//! allows; everything croner accepts stays accepted.

use std::path::Path;

use sluice_dag::{parse_dag, Schedule, Severity};

#[test]
fn a_bad_cron_field_is_named_with_its_value_and_allowed_range() {
    let cases = [
        // Out of range, one field at a time.
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 * 0 *", "month 0 is out of range 1-12"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("99999999999 * * * *", "minute 99999999999 is out of range 0-59"),
        ("-1 * * * *", "minute -1 is out of range 0-59"),
        // In lists.
        ("0,15,61 * * * *", "minute 61 is out of range 0-59"),
        ("0 1,2,24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 * * 1,9", "day-of-week 9 is out of range 0-7"),
        ("*,5 * * * *", "minute `*` cannot be part of a list"),
        // Ranges.
        ("0 9-25 * * *", "hour 25 is out of range 0-23"),
        ("0 0 * 0-3 *", "month 0 is out of range 1-12"),
        ("0 17-9 * * *", "hour range 17-9 is reversed: write the smaller value first"),
        ("0 0 * * FRI-MON", "day-of-week range FRI-MON is reversed"),
        ("0 0 * DEC-JAN *", "month range DEC-JAN is reversed"),
        ("0 0 1-2-3 * *", "day-of-month `1-2-3` is not a range"),
        ("0 0 * 3- *", "month `3-` is not a range"),
        // Steps.
        ("*/0 * * * *", "minute step 0 is out of range 1-59"),
        ("0 */0 * * *", "hour step 0 is out of range 1-23"),
        ("*/70000 * * * *", "minute step 70000 is out of range 1-59"),
        ("0 0 2-30/65535 * *", "day-of-month step 65535 is out of range 1-31"),
        ("*/-1 * * * *", "minute step `-1` is not a number"),
        ("0 20-10/2 * * *", "hour range 20-10 is reversed"),
        ("0 0-30/5 * * *", "hour 30 is out of range 0-23"),
        ("5/10 * * * *", "minute `5/10`: a step needs a range; write `5-59/10`"),
        ("/10 * * * *", "minute `/10` has no start; write `*/10`"),
        ("*/5/2 * * * *", "minute `*/5/2` has more than one `/`"),
        // Names.
        ("0 0 * FOO *", "month `FOO` is neither a number (1-12) nor a month name (JAN-DEC)"),
        ("0 0 * * FUN", "day-of-week `FUN` is neither a number (0-7) nor a day name (SUN-SAT)"),
        ("0 0 * * MON-FUN", "day-of-week `FUN` is neither a number (0-7) nor a day name (SUN-SAT)"),
        // Special characters where they do not belong, and garbage.
        ("5x * * * *", "minute `5x` holds 'x', which a minute field cannot hold"),
        ("0 0 * * 1#6", "day-of-week `1#6`: the week of the month is out of range 1-5"),
        ("0 0 * * 1#x", "day-of-week `1#x`: the week of the month is out of range 1-5"),
        ("0 0 32W * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 5L * *", "day-of-month `5L`: write `L` alone for the last day of the month"),
        ("0 0 * * ?,1", "day-of-week `?` cannot be part of a list"),
        ("0 0 * 1# *", "month `1#` holds '#', which a month field cannot hold"),
        ("0 0 * * 1é", "day-of-week `1é` holds 'é', which a day-of-week field cannot hold"),
    ];
    let mut failures = Vec::new();
    for (expr, want) in cases {
        match Schedule::parse(expr) {
            Ok(_) => failures.push(format!("{expr:?}: accepted")),
            Err(got) => {
                let full = format!("invalid cron expression {expr:?}: {want}");
                if !got.starts_with(&full) {
                    failures.push(format!("{expr:?}:\n  want {full}\n  got  {got}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_expression_croner_accepts_is_still_accepted() {
    for expr in [
        "* * * * *",
        "*/15 * * * *",
        "*/60 * * * *",
        "0 9-17 * * 1-5",
        "30 6 * * MON-FRI",
        "0 0 * * mon-fri",
        "0 0 * * SAT-SUN",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "0 0 * * +1",
        "0 0 1,15 * *",
        "0 0 1,,15 * *",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 15W * *",
        "0 0 * * 5L",
        "0 0 * * 5#3",
        "0 0 ? * *",
        "0 0 * JAN-MAR *",
        "0 0 1-31/2 * *",
        "0-30/10 * * * *",
        "0 0 1 jan *",
        "@daily",
        "@annually",
    ] {
        assert!(Schedule::parse(expr).is_ok(), "{expr:?}: {:?}", Schedule::parse(expr).err());
    }
}

#[test]
fn a_bad_cron_field_is_reported_with_its_line_in_the_file() {
    let src = "start_date = \"2026-01-01\"\nschedule = \"0 25 * * *\"\n[tasks.a]\noperator = \"noop\"\n";
    let outcome = parse_dag(Path::new("c.toml"), src);
    let d = &outcome.diagnostics[0];
    assert_eq!(d.line, Some(2));
    assert_eq!(d.message, "key `schedule`: invalid cron expression \"0 25 * * *\": hour 25 is out of range 0-23");
}

#[test]
fn a_schedule_that_never_fires_is_a_warning() {
    for (schedule, dates, why) in [
        ("0 0 30 2 *", "start_date = \"2026-01-01\"", "never fires at or after `start_date`"),
        ("0 0 * * *", "start_date = \"6000-01-01\"", "never fires at or after `start_date`"),
        (
            "0 0 1 6 *",
            "start_date = \"2026-01-01\"\nend_date = \"2026-05-31\"",
            "has no tick between `start_date` and `end_date`",
        ),
    ] {
        let src = format!("schedule = \"{schedule}\"\n{dates}\n[tasks.a]\noperator = \"noop\"\n");
        let outcome = parse_dag(Path::new("never.toml"), &src);
        assert!(outcome.dag.is_some(), "{:?}", outcome.diagnostics);
        assert_eq!(outcome.diagnostics.len(), 1, "{:?}", outcome.diagnostics);
        let w = &outcome.diagnostics[0];
        assert_eq!((w.severity, w.line), (Severity::Warning, Some(1)));
        assert!(w.message.contains(why), "{}", w.message);
    }
}
