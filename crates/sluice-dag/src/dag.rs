//! A validated DAG: its schedule, its tasks in topological order, and what runs look like.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alerts::{AlertRule, Freshness};
use crate::diagnostic::{one_line, quoted};
use crate::duration::Duration;
use crate::graph::TaskGraph;
use crate::operators::Operator;
use crate::schedule::{local_time, parse_instant, resolve_local, Deadline, RunDates, Schedule, YEARS};
use crate::template::{self, RenderError, TemplateContext};

/// When a task may start, given the states of its direct upstreams (Airflow's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    AllSuccess,
    AllFailed,
    AllDone,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 10] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }
}

impl FromStr for TriggerRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerRule::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            format!(
                "unknown trigger rule {}{}; expected one of {}",
                quoted(s),
                crate::diagnostic::did_you_mean(s, TriggerRule::ALL.iter().map(|r| r.name())),
                TriggerRule::ALL.map(|r| r.name()).join(", ")
            )
        })
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the delay between tries grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    #[default]
    Fixed,
    Exponential,
}

impl FromStr for Backoff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fixed" => Ok(Backoff::Fixed),
            "exponential" => Ok(Backoff::Exponential),
            _ => Err(format!("unknown retry_backoff {}: expected `fixed` or `exponential`", quoted(s))),
        }
    }
}

/// A task's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Tries after the first; a task runs at most `retries + 1` times.
    pub retries: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    pub max_delay: Option<Duration>,
}

impl RetryPolicy {
    /// The delay before try `next_try` (2 for the first retry), without jitter: `delay` for
    /// fixed backoff, `delay * 2^(next_try - 2)` for exponential, capped by `max_delay` and
    /// always by [`Duration::LIMIT`] (so that a caller can add it to the current time).
    pub fn delay_before(&self, next_try: u32) -> std::time::Duration {
        let base = self.delay.as_std();
        let d = match self.backoff {
            Backoff::Fixed => base,
            Backoff::Exponential => {
                let exp = next_try.saturating_sub(2).min(30);
                base.saturating_mul(1u32 << exp)
            }
        };
        let d = match self.max_delay {
            Some(cap) => d.min(cap.as_std()),
            None => d,
        };
        d.min(Duration::LIMIT.as_std())
    }
}

/// One task of a DAG.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    /// The operator with its keys as written (templates not rendered).
    pub operator: Operator,
    /// The operator's keys as written, the input of rendering.
    #[serde(skip)]
    pub keys: Map<String, Value>,
    /// Whether its templates (its keys, and its `query_file`) read upstream outputs
    /// (`tasks.<id>.<field>`); a try of a task that does not is rendered without them.
    #[serde(skip)]
    pub reads_outputs: bool,
    /// Direct upstream task ids, as written in `depends_on`.
    pub depends_on: Vec<String>,
    /// Direct downstream task ids.
    pub downstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub pool: Option<String>,
    pub priority: i64,
    pub depends_on_past: bool,
    /// The `[connections.NAME]` of `sluice.toml` its AWS calls use (the task's, else the DAG's).
    pub connection: Option<String>,
    /// A try running longer than this raises an `sla` alert (the try goes on; `timeout` is
    /// what stops it).
    pub max_duration: Option<Duration>,
    pub doc: Option<String>,
    /// Line of the task's table in its file.
    pub line: usize,
}

impl Task {
    /// Whether rendering cannot change it: no key holds template syntax and it reads no
    /// `query_file`, so its rendered operator is [`Task::operator`] as parsed (a try of it needs
    /// no template context).
    pub fn is_static(&self) -> bool {
        fn plain(v: &Value) -> bool {
            match v {
                Value::String(s) => !(s.contains("{{") || s.contains("{%") || s.contains("{#")),
                Value::Array(items) => items.iter().all(plain),
                Value::Object(map) => map.values().all(plain),
                Value::Null | Value::Bool(_) | Value::Number(_) => true,
            }
        }
        !self.keys.contains_key("query_file") && self.keys.values().all(plain)
    }
}

