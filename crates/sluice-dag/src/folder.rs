//! Loading a folder of DAG files: every `*.toml` beneath it, each on its own, so that one
//! broken file never hides the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::alerts::{check_channels, ChannelRef};
use crate::dag::Dag;
use crate::diagnostic::{one_line, quoted, Diagnostic, Severity};
use crate::parse::{parse_dag_file, ParseOutcome};

/// What loading one file gave.
#[derive(Debug)]
pub struct LoadedFile {
    pub path: PathBuf,
    /// The DAG id the file declares, when it got far enough to tell.
    pub dag_id: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedFile {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Every DAG of a folder that loaded, and a report for every file.
#[derive(Debug, Default)]
pub struct Folder {
    pub dags: Vec<Dag>,
    pub files: Vec<LoadedFile>,
}

impl Folder {
    pub fn dag(&self, id: &str) -> Option<&Dag> {
        self.dags.iter().find(|d| d.id == id)
    }

    pub fn has_errors(&self) -> bool {
        self.files.iter().any(LoadedFile::has_errors)
    }

    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }
}

/// The `*.toml` files beneath `dir` (hidden entries skipped), sorted.
pub fn dag_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What loading checks beyond each file itself, against what the scheduler's configuration
/// declares. The default checks nothing more.
#[derive(Debug, Clone, Default)]
pub struct LoadChecks {
    /// The alert channels `sluice.toml` declares: a DAG sending to any other one fails to
    /// load ([`check_channels`]). `None` skips the check.
    pub channels: Option<Vec<ChannelRef>>,
}

/// Loads the given files as one set: DAG ids must be unique across them (the first file in
/// path order keeps an id; later files declaring it fail).
pub fn load_files(paths: &[PathBuf]) -> Folder {
    load_files_checked(paths, &LoadChecks::default())
}

/// [`load_files`], with `checks`: a DAG that fails one has its errors in its file's report
/// and is not loaded, like a DAG with an invalid key.
pub fn load_files_checked(paths: &[PathBuf], checks: &LoadChecks) -> Folder {
    let outcomes: Vec<(PathBuf, ParseOutcome)> =
        paths.iter().map(|p| (p.clone(), apply_checks(parse_dag_file(p), checks))).collect();
    let mut owner: HashMap<String, PathBuf> = HashMap::new();
    let mut folder = Folder::default();
    for (path, mut outcome) in outcomes {
        if let Some(id) = &outcome.dag_id {
            if let Some(first) = owner.get(id) {
                outcome.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: None,
                    column: None,
                    task: None,
                    message: one_line(&format!("DAG id {} is already declared by {}", quoted(id), first.display()))
                        .into_owned(),
                });
                outcome.dag = None;
            } else {
                owner.insert(id.clone(), path.clone());
            }
        }
        if let Some(dag) = outcome.dag {
            folder.dags.push(dag);
        }
        folder.files.push(LoadedFile { path, dag_id: outcome.dag_id, diagnostics: outcome.diagnostics });
    }
    folder
}

/// Loads every DAG file beneath `dir`.
pub fn load_folder(dir: &Path) -> std::io::Result<Folder> {
    Ok(load_files(&dag_files(dir)?))
}

/// Loads every DAG file beneath `dir`, with `checks` (see [`load_files_checked`]).
pub fn load_folder_checked(dir: &Path, checks: &LoadChecks) -> std::io::Result<Folder> {
    Ok(load_files_checked(&dag_files(dir)?, checks))
}

/// The outcome of one file after `checks`: their errors go among its diagnostics, in line
/// order, and a DAG with any is dropped.
pub(crate) fn apply_checks(mut outcome: ParseOutcome, checks: &LoadChecks) -> ParseOutcome {
    let (Some(dag), Some(declared)) = (&outcome.dag, &checks.channels) else { return outcome };
    let found = check_channels(dag, declared);
    if found.is_empty() {
        return outcome;
    }
    for d in found {
        // After every diagnostic on its line or before it, so the file's report stays in
        // line order, but before the last one when that counts the problems left out.
        let line = d.line.unwrap_or(usize::MAX);
        let diags = &mut outcome.diagnostics;
        let at = diags.iter().position(|e| e.line.is_some_and(|l| l > line)).unwrap_or_else(|| match diags.last() {
            Some(last) if last.line.is_none() && last.message.contains("not shown") => diags.len() - 1,
            _ => diags.len(),
        });
        diags.insert(at, d);
    }
    outcome.dag = None;
    outcome
}
