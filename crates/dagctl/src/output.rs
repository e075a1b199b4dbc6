//! Printing helpers shared by the subcommands.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sluice_dag::{load_folder, Dag, Folder};

/// Loads the DAG folder, failing with a clear message when it cannot be read.
pub fn folder(dir: &Path) -> Result<Folder> {
    load_folder(dir).with_context(|| format!("cannot read the DAG folder {}", dir.display()))
}

/// Finds a DAG by id; when its file is broken, says why.
pub fn dag<'f>(folder: &'f Folder, id: &str) -> Result<&'f Dag> {
    if let Some(dag) = folder.dag(id) {
        return Ok(dag);
    }
    if let Some(file) = folder.files.iter().find(|f| f.dag_id.as_deref() == Some(id)) {
        let problems: Vec<String> = file.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
        bail!("DAG `{id}` does not load:\n{}", problems.join("\n"));
    }
    let known: Vec<&str> = folder.dags.iter().map(|d| d.id.as_str()).collect();
    match sluice_dag::diagnostic::suggest(id, known.iter().copied()) {
        Some(s) => bail!("no DAG `{id}` in the folder (did you mean `{s}`?)"),
        None => bail!("no DAG `{id}` in the folder"),
    }
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
