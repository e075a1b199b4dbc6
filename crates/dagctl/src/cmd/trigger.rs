//! `dagctl trigger`: a manual run, or a backfill over a date range.

use anyhow::{bail, Result};
use chrono::Utc;
use sluice_dag::schedule::rfc3339;
use sluice_scheduler::runs::{self, BackfillAction, Rerun};
use sluice_store::{Created, RunKind};

use crate::context::Ctx;
use crate::exit;

/// Create a manual run (the running scheduler picks it up), or with --from/--to a backfill.
#[derive(clap::Args)]
pub struct Args {
    /// The DAG id.
    dag: String,
    /// Logical date: a date (the schedule's tick that day) or a timestamp [default: now].
    #[arg(long, conflicts_with_all = ["from", "to"])]
    date: Option<String>,
    /// Run configuration merged over `[params]`, as a JSON object.
    #[arg(long)]
    conf: Option<String>,
    /// Follow the run to its end; exit 1 if it failed.
    #[arg(long)]
    wait: bool,
    /// Backfill: first logical date.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Backfill: last logical date (inclusive; a date covers the whole day).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Backfill: what to do with runs that already exist.
    #[arg(long, value_enum, default_value = "none", requires = "from")]
    rerun: RerunArg,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum RerunArg {
    None,
    Failed,
    All,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let conf = args.conf.as_deref().map(crate::cmd::render::parse_conf).transpose()?;
    let store = ctx.store().await?;
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let from = crate::cmd::render::logical_bound(&dag, from, false)?;
        let to_bound = crate::cmd::render::logical_bound(&dag, to, true)?;
        if from > to_bound {
            bail!("--from {} is after --to {}: the range holds no date", args.from.as_deref().unwrap_or(""), to);
        }
        let to = to_bound;
        if dag.schedule.is_none() {
            bail!("DAG `{}` has no schedule: a backfill needs schedule ticks", dag.id);
        }
        let rerun = match args.rerun {
            RerunArg::None => Rerun::None,
            RerunArg::Failed => Rerun::Failed,
            RerunArg::All => Rerun::All,
        };
        let done = runs::backfill(store.as_ref(), &dag, from, to, rerun, conf).await?;
        if done.is_empty() {
            println!("no schedule tick of `{}` has a logical date in that range", dag.id);
        }
        for (run, action) in &done {
            let what = match action {
                BackfillAction::Created => "created".to_string(),
                BackfillAction::LeftAlone => format!("exists ({}), left alone", run.state),
                BackfillAction::Cleared(t) => format!("exists ({}), cleared {} task(s)", run.state, t.len()),
            };
            let ds = run.logical_date.with_timezone(&dag.timezone).format("%Y-%m-%d");
            println!("{}  ds {ds}  {what}", run.run_id);
        }
        if args.wait {
            let mut failed = false;
            for (run, _) in &done {
                failed |= !crate::progress::follow(store.as_ref(), run.id, &ctx.config.logs, false, None).await?;
            }
            return Ok(if failed { exit::FAILURE } else { exit::OK });
        }
        return Ok(exit::OK);
    }
    let logical = args.date.as_deref().map(|d| crate::cmd::render::logical_date(&dag, d)).transpose()?;
    let dates = runs::manual_dates(&dag, logical, Utc::now());
    let created = runs::create_run(store.as_ref(), &dag, &dates, RunKind::Manual, conf).await?;
    let run = created.run().clone();
    match created {
        Created::New(_) => {
            println!("created run {} (ds {}, logical date {})", run.run_id, dates.ds(), rfc3339(dates.logical_date))
        }
        Created::Existing(_) => {
            println!("run {} already exists ({}); use `dagctl clear` to run it again", run.run_id, run.state)
        }
    }
    if args.wait {
        let ok = crate::progress::follow(store.as_ref(), run.id, &ctx.config.logs, false, None).await?;
        return Ok(if ok { exit::OK } else { exit::FAILURE });
    }
    Ok(exit::OK)
}
