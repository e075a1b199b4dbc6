//! One module per subcommand.

pub mod alerts;
pub mod bench;
pub mod clear;
pub mod clusters;
pub mod db;
pub mod events;
pub mod generate;
pub mod import;
pub mod list;
pub mod logs;
pub mod mark;
pub mod next;
pub mod pause;
pub mod render;
pub mod runs;
pub mod scheduler;
pub mod server;
pub mod show;
pub mod tasks;
pub mod test;
pub mod tokens;
pub mod trigger;
pub mod validate;
