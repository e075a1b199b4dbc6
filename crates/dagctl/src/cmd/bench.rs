//! `dagctl bench`: the benchmark (logic in `sluice-bench`; this file only parses and prints).

use anyhow::{Context, Result};

use crate::context::Ctx;
use crate::exit;

/// Measure speed and footprint: generated DAGs run through this binary's `scheduler`, with
/// its SQLite file on disk; prints a table (or JSON) of medians against the targets. Works in
/// temporary folders: --dags, --db and --logs are not used.
#[derive(clap::Args)]
pub struct Args {
    /// A scenario to run (repeatable): chain_50, wide_200, fan_200, noop_10k, many_dags,
    /// latency, idle [default: all].
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// How long the idle daemon is watched, in seconds.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Measurements per scenario (the figures are medians).
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// The daemon's --parallelism during the benchmark.
    #[arg(long, default_value_t = 256)]
    parallelism: usize,
}

pub async fn run(_ctx: &Ctx, args: Args) -> Result<u8> {
    let exe = std::env::current_exe().context("cannot find the dagctl binary to start as the daemon")?;
    let mut options = sluice_bench::Options::full(exe);
    options.scenarios =
        args.scenarios.iter().map(|s| sluice_bench::Scenario::from_name(s)).collect::<Result<_, _>>()?;
    options.idle_seconds = args.idle_seconds;
    options.repeat = args.repeat.max(1);
    anyhow::ensure!(args.parallelism > 0, "--parallelism must be at least 1");
    options.parallelism = args.parallelism;
    let report = sluice_bench::run(&options).await?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(exit::OK)
}
