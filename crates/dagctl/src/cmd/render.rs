//! `dagctl render DAG TASK --date D`: a task's keys with their templates rendered.

use std::path::Path;

use anyhow::{anyhow, Result};
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
    let rendered = dag
        .render_for_display(task, &run_id(kind, &dates), &dates, conf.as_ref(), Default::default())
        .map_err(|e| anyhow!("task `{}`: {e}", task.id))?;
    if args.json {
        crate::output::json(&rendered)?;
    } else {
        println!("# {}.{} ({}) for ds {}", dag.id, task.id, task.operator.kind(), dates.ds());
        print!("{}", toml::to_string_pretty(&rendered)?);
    }
    Ok(exit::OK)
}
