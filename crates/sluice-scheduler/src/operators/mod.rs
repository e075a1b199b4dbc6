//! The local operators (`command`, `wait`, the `time` sensor, `noop`), and the operator
//! interface of [`sluice_operator`] re-exported where the scheduler's users know it.

use serde_json::Map;
use sluice_dag::{Dag, Operator, Task};

mod command;
mod time;
mod wait;

pub use command::{kill_orphan, kill_own_tries, CommandOperator, TRY_MARKER_ENV};
pub use time::TimeSensor;
pub use wait::WaitOperator;

pub use sluice_operator::{
    ErrorKind, OperatorProvider, OperatorRegistry, Outcome, TaskError, TaskOperator, TryContext, TryLog,
};

/// `command`, `wait` and `noop`.
pub struct LocalOperators;

#[async_trait::async_trait]
impl OperatorProvider for LocalOperators {
    fn build(&self, op: &Operator, dag: &Dag, _task: &Task) -> Option<Box<dyn TaskOperator>> {
        match op {
            Operator::Command(c) => Some(Box::new(CommandOperator::new(c, &dag.file))),
            Operator::Wait(w) => Some(Box::new(WaitOperator { duration: w.duration.as_std() })),
            Operator::Noop(_) => Some(Box::new(NoopOperator)),
            Operator::Sensor(sluice_dag::operators::Sensor {
                kind: sluice_dag::operators::SensorKind::Time(t),
                ..
            }) => Some(Box::new(TimeSensor { at: t.at })),
            _ => None,
        }
    }
}

/// `noop`: succeeds at once.
pub struct NoopOperator;

#[async_trait::async_trait]
impl TaskOperator for NoopOperator {
    async fn run(&self, _ctx: &TryContext) -> Result<Outcome, TaskError> {
        Ok(Outcome::Success(Map::new()))
    }
}
