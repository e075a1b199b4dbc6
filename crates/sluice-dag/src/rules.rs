//! The scheduler's pure rules, each written once: what a task becomes when a try ends (and
//! when its retry is due), and how a run ends once its tasks have. The engine applies them
//! after a try, and recovery after a restart applies the same ones to the tries a stop
//! interrupted.

use chrono::{DateTime, Utc};

use crate::dag::{Dag, RetryPolicy};
use crate::operators::OperatorKind;
use crate::state::{RunState, TaskState};

/// How a try ended, as far as its task's next state is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryResult {
    Success,
    Skipped,
    /// `retryable` is false for an error another try would repeat (a template that does not
    /// render, a sensor's timeout, a panic).
    Failed {
        retryable: bool,
    },
}

/// A try that ended: which one, and when.
#[derive(Debug, Clone, Copy)]
pub struct EndedTry<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub try_number: u32,
    /// The most tries the task instance may have (`retries + 1` when its run was created).
    pub max_tries: u32,
    pub at: DateTime<Utc>,
}

/// What a task becomes after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTry {
    Success,
    Skipped,
    Failed,
    /// Up for retry; the next try is due at this time.
    Retry(DateTime<Utc>),
}

impl AfterTry {
    pub fn state(self) -> TaskState {
        match self {
            AfterTry::Success => TaskState::Success,
            AfterTry::Skipped => TaskState::Skipped,
            AfterTry::Failed => TaskState::Failed,
            AfterTry::Retry(_) => TaskState::UpForRetry,
        }
    }

    pub fn retry_at(self) -> Option<DateTime<Utc>> {
        match self {
            AfterTry::Retry(at) => Some(at),
            _ => None,
        }
    }
}

/// What a task becomes after `ended` ended with `result`: a retryable failure is retried
/// while tries are left, by the task's retry `policy`.
pub fn after_try(ended: &EndedTry<'_>, result: TryResult, policy: &RetryPolicy) -> AfterTry {
    match result {
        TryResult::Success => AfterTry::Success,
        TryResult::Skipped => AfterTry::Skipped,
        TryResult::Failed { retryable: true } if ended.try_number < ended.max_tries => {
            AfterTry::Retry(retry_time(ended, policy))
        }
        TryResult::Failed { .. } => AfterTry::Failed,
    }
}

