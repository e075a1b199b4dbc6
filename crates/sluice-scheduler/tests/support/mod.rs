//! What several of the scheduler's test files share.

use sluice_dag::Dag;
use sluice_scheduler::operators::{OperatorProvider, Outcome, TaskError, TaskOperator, TryContext};
use tokio::sync::watch;

/// An operator that runs until the test opens its gate.
pub struct Gate(watch::Receiver<bool>);

#[async_trait::async_trait]
impl TaskOperator for Gate {
    async fn run(&self, _ctx: &TryContext) -> Result<Outcome, TaskError> {
        let mut open = self.0.clone();
        let _ = open.wait_for(|o| *o).await;
        Ok(Outcome::Success(Default::default()))
    }
}

/// Builds a [`Gate`] for the command `gate`.
pub struct GateProvider(pub watch::Receiver<bool>);

#[async_trait::async_trait]
impl OperatorProvider for GateProvider {
    fn build(&self, op: &sluice_dag::Operator, _dag: &Dag, _task: &sluice_dag::Task) -> Option<Box<dyn TaskOperator>> {
        match op {
            sluice_dag::Operator::Command(c) if c.command == "gate" => Some(Box::new(Gate(self.0.clone()))),
            _ => None,
        }
    }
}
