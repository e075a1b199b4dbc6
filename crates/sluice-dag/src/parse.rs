//! Reading and validating one DAG file.
//!
//! The file is parsed into a spanned TOML tree first, so every problem can name its line.
//! Each key is then read on its own, which lets one pass report *every* problem in the file
//! (unknown keys with a suggestion, mistyped values, unknown operators, missing operator keys,
//! dangling `depends_on`, cycles, bad schedules, templates that read unknown names or the
//! output of a task that is not upstream) instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::DateTime;
use chrono_tz::Tz;
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::alerts::{
    AlertOn, AlertRule, ChannelRef, Freshness, ALERT_RULE_KEYS, EMPTY_ON, EMPTY_TO, FRESHNESS_KEYS, MUST_BE_POSITIVE,
};
use crate::dag::{Backoff, Dag, RetryPolicy, Task, TriggerRule};
use crate::diagnostic::{did_you_mean, quoted, Diagnostic, Sink};
use crate::duration::Duration;
use crate::graph::TaskGraph;
use crate::operators::*;
use crate::schedule::{parse_instant, parse_timezone, Deadline, Schedule};
use crate::template::{self, Reference, RUN_VARIABLES};

/// Top-level keys of a DAG file.
pub const DAG_KEYS: &[&str] = &[
    "id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "paused_at_creation",
    "max_active_runs",
    "max_active_tasks",
    "deadline",
    "tags",
    "connection",
    "params",
    "defaults",
    "tasks",
    "alerts",
    "default_alerts",
    "freshness",
];

/// Keys every task has, whatever its operator.
pub const TASK_KEYS: &[&str] = &[
    "operator",
    "depends_on",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "pool",
    "priority",
    "depends_on_past",
    "connection",
    "max_duration",
    "doc",
];

/// Keys `[defaults]` may set for every task.
pub const DEFAULT_KEYS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "pool",
    "priority",
    "depends_on_past",
    "connection",
    "max_duration",
];

pub const DEFAULT_MAX_ACTIVE_TASKS: u32 = 16;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(300);
pub const DEFAULT_PRIORITY: i64 = 1;
/// The most `retries` a task may have (a scheduler counts `retries + 1` tries).
pub const MAX_RETRIES: u32 = 1000;
/// The largest DAG file read: 16 MiB.
pub const MAX_DAG_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The largest `query_file` read: 1 MiB.
pub const MAX_QUERY_FILE_BYTES: u64 = 1024 * 1024;

