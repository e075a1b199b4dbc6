//! Printing helpers shared by the subcommands.

use std::path::Path;

use anyhow::{Context, Result};
use sluice_dag::{load_folder, Folder};

/// Loads the DAG folder, failing with a clear message when it cannot be read.
pub fn folder(dir: &Path) -> Result<Folder> {
    load_folder(dir).with_context(|| format!("cannot read the DAG folder {}", dir.display()))
}

/// Prints rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// What the daemon logs by default: its own `info`, and only errors of the AWS SDK and the
/// HTTP stack below it. The SDK's own warnings (a credential provider of the default chain that
/// found nothing, at every call, 800 characters each) would flood the log; what matters of them
/// reaches the try's error and its log file as one line. `SLUICE_LOG=debug,aws_config=debug`
/// brings them back.
pub const DEFAULT_LOG_FILTER: &str = "info,aws_config=error,aws_smithy_runtime=error,aws_smithy_runtime_api=error,\
aws_smithy_http_client=error,aws_sdk_sts=error,aws_sdk_sso=error,aws_sdk_ssooidc=error,aws_sdk_s3=error,\
aws_sdk_emr=error,aws_sdk_emrserverless=error,aws_sdk_glue=error,aws_sdk_athena=error,hyper=error,hyper_util=error,\
rustls=error";

/// Logs of the scheduler (and live progress of `dagctl test`) on stderr; `SLUICE_LOG` sets the
/// filter (default [`DEFAULT_LOG_FILTER`]).
pub fn init_tracing(json: bool) {
    init_tracing_with(json, "info");
}

/// As [`init_tracing`], with `level` for Sluice's own logs by default.
pub fn init_tracing_with(json: bool, level: &str) {
    use tracing_subscriber::EnvFilter;
    let default = DEFAULT_LOG_FILTER.replacen("info", level, 1);
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

/// A time for tables: UTC, to the second.
pub fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The time between two instants, for tables.
pub fn duration(start: Option<chrono::DateTime<chrono::Utc>>, end: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => {
            let ms = (e - s).num_milliseconds().max(0) as u64;
            if ms < 10_000 {
                format!("{:.2}s", ms as f64 / 1000.0)
            } else {
                humantime_like(ms / 1000)
            }
        }
        _ => "-".into(),
    }
}

fn humantime_like(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}