/// A DAG that passed validation.
#[derive(Debug, Clone, Serialize)]
pub struct Dag {
    pub id: String,
    pub file: PathBuf,
    pub description: Option<String>,
    #[serde(serialize_with = "ser_schedule")]
    pub schedule: Option<Schedule>,
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub start_date: Option<DateTime<Tz>>,
    pub end_date: Option<DateTime<Tz>>,
    pub catchup: bool,
    /// The DAG starts paused the first time a scheduler sees it (Airflow's
    /// `is_paused_upon_creation`); `dagctl unpause` starts it. Later loads never change the
    /// paused flag.
    pub paused_at_creation: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    #[serde(serialize_with = "ser_display_opt")]
    pub deadline: Option<Deadline>,
    pub tags: Vec<String>,
    /// The DAG's default `connection`.
    pub connection: Option<String>,
    pub params: Map<String, Value>,
    /// Tasks in topological order (file order among independent tasks).
    pub tasks: Vec<Task>,
    /// The DAG's own `[[alerts]]` rules, in file order.
    pub alerts: Vec<AlertRule>,
    /// Whether the `[[alerts]]` of `sluice.toml` apply to it too (`default_alerts = false`
    /// opts out). Default true.
    pub default_alerts: bool,
    /// `[freshness]`: a successful run at least every `max_age`.
    pub freshness: Option<Freshness>,
    /// The file's text this DAG was read from, so a scheduler can record its last good
    /// version.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub(crate) index: HashMap<String, usize>,
}

fn ser_schedule<S: serde::Serializer>(s: &Option<Schedule>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expr()),
        None => ser.serialize_none(),
    }
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(tz.name())
}

fn ser_display_opt<S: serde::Serializer, T: fmt::Display>(v: &Option<T>, ser: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser.collect_str(v),
        None => ser.serialize_none(),
    }
}