/// The result of reading one DAG file: the DAG when it has no errors, and every problem.
#[derive(Debug)]
pub struct ParseOutcome {
    /// The DAG's id when the file got far enough to tell it.
    pub dag_id: Option<String>,
    pub dag: Option<Dag>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads and validates the DAG file at `path`: a regular file of at most
/// [`MAX_DAG_FILE_BYTES`], else a diagnostic and nothing read.
pub fn parse_dag_file(path: &Path) -> ParseOutcome {
    match read_text_file(path, MAX_DAG_FILE_BYTES, "a DAG file") {
        Ok(src) => parse_dag(path, &src),
        Err(e) => whole_file_error(path, format!("cannot read the file: {e}")),
    }
}

fn whole_file_error(path: &Path, message: String) -> ParseOutcome {
    let mut sink = Sink::new(path, "");
    sink.error(None, None, message);
    ParseOutcome { dag_id: None, dag: None, diagnostics: sink.finish() }
}

/// The text of the file at `path`, which must be a regular file of at most `limit` bytes (a
/// `what`, for the message): nothing is read from anything else, so a path naming `/dev/zero`,
/// a FIFO or a huge file costs nothing. What `Err` holds follows "cannot read PATH: ".
pub(crate) fn read_text_file(path: &Path, limit: u64, what: &str) -> Result<String, String> {
    use std::io::Read as _;
    let check = |meta: &std::fs::Metadata| -> Result<u64, String> {
        if meta.is_dir() {
            Err("is a directory".into())
        } else if !meta.is_file() {
            Err("not a regular file".into())
        } else if meta.len() > limit {
            Err(format!("{} bytes, over the limit of {} for {what}", meta.len(), mebibytes(limit)))
        } else {
            Ok(meta.len())
        }
    };
    // Looked at before opening, since opening a FIFO waits for a writer; then again on what was
    // opened, in case the path changed in between; and the read stops past the limit anyway
    // (a file may grow, and some report no size).
    check(&std::fs::metadata(path).map_err(|e| e.to_string())?)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = check(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("over the limit of {} for {what}", mebibytes(limit)));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

fn mebibytes(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

/// Reads and validates a DAG from `src`; `path` names it in diagnostics, gives the default id
/// (its stem), and anchors relative paths such as `query_file`. A `src` over
/// [`MAX_DAG_FILE_BYTES`] is refused as [`parse_dag_file`] refuses such a file.
pub fn parse_dag(path: &Path, src: &str) -> ParseOutcome {
    if src.len() as u64 > MAX_DAG_FILE_BYTES {
        let limit = mebibytes(MAX_DAG_FILE_BYTES);
        return whole_file_error(
            path,
            format!("the file is {} bytes, over the limit of {limit} for a DAG file", src.len()),
        );
    }
    let mut p = Parser { sink: Sink::new(path, src), env: template::environment(), suggestions_left: NAME_SUGGESTIONS };
    let (root, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        for e in errors {
            let (line, column) = match e.span() {
                Some(s) => {
                    let (l, c) = p.sink.map.line_col(src, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            p.sink.record(Diagnostic {
                severity: crate::Severity::Error,
                file: path.to_path_buf(),
                line,
                column,
                task: None,
                // The toml crate's messages are one line today; keep them so if one is not.
                message: crate::diagnostic::one_line(&format!("TOML syntax: {}", one_line_message(e.message())))
                    .into_owned(),
            });
        }
        return ParseOutcome { dag_id: None, dag: None, diagnostics: p.sink.finish() };
    }
    let (dag_id, dag) = p.dag(path, root.get_ref());
    let dag = if p.sink.has_errors() { None } else { dag.map(|d| Dag { source: src.to_string(), ..d }) };
    ParseOutcome { dag_id, dag, diagnostics: p.sink.finish() }
}

type Entry<'a, 'i> = (&'a Spanned<toml::de::DeString<'i>>, &'a Spanned<DeValue<'i>>);

struct Parser<'s> {
    sink: Sink<'s>,
    env: minijinja::Environment<'static>,
    /// How many more "did you mean" may be searched among the file's own names (see
    /// [`Parser::did_you_mean_among`]).
    suggestions_left: usize,
}

/// How many problems of one file get a suggestion among the file's own names (task ids,
/// params): each such search looks at every name, so thousands of dangling names would cost
/// their product.
const NAME_SUGGESTIONS: usize = 20;

/// A template's read of `tasks.<up>.<field>` of an existing task, checked once the graph is
/// known (see [`Parser::check_upstream_reads`]).
struct UpstreamRead {
    task: usize,
    up: usize,
    field: Option<String>,
    key: String,
    at: usize,
    /// Where its diagnostic goes among the others: before the one that was `seq`-th.
    seq: usize,
}

/// Task keys shared with `[defaults]`, as read before defaults are applied.
#[derive(Default, Clone)]
struct Common {
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_backoff: Option<Backoff>,
    max_retry_delay: Option<Duration>,
    timeout: Option<Duration>,
    pool: Option<String>,
    priority: Option<i64>,
    depends_on_past: Option<bool>,
    connection: Option<String>,
    max_duration: Option<Duration>,
}

impl Common {
    fn or(self, d: &Common) -> Common {
        Common {
            retries: self.retries.or(d.retries),
            retry_delay: self.retry_delay.or(d.retry_delay),
            retry_backoff: self.retry_backoff.or(d.retry_backoff),
            max_retry_delay: self.max_retry_delay.or(d.max_retry_delay),
            timeout: self.timeout.or(d.timeout),
            pool: self.pool.or_else(|| d.pool.clone()),
            priority: self.priority.or(d.priority),
            depends_on_past: self.depends_on_past.or(d.depends_on_past),
            connection: self.connection.or_else(|| d.connection.clone()),
            max_duration: self.max_duration.or(d.max_duration),
        }
    }
}

/// A task as read, before the graph is known.
struct Draft<'a, 'i> {
    id: String,
    at: usize,
    operator: Option<Operator>,
    keys: Map<String, Value>,
    depends_on: Vec<(String, usize)>,
    trigger_rule: Option<TriggerRule>,
    common: Common,
    doc: Option<String>,
    /// Strings of operator keys that may hold templates: (key path, text, offset).
    strings: Vec<(String, String, usize)>,
    table: Option<&'a DeTable<'i>>,
}

impl<'s> Parser<'s> {
    fn read<T: DeserializeOwned>(&mut self, key: &str, v: &Spanned<DeValue<'_>>, task: Option<&str>) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(v.clone())) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e.span().map_or(v.span().start, |s| s.start);
                self.sink.error(Some(at), task, format!("key {}: {}", quoted(key), serde_message(&e)));
                None
            }
        }
    }

    fn read_with<T>(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        task: Option<&str>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s: String = self.read(key, v, task)?;
        match f(&s) {
            Ok(t) => Some(t),
            Err(msg) => {
                self.sink.error(Some(v.span().start), task, format!("key {}: {msg}", quoted(key)));
                None
            }
        }
    }

    /// `did_you_mean` among names of the file itself, while the budget lasts.
    fn did_you_mean_among<'c>(&mut self, name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
        if self.suggestions_left == 0 {
            return String::new();
        }
        self.suggestions_left -= 1;
        did_you_mean(name, candidates)
    }

    fn unknown_key(&mut self, key: &Spanned<toml::de::DeString<'_>>, task: Option<&str>, place: &str, known: &[&str]) {
        let name = key.get_ref().as_ref();
        let hint = if self.sink.is_full() { String::new() } else { did_you_mean(name, known.iter().copied()) };
        self.sink.error(Some(key.span().start), task, format!("unknown key {} in {place}{hint}", quoted(name)));
    }

    fn dag(&mut self, path: &Path, root: &DeTable<'_>) -> (Option<String>, Option<Dag>) {
        let mut top: HashMap<&str, Entry<'_, '_>> = HashMap::new();
        for (k, v) in root.iter() {
            if DAG_KEYS.contains(&k.get_ref().as_ref()) {
                top.insert(k.get_ref().as_ref(), (k, v));
            } else if TASK_KEYS.contains(&k.get_ref().as_ref()) || OperatorKind::from_name(k.get_ref()).is_some() {
                self.sink.error(
                    Some(k.span().start),
                    None,
                    format!(
                        "unknown key {} at the top level; task keys go in a `[tasks.<id>]` table",
                        quoted(k.get_ref())
                    ),
                );
            } else {
                self.unknown_key(k, None, "the DAG", DAG_KEYS);
            }
        }

        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let id = match top.get("id") {
            Some((_, v)) => self.read::<String>("id", v, None).inspect(|id| {
                if let Err(msg) = check_id(id) {
                    self.sink.error(Some(v.span().start), None, format!("key `id`: {msg}"));
                }
            }),
            None => {
                if let Err(msg) = check_id(&stem) {
                    self.sink.error(
                        None,
                        None,
                        format!("the file name gives the DAG id {}: {msg}; rename the file or set `id`", quoted(&stem)),
                    );
                }
                Some(stem)
            }
        };

        let timezone = match top.get("timezone") {
            Some((_, v)) => self.read_with("timezone", v, None, parse_timezone),
            None => Some(Tz::UTC),
        };
        let tz = timezone.unwrap_or(Tz::UTC);
        let schedule = top.get("schedule").and_then(|(_, v)| self.read_with("schedule", v, None, Schedule::parse));
        let mut date = |key: &str| -> Option<DateTime<Tz>> {
            let (_, v) = top.get(key)?;
            let text = match v.get_ref() {
                DeValue::Datetime(d) => d.to_string(),
                _ => self.read::<String>(key, v, None)?,
            };
            match parse_instant(&text, tz) {
                Ok(t) => Some(t),
                Err(msg) => {
                    self.sink.error(Some(v.span().start), None, format!("key {}: {msg}", quoted(key)));
                    None
                }
            }
        };
        let start_date = date("start_date");
        let end_date = date("end_date");
        if let (Some(s), Some(e)) = (start_date, end_date) {
            if e < s {
                let at = top.get("end_date").map(|(_, v)| v.span().start);
                self.sink.error(at, None, "key `end_date`: is before `start_date`");
            }
        }
        if let (Some(s), Some(start)) = (&schedule, start_date) {
            let first = s.at_or_after(start);
            let problem = match (first, end_date) {
                (None, _) => Some("never fires at or after `start_date` (ticks are computed up to the year 5000)"),
                (Some(first), Some(end)) if first > end => Some("has no tick between `start_date` and `end_date`"),
                _ => None,
            };
            if let Some(problem) = problem {
                let at = top.get("schedule").map(|(k, _)| k.span().start);
                self.sink.warning(
                    at,
                    None,
                    format!("schedule {} {problem}: the DAG has no scheduled runs", quoted(s.expr())),
                );
            }
        }
        if schedule.is_some() && start_date.is_none() && !top.contains_key("start_date") {
            let at = top.get("schedule").map(|(k, _)| k.span().start);
            self.sink.error(at, None, "a scheduled DAG needs `start_date` (the first logical date it may run for)");
        }
        let positive = |p: &mut Parser, key: &str, default: u32| -> u32 {
            match top.get(key) {
                Some((_, v)) => match p.read::<u32>(key, v, None) {
                    Some(0) => {
                        p.sink.error(Some(v.span().start), None, format!("key `{key}`: must be at least 1"));
                        default
                    }
                    Some(n) => n,
                    None => default,
                },
                None => default,
            }
        };
        let max_active_runs = positive(self, "max_active_runs", 1);
        let max_active_tasks = positive(self, "max_active_tasks", DEFAULT_MAX_ACTIVE_TASKS);
        let catchup = top.get("catchup").and_then(|(_, v)| self.read::<bool>("catchup", v, None)).unwrap_or(false);
        let paused_at_creation = top
            .get("paused_at_creation")
            .and_then(|(_, v)| self.read::<bool>("paused_at_creation", v, None))
            .unwrap_or(false);
        let description = top.get("description").and_then(|(_, v)| self.read::<String>("description", v, None));
        let tags = top.get("tags").and_then(|(_, v)| self.read::<Vec<String>>("tags", v, None)).unwrap_or_default();
        let deadline =
            top.get("deadline").and_then(|(_, v)| self.read_with("deadline", v, None, |s| s.parse::<Deadline>()));
        let params = match top.get("params") {
            Some((_, v)) => match v.get_ref() {
                DeValue::Table(_) => match to_json(v) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
                _ => {
                    self.sink.error(Some(v.span().start), None, "key `params`: expected a table of values");
                    Map::new()
                }
            },
            None => Map::new(),
        };
        let alerts = match top.get("alerts") {
            Some((_, v)) => self.alerts(v),
            None => Vec::new(),
        };
        let default_alerts =
            top.get("default_alerts").and_then(|(_, v)| self.read::<bool>("default_alerts", v, None)).unwrap_or(true);
        let freshness = top.get("freshness").and_then(|(_, v)| self.freshness(v));
        let mut defaults = match top.get("defaults") {
            Some((_, v)) => self.defaults(v),
            None => Common::default(),
        };
        // A DAG-level `connection` is the default of every task that sets none.
        let connection = top.get("connection").and_then(|(_, v)| self.read::<String>("connection", v, None));
        if defaults.connection.is_none() {
            defaults.connection = connection.clone();
        }

        let mut drafts = Vec::new();
        match top.get("tasks") {
            Some((k, v)) => match v.get_ref() {
                DeValue::Table(t) if !t.is_empty() => {
                    for (tk, tv) in t.iter() {
                        drafts.push(self.task(tk, tv));
                    }
                }
                DeValue::Table(_) => self.sink.error(Some(k.span().start), None, "the DAG has no tasks"),
                _ => self.sink.error(Some(v.span().start), None, "key `tasks`: expected tables `[tasks.<id>]`"),
            },
            None => self.sink.error(None, None, "the DAG has no tasks: add a `[tasks.<id>]` table"),
        }

        let tasks = self.graph_and_templates(path, &id, &params, drafts, &defaults);
        let (Some(id), Some(tasks)) = (id.clone(), tasks) else {
            return (id, None);
        };
        let index = tasks.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
        let dag = Dag {
            id: id.clone(),
            file: path.to_path_buf(),
            description,
            schedule,
            timezone: tz,
            start_date,
            end_date,
            catchup,
            paused_at_creation,
            max_active_runs,
            max_active_tasks,
            deadline,
            tags,
            connection,
            params,
            tasks,
            alerts,
            default_alerts,
            freshness,
            source: String::new(),
            index,
        };
        (Some(id), Some(dag))
    }

    /// A duration that must not be zero.
    fn positive_duration(&mut self, key: &str, v: &Spanned<DeValue<'_>>, task: Option<&str>) -> Option<Duration> {
        let d: Duration = self.read(key, v, task)?;
        if d.as_std().is_zero() {
            self.sink.error(Some(v.span().start), task, format!("key {}: {MUST_BE_POSITIVE}", quoted(key)));
            return None;
        }
        Some(d)
    }

    /// `[[alerts]]`: the DAG's alert rules (the valid ones; every problem is reported).
    fn alerts(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<AlertRule> {
        let DeValue::Array(items) = v.get_ref() else {
            self.sink.error(
                Some(v.span().start),
                None,
                "key `alerts`: expected `[[alerts]]` tables, each with `on` and `to`",
            );
            return Vec::new();
        };
        items.iter().filter_map(|item| self.alert_rule(item)).collect()
    }

    fn alert_rule(&mut self, v: &Spanned<DeValue<'_>>) -> Option<AlertRule> {
        let at = v.span().start;
        let DeValue::Table(t) = v.get_ref() else {
            self.sink.error(Some(at), None, "key `alerts`: expected `[[alerts]]` tables, each with `on` and `to`");
            return None;
        };
        let line = self.sink.map.line(at);
        let mut on = None;
        let mut to = None;
        let mut digest = None;
        let mut ok = true;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "on" => on = self.list::<AlertOn>("on", v, "events", EMPTY_ON),
                "to" => to = self.list::<ChannelRef>("to", v, "channels", EMPTY_TO),
                "digest" => {
                    digest = self.positive_duration("digest", v, None);
                    ok &= digest.is_some();
                }
                _ => {
                    self.unknown_key(k, None, "an [[alerts]] rule", ALERT_RULE_KEYS);
                    ok = false;
                }
            }
        }
        for (key, what, missing) in [
            ("on", "events it fires on, e.g. on = [\"failure\"]", t.get("on").is_none()),
            ("to", "channels it sends to, e.g. to = [\"slack:data-oncall\"]", t.get("to").is_none()),
        ] {
            if missing {
                self.sink.error(Some(at), None, format!("an [[alerts]] rule needs `{key}`: the {what}"));
            }
        }
        let (on, to) = (on?, to?);
        if !ok {
            return None;
        }
        Some(AlertRule {
            on: on.into_iter().map(|(e, _)| e).collect(),
            to_lines: to.iter().map(|(_, at)| self.sink.map.line(*at)).collect(),
            to: to.into_iter().map(|(c, _)| c).collect(),
            digest,
            line,
        })
    }

    /// A non-empty list of names read with `FromStr` (`what` they are, for messages), each
    /// with its offset; a name given twice is a warning. `None` when anything is wrong.
    fn list<T: std::str::FromStr<Err = String> + Eq + std::hash::Hash + Clone + std::fmt::Display>(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        empty: &str,
    ) -> Option<Vec<(T, usize)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.sink.error(Some(v.span().start), None, format!("key {}: expected a list of {what}", quoted(key)));
            return None;
        };
        if items.is_empty() {
            self.sink.error(Some(v.span().start), None, format!("key {} {empty}", quoted(key)));
            return None;
        }
        let mut out: Vec<(T, usize)> = Vec::new();
        let mut seen: HashSet<T> = HashSet::new();
        let mut ok = true;
        for item in items.iter() {
            let at = item.span().start;
            match self.read_with(key, item, None, str::parse::<T>) {
                Some(t) if !seen.insert(t.clone()) => {
                    self.sink.warning(
                        Some(at),
                        None,
                        format!("{} names {} twice", quoted(key), quoted(&t.to_string())),
                    );
                }
                Some(t) => out.push((t, at)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `[freshness]`.
    fn freshness(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Freshness> {
        let DeValue::Table(t) = v.get_ref() else {
            self.sink.error(
                Some(v.span().start),
                None,
                "key `freshness`: expected a table `[freshness]` with `max_age`",
            );
            return None;
        };
        let mut max_age = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "max_age" => max_age = self.positive_duration("max_age", v, None),
                _ => self.unknown_key(k, None, "[freshness]", FRESHNESS_KEYS),
            }
        }
        if t.get("max_age").is_none() {
            self.sink.error(
                Some(v.span().start),
                None,
                "[freshness] needs `max_age`: how long the DAG may go without a successful run, e.g. max_age = \"26h\"",
            );
        }
        Some(Freshness { max_age: max_age? })
    }

    fn defaults(&mut self, v: &Spanned<DeValue<'_>>) -> Common {
        let mut common = Common::default();
        let DeValue::Table(t) = v.get_ref() else {
            self.sink.error(Some(v.span().start), None, "key `defaults`: expected a table");
            return common;
        };
        for (k, v) in t.iter() {
            if !self.common_key(&mut common, k.get_ref(), v, None) {
                if TASK_KEYS.contains(&k.get_ref().as_ref()) {
                    self.sink.error(
                        Some(k.span().start),
                        None,
                        format!("key {} cannot be set in [defaults]; set it on each task", quoted(k.get_ref())),
                    );
                } else {
                    self.unknown_key(k, None, "[defaults]", DEFAULT_KEYS);
                }
            }
        }
        common
    }

    /// Reads a key shared by tasks and `[defaults]`; false when `key` is not one of them.
    fn common_key(&mut self, c: &mut Common, key: &str, v: &Spanned<DeValue<'_>>, task: Option<&str>) -> bool {
        match key {
            "retries" => {
                c.retries = self.read(key, v, task).filter(|n| {
                    let ok = *n <= MAX_RETRIES;
                    if !ok {
                        self.sink.error(
                            Some(v.span().start),
                            task,
                            format!("key `retries`: {n} is over the limit of {MAX_RETRIES}"),
                        );
                    }
                    ok
                })
            }
            "retry_delay" => c.retry_delay = self.read(key, v, task),
            "retry_backoff" => c.retry_backoff = self.read_with(key, v, task, str::parse),
            "max_retry_delay" => c.max_retry_delay = self.read(key, v, task),
            "timeout" => c.timeout = self.read(key, v, task),
            "pool" => c.pool = self.read(key, v, task),
            "priority" => c.priority = self.read(key, v, task),
            "depends_on_past" => c.depends_on_past = self.read(key, v, task),
            "connection" => c.connection = self.read(key, v, task),
            "max_duration" => c.max_duration = self.positive_duration(key, v, task),
            _ => return false,
        }
        true
    }

    fn task<'a, 'i>(&mut self, key: &'a Spanned<toml::de::DeString<'i>>, v: &'a Spanned<DeValue<'i>>) -> Draft<'a, 'i> {
        let id = key.get_ref().to_string();
        let at = key.span().start;
        let mut draft = Draft {
            id: id.clone(),
            at,
            operator: None,
            keys: Map::new(),
            depends_on: Vec::new(),
            trigger_rule: None,
            common: Common::default(),
            doc: None,
            strings: Vec::new(),
            table: None,
        };
        let task = Some(id.as_str());
        if let Err(msg) = check_id(&id) {
            self.sink.error(Some(at), task, format!("invalid task id: {msg}"));
        }
        let DeValue::Table(table) = v.get_ref() else {
            self.sink.error(
                Some(v.span().start),
                task,
                format!("expected a table {}", quoted(&format!("[tasks.{id}]"))),
            );
            return draft;
        };
        draft.table = Some(table);

        // The operator decides which other keys exist.
        let mut kind = None;
        match table.get_key_value("operator") {
            None => self.sink.error(
                Some(at),
                task,
                format!("missing key `operator` (one of {})", OperatorKind::ALL.map(|k| k.name()).join(", ")),
            ),
            Some((_, ov)) => {
                if let Some(name) = self.read::<String>("operator", ov, task) {
                    kind = OperatorKind::from_name(&name);
                    if kind.is_none() {
                        self.sink.error(
                            Some(ov.span().start),
                            task,
                            format!(
                                "unknown operator {}{}; expected one of {}",
                                quoted(&name),
                                did_you_mean(&name, OperatorKind::ALL.iter().map(|k| k.name())),
                                OperatorKind::ALL.map(|k| k.name()).join(", ")
                            ),
                        );
                    }
                }
            }
        }
        let sensor_kind = if kind == Some(OperatorKind::Sensor) { self.sensor_kind(&id, at, table) } else { None };
        let op_fields: Vec<&'static str> = match kind {
            Some(OperatorKind::Sensor) => {
                let mut f = SENSOR_COMMON_KEYS.to_vec();
                if let Some(sk) = sensor_kind.as_deref() {
                    f.extend(sensor_fields(sk));
                }
                f
            }
            Some(k) => operator_fields(k).to_vec(),
            None => Vec::new(),
        };

        let mut op_table = DeTable::new();
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            match name {
                "operator" => {}
                "depends_on" => {
                    if let DeValue::Array(items) = v.get_ref() {
                        for item in items.iter() {
                            if let Some(up) = self.read::<String>("depends_on", item, task) {
                                draft.depends_on.push((up, item.span().start));
                            }
                        }
                    } else if let Some(up) = self.read::<String>("depends_on", v, task) {
                        // A single upstream may be written as a plain string.
                        draft.depends_on.push((up, v.span().start));
                    }
                }
                "trigger_rule" => draft.trigger_rule = self.read_with(name, v, task, str::parse),
                "doc" => draft.doc = self.read(name, v, task),
                _ if self.common_key(&mut draft.common, name, v, task) => {}
                _ if op_fields.contains(&name) => {
                    op_table.insert(k.clone(), v.clone());
                    collect_strings(name, v, &mut draft.strings);
                }
                // Keys of an unknown operator cannot be judged.
                _ if kind.is_none() => {}
                _ if kind == Some(OperatorKind::Sensor) && sensor_kind.is_none() => {}
                _ => {
                    let mut known: Vec<&str> = TASK_KEYS.to_vec();
                    known.extend(op_fields.iter().copied());
                    let place = match (kind, sensor_kind.as_deref()) {
                        (Some(OperatorKind::Sensor), Some(sk)) => format!("a `sensor` of kind `{sk}`"),
                        (Some(k), _) => format!("a `{k}` task"),
                        _ => "a task".into(),
                    };
                    self.unknown_key(k, task, &place, &known);
                }
            }
        }

        if let Some(kind) = kind {
            draft.keys = match to_json(&Spanned::new(v.span(), DeValue::Table(op_table.clone()))) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let table_value = Spanned::new(v.span(), DeValue::Table(op_table));
            match deserialize_operator(kind, sensor_kind.as_deref(), table_value) {
                Ok(Some(op)) => {
                    for (key, problem) in op.check() {
                        let at = key.and_then(|key| table.get_key_value(key)).map_or(at, |(k, _)| k.span().start);
                        self.sink.error(Some(at), task, problem);
                    }
                    draft.operator = Some(op);
                }
                Ok(None) => {}
                Err(e) => {
                    let at = e.span().map_or(at, |s| s.start);
                    // Name the key whose value holds the error, when there is one.
                    let key = table
                        .iter()
                        .find(|(k, v)| k.get_ref() != "operator" && v.span().contains(&at))
                        .map(|(k, _)| format!("key {}: ", quoted(k.get_ref())))
                        .unwrap_or_default();
                    self.sink.error(Some(at), task, format!("{key}{}", serde_message(&e)));
                }
            }
        }
        draft
    }

