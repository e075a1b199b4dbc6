//! Task and run states, and what a trigger rule decides from the states of a task's upstreams.
//! Pure logic with Airflow's meaning; the scheduler applies it, the store persists the states.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dag::TriggerRule;

/// The state of one task in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not yet considered: waiting for upstreams.
    None,
    /// Its trigger rule passed; waiting for a slot (parallelism, pool, max_active_tasks).
    Scheduled,
    /// Has a slot; about to start.
    Queued,
    Running,
    Success,
    Failed,
    /// Failed a try and will be tried again after its retry delay.
    UpForRetry,
    /// Will not run because an upstream failed.
    UpstreamFailed,
    Skipped,
    /// The task is no longer in the DAG.
    Removed,
}

impl TaskState {
    pub const ALL: [TaskState; 10] = [
        TaskState::None,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Removed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskState::None => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Removed => "removed",
        }
    }

    /// A state the task will not leave unless cleared.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Skipped
                | TaskState::Removed
        )
    }

    /// Counts as a failure for the run and for downstream trigger rules.
    pub fn is_failure(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::UpstreamFailed)
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| format!("unknown task state `{s}`"))
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created, waiting for `max_active_runs`.
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [RunState::Queued, RunState::Running, RunState::Success, RunState::Failed]
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown run state `{s}`"))
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a trigger rule says about a task whose upstreams are in the given states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not yet: some upstream that matters is not finished.
    Wait,
    Run,
    Skip,
    UpstreamFailed,
}

/// Airflow's trigger rules over the states of a task's direct upstreams. An upstream in
/// `removed` is left out, as if the edge were gone. A task without upstreams runs.
pub fn evaluate(rule: TriggerRule, upstream: &[TaskState]) -> Decision {
    let states: Vec<TaskState> = upstream.iter().copied().filter(|s| *s != TaskState::Removed).collect();
    let n = states.len();
    let count = |f: fn(TaskState) -> bool| states.iter().filter(|s| f(**s)).count();
    let success = count(|s| s == TaskState::Success);
    let skipped = count(|s| s == TaskState::Skipped);
    let failed = count(TaskState::is_failure);
    let done = count(TaskState::is_finished);
    let all_done = done == n;
    use Decision::*;
    if n == 0 {
        return Run;
    }
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess => {
            if failed > 0 {
                UpstreamFailed
            } else if skipped > 0 {
                Skip
            } else if success == n {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllFailed => {
            if success > 0 || skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if success > 0 {
                Run
            } else if !all_done {
                Wait
            } else if skipped == n {
                Skip
            } else {
                UpstreamFailed
            }
        }
        TriggerRule::OneFailed => {
            if failed > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::OneDone => {
            if success > 0 || failed > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if failed > 0 {
                UpstreamFailed
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if failed > 0 {
                UpstreamFailed
            } else if !all_done {
                Wait
            } else if success > 0 {
                Run
            } else {
                Skip
            }
        }
        TriggerRule::NoneSkipped => {
            if skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::TaskState::{Failed as F, Running as R, Skipped as K, Success as S, UpstreamFailed as U};
    use super::*;
    use TriggerRule as T;

    #[test]
    fn every_rule_against_every_upstream_mix() {
        // (rule, upstream states, decision)
        let table: &[(TriggerRule, &[TaskState], Decision)] = &[
            (T::AllSuccess, &[S, S], Run),
            (T::AllSuccess, &[S, R], Wait),
            (T::AllSuccess, &[F, R], UpstreamFailed),
            (T::AllSuccess, &[U, S], UpstreamFailed),
            (T::AllSuccess, &[K, S], Skip),
            (T::AllFailed, &[F, U], Run),
            (T::AllFailed, &[F, R], Wait),
            (T::AllFailed, &[F, S], Skip),
            (T::AllFailed, &[F, K], Skip),
            (T::AllDone, &[S, F, K, U], Run),
            (T::AllDone, &[S, R], Wait),
            (T::OneSuccess, &[S, R], Run),
            (T::OneSuccess, &[F, R], Wait),
            (T::OneSuccess, &[F, U], UpstreamFailed),
            (T::OneSuccess, &[K, K], Skip),
            (T::OneSuccess, &[K, F], UpstreamFailed),
            (T::OneFailed, &[F, R], Run),
            (T::OneFailed, &[U, R], Run),
            (T::OneFailed, &[S, R], Wait),
            (T::OneFailed, &[S, K], Skip),
            (T::OneDone, &[S, R], Run),
            (T::OneDone, &[F, R], Run),
            (T::OneDone, &[K, R], Wait),
            (T::OneDone, &[K, K], Skip),
            (T::NoneFailed, &[S, K], Run),
            (T::NoneFailed, &[S, R], Wait),
            (T::NoneFailed, &[S, F], UpstreamFailed),
            (T::NoneFailedMinOneSuccess, &[S, K], Run),
            (T::NoneFailedMinOneSuccess, &[K, K], Skip),
            (T::NoneFailedMinOneSuccess, &[K, U], UpstreamFailed),
            (T::NoneFailedMinOneSuccess, &[S, R], Wait),
            (T::NoneSkipped, &[S, F], Run),
            (T::NoneSkipped, &[S, K], Skip),
            (T::NoneSkipped, &[S, R], Wait),
            (T::Always, &[R, R], Run),
            (T::Always, &[], Run),
            (T::AllSuccess, &[], Run),
            (T::AllSuccess, &[TaskState::Removed, S], Run),
        ];
        for (rule, upstream, expected) in table {
            assert_eq!(evaluate(*rule, upstream), *expected, "{rule} over {upstream:?}");
        }
        // Every rule appears in the table.
        for rule in TriggerRule::ALL {
            assert!(table.iter().any(|(r, _, _)| *r == rule), "{rule} untested");
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in TaskState::ALL {
            assert_eq!(s.name().parse::<TaskState>().unwrap(), s);
        }
        assert_eq!("failed".parse::<RunState>().unwrap(), RunState::Failed);
    }
}