impl Dag {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.index.get(id).map(|i| &self.tasks[*i])
    }

    /// The position of a task in `tasks` (topological order).
    pub fn task_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// For each task (by position), the positions of its direct upstreams and downstreams.
    pub fn adjacency(&self) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
        let ups: Vec<Vec<usize>> =
            self.tasks.iter().map(|t| t.depends_on.iter().map(|u| self.index[u]).collect()).collect();
        let downs = self.tasks.iter().map(|t| t.downstream.iter().map(|d| self.index[d]).collect()).collect();
        (ups, downs)
    }

    /// Every task upstream of `id`, directly or transitively, in topological order.
    pub fn ancestors(&self, id: &str) -> Vec<&Task> {
        self.related(id, TaskGraph::ancestors)
    }

    /// Every task downstream of `id`, directly or transitively, in topological order.
    pub fn descendants(&self, id: &str) -> Vec<&Task> {
        self.related(id, TaskGraph::descendants)
    }

    fn related(&self, id: &str, f: fn(&TaskGraph, usize) -> Vec<usize>) -> Vec<&Task> {
        let Some(&i) = self.index.get(id) else { return Vec::new() };
        f(&self.graph(), i).into_iter().map(|j| &self.tasks[j]).collect()
    }

    pub(crate) fn graph(&self) -> TaskGraph {
        let edges =
            self.tasks.iter().enumerate().flat_map(|(i, t)| t.depends_on.iter().map(move |u| (self.index[u], i)));
        TaskGraph::new(self.tasks.len(), edges)
    }

    /// The run dates of the run whose logical date is `logical`.
    pub fn run_dates(&self, logical: DateTime<Tz>) -> RunDates {
        let logical = logical.with_timezone(&self.timezone);
        let end = self.schedule.as_ref().and_then(|s| s.next_after(logical)).unwrap_or(logical);
        RunDates { logical_date: logical, data_interval_start: logical, data_interval_end: end }
    }

    /// The first logical date of the schedule: the first tick at or after `start_date`.
    pub fn first_logical_date(&self) -> Option<DateTime<Tz>> {
        let schedule = self.schedule.as_ref()?;
        schedule.at_or_after(self.start_date?)
    }

    fn in_range(&self, logical: DateTime<Tz>) -> bool {
        self.end_date.is_none_or(|end| logical <= end)
    }

    /// The scheduled runs that fire strictly after `after`, in order (lazily; stops at
    /// `end_date`). Empty for a DAG without a schedule.
    pub fn runs_firing_after(&self, after: DateTime<Tz>) -> impl Iterator<Item = RunDates> + '_ {
        let after = after.with_timezone(&self.timezone);
        let first = self.schedule.as_ref().and_then(|s| {
            let first_logical = self.first_logical_date()?;
            // The run firing first after `after` has the tick before that fire time as its
            // logical date, unless that is earlier than the first logical date.
            let fire = s.next_after(after)?;
            let logical = s.prev_before(fire).filter(|l| *l >= first_logical).unwrap_or(first_logical);
            Some(logical)
        });
        std::iter::successors(first, move |l| self.schedule.as_ref().and_then(|s| s.next_after(*l)))
            .take_while(move |l| self.in_range(*l))
            .map(move |l| self.run_dates(l))
    }

    /// The scheduled runs whose logical dates fall in `[from, to]`, oldest first.
    pub fn runs_between(&self, from: DateTime<Tz>, to: DateTime<Tz>) -> Vec<RunDates> {
        self.iter_runs_between(from, to).collect()
    }

    /// [`Dag::runs_between`], one run at a time (a caller can stop early: a range may hold
    /// millions of ticks).
    pub fn iter_runs_between(&self, from: DateTime<Tz>, to: DateTime<Tz>) -> impl Iterator<Item = RunDates> + '_ {
        let from = from.with_timezone(&self.timezone);
        let lower = match self.first_logical_date() {
            Some(first) if first > from => first,
            _ => from,
        };
        let schedule = self.schedule.as_ref();
        std::iter::successors(schedule.and_then(|s| s.at_or_after(lower)), move |l| {
            schedule.and_then(|s| s.next_after(*l))
        })
        .take_while(move |l| *l <= to && self.in_range(*l))
        .map(|l| self.run_dates(l))
    }

    /// The logical date a user means by a calendar date: for a scheduled DAG, the first tick
    /// on that day in the DAG's zone; for a manual DAG, midnight of that day. The date must
    /// fall in the years [`YEARS`], as every date a DAG file gives.
    pub fn logical_date_on(&self, date: NaiveDate) -> Result<DateTime<Tz>, String> {
        if !YEARS.contains(&date.year()) {
            return Err(format!("date {date} is outside the supported years {} to {}", YEARS.start(), YEARS.end()));
        }
        let midnight = resolve_local(self.timezone, date.and_time(NaiveTime::MIN));
        match &self.schedule {
            None => Ok(midnight),
            Some(s) => s
                .at_or_after(midnight)
                .filter(|t| local_time(*t).is_some_and(|l| l.date() == date))
                .ok_or_else(|| format!("schedule {} has no tick on {date}", quoted(s.expr()))),
        }
    }

    /// The logical date a user means by `s`: a date (`2026-03-01`) means the schedule's tick
    /// on that day ([`Dag::logical_date_on`]); a timestamp is taken as it is.
    pub fn logical_date(&self, s: &str) -> Result<DateTime<Tz>, String> {
        match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
            Ok(day) => self.logical_date_on(day),
            Err(_) => parse_instant(s, self.timezone),
        }
    }

    /// A bound of a range of logical dates (a backfill's `from` and `to`): a date means the
    /// first instant of that day in the DAG's zone, or with `end_of_day` its last, so that a
    /// range of dates covers whole days whatever the schedule's time; a timestamp is taken as
    /// it is.
    pub fn logical_bound(&self, s: &str, end_of_day: bool) -> Result<DateTime<Tz>, String> {
        let Ok(day) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") else { return parse_instant(s, self.timezone) };
        if !YEARS.contains(&day.year()) {
            return Err(format!("date {day} is outside the supported years {} to {}", YEARS.start(), YEARS.end()));
        }
        if !end_of_day {
            return Ok(resolve_local(self.timezone, day.and_time(NaiveTime::MIN)));
        }
        let next = day.succ_opt().unwrap_or(day);
        let t = resolve_local(self.timezone, next.and_time(NaiveTime::MIN));
        Ok(t.checked_sub_signed(chrono::Duration::nanoseconds(1)).unwrap_or(t))
    }

    /// The template context of `task` for a run, before upstream outputs are added.
    pub fn template_context(
        &self,
        task: &str,
        run_id: &str,
        dates: &RunDates,
        conf: Option<&Map<String, Value>>,
    ) -> TemplateContext {
        TemplateContext::new(&self.id, task, run_id, dates, template::merge_params(&self.params, conf))
    }

    /// The task's keys rendered for a person to read (`dagctl render`, the API's rendered keys
    /// of a task in a run): the template context of `run_id` at `dates` with `conf`, the
    /// upstream outputs known so far (`outputs`: task id -> field -> value, as the store keeps
    /// them), and a placeholder `<tasks.ID.FIELD>` for each output of an upstream not in
    /// `outputs` (not run yet, or failed), as deep as the task reads it
    /// (`tasks.ID.payload.day` gets `<tasks.ID.payload.day>`).
    pub fn render_for_display(
        &self,
        task: &Task,
        run_id: &str,
        dates: &RunDates,
        conf: Option<&Map<String, Value>>,
        mut outputs: std::collections::BTreeMap<String, Map<String, Value>>,
    ) -> Result<Value, RenderError> {
        let mut ctx = self.template_context(&task.id, run_id, dates, conf);
        let mut placeholders = std::collections::BTreeMap::new();
        for up in self.ancestors(&task.id) {
            match outputs.remove(&up.id) {
                Some(known) => {
                    ctx.tasks.insert(up.id.clone(), known);
                }
                None => {
                    let shown = up
                        .operator
                        .kind()
                        .outputs()
                        .iter()
                        .map(|(f, shape)| (f.to_string(), shape.placeholder(format!("<tasks.{}.{f}>", up.id))))
                        .collect();
                    placeholders.insert(up.id.clone(), shown);
                }
            }
        }
        deepen_placeholders(&mut placeholders, &task.keys);
        ctx.tasks.extend(placeholders);
        self.render_task(task, &ctx).map(|(rendered, _)| rendered)
    }

    /// Renders the task's keys with `ctx` and reads them back as its typed operator.
    pub fn render_task(&self, task: &Task, ctx: &TemplateContext) -> Result<(Value, Operator), RenderError> {
        let env = template::environment();
        let mut rendered = template::render_value(&env, &Value::Object(task.keys.clone()), ctx)?;
        // An Athena `query_file` is a template too: it is read and rendered into `query`.
        if let Some(obj) = rendered.as_object_mut() {
            if let Some(Value::String(file)) = obj.remove("query_file") {
                let path = crate::parse::relative_to(&self.file, &file);
                let sql = crate::parse::read_text_file(&path, crate::parse::MAX_QUERY_FILE_BYTES, "a query file")
                    .map_err(|e| {
                        RenderError::Other(one_line(&format!("cannot read {}: {e}", path.display())).into_owned())
                    })?;
                let sql = template::render_value(&env, &Value::String(sql), ctx).map_err(|e| {
                    e.map_message(|m| m.replacen("key ``", &format!("key `query_file` ({})", quoted(&file)), 1))
                })?;
                obj.insert("query".into(), sql);
            }
        }
        let mut tagged = rendered.as_object().cloned().unwrap_or_default();
        tagged.insert("operator".into(), Value::String(task.operator.kind().name().into()));
        let op: Operator = serde_json::from_value(Value::Object(tagged)).map_err(|e| {
            RenderError::Other(
                one_line(&format!("rendered keys do not fit operator `{}`: {e}", task.operator.kind())).into_owned(),
            )
        })?;
        Ok((rendered, op))
    }
}

