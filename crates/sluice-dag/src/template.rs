//! Jinja templates in task keys (minijinja), strict about undefined names.
//!
//! A template reads the run's dates (`ds`, `ts`, ...), `params`, and `tasks.<id>.<field>`:
//! the outputs of upstream tasks. Validation checks every name a template reads without
//! rendering it; rendering happens at the start of each try, with the run's values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::diagnostic::{one_line, quoted};
use crate::schedule::{rfc3339, RunDates};

/// The variables every template may read besides `params.*` and `tasks.*`.
pub const RUN_VARIABLES: [&str; 10] = [
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "dag_id",
    "task_id",
];

/// Functions available to templates: `ds_add(ds, days)` and `ds_format(ds, from, to)`, as in
/// Airflow's macros.
pub const FUNCTIONS: [&str; 2] = ["ds_add", "ds_format"];

/// The minijinja environment every template is parsed and rendered with.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(SyntaxConfig::builder().keep_trailing_newline(true).build().expect("valid syntax"));
    env.add_function("ds_add", |ds: String, days: i64| -> Result<String, minijinja::Error> {
        let d = parse_ds(&ds)?;
        // The result stays a `YYYY-MM-DD` date: years 1 to 9999.
        let moved = chrono::Duration::try_days(days)
            .and_then(|days| d.checked_add_signed(days))
            .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
            .ok_or_else(|| {
                invalid(format!("ds_add: {ds:?} moved by {days} days is not a date in the years 1 to 9999"))
            })?;
        Ok(moved.format("%Y-%m-%d").to_string())
    });
    env.add_function("ds_format", |ds: String, from: String, to: String| -> Result<String, minijinja::Error> {
        let d = NaiveDate::parse_from_str(&ds, &from)
            .map_err(|e| invalid(format!("ds_format: {ds:?} is not {from:?}: {e}")))?;
        // An unknown `%` specifier makes the formatting fail, which `to_string` would panic on.
        let mut out = String::new();
        write!(out, "{}", d.format(&to)).map_err(|_| invalid(format!("ds_format: {to:?} is not a valid format")))?;
        Ok(out)
    });
    env
}

fn invalid(message: String) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message)
}

fn parse_ds(ds: &str) -> Result<NaiveDate, minijinja::Error> {
    NaiveDate::parse_from_str(ds, "%Y-%m-%d").map_err(|_| invalid(format!("{ds:?} is not a YYYY-MM-DD date")))
}

