//! One module per subcommand.

pub mod list;
pub mod next;
pub mod render;
pub mod show;
pub mod validate;
