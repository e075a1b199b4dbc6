//! Schedules, logical dates and deadlines, all in the DAG's time zone.
//!
//! Sluice follows Airflow's convention: a scheduled run covers a *data interval* from one
//! schedule tick to the next, its *logical date* is the start of that interval, and it fires
//! when the interval ends. A daily 05:00 run that fires on 2026-03-02 has `ds` = 2026-03-01.
//! Ticks are computed by croner on wall-clock time in the DAG's zone, so a daily schedule fires
//! exactly once on a daylight-saving change day (a time inside the spring-forward gap fires at
//! the first instant after the gap; a time inside the fall-back overlap fires once).
//!
//! Date arithmetic here never panics: dates read from DAG files (and from the command line)
//! are held to the years [`YEARS`], durations to [`crate::Duration::LIMIT`], and every function
//! that is handed an instant chrono can barely hold answers "none" (or saturates) instead of
//! overflowing.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::Duration;

/// A cron schedule: five fields, or one of the `@` nicknames.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    /// Whether the pattern has any tick at all (`0 0 30 2 *` has none); searching for one
    /// that does not exist costs croner a walk to the year 5000, which is done once, here.
    fires: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Schedule {
    pub const NICKNAMES: [(&'static str, &'static str); 6] = [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ];

    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        let pattern = if trimmed.starts_with('@') {
            Schedule::NICKNAMES
                .iter()
                .find(|(n, _)| {
                    n.eq_ignore_ascii_case(trimmed) || (*n == "@yearly" && trimmed.eq_ignore_ascii_case("@annually"))
                })
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!("unknown schedule nickname {trimmed:?} (use @hourly, @daily, @weekly, @monthly or @yearly)")
                })?
        } else {
            let fields = trimmed.split_whitespace().count();
            if fields != 5 {
                return Err(format!(
                    "invalid cron expression {trimmed:?}: expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
                ));
            }
            trimmed
        };
        let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = parser.parse(pattern).map_err(|e| {
            let fields: Vec<&str> = pattern.split_whitespace().collect();
            let why = crate::cron::explain(&fields, &e.to_string(), |p| parser.parse(p).is_err());
            format!("invalid cron expression {trimmed:?}: {why}")
        })?;
        // The fields match wall-clock times, and every wall-clock time is a UTC time: a
        // pattern without a tick in UTC has none in any zone. Without a year field a pattern
        // that fires once fires again, so one search from any date tells.
        let from = NaiveDate::from_ymd_opt(2000, 1, 1).map(|d| d.and_time(NaiveTime::MIN).and_utc());
        let fires = from.is_some_and(|from| cron.find_next_occurrence(&from, true).is_ok());
        Ok(Schedule { expr: trimmed.to_string(), cron, fires })
    }

    /// Whether the schedule has any tick at all (in UTC; a zone's daylight-saving gaps could
    /// still swallow every tick of a contrived pattern).
    pub fn fires(&self) -> bool {
        self.fires
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first tick strictly after `t`; none past the year 5000 (croner's search limit).
    pub fn next_after(&self, t: DateTime<Tz>) -> Option<DateTime<Tz>> {
        // Croner reads the wall clock of its start (which chrono cannot give for the last
        // instants it holds, seen from east of UTC) and searches the years 1 to 5000.
        let searchable =
            self.fires && local_time(t).is_some_and(|l| (1..=croner::YEAR_UPPER_LIMIT).contains(&l.year()));
        if !searchable {
            return None;
        }
        #[cfg(test)]
        crate::work::count(&crate::work::CRON_SEARCHES);
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The first tick at or after `t`.
    ///
    /// Through the exclusive forward search, because an inclusive match would miss a tick
    /// that a daylight-saving gap moved (`30 1 * * *` fires at 02:00 on a spring-forward day,
    /// and 02:00 does not match the pattern).
    pub fn at_or_after(&self, t: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let c = self.next_after(t.checked_sub_signed(ChronoDuration::seconds(1))?)?;
        if c >= t {
            Some(c)
        } else {
            self.next_after(c)
        }
    }

    /// The last tick strictly before `t`.
    ///
    /// Searched *forward* from a window before `t` that doubles until it holds a tick, so it
    /// always agrees with [`Schedule::next_after`] (a backward cron search can disagree around
    /// a daylight-saving gap, where the forward tick is moved to the end of the gap).
    pub fn prev_before(&self, t: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let mut window = ChronoDuration::hours(1);
        while window <= ChronoDuration::days(366 * 8) {
            let mut last = None;
            let mut cur = self.at_or_after(t.checked_sub_signed(window)?)?;
            while cur < t {
                last = Some(cur);
                match self.next_after(cur) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
            if last.is_some() {
                return last;
            }
            window = window * 2;
        }
        None
    }
}

/// The dates of one run: its logical date and data interval, in the DAG's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDates {
    pub logical_date: DateTime<Tz>,
    pub data_interval_start: DateTime<Tz>,
    pub data_interval_end: DateTime<Tz>,
}

impl RunDates {
    /// When a scheduled run fires: the end of its data interval.
    pub fn fire_time(&self) -> DateTime<Tz> {
        self.data_interval_end
    }

    /// `YYYY-MM-DD` of the logical date, in the DAG's zone.
    pub fn ds(&self) -> String {
        self.logical_date.format("%Y-%m-%d").to_string()
    }

    pub fn ds_nodash(&self) -> String {
        self.logical_date.format("%Y%m%d").to_string()
    }

    /// RFC 3339 logical date with its offset, e.g. `2026-03-01T05:00:00+00:00`.
    pub fn ts(&self) -> String {
        rfc3339(self.logical_date)
    }

    pub fn ts_nodash(&self) -> String {
        self.logical_date.format("%Y%m%dT%H%M%S").to_string()
    }
}

/// RFC 3339 with seconds and a numeric offset (`+00:00`, not `Z`), as Airflow prints `ts`.
pub fn rfc3339(t: DateTime<Tz>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The years a date read from a DAG file or given to [`parse_instant`] may have (in the zone
/// it is read in).
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The wall-clock time of `t` in its zone; none for the last instants chrono holds seen from a
/// zone east of UTC, whose wall clock is past the end of chrono's calendar.
pub fn local_time(t: DateTime<Tz>) -> Option<NaiveDateTime> {
    t.naive_utc().checked_add_offset(t.offset().fix())
}

/// A wall-clock time in `tz` as an instant: a time inside a spring-forward gap moves to the
/// first instant after the gap, a time inside a fall-back overlap takes its first occurrence.
/// A wall-clock time with no instant within a day after it (only at the very ends of chrono's
/// calendar) is read as UTC.
pub fn resolve_local(tz: Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    let mut probe = naive;
    // Inside a gap: walk forward a minute at a time to its end (gaps are < 1 day).
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t,
            LocalResult::Ambiguous(first, _) => return first,
            LocalResult::None => match probe.checked_add_signed(ChronoDuration::minutes(1)) {
                Some(next) => probe = next,
                None => break,
            },
        }
    }
    tz.from_utc_datetime(&naive)
}

/// Parses a date (`2026-01-01`, midnight in `tz`), a local timestamp (`2026-01-01T05:00`, in
/// `tz`) or an RFC 3339 timestamp with an offset.
///
/// The date must fall in the years [`YEARS`] in `tz`.
pub fn parse_instant(s: &str, tz: Tz) -> Result<DateTime<Tz>, String> {
    let s = s.trim();
    let t = parse_any_instant(s, tz).ok_or_else(|| {
        format!(
            "invalid date {s:?}: write a date (2026-01-01), a local time (2026-01-01T05:00) or an RFC 3339 timestamp (2026-01-01T05:00:00Z)"
        )
    })?;
    match local_time(t) {
        Some(local) if YEARS.contains(&local.year()) => Ok(t),
        _ => Err(format!("date {s:?} is outside the supported years {} to {}", YEARS.start(), YEARS.end())),
    }
}

fn parse_any_instant(s: &str, tz: Tz) -> Option<DateTime<Tz>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&tz));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(resolve_local(tz, d.and_time(NaiveTime::MIN)));
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|t| resolve_local(tz, t))
}