/// A name a template reads, as minijinja reports it (`ds`, `params.bucket`,
/// `tasks.create_cluster.cluster_id`), with what it means.
#[derive(Debug, PartialEq, Eq)]
pub enum Reference<'a> {
    Run(&'a str),
    Function(&'a str),
    Params(Option<&'a str>),
    TaskOutput { task: &'a str, field: Option<&'a str> },
    Unknown(&'a str),
}

impl<'a> Reference<'a> {
    pub fn classify(name: &'a str) -> Reference<'a> {
        let mut parts = name.splitn(3, '.');
        let head = parts.next().unwrap_or_default();
        match head {
            "params" => Reference::Params(parts.next()),
            "tasks" => match parts.next() {
                // `tasks.fn.payload.rows` reads the output `payload` (a JSON value) further down.
                Some(task) => Reference::TaskOutput { task, field: parts.next().and_then(|f| f.split('.').next()) },
                None => Reference::TaskOutput { task: "", field: None },
            },
            h if RUN_VARIABLES.contains(&h) => Reference::Run(h),
            h if FUNCTIONS.contains(&h) => Reference::Function(h),
            h => Reference::Unknown(h),
        }
    }
}

/// A template that did not parse: the message and the line inside the template.
#[derive(Debug)]
pub struct TemplateSyntaxError {
    pub message: String,
    pub line: Option<usize>,
}

/// Parses `src` and returns every variable name it reads (dotted paths, sorted).
pub fn referenced_names(env: &Environment<'static>, src: &str) -> Result<Vec<String>, TemplateSyntaxError> {
    if !src.contains("{{") && !src.contains("{%") && !src.contains("{#") {
        return Ok(Vec::new());
    }
    #[cfg(test)]
    crate::work::count(&crate::work::TEMPLATE_PARSES);
    let tmpl = env.template_from_str(src).map_err(|e| TemplateSyntaxError {
        message: e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
        line: e.line(),
    })?;
    let mut names: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    names.sort();
    Ok(names)
}

/// The values a task's templates see.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateContext {
    pub ds: String,
    pub ds_nodash: String,
    pub ts: String,
    pub ts_nodash: String,
    pub logical_date: String,
    pub data_interval_start: String,
    pub data_interval_end: String,
    pub run_id: String,
    pub dag_id: String,
    pub task_id: String,
    /// The DAG's `[params]` with the run's `conf` merged over them.
    pub params: Map<String, Value>,
    /// Outputs of upstream tasks: task id -> field -> value.
    pub tasks: BTreeMap<String, Map<String, Value>>,
}

impl TemplateContext {
    pub fn new(dag_id: &str, task_id: &str, run_id: &str, dates: &RunDates, params: Map<String, Value>) -> Self {
        TemplateContext {
            ds: dates.ds(),
            ds_nodash: dates.ds_nodash(),
            ts: dates.ts(),
            ts_nodash: dates.ts_nodash(),
            logical_date: rfc3339(dates.logical_date),
            data_interval_start: rfc3339(dates.data_interval_start),
            data_interval_end: rfc3339(dates.data_interval_end),
            run_id: run_id.to_string(),
            dag_id: dag_id.to_string(),
            task_id: task_id.to_string(),
            params,
            tasks: BTreeMap::new(),
        }
    }
}

/// `params` with `conf` merged over them (top-level keys of `conf` win).
pub fn merge_params(params: &Map<String, Value>, conf: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut merged = params.clone();
    if let Some(conf) = conf {
        for (k, v) in conf {
            merged.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// Why a value could not be rendered. Either way the message is one line naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// A template read a name that has no value (minijinja's `UndefinedError`, undefined being
    /// strict). Validation admits only names that can exist, so at run time this is an output
    /// of an upstream task that never produced it (it failed or was skipped).
    #[error("{0}")]
    Undefined(String),
    /// Anything else: a filter or macro that failed, an unreadable `query_file`, rendered keys
    /// that do not fit the operator.
    #[error("{0}")]
    Other(String),
}

impl RenderError {
    /// The same error with its message rewritten (the kind stays).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> RenderError {
        match self {
            RenderError::Undefined(m) => RenderError::Undefined(f(m)),
            RenderError::Other(m) => RenderError::Other(f(m)),
        }
    }
}

/// Renders every string inside `value` (recursively through arrays and tables).
pub fn render_value(env: &Environment<'static>, value: &Value, ctx: &TemplateContext) -> Result<Value, RenderError> {
    let ctx = minijinja::Value::from(Serde(ctx));
    render_with(env, value, &ctx, &mut Vec::new())
}

fn render_with(
    env: &Environment<'static>,
    value: &Value,
    ctx: &minijinja::Value,
    path: &mut Vec<String>,
) -> Result<Value, RenderError> {
    Ok(match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") || s.contains("{#") => {
            let out = env.render_str(s, ctx).map_err(|e| {
                let detail = e.detail().map_or_else(|| e.kind().to_string(), str::to_string);
                let mut msg = format!("key {}: {}", quoted(&path.join(".")), one_line(&detail));
                if let Some(snippet) = e.template_source().zip(e.range()).and_then(|(src, r)| src.get(r)) {
                    msg.push_str(&format!(" (in {})", quoted(snippet)));
                }
                match e.kind() {
                    minijinja::ErrorKind::UndefinedError => RenderError::Undefined(msg),
                    _ => RenderError::Other(msg),
                }
            })?;
            Value::String(out)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                out.push(render_with(env, item, ctx, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                path.push(k.clone());
                out.insert(k.clone(), render_with(env, v, ctx, path)?);
                path.pop();
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(Reference::classify("ds"), Reference::Run("ds"));
        assert_eq!(Reference::classify("params.bucket"), Reference::Params(Some("bucket")));
        assert_eq!(
            Reference::classify("tasks.create.cluster_id"),
            Reference::TaskOutput { task: "create", field: Some("cluster_id") }
        );
        assert_eq!(
            Reference::classify("tasks.enrich.payload.rows.first"),
            Reference::TaskOutput { task: "enrich", field: Some("payload") }
        );
        assert_eq!(Reference::classify("dss"), Reference::Unknown("dss"));
    }

    #[test]
    fn finds_names_and_syntax_errors() {
        let env = environment();
        let names = referenced_names(&env, "s3://{{ params.bucket }}/{{ ds }}/{{ tasks.a.output }}").unwrap();
        assert_eq!(names, vec!["ds", "params.bucket", "tasks.a.output"]);
        let err = referenced_names(&env, "line one\n{{ ds ").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(referenced_names(&env, "no templates here").unwrap().is_empty());
    }

    #[test]
    fn macros() {
        let env = environment();
        assert_eq!(env.render_str("{{ ds_add('2026-03-01', -1) }}", ()).unwrap(), "2026-02-28");
        assert_eq!(env.render_str("{{ ds_format('2026-03-01', '%Y-%m-%d', '%d/%m/%Y') }}", ()).unwrap(), "01/03/2026");
    }
}