    fn sensor_kind(&mut self, id: &str, at: usize, table: &DeTable<'_>) -> Option<String> {
        let Some(v) = table.get("kind") else {
            self.sink.error(
                Some(at),
                Some(id),
                format!("missing key `kind` for the sensor (one of {})", SensorKind::NAMES.join(", ")),
            );
            return None;
        };
        let name: String = self.read("kind", v, Some(id))?;
        if SensorKind::NAMES.contains(&name.as_str()) {
            Some(name)
        } else {
            self.sink.error(
                Some(v.span().start),
                Some(id),
                format!(
                    "unknown sensor kind {}{}; expected one of {}",
                    quoted(&name),
                    did_you_mean(&name, SensorKind::NAMES),
                    SensorKind::NAMES.join(", ")
                ),
            );
            None
        }
    }

    /// Resolves `depends_on`, orders the tasks, finds cycles and checks templates. Returns the
    /// tasks when the graph is sound.
    fn graph_and_templates(
        &mut self,
        path: &Path,
        dag_id: &Option<String>,
        params: &Map<String, Value>,
        drafts: Vec<Draft<'_, '_>>,
        defaults: &Common,
    ) -> Option<Vec<Task>> {
        let index: HashMap<&str, usize> = drafts.iter().enumerate().map(|(i, d)| (d.id.as_str(), i)).collect();
        let mut edges = Vec::new();
        for (i, d) in drafts.iter().enumerate() {
            let mut seen = HashSet::new();
            for (up, at) in &d.depends_on {
                if !seen.insert(up) {
                    self.sink.warning(Some(*at), Some(&d.id), format!("`depends_on` names {} twice", quoted(up)));
                    continue;
                }
                match index.get(up.as_str()) {
                    Some(&j) => edges.push((j, i)),
                    None => {
                        let hint = self.did_you_mean_among(up, drafts.iter().map(|d| d.id.as_str()));
                        self.sink.error(
                            Some(*at),
                            Some(&d.id),
                            format!("`depends_on` names {}, which is not a task of this DAG{hint}", quoted(up)),
                        );
                    }
                }
            }
        }
        let graph = TaskGraph::new(drafts.len(), edges.iter().copied());
        let order = match graph.topological_order() {
            Ok(order) => Some(order),
            Err(cycles) => {
                for cycle in cycles {
                    let names: Vec<&str> = cycle.iter().map(|i| drafts[*i].id.as_str()).collect();
                    let first = &drafts[cycle[0]];
                    self.sink.error(Some(first.at), None, format!("dependency cycle: {}", names.join(" -> ")));
                }
                None
            }
        };

        // Templates: every name must be known, every task output must come from upstream. The
        // graph is searched only for the outputs templates read, after every template is read.
        let mut reads_outputs = vec![false; drafts.len()];
        let mut upstream_reads = Vec::new();
        for (i, d) in drafts.iter().enumerate() {
            let mut sql = None;
            let query_file = match &d.operator {
                Some(Operator::Athena(a)) => a.query_file.as_ref(),
                _ => None,
            };
            if let Some(file) = query_file {
                let at = d.table.and_then(|t| t.get("query_file")).map_or(d.at, |v| v.span().start);
                let full = relative_to(path, file);
                match read_text_file(&full, MAX_QUERY_FILE_BYTES, "a query file") {
                    Ok(text) => sql = Some((format!("query_file ({file})"), text, at)),
                    Err(e) => self.sink.error(
                        Some(at),
                        Some(&d.id),
                        format!("key `query_file`: cannot read {}: {e}", full.display()),
                    ),
                }
            }
            for (key, text, at) in d.strings.iter().chain(&sql) {
                reads_outputs[i] |=
                    self.check_template(i, key, text, *at, params, &drafts, &index, &mut upstream_reads);
            }
        }
        self.check_upstream_reads(&graph, order.as_deref(), &drafts, upstream_reads);
        self.warn_unterminated_clusters(&drafts);

        let order = order?;
        if self.sink.has_errors() || dag_id.is_none() {
            return None;
        }
        let mut downstream: Vec<Vec<String>> = vec![Vec::new(); drafts.len()];
        for (up, down) in &edges {
            downstream[*up].push(drafts[*down].id.clone());
        }
        let mut tasks: Vec<Option<Task>> = drafts
            .into_iter()
            .zip(downstream)
            .zip(reads_outputs)
            .map(|((d, downstream), reads_outputs)| {
                let operator = d.operator?;
                let c = d.common.or(defaults);
                let line = self.sink.map.line(d.at);
                Some(Task {
                    trigger_rule: d.trigger_rule.unwrap_or_else(|| operator.kind().default_trigger_rule()),
                    id: d.id,
                    operator,
                    keys: d.keys,
                    reads_outputs,
                    depends_on: d.depends_on.into_iter().map(|(u, _)| u).collect(),
                    downstream,
                    retry: RetryPolicy {
                        retries: c.retries.unwrap_or(0),
                        delay: c.retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
                        backoff: c.retry_backoff.unwrap_or_default(),
                        max_delay: c.max_retry_delay,
                    },
                    timeout: c.timeout,
                    pool: c.pool,
                    priority: c.priority.unwrap_or(DEFAULT_PRIORITY),
                    depends_on_past: c.depends_on_past.unwrap_or(false),
                    connection: c.connection,
                    max_duration: c.max_duration,
                    doc: d.doc,
                    line,
                })
            })
            .collect();
        let ordered: Option<Vec<Task>> = order.into_iter().map(|i| tasks[i].take()).collect();
        ordered
    }

