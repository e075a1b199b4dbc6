//! `dagctl`: the Sluice command line. Argument parsing and printing only; the work is done by
//! the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;

/// Exit codes, documented in the README.
pub mod exit {
    /// The command did what was asked and every DAG it read is valid.
    pub const OK: u8 = 0;
    /// A DAG file is invalid, or the command failed (unknown DAG, bad date, ...).
    pub const FAILURE: u8 = 1;
    // 2: wrong usage (clap's own exit code for bad arguments).
}

#[derive(Parser)]
#[command(name = "dagctl", version, about = "Sluice: validate, inspect and run DAGs of TOML files")]
struct Cli {
    /// The DAG folder.
    #[arg(long, global = true, env = "SLUICE_DAGS", default_value = "dags")]
    dags: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => cmd::validate::run(&cli.dags, a),
        Command::List(a) => cmd::list::run(&cli.dags, a),
        Command::Show(a) => cmd::show::run(&cli.dags, a),
        Command::Next(a) => cmd::next::run(&cli.dags, a),
        Command::Render(a) => cmd::render::run(&cli.dags, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
