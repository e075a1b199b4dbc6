//! `dagctl render DAG TASK --date D`: a task's keys with their templates rendered.

use std::path::Path;

use anyhow::{anyhow, Result};
use serde_json::{Map, Value};
use sluice_dag::run_id;

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
    let dag = sluice_scheduler::lookup::dag_in_folder(&folder, &args.dag)?;
    let task = dag.task(&args.task).ok_or_else(|| {
        let ids = dag.tasks.iter().map(|t| t.id.as_str());
        match sluice_dag::diagnostic::suggest(&args.task, ids) {
            Some(s) => anyhow!("DAG `{}` has no task `{}` (did you mean `{s}`?)", dag.id, args.task),
            None => anyhow!("DAG `{}` has no task `{}`", dag.id, args.task),
        }
    })?;
    let logical = dag.logical_date(&args.date).map_err(anyhow::Error::msg)?;
    let conf = args.conf.as_deref().map(sluice_dag::parse_conf).transpose().map_err(anyhow::Error::msg)?;
    let dates = dag.run_dates(logical);
    let kind = if dag.schedule.is_some() { "scheduled" } else { "manual" };
    let mut ctx = dag.template_context(&task.id, &run_id(kind, &dates), &dates, conf.as_ref());
    for up in dag.ancestors(&task.id) {
        let outputs = up
            .operator
            .kind()
            .outputs()
            .iter()
            .map(|(f, shape)| (f.to_string(), shape.placeholder(format!("<tasks.{}.{f}>", up.id))))
            .collect();
        ctx.tasks.insert(up.id.clone(), outputs);
    }
    deepen_placeholders(&mut ctx.tasks, &task.keys);
    let (rendered, _) = dag.render_task(task, &ctx).map_err(|e| anyhow!("task `{}`: {e}", task.id))?;
    if args.json {
        crate::output::json(&rendered)?;
    } else {
        println!("# {}.{} ({}) for ds {}", dag.id, task.id, task.operator.kind(), dates.ds());
        print!("{}", toml::to_string_pretty(&rendered)?);
    }
    Ok(exit::OK)
}

/// Placeholders as deep as the task reads them: an output holding JSON (a `lambda`'s
/// `payload`) read as `tasks.enrich.payload.day` becomes an object whose `day` is
/// `<tasks.enrich.payload.day>`, so that the read renders instead of being undefined.
fn deepen_placeholders(tasks: &mut std::collections::BTreeMap<String, Map<String, Value>>, keys: &Map<String, Value>) {
    let env = sluice_dag::template::environment();
    let mut names = Vec::new();
    strings(&Value::Object(keys.clone()), &mut |s| {
        names.extend(sluice_dag::template::referenced_names(&env, s).unwrap_or_default());
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
