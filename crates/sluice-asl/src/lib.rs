//! Imports AWS Step Functions state machines (Amazon States Language, JSON) as Sluice DAGs.
//!
//! [`convert`] reads a state machine and returns the TOML text of a DAG and a [`Report`] of
//! every decision: what was mapped to which task, what was approximated (and how), and what
//! was rejected (with a stable code from [`codes`], the state's JSON path and what to do
//! instead). All problems are found in one pass. The DAG it writes is checked with the same
//! parser as `dagctl validate` ([`sluice_dag::parse_dag`]) before it is returned.
//!
//! The crate is pure: JSON text in, TOML text and a report out. It knows nothing about files,
//! the store, HTTP or AWS; `dagctl import asl` is the command around it.

pub mod codes;
mod convert;
mod emit;
mod paths;
pub mod report;
mod services;

pub use report::{Item, Level, Report};

/// What the caller knows besides the state machine.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The DAG id; without it, [`default_dag_id`] of `source`.
    pub dag_id: Option<String>,
    /// Where the state machine came from (a file name), named in the DAG's header comment.
    pub source: String,
    /// Write `id = "..."` into the DAG (when the file it goes to has another stem).
    pub write_id: bool,
    /// `schedule`, `timezone` and `start_date` for the DAG, written as given.
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub start_date: Option<String>,
}

/// The result of [`convert`]: the DAG's id, its TOML text (with placeholders for what was
/// rejected, see [`Report::has_rejections`]) and the report.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub dag_id: String,
    pub toml: String,
    pub report: Report,
}

/// Converts the state machine `src` (JSON text).
pub fn convert(src: &str, opts: &Options) -> Conversion {
    convert::run(src, opts)
}

/// A valid DAG id from a file name: the name without its folder, `.json` and `.asl`, with
/// anything but letters, digits, `_` and `-` made `_`.
pub fn default_dag_id(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let base = base.strip_suffix(".json").unwrap_or(base);
    let base = base.strip_suffix(".asl").unwrap_or(base);
    let id: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if id.is_empty() {
        "imported".into()
    } else {
        id
    }
}

/// Whether `id` is a valid DAG or task id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
