//! `dagctl validate [PATH...]`: every problem of every DAG file, with file and line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sluice_dag::{dag_files, load_files_checked, LoadChecks};
use sluice_scheduler::views::ValidationView;

use crate::exit;

/// Check DAG files and report every problem in each (default: the DAG folder).
#[derive(clap::Args)]
pub struct Args {
    /// DAG files or folders to check.
    paths: Vec<PathBuf>,
    /// Print the problems as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(dags: &Path, config: &sluice_scheduler::Config, args: Args) -> Result<u8> {
    let roots = if args.paths.is_empty() { vec![dags.to_path_buf()] } else { args.paths };
    let mut files = Vec::new();
    for root in &roots {
        if root.is_dir() {
            files.extend(dag_files(root).with_context(|| format!("cannot read {}", root.display()))?);
        } else if root.exists() {
            files.push(root.clone());
        } else {
            anyhow::bail!("{} does not exist", root.display());
        }
    }
    // Alert rules are checked against the channels sluice.toml declares.
    let checks = LoadChecks { channels: Some(config.declared_channels()) };
    let folder = load_files_checked(&files, &checks);
    let errors = folder.diagnostics().filter(|d| d.is_error()).count();
    let warnings = folder.diagnostics().count() - errors;
    let invalid = folder.files.iter().filter(|f| f.has_errors()).count();
    if args.json {
        crate::output::json(&ValidationView::from(&folder))?;
    } else {
        for d in folder.diagnostics() {
            println!("{d}");
        }
        println!(
            "{} file{} checked: {} valid, {invalid} invalid ({errors} error{}, {warnings} warning{})",
            files.len(),
            plural(files.len()),
            files.len() - invalid,
            plural(errors),
            plural(warnings)
        );
    }
    Ok(if invalid == 0 { exit::OK } else { exit::FAILURE })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