/// Placeholders as deep as the task reads them: an output holding JSON (a `lambda`'s
/// `payload`) read as `tasks.enrich.payload.day` becomes an object whose `day` is
/// `<tasks.enrich.payload.day>`, so that the read renders instead of being undefined.
fn deepen_placeholders(tasks: &mut std::collections::BTreeMap<String, Map<String, Value>>, keys: &Map<String, Value>) {
    let env = template::environment();
    let mut names = Vec::new();
    strings(&Value::Object(keys.clone()), &mut |s| {
        names.extend(template::referenced_names(&env, s).unwrap_or_default());
    });
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        let ["tasks", up, field, deeper @ ..] = parts.as_slice() else { continue };
        if deeper.is_empty() {
            continue;
        }
        let Some(outputs) = tasks.get_mut(*up) else { continue };
        let Some(mut at) = outputs.get_mut(*field) else { continue };
        for (i, seg) in deeper.iter().enumerate() {
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
            let Value::Object(m) = at else { break };
            let here = format!("<{}>", parts[..4 + i].join("."));
            at = m.entry(seg.to_string()).or_insert(Value::String(here));
        }
    }
}

/// Calls `f` with every string inside `v`.
fn strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, f)),
        Value::Object(m) => m.values().for_each(|i| strings(i, f)),
        _ => {}
    }
}

