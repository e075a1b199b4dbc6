//! `dagctl`: the Sluice command line. Argument parsing and printing only; the work is done by
//! the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod api;
mod cmd;
mod context;
mod output;
mod progress;

/// Exit codes, documented in the README.
pub mod exit {
    /// The command did what was asked (every DAG valid; the run succeeded).
    pub const OK: u8 = 0;
    /// A DAG file is invalid, a run failed, or the command failed (unknown DAG, bad date...).
    pub const FAILURE: u8 = 1;
    // 2: wrong usage (clap's own exit code for bad arguments).
}

/// Options every subcommand takes. Each one overrides the config file.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// The DAG folder [default: ./dags].
    #[arg(long, global = true, env = "SLUICE_DAGS")]
    dags: Option<PathBuf>,
    /// Database URL: sqlite:PATH, a file path, or postgres://USER@HOST/DB [default: sqlite:sluice.db].
    #[arg(long, global = true, env = "SLUICE_DB")]
    db: Option<String>,
    /// Task log folder [default: ./logs].
    #[arg(long, global = true, env = "SLUICE_LOGS")]
    logs: Option<PathBuf>,
    /// Config file [default: ./sluice.toml when it exists].
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Parser)]
#[command(name = "dagctl", version, about = "Sluice: validate, inspect and run DAGs of TOML files")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Validate(cmd::validate::Args),
    List(cmd::list::Args),
    Show(cmd::show::Args),
    Next(cmd::next::Args),
    Render(cmd::render::Args),
    Scheduler(cmd::scheduler::Args),
    Server(cmd::server::Args),
    Tokens(cmd::tokens::Args),
    Alerts(cmd::alerts::Args),
    Trigger(cmd::trigger::Args),
    Test(cmd::test::Args),
    Runs(cmd::runs::Args),
    Tasks(cmd::tasks::Args),
    Logs(cmd::logs::Args),
    Events(cmd::events::Args),
    Clear(cmd::clear::Args),
    Mark(cmd::mark::Args),
    Clusters(cmd::clusters::Args),
    Pause(cmd::pause::Args),
    Unpause(cmd::pause::UnpauseArgs),
    Generate(cmd::generate::Args),
    Import(cmd::import::Args),
    Db(cmd::db::Args),
    Bench(cmd::bench::Args),
    /// The `api` benchmark's load generator, run by `dagctl bench` in a second process.
    #[command(name = "bench-load", hide = true)]
    BenchLoad(cmd::bench::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Scheduler(_) | Command::Server(_)) {
        // A listing piped into `head` ends quietly when the pipe closes, as `cat` does, instead
        // of panicking on the write. The daemon keeps ignoring SIGPIPE: a closed log pipe must
        // not kill it.
        restore_sigpipe();
    }
    let result = context::Ctx::new(&cli.global).and_then(|ctx| {
        let dags = ctx.config.dags.clone();
        match cli.command {
            Command::Validate(a) => cmd::validate::run(&dags, &ctx.config, a),
            Command::List(a) => cmd::list::run(&ctx, a),
            Command::Show(a) => cmd::show::run(&dags, a),
            Command::Next(a) => cmd::next::run(&dags, a),
            Command::Render(a) => cmd::render::run(&dags, a),
            Command::Scheduler(a) => ctx.block_on(cmd::scheduler::run(&ctx, a)),
            Command::Server(a) => ctx.block_on(cmd::server::run(&ctx, a)),
            Command::Tokens(a) => ctx.block_on(cmd::tokens::run(&ctx, a)),
            Command::Alerts(a) => ctx.block_on(cmd::alerts::run(&ctx, a)),
            Command::Trigger(a) => ctx.block_on(cmd::trigger::run(&ctx, a)),
            Command::Test(a) => ctx.block_on(cmd::test::run(&ctx, a)),
            Command::Runs(a) => ctx.block_on(cmd::runs::run(&ctx, a)),
            Command::Tasks(a) => ctx.block_on(cmd::tasks::run(&ctx, a)),
            Command::Logs(a) => ctx.block_on(cmd::logs::run(&ctx, a)),
            Command::Events(a) => ctx.block_on(cmd::events::run(&ctx, a)),
            Command::Clear(a) => ctx.block_on(cmd::clear::run(&ctx, a)),
            Command::Mark(a) => ctx.block_on(cmd::mark::run(&ctx, a)),
            Command::Clusters(a) => ctx.block_on(cmd::clusters::run(&ctx, a)),
            Command::Pause(a) => ctx.block_on(cmd::pause::run(&ctx, &a.dag, true)),
            Command::Unpause(a) => ctx.block_on(cmd::pause::run(&ctx, &a.dag, false)),
            Command::Generate(a) => cmd::generate::run(a),
            Command::Import(a) => cmd::import::run(&dags, a),
            Command::Db(a) => ctx.block_on(cmd::db::run(&ctx, a)),
            Command::Bench(a) => ctx.block_on(cmd::bench::run(&ctx, a)),
            Command::BenchLoad(a) => ctx.block_on(cmd::bench::load(a)),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn restore_sigpipe() {
    // SAFETY: sets the default disposition of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An error that only says stdout went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