    /// Reports every problem of one template of task `i`, except whether the outputs it reads
    /// come from upstream: those reads go to `upstream_reads`. True when it reads an output.
    #[allow(clippy::too_many_arguments)]
    fn check_template(
        &mut self,
        i: usize,
        key: &str,
        text: &str,
        at: usize,
        params: &Map<String, Value>,
        drafts: &[Draft<'_, '_>],
        index: &HashMap<&str, usize>,
        upstream_reads: &mut Vec<UpstreamRead>,
    ) -> bool {
        let task = drafts[i].id.as_str();
        let t = Some(task);
        let names = match template::referenced_names(&self.env, text) {
            Ok(n) => n,
            Err(e) => {
                let at_line = self.sink.map.line(at) + e.line.unwrap_or(1) - 1;
                let message = format!("key {}: template does not parse: {}", quoted(key), e.message);
                let mut d = self.sink.make(crate::Severity::Error, Some(at), t, message);
                if !key.starts_with("query_file") {
                    d.line = Some(at_line);
                }
                self.sink.record(d);
                return false;
            }
        };
        let mut reads_outputs = false;
        for name in names {
            let reference = Reference::classify(&name);
            reads_outputs |= matches!(reference, Reference::TaskOutput { .. });
            let problem = match reference {
                Reference::Run(_) | Reference::Function(_) | Reference::Params(None) => None,
                Reference::Params(Some(p)) => (!params.contains_key(p)).then(|| {
                    let hint = self.did_you_mean_among(p, params.keys().map(String::as_str));
                    format!("reads `params.{p}`, which [params] does not declare{hint}")
                }),
                Reference::TaskOutput { task: "", .. } => Some(
                    "reads `tasks` without naming an output; write `tasks.<task id>.<field>`".to_string(),
                ),
                Reference::TaskOutput { task: up, field } => match index.get(up) {
                    None => {
                        let hint = self.did_you_mean_among(up, drafts.iter().map(|d| d.id.as_str()));
                        Some(format!("reads `tasks.{up}`, but there is no task `{up}`{hint}"))
                    }
                    Some(&j) => {
                        upstream_reads.push(UpstreamRead {
                            task: i,
                            up: j,
                            field: field.map(str::to_string),
                            key: key.to_string(),
                            at,
                            seq: self.sink.out.len(),
                        });
                        None
                    }
                },
                Reference::Unknown(n) => Some(format!(
                    "unknown template variable `{n}`{}; templates can read {}, `params.<name>` and `tasks.<id>.<field>`",
                    did_you_mean(n, RUN_VARIABLES.iter().copied().chain(["params", "tasks"])),
                    RUN_VARIABLES.map(|v| format!("`{v}`")).join(", ")
                )),
            };
            if let Some(problem) = problem {
                self.sink.error(Some(at), t, format!("key {}: {problem}", quoted(key)));
            }
        }
        reads_outputs
    }