/// A run configuration given as text (`--conf`): a JSON object, merged over `[params]`.
pub fn parse_conf(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("--conf must be a JSON object, e.g. '{\"bucket\": \"other\"}'".into()),
        Err(e) => Err(format!("--conf is not valid JSON: {e}")),
    }
}

/// Run ids as Airflow writes them: `scheduled__2026-03-01T05:00:00+00:00`. A logical date
/// with a fraction of a second (a manual run without a date is "now") keeps its microseconds,
/// `manual__2026-03-01T05:00:00.123456+00:00`, so two triggers within one second are two runs.
pub fn run_id(kind: &str, dates: &RunDates) -> String {
    use chrono::Timelike;
    if dates.logical_date.nanosecond() / 1000 == 0 {
        format!("{kind}__{}", dates.ts())
    } else {
        format!("{kind}__{}", dates.logical_date.format("%Y-%m-%dT%H:%M:%S%.6f%:z"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_keep_microseconds_only_when_there_are_some() {
        use chrono::TimeZone;
        let at = |micros: u32| {
            let t = chrono_tz::UTC.with_ymd_and_hms(2026, 3, 1, 5, 0, 0).unwrap()
                + chrono::Duration::microseconds(i64::from(micros));
            RunDates { logical_date: t, data_interval_start: t, data_interval_end: t }
        };
        assert_eq!(run_id("scheduled", &at(0)), "scheduled__2026-03-01T05:00:00+00:00");
        assert_eq!(run_id("manual", &at(123_456)), "manual__2026-03-01T05:00:00.123456+00:00");
        assert_ne!(run_id("manual", &at(1)), run_id("manual", &at(2)));
    }

    #[test]
    fn retry_delays() {
        let p = RetryPolicy {
            retries: 5,
            delay: Duration::from_secs(30),
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(100)),
        };
        let d: Vec<u64> = (2..6).map(|t| p.delay_before(t).as_secs()).collect();
        assert_eq!(d, vec![30, 60, 100, 100]);
        let fixed = RetryPolicy { backoff: Backoff::Fixed, ..p };
        assert_eq!(fixed.delay_before(4).as_secs(), 30);
    }

    #[test]
    fn conf_is_a_json_object() {
        assert_eq!(parse_conf(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(parse_conf("[1]").unwrap_err().contains("must be a JSON object"));
        assert!(parse_conf("{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn trigger_rule_suggests() {
        let e = "all_sucess".parse::<TriggerRule>().unwrap_err();
        assert!(e.contains("did you mean `all_success`"), "{e}");
    }
}
