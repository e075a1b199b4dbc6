//! The Sluice DAG model: what a DAG file may say, and what it means.
//!
//! This crate reads DAG files (TOML), validates them and reports every problem with its file
//! and line ([`parse`]), orders tasks and finds cycles ([`graph`]), computes schedule ticks,
//! logical dates and deadlines in the DAG's time zone ([`schedule`]), and checks and renders
//! Jinja templates ([`template`]), reads alert rules and checks the channels they name
//! ([`alerts`]), and holds the scheduler's pure rules: a try's outcome to
//! its task's state, retry times, a run's verdict ([`rules`]).
//!
//! It knows nothing about databases, async runtimes or AWS: the scheduler, the store and the
//! operators build on the types here.

pub mod alerts;
mod cron;
pub mod dag;
pub mod diagnostic;
pub mod duration;
pub mod folder;
pub mod graph;
pub mod layout;
pub mod operators;
pub mod parse;
pub mod rules;
pub mod schedule;
pub mod state;
pub mod template;
#[cfg(test)]
pub(crate) mod work;

pub use alerts::{check_channels, AlertOn, AlertRule, ChannelKind, ChannelRef, Freshness};
pub use dag::{parse_conf, run_id, Backoff, Dag, RetryPolicy, Task, TriggerRule};
pub use diagnostic::{Diagnostic, Severity};
pub use duration::Duration;
pub use folder::{
    dag_files, load_files, load_files_checked, load_folder, load_folder_checked, Folder, LoadChecks, LoadedFile,
};
pub use operators::{Operator, OperatorKind, OutputShape};
pub use parse::{parse_dag, parse_dag_file, ParseOutcome};
pub use rules::{after_try, retry_time, run_verdict, AfterTry, EndedTry, TryResult};
pub use schedule::{Deadline, RunDates, Schedule};
pub use state::{evaluate, Decision, RunState, TaskState};
pub use template::RenderError;