    /// Checks the reads of upstream outputs that [`Parser::check_template`] set aside: the task
    /// read must be upstream of the reader, and publish the field read. One search per task
    /// read, downstream from it and no further than the last task reading it (in topological
    /// order), so the common shapes (reading a direct upstream; every task reading the cluster
    /// at the top) cost the size of the graph, not its square.
    fn check_upstream_reads(
        &mut self,
        graph: &TaskGraph,
        order: Option<&[usize]>,
        drafts: &[Draft<'_, '_>],
        reads: Vec<UpstreamRead>,
    ) {
        if reads.is_empty() {
            return;
        }
        let pos: Option<Vec<usize>> = order.map(|order| {
            let mut pos = vec![0; order.len()];
            for (p, &t) in order.iter().enumerate() {
                pos[t] = p;
            }
            pos
        });
        let mut limits: HashMap<usize, usize> = HashMap::new();
        for r in &reads {
            let p = pos.as_ref().map_or(usize::MAX, |pos| pos[r.task]);
            limits.entry(r.up).and_modify(|l| *l = (*l).max(p)).or_insert(p);
        }
        let reach: HashMap<usize, HashSet<usize>> =
            limits.into_iter().map(|(up, limit)| (up, graph.descendants_within(up, pos.as_deref(), limit))).collect();

        let mut late = Vec::new();
        for r in reads {
            let (task, up) = (drafts[r.task].id.as_str(), drafts[r.up].id.as_str());
            let upstream = r.task != r.up && reach[&r.up].contains(&r.task);
            let kind = drafts[r.up].operator.as_ref().map(Operator::kind);
            let problem = match (upstream, r.field.as_deref(), kind) {
                (false, _, _) => Some(format!(
                    "reads the output of `{up}`, which is not upstream of {}: add `{up}` to `depends_on` (directly or through another task)",
                    quoted(task)
                )),
                (true, None, _) => Some(format!("reads `tasks.{up}` without a field; write `tasks.{up}.<field>`")),
                (true, Some(f), Some(kind)) if !kind.has_output(f) => Some(if kind.outputs().is_empty() {
                    format!("reads `tasks.{up}.{f}`, but a `{kind}` task has no outputs")
                } else {
                    format!(
                        "reads `tasks.{up}.{f}`, but a `{kind}` task outputs only {}{}",
                        kind.outputs().iter().map(|(o, _)| format!("`{o}`")).collect::<Vec<_>>().join(", "),
                        did_you_mean(f, kind.outputs().iter().map(|(o, _)| *o))
                    )
                }),
                _ => None,
            };
            if let Some(problem) = problem {
                let d = self.sink.make(
                    crate::Severity::Error,
                    Some(r.at),
                    Some(task),
                    format!("key {}: {problem}", quoted(&r.key)),
                );
                late.push((r.seq, d));
            }
        }
        // Into their places, as if they had been reported when their template was read.
        let earlier = std::mem::take(&mut self.sink.out);
        let mut late = late.into_iter().peekable();
        for (k, d) in earlier.into_iter().enumerate() {
            while let Some((_, l)) = late.next_if(|(seq, _)| *seq <= k) {
                self.sink.out.push(l);
            }
            self.sink.out.push(d);
        }
        self.sink.out.extend(late.map(|(_, l)| l));
        self.sink.truncate();
    }

