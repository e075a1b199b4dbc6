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
    /// latency, idle, huge_dag, reload_huge, api, alerts, ui, postgres [default: all but api,
    /// alerts, ui and postgres].
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
    /// Every scenario at a small size, once, without targets: checks that the benchmark
    /// works, not how fast anything is.
    #[arg(long)]
    small: bool,
    /// `postgres`: the PostgreSQL server; each measurement makes (and drops) a schema of its
    /// own there.
    #[arg(long, value_name = "URL", default_value = sluice_bench::DEFAULT_POSTGRES, env = "SLUICE_BENCH_POSTGRES")]
    postgres: String,
    /// `postgres`: how many schedulers share the database, one measurement per count.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_values_t = [1, 2, 4])]
    schedulers: Vec<usize>,
}

/// Arguments of the hidden `bench-load` command.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// A file of URLs, one a line, requested in turn.
    #[arg(long)]
    urls: std::path::PathBuf,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
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
    anyhow::ensure!(args.schedulers.iter().all(|k| (1..=64).contains(k)), "--schedulers: each count must be 1 to 64");
    options.postgres = args.postgres;
    options.schedulers = args.schedulers;
    if args.small {
        let small = sluice_bench::Options::small();
        options.sizes = small.sizes;
        options.repeat = 1;
        options.idle_seconds = small.idle_seconds;
        options.load_seconds = small.load_seconds;
        options.targets = false;
    }
    let report = sluice_bench::run(&options).await?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(exit::OK)
}

/// Loads the URLs of `--urls` and prints what it measured as JSON.
pub async fn load(args: LoadArgs) -> Result<u8> {
    let text = std::fs::read_to_string(&args.urls).with_context(|| format!("cannot read {}", args.urls.display()))?;
    anyhow::ensure!(args.seconds.is_finite() && args.seconds > 0.0, "--seconds must be a positive number");
    let spec = sluice_bench::load::LoadSpec {
        urls: text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        concurrency: args.concurrency,
        duration: std::time::Duration::from_secs_f64(args.seconds),
    };
    let result = sluice_bench::load::generate(&spec).await.map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(exit::OK)
}