/// When the try after `ended` is due: the policy's delay before it, up to 20% sooner so that
/// the retries of many tasks that failed together do not all land at once. The jitter is
/// hashed from the try's identity, so the same try always gets the same delay (a test can
/// compute it), and is whole microseconds (what the store keeps). Saturates at the end of time.
pub fn retry_time(ended: &EndedTry<'_>, policy: &RetryPolicy) -> DateTime<Utc> {
    let next = ended.try_number.saturating_add(1);
    let delay = policy.delay_before(next).as_micros();
    const PARTS: u128 = 1_000_000;
    let jitter = u128::from(try_hash(ended.dag_id, ended.run_id, ended.task_id, next)) % PARTS;
    let micros = delay - delay * jitter / (5 * PARTS);
    i64::try_from(micros)
        .ok()
        .and_then(|m| ended.at.checked_add_signed(chrono::Duration::microseconds(m)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A stable hash of a try's identity (FNV-1a, then splitmix64's finalizer to spread it):
/// the same on every platform and Rust version, unlike `std`'s hasher.
fn try_hash(dag_id: &str, run_id: &str, task_id: &str, try_number: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts: [&[u8]; 4] = [dag_id.as_bytes(), run_id.as_bytes(), task_id.as_bytes(), &try_number.to_le_bytes()];
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// How a run ends, or `None` while one of its tasks is not finished. As in Airflow, a run
/// fails when one of its leaves failed or is upstream_failed, and succeeds otherwise; as with
/// Airflow's teardown tasks, a `terminate` does not hide a failure before it: a failed task
/// whose only downstream tasks are teardowns counts as a leaf. (A teardown that fails still
/// fails the run: a cluster left up is a failure worth seeing.) `downs` is the DAG's
/// downstream adjacency ([`Dag::adjacency`]); `state` gives each task's state by index.
pub fn run_verdict(dag: &Dag, downs: &[Vec<usize>], state: impl Fn(usize) -> TaskState) -> Option<RunState> {
    if !(0..dag.tasks.len()).all(|i| state(i).is_finished()) {
        return None;
    }
    let teardown = |i: usize| dag.tasks[i].operator.kind() == OperatorKind::Terminate;
    let failed = (0..dag.tasks.len()).any(|i| state(i).is_failure() && downs[i].iter().all(|d| teardown(*d)));
    Some(if failed { RunState::Failed } else { RunState::Success })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration as StdDuration;

    use super::*;
    use crate::dag::Backoff;
    use crate::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ended(try_number: u32, max_tries: u32) -> EndedTry<'static> {
        EndedTry {
            dag_id: "d",
            run_id: "manual__2026-01-01",
            task_id: "t",
            try_number,
            max_tries,
            at: at("2026-01-01T00:00:00Z"),
        }
    }

    fn policy(delay: u64, backoff: Backoff, max: Option<u64>) -> RetryPolicy {
        RetryPolicy { retries: 3, delay: Duration::from_secs(delay), backoff, max_delay: max.map(Duration::from_secs) }
    }

    #[test]
    fn a_try_outcome_decides_the_task_state() {
        let p = policy(60, Backoff::Fixed, None);
        use TryResult::*;
        // (result, try, max tries, state)
        let table = [
            (Success, 1, 1, TaskState::Success),
            (Success, 1, 3, TaskState::Success),
            (Skipped, 2, 3, TaskState::Skipped),
            (Failed { retryable: true }, 1, 3, TaskState::UpForRetry),
            (Failed { retryable: true }, 2, 3, TaskState::UpForRetry),
            (Failed { retryable: true }, 3, 3, TaskState::Failed),
            (Failed { retryable: true }, 1, 1, TaskState::Failed),
            (Failed { retryable: false }, 1, 3, TaskState::Failed),
            // Cleared with fewer tries than it already had: no retry.
            (Failed { retryable: true }, 5, 3, TaskState::Failed),
        ];
        for (result, n, max, state) in table {
            let after = after_try(&ended(n, max), result, &p);
            assert_eq!(after.state(), state, "{result:?} on try {n} of {max}");
            assert_eq!(after.retry_at().is_some(), state == TaskState::UpForRetry);
        }
    }

    #[test]
    fn a_retry_is_due_after_the_delay_less_at_most_a_fifth() {
        // (policy, failed try, nominal delay in seconds)
        let table = [
            (policy(60, Backoff::Fixed, None), 1, 60),
            (policy(60, Backoff::Fixed, None), 3, 60),
            (policy(3600, Backoff::Exponential, None), 1, 3600),
            (policy(3600, Backoff::Exponential, None), 2, 7200),
            (policy(3600, Backoff::Exponential, None), 3, 14400),
            (policy(3600, Backoff::Exponential, Some(5000)), 3, 5000),
        ];
        for (p, n, nominal) in table {
            let e = ended(n, 10);
            let delay = (retry_time(&e, &p) - e.at).to_std().unwrap();
            let nominal = StdDuration::from_secs(nominal);
            assert!(delay <= nominal && delay >= nominal.mul_f64(0.8), "try {n}: {delay:?} for {nominal:?}");
            assert_eq!(delay.subsec_nanos() % 1000, 0, "whole microseconds");
        }
    }

    #[test]
    fn the_jitter_is_the_same_for_the_same_try_and_differs_between_tries() {
        let p = policy(3600, Backoff::Fixed, None);
        let e = ended(1, 10);
        assert_eq!(retry_time(&e, &p), retry_time(&e, &p));
        let delays: std::collections::BTreeSet<DateTime<Utc>> =
            ["a", "b", "c", "d", "e", "f"].into_iter().map(|t| retry_time(&EndedTry { task_id: t, ..e }, &p)).collect();
        assert!(delays.len() > 1, "tasks that failed together are spread: {delays:?}");
        assert_ne!(try_hash("d", "r", "t", 2), try_hash("d", "rt", "", 2), "parts are separated");
    }

    #[test]
    fn a_retry_time_saturates_at_the_end_of_time() {
        let p = RetryPolicy { retries: 1000, delay: Duration::LIMIT, backoff: Backoff::Exponential, max_delay: None };
        let e = EndedTry { at: DateTime::<Utc>::MAX_UTC, try_number: u32::MAX, max_tries: u32::MAX, ..ended(1, 1) };
        assert_eq!(retry_time(&e, &p), DateTime::<Utc>::MAX_UTC);
        let far = EndedTry { try_number: 1000, max_tries: 1001, ..ended(1, 1) };
        assert!(retry_time(&far, &p) > far.at);
    }

    fn dag(src: &str) -> Dag {
        let outcome = crate::parse_dag(Path::new("v.toml"), src);
        outcome.dag.unwrap_or_else(|| panic!("{:#?}", outcome.diagnostics))
    }

    #[test]
    fn a_run_verdict_follows_its_leaves_and_sees_through_teardowns() {
        let chain = dag(
            "[tasks.a]\noperator = \"noop\"\n[tasks.b]\noperator = \"noop\"\ndepends_on = [\"a\"]\ntrigger_rule = \"all_done\"\n",
        );
        let teardown = dag("[tasks.make]\noperator = \"noop\"\n\
             [tasks.stop]\noperator = \"terminate\"\ncluster_id = \"j-1\"\ndepends_on = [\"make\"]\n");
        use TaskState::*;
        // (dag, states by task index, verdict)
        let table: [(&Dag, [TaskState; 2], Option<RunState>); 9] = [
            (&chain, [Success, Success], Some(RunState::Success)),
            (&chain, [Success, Running], Option::None),
            (&chain, [UpForRetry, None], Option::None),
            // A failure that is not a leaf does not fail the run.
            (&chain, [Failed, Success], Some(RunState::Success)),
            (&chain, [Success, Failed], Some(RunState::Failed)),
            (&chain, [Failed, UpstreamFailed], Some(RunState::Failed)),
            (&chain, [Skipped, Removed], Some(RunState::Success)),
            // A failure before a teardown counts as a leaf; a failed teardown fails the run.
            (&teardown, [Failed, Success], Some(RunState::Failed)),
            (&teardown, [Success, Failed], Some(RunState::Failed)),
        ];
        for (d, states, verdict) in table {
            let (_, downs) = d.adjacency();
            assert_eq!(run_verdict(d, &downs, |i| states[i]), verdict, "{states:?}");
        }
        let (_, downs) = teardown.adjacency();
        assert_eq!(run_verdict(&teardown, &downs, |_| Success), Some(RunState::Success));
    }
}