    /// Cost safety: a cluster must have a `terminate` that runs whatever fails upstream.
    fn warn_unterminated_clusters(&mut self, drafts: &[Draft<'_, '_>]) {
        if !drafts.iter().any(|d| matches!(d.operator, Some(Operator::CreateEmrCluster(_)))) {
            return;
        }
        // Every name read by a `terminate` that runs whatever happened upstream, read once.
        let mut terminated: HashSet<String> = HashSet::new();
        for t in drafts {
            if let Some(Operator::Terminate(term)) = &t.operator {
                let rule = t.trigger_rule.unwrap_or(TriggerRule::AllDone);
                if matches!(rule, TriggerRule::AllDone | TriggerRule::Always) {
                    terminated.extend(template::referenced_names(&self.env, &term.cluster_id).unwrap_or_default());
                }
            }
        }
        for d in drafts {
            if !matches!(d.operator, Some(Operator::CreateEmrCluster(_))) {
                continue;
            }
            let wanted = format!("tasks.{}.cluster_id", d.id);
            if !terminated.contains(&wanted) {
                self.sink.warning(
                    Some(d.at),
                    Some(&d.id),
                    format!(
                        "creates an EMR cluster, but no `terminate` task with trigger_rule `all_done` or `always` reads {}: a failure upstream would leave the cluster running",
                        quoted(&format!("{{{{ {wanted} }}}}"))
                    ),
                );
            }
        }
    }
}

