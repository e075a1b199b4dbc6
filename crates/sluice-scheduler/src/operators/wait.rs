//! `wait`: sleep for a fixed time. Resumable: the end time is recorded when the try starts,
//! so a restarted scheduler waits only for what is left.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Outcome, TaskError, TaskOperator, TryContext};

pub struct WaitOperator {
    pub duration: Duration,
}

#[async_trait::async_trait]
impl TaskOperator for WaitOperator {
    async fn run(&self, ctx: &TryContext) -> Result<Outcome, TaskError> {
        let until = match ctx.resumed("until").and_then(Value::as_str).and_then(|s| s.parse::<DateTime<Utc>>().ok()) {
            Some(until) => {
                ctx.log.line(&format!("resuming: waiting until {until}"));
                until
            }
            None => {
                let until = Utc::now() + chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX);
                ctx.record("until", Value::String(until.to_rfc3339())).await?;
                ctx.log.line(&format!("waiting {} (until {until})", humantime::format_duration(self.duration)));
                until
            }
        };
        let left = (until - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(left).await;
        Ok(Outcome::Success(Map::new()))
    }

    /// Always: with `until` recorded it waits for what is left, without it (stopped before it
    /// recorded anything) it starts waiting now.
    fn can_resume(&self, _recorded: &Map<String, Value>) -> bool {
        true
    }
}