pub fn parse_timezone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {s:?}: use an IANA name such as \"UTC\", \"Europe/London\" or \"America/New_York\"")
    })
}

/// A time of day, `HH:MM` or `HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub NaiveTime);

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M:%S"))
            .map(TimeOfDay)
            .map_err(|_| format!("invalid time of day {s:?}: write \"HH:MM\" or \"HH:MM:SS\""))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M:%S"))
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TimeOfDay {
    /// The first instant at or after `from` whose wall-clock time in `from`'s zone is this
    /// time, or `from` itself when chrono's calendar ends before one (saturating; see
    /// [`TimeOfDay::checked_next_at_or_after`]).
    pub fn next_at_or_after(self, from: DateTime<Tz>) -> DateTime<Tz> {
        self.checked_next_at_or_after(from).unwrap_or(from)
    }

    /// The first instant at or after `from` whose wall-clock time in `from`'s zone is this
    /// time; none when chrono's calendar ends before one.
    pub fn checked_next_at_or_after(self, from: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = from.timezone();
        let mut day = local_time(from)?.date();
        // The day of `from` or the next one; a daylight-saving change moves it by hours, never
        // by days, but the search tries a few days for safety rather than looping.
        for _ in 0..4 {
            let t = resolve_local(tz, day.and_time(self.0));
            if t >= from {
                return Some(t);
            }
            day = day.succ_opt()?;
        }
        None
    }
}