/// A path from a DAG file's key, relative to the DAG file's folder.
pub fn relative_to(dag_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dag_file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("{} holds {c:?}; use letters, digits, `_` and `-`", quoted(id)));
    }
    Ok(())
}

/// A message of several lines as one: its lines, trimmed, joined by `; `.
fn one_line_message(m: &str) -> String {
    m.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn serde_message(e: &toml::de::Error) -> String {
    let m = one_line_message(e.message());
    m.replacen("missing field", "missing key", 1).replacen("unknown field", "unknown key", 1)
}

fn collect_strings(path: &str, v: &Spanned<DeValue<'_>>, out: &mut Vec<(String, String, usize)>) {
    match v.get_ref() {
        DeValue::String(s) => out.push((path.to_string(), s.to_string(), v.span().start)),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(&format!("{path}[{i}]"), item, out);
            }
        }
        DeValue::Table(t) => {
            for (k, item) in t.iter() {
                collect_strings(&format!("{path}.{}", k.get_ref()), item, out);
            }
        }
        _ => {}
    }
}

/// A TOML value as JSON; dates and times become their TOML text.
fn to_json(v: &Spanned<DeValue<'_>>) -> Value {
    match v.get_ref() {
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        DeValue::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.get_ref().to_string(), to_json(v))).collect()),
        _ => Value::deserialize(ValueDeserializer::from(v.clone())).unwrap_or(Value::Null),
    }
}

use serde::Deserialize as _;

fn de<T: DeserializeOwned>(v: Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v))
}

fn deserialize_operator(
    kind: OperatorKind,
    sensor_kind: Option<&str>,
    v: Spanned<DeValue<'_>>,
) -> Result<Option<Operator>, toml::de::Error> {
    Ok(Some(match kind {
        OperatorKind::CreateEmrCluster => Operator::CreateEmrCluster(de(v)?),
        OperatorKind::AddSteps => Operator::AddSteps(de(v)?),
        OperatorKind::Crawler => Operator::Crawler(de(v)?),
        OperatorKind::Athena => Operator::Athena(de(v)?),
        OperatorKind::Terminate => Operator::Terminate(de(v)?),
        OperatorKind::EmrServerless => Operator::EmrServerless(de(v)?),
        OperatorKind::GlueJob => Operator::GlueJob(de(v)?),
        OperatorKind::Lambda => Operator::Lambda(de(v)?),
        OperatorKind::Command => Operator::Command(de(v)?),
        OperatorKind::Wait => Operator::Wait(de(v)?),
        OperatorKind::Noop => Operator::Noop(de(v)?),
        OperatorKind::Sensor => {
            let Some(sk) = sensor_kind else { return Ok(None) };
            let span = v.span();
            let DeValue::Table(t) = v.into_inner() else { return Ok(None) };
            let mut own = DeTable::new();
            let mut poke_interval = None;
            let mut soft_fail = None;
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "kind" => {}
                    "poke_interval" => poke_interval = Some(de::<Duration>(v)?),
                    "soft_fail" => soft_fail = Some(de::<bool>(v)?),
                    _ => {
                        own.insert(k, v);
                    }
                }
            }
            let own = Spanned::new(span, DeValue::Table(own));
            let kind = match sk {
                "s3_key" => SensorKind::S3Key(de(own)?),
                "emr_step" => SensorKind::EmrStep(de(own)?),
                "emr_cluster" => SensorKind::EmrCluster(de(own)?),
                "glue_crawler" => SensorKind::GlueCrawler(de(own)?),
                "athena_query" => SensorKind::AthenaQuery(de(own)?),
                "emr_serverless_job" => SensorKind::EmrServerlessJob(de(own)?),
                "time" => SensorKind::Time(de(own)?),
                _ => return Ok(None),
            };
            Operator::Sensor(Sensor {
                kind,
                poke_interval: poke_interval.unwrap_or(Duration::from_secs(60)),
                soft_fail: soft_fail.unwrap_or(false),
            })
        }
    }))
}

