//! `dagctl trigger`: a manual run, or a backfill over a date range.

use anyhow::Result;
use chrono::Utc;
use sluice_scheduler::actions::{self, BackfillAction, BackfillItem, BackfillRequest, Rerun, TriggerRequest};

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
    #[arg(long, conflicts_with = "dry_run")]
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
    /// Backfill: list what would be created or cleared, and change nothing.
    #[arg(long, requires = "from", conflicts_with = "date")]
    dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum RerunArg {
    None,
    Failed,
    All,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let dag = ctx.dag(&args.dag).await?;
    let conf = args.conf.as_deref().map(sluice_dag::parse_conf).transpose().map_err(anyhow::Error::msg)?;
    let store = ctx.store().await?;
    if let (Some(from), Some(to)) = (args.from, args.to) {
        let rerun = match args.rerun {
            RerunArg::None => Rerun::None,
            RerunArg::Failed => Rerun::Failed,
            RerunArg::All => Rerun::All,
        };
        let req = BackfillRequest { from, to, rerun, conf, dry_run: args.dry_run };
        let done = actions::backfill(store.as_ref(), &dag, &req, Utc::now()).await?;
        if done.runs.is_empty() {
            println!("no schedule tick of `{}` has a logical date in that range", dag.id);
        }
        for item in &done.runs {
            println!("{}  ds {}  {}", item.run_id, item.ds, what(item, done.dry_run));
        }
        if done.dry_run {
            println!("(dry run: nothing was created or cleared)");
        }
        if args.wait {
            let mut failed = false;
            for run in done.runs.iter().filter_map(|i| i.run.as_ref()) {
                failed |= !crate::progress::follow(store.as_ref(), run.id, &ctx.config.logs, false, None).await?;
            }
            return Ok(if failed { exit::FAILURE } else { exit::OK });
        }
        return Ok(exit::OK);
    }
    let req = TriggerRequest { logical_date: args.date, conf, idempotency_key: None };
    let t = actions::trigger(store.as_ref(), &dag, &req, Utc::now()).await?;
    if t.created {
        println!("created run {} (ds {}, logical date {})", t.run.run_id, t.ds, t.logical_date);
    } else {
        println!("run {} already exists ({}); use `dagctl clear` to run it again", t.run.run_id, t.run.state);
    }
    if args.wait {
        let ok = crate::progress::follow(store.as_ref(), t.run.id, &ctx.config.logs, false, None).await?;
        return Ok(if ok { exit::OK } else { exit::FAILURE });
    }
    Ok(exit::OK)
}

/// What a backfill did (or would do) for one date.
fn what(item: &BackfillItem, dry_run: bool) -> String {
    let state = item.run.as_ref().map(|r| r.state.to_string()).unwrap_or_default();
    match (&item.action, dry_run) {
        (BackfillAction::Create, false) => "created".into(),
        (BackfillAction::Create, true) => "would be created".into(),
        (BackfillAction::LeaveAlone, false) => format!("exists ({state}), left alone"),
        (BackfillAction::LeaveAlone, true) => format!("exists ({state}), would be left alone"),
        (BackfillAction::Clear { tasks }, false) => format!("exists ({state}), cleared {} task(s)", tasks.len()),
        (BackfillAction::Clear { tasks }, true) => format!("exists ({state}), would clear {} task(s)", tasks.len()),
    }
}