/// When a run must be finished by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A wall-clock time in the DAG's zone: the first such time at or after the fire time.
    At(TimeOfDay),
    /// A span after the fire time.
    After(Duration),
}

impl FromStr for Deadline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(Deadline::At)
        } else if humantime::parse_duration(s.trim()).is_ok() {
            // A duration, maybe over the limit: its own message says so.
            s.parse::<Duration>().map(Deadline::After)
        } else {
            Err(format!("invalid deadline {s:?}: write a time of day (\"07:00\") or a duration (\"2h\")"))
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deadline::At(t) => write!(f, "{}", t.0.format("%H:%M")),
            Deadline::After(d) => write!(f, "{d} after fire time"),
        }
    }
}

impl Deadline {
    /// The deadline of a run firing at `fire`; none when it is past what chrono can hold (never
    /// for a fire time and a deadline read from a DAG file, which are within [`YEARS`] and
    /// [`Duration::LIMIT`]).
    pub fn for_fire_time(self, fire: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let deadline = match self {
            Deadline::At(t) => t.checked_next_at_or_after(fire)?,
            Deadline::After(d) => fire.checked_add_signed(d.as_chrono())?,
        };
        local_time(deadline).map(|_| deadline)
    }
}

/// Today's instant in `tz`, for callers that take "now" as a parameter in tests.
pub fn now_in(tz: Tz) -> DateTime<Tz> {
    Utc::now().with_timezone(&tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> Tz {
        "Europe/London".parse().unwrap()
    }

    #[test]
    fn rejects_bad_cron_and_nicknames() {
        assert!(Schedule::parse("0 5 * *").unwrap_err().contains("expected 5 fields"));
        assert!(Schedule::parse("0 25 * * *").unwrap_err().contains("invalid cron"));
        assert!(Schedule::parse("@fortnightly").unwrap_err().contains("nickname"));
        assert_eq!(Schedule::parse("@daily").unwrap().expr(), "@daily");
    }

    #[test]
    fn a_schedule_that_never_fires_answers_without_searching_to_the_year_5000() {
        use crate::work::{measure, CRON_SEARCHES};
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert!(!never.fires());
        assert!(Schedule::parse("0 0 29 2 *").unwrap().fires());
        let from = parse_instant("2026-01-01", london()).unwrap();
        let searches = measure(&CRON_SEARCHES, || {
            for _ in 0..10 {
                assert_eq!(never.next_after(from), None);
                assert_eq!(never.at_or_after(from), None);
                assert_eq!(never.prev_before(from), None);
            }
        });
        assert_eq!(searches, 0);
    }

    #[test]
    fn spring_forward_gap_fires_once_after_the_gap() {
        // 2026-03-29 01:00 GMT -> 02:00 BST: 01:30 does not exist that day.
        let s = Schedule::parse("30 1 * * *").unwrap();
        let from = parse_instant("2026-03-28T12:00", london()).unwrap();
        let a = s.next_after(from).unwrap();
        let b = s.next_after(a).unwrap();
        assert_eq!(rfc3339(a), "2026-03-29T02:00:00+01:00");
        assert_eq!(rfc3339(b), "2026-03-30T01:30:00+01:00");
    }

    #[test]
    fn prev_before_agrees_with_next_after_across_the_gap() {
        let s = Schedule::parse("30 1 * * *").unwrap();
        let from = parse_instant("2026-03-27T12:00", london()).unwrap();
        let ticks: Vec<_> = std::iter::successors(s.next_after(from), |t| s.next_after(*t)).take(5).collect();
        for pair in ticks.windows(2) {
            assert_eq!(s.prev_before(pair[1]), Some(pair[0]), "before {}", rfc3339(pair[1]));
            assert_eq!(s.at_or_after(pair[1]), Some(pair[1]), "at {}", rfc3339(pair[1]));
        }
        let yearly = Schedule::parse("@yearly").unwrap();
        let t = parse_instant("2026-06-01", london()).unwrap();
        assert_eq!(rfc3339(yearly.prev_before(t).unwrap()), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn fall_back_overlap_fires_once() {
        // 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 happens twice.
        let s = Schedule::parse("30 1 * * *").unwrap();
        let from = parse_instant("2026-10-24T12:00", london()).unwrap();
        let a = s.next_after(from).unwrap();
        let b = s.next_after(a).unwrap();
        assert_eq!(rfc3339(a), "2026-10-25T01:30:00+01:00");
        assert_eq!(rfc3339(b), "2026-10-26T01:30:00+00:00");
    }

    #[test]
    fn deadline_at_and_after() {
        let fire = parse_instant("2026-03-02T05:00", london()).unwrap();
        let at: Deadline = "07:00".parse().unwrap();
        assert_eq!(rfc3339(at.for_fire_time(fire).unwrap()), "2026-03-02T07:00:00+00:00");
        let late = parse_instant("2026-03-02T08:00", london()).unwrap();
        assert_eq!(rfc3339(at.for_fire_time(late).unwrap()), "2026-03-03T07:00:00+00:00");
        let after: Deadline = "2h".parse().unwrap();
        assert_eq!(rfc3339(after.for_fire_time(fire).unwrap()), "2026-03-02T07:00:00+00:00");
        assert!("soonish".parse::<Deadline>().is_err());
        assert!("25:00".parse::<Deadline>().is_err());
    }

    #[test]
    fn parses_instants() {
        let tz = london();
        assert_eq!(rfc3339(parse_instant("2026-07-01", tz).unwrap()), "2026-07-01T00:00:00+01:00");
        assert_eq!(rfc3339(parse_instant("2026-07-01T05:00:00Z", tz).unwrap()), "2026-07-01T06:00:00+01:00");
        assert!(parse_instant("01/07/2026", tz).unwrap_err().contains("invalid date"));
        assert!(parse_timezone("Europe/Londres").unwrap_err().contains("unknown time zone"));
    }
}