/// The keys of an operator (sensors: see [`sensor_fields`]).
pub fn operator_fields(kind: OperatorKind) -> &'static [&'static str] {
    match kind {
        OperatorKind::CreateEmrCluster => struct_fields::<CreateEmrCluster>(),
        OperatorKind::AddSteps => struct_fields::<AddSteps>(),
        OperatorKind::Sensor => SENSOR_COMMON_KEYS,
        OperatorKind::Crawler => struct_fields::<Crawler>(),
        OperatorKind::Athena => struct_fields::<Athena>(),
        OperatorKind::Terminate => struct_fields::<Terminate>(),
        OperatorKind::EmrServerless => struct_fields::<EmrServerless>(),
        OperatorKind::GlueJob => struct_fields::<GlueJob>(),
        OperatorKind::Lambda => struct_fields::<Lambda>(),
        OperatorKind::Command => struct_fields::<Command>(),
        OperatorKind::Wait => struct_fields::<Wait>(),
        OperatorKind::Noop => &[],
    }
}

/// The keys of one sensor kind, besides `kind`, `poke_interval` and `soft_fail`.
pub fn sensor_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "s3_key" => struct_fields::<S3KeySensor>(),
        "emr_step" => struct_fields::<EmrStepSensor>(),
        "emr_cluster" => struct_fields::<EmrClusterSensor>(),
        "glue_crawler" => struct_fields::<GlueCrawlerSensor>(),
        "athena_query" => struct_fields::<AthenaQuerySensor>(),
        "emr_serverless_job" => struct_fields::<EmrServerlessJobSensor>(),
        "time" => struct_fields::<TimeSensor>(),
        _ => &[],
    }
}

/// The field names serde derives for a struct, read by asking it to deserialize itself from a
/// deserializer that only records what it is asked for. Keeps the struct the one source of
/// truth for its keys.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("field recorder"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field recorder"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::{measure, GRAPH_STEPS, TEMPLATE_PARSES};

    /// A chain `t0 -> t1 -> ... -> t(n-1)`; `extra(i)` adds keys to task `i`.
    fn chain(n: usize, extra: impl Fn(usize) -> String) -> String {
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!("[tasks.t{i}]\noperator = \"command\"\ncommand = \"true\"\n{}", extra(i)));
            if i > 0 {
                src.push_str(&format!("depends_on = [\"t{}\"]\n", i - 1));
            }
        }
        src
    }

    fn valid(src: &str) -> Dag {
        let outcome = parse_dag(Path::new("chain.toml"), src);
        outcome.dag.unwrap_or_else(|| panic!("{:?}", outcome.diagnostics.first()))
    }

    #[test]
    fn validating_a_long_chain_does_not_search_every_tasks_ancestors() {
        let n = 20_000;
        let src = chain(n, |_| String::new());
        let steps = measure(&GRAPH_STEPS, || {
            valid(&src);
        });
        assert!(steps <= 2 * n as u64, "{steps} graph steps for {n} tasks");
    }

    #[test]
    fn tasks_that_read_outputs_up_a_long_chain_are_checked_in_linear_time() {
        let n = 20_000;
        // Every task reads the first task's output and its direct upstream's, the way EMR steps
        // read `tasks.create_cluster.cluster_id`.
        let src = chain(n, |i| match i {
            0 => String::new(),
            i => format!("env = {{ A = \"{{{{ tasks.t0.output }}}}\", B = \"{{{{ tasks.t{}.output }}}}\" }}\n", i - 1),
        });
        let mut dag = None;
        let steps = measure(&GRAPH_STEPS, || dag = Some(valid(&src)));
        assert!(steps <= 4 * n as u64, "{steps} graph steps for {n} tasks");
        assert!(dag.unwrap().tasks.iter().skip(1).all(|t| t.reads_outputs));
        // And a task reading a task that is not upstream is still caught.
        let src = format!("{src}[tasks.side]\noperator = \"command\"\ncommand = \"{{{{ tasks.t5.output }}}}\"\n");
        let outcome = parse_dag(Path::new("chain.toml"), &src);
        let msgs: Vec<&str> = outcome.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].contains("which is not upstream of `side`"), "{msgs:?}");
    }

    #[test]
    fn checking_that_clusters_are_terminated_parses_each_template_once() {
        let n = 2_000;
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!(
                "[tasks.c{i}]\noperator = \"create_emr_cluster\"\nname = \"c\"\nrelease_label = \"emr-7.2.0\"\napplications = [\"Spark\"]\ninstance_type = \"m5.xlarge\"\ninstance_count = 1\n\
                 [tasks.t{i}]\noperator = \"terminate\"\ndepends_on = [\"c{i}\"]\ncluster_id = \"{{{{ tasks.c{i}.cluster_id }}}}\"\n"
            ));
        }
        let mut outcome = None;
        let parses = measure(&TEMPLATE_PARSES, || outcome = Some(parse_dag(Path::new("clusters.toml"), &src)));
        let outcome = outcome.unwrap();
        assert!(outcome.dag.is_some() && outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics.first());
        assert!(parses <= 2 * n as u64, "{parses} template parses for {n} terminate tasks");
    }

    #[test]
    fn introspects_operator_fields() {
        assert!(operator_fields(OperatorKind::Command).contains(&"command"));
        assert!(operator_fields(OperatorKind::CreateEmrCluster).contains(&"release_label"));
        assert_eq!(sensor_fields("s3_key"), &["bucket", "key"]);
    }
}
