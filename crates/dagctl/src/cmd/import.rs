//! `dagctl import asl MACHINE.json`: an AWS Step Functions state machine as a DAG file, and a
//! report of every decision. The conversion is `sluice_asl::convert`; this is the file glue.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit;

/// The largest state machine read (Step Functions' own limit is 1 MiB).
const MAX_MACHINE_BYTES: u64 = 16 * 1024 * 1024;

/// Import a pipeline from another orchestrator as a DAG file.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Import an AWS Step Functions state machine (its Amazon States Language JSON).
    ///
    /// Prints the report of every decision and writes the DAG. Exits 0 when everything was
    /// carried over, 1 when something was rejected (nothing is written unless
    /// --allow-partial) and, with --strict, also 1 when anything was approximated.
    Asl(AslArgs),
}

#[derive(clap::Args)]
struct AslArgs {
    /// The state machine's definition (JSON).
    machine: PathBuf,
    /// The DAG id [default: the file name without .asl.json].
    #[arg(long)]
    id: Option<String>,
    /// The DAG's schedule (cron expression or nickname).
    #[arg(long, requires = "start_date")]
    schedule: Option<String>,
    /// The time zone of the schedule, e.g. Europe/London.
    #[arg(long)]
    timezone: Option<String>,
    /// The first logical date of the schedule, e.g. 2026-01-01.
    #[arg(long)]
    start_date: Option<String>,
    /// Where to write the DAG [default: DAGS/ID.toml].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1, writing nothing, when anything was approximated too.
    #[arg(long)]
    strict: bool,
    /// Write the DAG even when something was rejected (noops stand in for it); still exits 1.
    #[arg(long)]
    allow_partial: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(dags: &Path, args: Args) -> Result<u8> {
    let What::Asl(a) = args.what;
    let src = read_machine(&a.machine)?;
    let source = a.machine.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dag_id = a.id.clone().unwrap_or_else(|| sluice_asl::default_dag_id(&source));
    let out = a.out.clone().unwrap_or_else(|| dags.join(format!("{dag_id}.toml")));
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned());
    let opts = sluice_asl::Options {
        dag_id: Some(dag_id.clone()),
        source,
        write_id: stem.as_deref() != Some(dag_id.as_str()),
        schedule: a.schedule.clone(),
        timezone: a.timezone.clone(),
        start_date: a.start_date.clone(),
    };
    let conv = sluice_asl::convert(&src, &opts);
    let report = &conv.report;
    print!("{report}");
    let rejected = report.has_rejections();
    let refused_by_strict = a.strict && report.has_approximations();
    if (rejected || refused_by_strict) && !a.allow_partial {
        let why = if rejected { "something was rejected" } else { "--strict, and something was approximated" };
        println!("nothing written: {why} (--allow-partial writes the DAG anyway)");
        return Ok(exit::FAILURE);
    }
    if out.exists() && !a.force {
        println!("nothing written: {} exists (--force replaces it)", out.display());
        return Ok(exit::FAILURE);
    }
    write_atomically(&out, &conv.toml)?;
    println!("wrote {} (DAG `{}`)", out.display(), conv.dag_id);
    Ok(if rejected || refused_by_strict { exit::FAILURE } else { exit::OK })
}

fn read_machine(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("cannot read {}: not a regular file", path.display());
    }
    if meta.len() > MAX_MACHINE_BYTES {
        anyhow::bail!("cannot read {}: {} bytes, over the limit of 16 MiB", path.display(), meta.len());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `text` to `path` through a temporary file in the same folder, so that a reader
/// (the scheduler watching the folder) never sees half a DAG.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".import-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
