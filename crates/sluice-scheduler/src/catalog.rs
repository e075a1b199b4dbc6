//! The DAGs a scheduler has loaded, as a value others can hold: what the HTTP API lists and
//! acts on. The engine publishes a new [`Catalog`] on a `watch` channel after each folder load
//! ([`crate::Engine::catalog`]); `dagctl server`, which runs no engine, loads and watches the
//! folder itself ([`crate::daemon::watch_catalog`]). A catalog shares the engine's `Arc<Dag>`s:
//! holding one costs a map of pointers, not a copy of the folder.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sluice_dag::{Dag, Folder, LoadedFile};

use crate::views::FailedFileView;

/// The loaded DAGs (a broken file's DAG by its last good version) and the files that fail.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub dags: BTreeMap<String, Arc<Dag>>,
    /// Every file of the folder that does not load, with its errors.
    pub failed_files: Vec<FailedFileView>,
    /// When this version of the folder was taken in (`None` before the first load).
    pub loaded_at: Option<DateTime<Utc>>,
}

impl Catalog {
    /// A catalog of a freshly loaded folder (no last good versions: the folder as it is).
    pub fn from_folder(folder: Folder, at: DateTime<Utc>) -> Catalog {
        let Folder { dags, files } = folder;
        let dags = dags
            .into_iter()
            .map(|mut dag| {
                // The store keeps the sources; a catalog never shows them from memory.
                dag.source = String::new();
                (dag.id.clone(), Arc::new(dag))
            })
            .collect();
        Catalog { dags, failed_files: failed_files(&files), loaded_at: Some(at) }
    }

    pub fn dag(&self, id: &str) -> Option<&Arc<Dag>> {
        self.dags.get(id)
    }
}

/// The files of a load that have errors, as the listings show them.
pub(crate) fn failed_files(files: &[LoadedFile]) -> Vec<FailedFileView> {
    files.iter().filter(|f| f.has_errors()).map(FailedFileView::of).collect()
}
