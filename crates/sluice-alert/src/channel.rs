//! Channel references, `kind:name`, as the DAG model defines them.

pub use sluice_dag::{ChannelKind, ChannelRef};
