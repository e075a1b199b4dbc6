//! `dagctl render DAG TASK --date D`: a task's keys with their templates rendered.

use std::path::Path;

use anyhow::{anyhow, Result};
use chrono::NaiveDate;
use serde_json::{Map, Value};
use sluice_dag::schedule::parse_instant;
use sluice_dag::{run_id, Dag};

use crate::exit;

/// Render a task's operator keys for a date. Upstream outputs, unknown before a run, show as
/// `<tasks.ID.FIELD>`.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// The task id.
    task: String,
    /// The logical date: a date (the schedule's tick on that day) or an exact timestamp.
    #[arg(long)]
    date: String,
    /// Run configuration merged over `[params]`, as a JSON object.
    #[arg(long)]
    conf: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(dags: &Path, args: Args) -> Result<u8> {
    let folder = crate::output::folder(dags)?;
    let dag = crate::output::dag(&folder, &args.dag)?;
    let task = dag.task(&args.task).ok_or_else(|| {
        let ids = dag.tasks.iter().map(|t| t.id.as_str());
        match sluice_dag::diagnostic::suggest(&args.task, ids) {
            Some(s) => anyhow!("DAG `{}` has no task `{}` (did you mean `{s}`?)", dag.id, args.task),
            None => anyhow!("DAG `{}` has no task `{}`", dag.id, args.task),
        }
    })?;
    let logical = logical_date(dag, &args.date)?;
    let conf = match &args.conf {
        Some(c) => Some(parse_conf(c)?),
        None => None,
    };
    let dates = dag.run_dates(logical);
    let kind = if dag.schedule.is_some() { "scheduled" } else { "manual" };
    let mut ctx = dag.template_context(&task.id, &run_id(kind, &dates), &dates, conf.as_ref());
    for up in dag.ancestors(&task.id) {
        let outputs = up
            .operator
            .kind()
            .outputs()
            .iter()
            .map(|f| {
                let placeholder = format!("<tasks.{}.{f}>", up.id);
                let v = if f.ends_with("_ids") { Value::Array(vec![placeholder.into()]) } else { placeholder.into() };
                (f.to_string(), v)
            })
            .collect();
        ctx.tasks.insert(up.id.clone(), outputs);
    }
    let (rendered, _) = dag.render_task(task, &ctx).map_err(|e| anyhow!("task `{}`: {e}", task.id))?;
    if args.json {
        crate::output::json(&rendered)?;
    } else {
        println!("# {}.{} ({}) for ds {}", dag.id, task.id, task.operator.kind(), dates.ds());
        print!("{}", toml::to_string_pretty(&rendered)?);
    }
    Ok(exit::OK)
}

/// A date means the schedule's tick on that day; a timestamp is taken as it is.
pub fn logical_date(dag: &Dag, s: &str) -> Result<chrono::DateTime<chrono_tz::Tz>> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return dag.logical_date_on(d).map_err(anyhow::Error::msg);
    }
    parse_instant(s, dag.timezone).map_err(anyhow::Error::msg)
}

pub fn parse_conf(s: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(anyhow!("--conf must be a JSON object, e.g. '{{\"bucket\": \"other\"}}'")),
        Err(e) => Err(anyhow!("--conf is not valid JSON: {e}")),
    }
}

/// A backfill bound: a date means the start of that day (`--from`) or its end (`--to`) in the
/// DAG's zone; a timestamp is taken as it is.
pub fn logical_bound(dag: &Dag, s: &str, end_of_day: bool) -> Result<chrono::DateTime<chrono_tz::Tz>> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let day = if end_of_day { d.succ_opt().unwrap_or(d) } else { d };
        let t = sluice_dag::schedule::resolve_local(dag.timezone, day.and_time(chrono::NaiveTime::MIN));
        let last_instant = t.checked_sub_signed(chrono::Duration::nanoseconds(1)).unwrap_or(t);
        return Ok(if end_of_day { last_instant } else { t });
    }
    parse_instant(s, dag.timezone).map_err(anyhow::Error::msg)
}
