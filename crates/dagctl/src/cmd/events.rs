//! `dagctl events`: what happened, from the store, oldest first; `--follow` keeps reading as
//! new events commit, resuming by id so none is printed twice or missed.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use sluice_store::{Event, EventQuery, Order, Store};

use crate::context::Ctx;
use crate::exit;

/// How often `--follow` asks the database whether another process committed. A CLI process is
/// not the daemon: a cheap counter (SQLite's `data_version`) polled a few times a second.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Events read per query while catching up.
const PAGE: u32 = 1000;

/// Show events (runs, tasks, tries, DAGs, the scheduler), oldest first.
#[derive(clap::Args)]
pub struct Args {
    /// Only this DAG's events.
    #[arg(long)]
    dag: Option<String>,
    /// Only this run's events (its run id).
    #[arg(long)]
    run: Option<String>,
    /// Only events after this id (what the last line printed showed as `#ID`).
    #[arg(long)]
    after: Option<i64>,
    /// At most this many events; without --after, the last ones.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Keep printing events as they are committed, until interrupted.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<u8> {
    let store = ctx.store().await?;
    let query = |after: Option<i64>, limit: u32, order: Order| EventQuery {
        after,
        dag_id: args.dag.clone(),
        run_id: args.run.clone(),
        limit,
        order,
    };
    // For --follow, registered before anything is printed, so an interrupt at any moment ends
    // the command with exit code 0 (a plain listing keeps the default: Ctrl-C stops it).
    let mut interrupted = match args.follow {
        true => Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?),
        false => None,
    };
    let mut out = std::io::stdout().lock();
    let mut after = match args.after {
        Some(after) if !args.follow => {
            print(&mut out, &store.events(&query(Some(after), args.limit, Order::Oldest)).await?, args.json)?;
            return Ok(exit::OK);
        }
        Some(after) => after,
        None => {
            let mut last = store.events(&query(None, args.limit, Order::Newest)).await?;
            last.reverse();
            print(&mut out, &last, args.json)?;
            if !args.follow {
                return Ok(exit::OK);
            }
            // With no event yet, everything from the first one on.
            last.last().map_or(0, |e| e.id)
        }
    };
    let Some(interrupted) = interrupted.as_mut() else { return Ok(exit::OK) };
    loop {
        let page = store.events(&query(Some(after), PAGE, Order::Oldest)).await?;
        print(&mut out, &page, args.json)?;
        if let Some(last) = page.last() {
            after = last.id;
        }
        if page.len() as u32 == PAGE {
            continue;
        }
        tokio::select! {
            _ = interrupted.recv() => return Ok(exit::OK),
            changed = changed(store.as_ref()) => changed?,
        }
    }
}

/// Returns once another process has committed something.
async fn changed(store: &dyn Store) -> Result<()> {
    while !store.changed_elsewhere().await? {
        tokio::time::sleep(FOLLOW_POLL).await;
    }
    Ok(())
}

fn print(out: &mut impl Write, events: &[Event], json: bool) -> Result<()> {
    for e in events {
        if json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{e}")?;
        }
    }
    out.flush()?;
    Ok(())
}
