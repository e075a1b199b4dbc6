//! The `time` sensor: waits until a time of day in the DAG's zone, the first one at or after
//! the run's fire time (a run for an old date, from a backfill, does not wait). Nothing to
//! record: a restarted scheduler computes the same time and waits for what is left.

use serde_json::{Map, Value};
use sluice_dag::schedule::TimeOfDay;

use super::{Outcome, TaskError, TaskOperator, TryContext};

pub struct TimeSensor {
    pub at: TimeOfDay,
}

#[async_trait::async_trait]
impl TaskOperator for TimeSensor {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let target = self.at.next_at_or_after(ctx.dates.fire_time());
        let left = (target.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default();
        ctx.log.line(&format!("waiting until {}", sluice_dag::schedule::rfc3339(target)));
        tokio::time::sleep(left).await;
        Ok(Outcome::Success(Map::new()))
    }

    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}
