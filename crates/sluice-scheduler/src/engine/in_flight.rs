//! The tries in flight: those running in tokio tasks of their own, and those that ended as
//! they started (a `noop`), waiting for the engine's next turn to be recorded.

use std::future::Future;

use tokio::task::{AbortHandle, JoinError, JoinSet};

use crate::job::TryDone;

/// How a try ended: as its tokio task ended, or at once.
pub(crate) type Ended = Result<TryDone, JoinError>;

pub(crate) struct InFlight {
    running: JoinSet<TryDone>,
    /// Tries that needed no task: they end in the next turn, before anything is waited for.
    ended: Vec<TryDone>,
}

impl InFlight {
    pub(crate) fn new() -> InFlight {
        InFlight { running: JoinSet::new(), ended: Vec::new() }
    }

    /// Runs a try in a tokio task of its own.
    pub(crate) fn spawn(&mut self, try_: impl Future<Output = TryDone> + Send + 'static) -> AbortHandle {
        self.running.spawn(try_)
    }

    /// A try that ended as it started, recorded in the next turn.
    pub(crate) fn ended(&mut self, done: TryDone) {
        self.ended.push(done);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty() && self.ended.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.running.len() + self.ended.len()
    }

    /// Waits for the next try to end; returns it with every other one that has ended by then.
    /// Tries that ended at once come back without waiting. `None` when nothing is in flight.
    pub(crate) async fn next_batch(&mut self) -> Option<Vec<Ended>> {
        let mut batch: Vec<Ended> = self.ended.drain(..).map(Ok).collect();
        if batch.is_empty() {
            batch.push(self.running.join_next().await?);
        }
        while let Some(done) = self.running.try_join_next() {
            batch.push(done);
        }
        Some(batch)
    }

    /// The tries that ended as they started and are not recorded yet.
    pub(crate) fn take_ended(&mut self) -> Vec<TryDone> {
        std::mem::take(&mut self.ended)
    }

    /// Cuts off every running try and waits until each has stopped. Tries that had ended are
    /// dropped unrecorded (left running in the store, as the cut-off ones are).
    pub(crate) async fn abort_all(&mut self) {
        self.ended.clear();
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Outcome;

    fn done(task: usize) -> TryDone {
        TryDone { run: 1, task, try_number: 1, result: Ok(Outcome::Success(Default::default())) }
    }

    fn tasks(batch: &[Ended]) -> Vec<usize> {
        let mut t: Vec<usize> = batch.iter().map(|d| d.as_ref().expect("ended").task).collect();
        t.sort_unstable();
        t
    }

    #[tokio::test]
    async fn tries_that_ended_at_once_come_back_first_with_those_that_finished() {
        let mut f = InFlight::new();
        assert!(f.next_batch().await.is_none(), "nothing in flight");
        f.spawn(async { done(1) });
        // The spawned try finishes before the ended one is asked for.
        let batch = f.next_batch().await.expect("a batch");
        assert_eq!(tasks(&batch), vec![1]);
        f.ended(done(2));
        f.ended(done(3));
        assert_eq!((f.len(), f.is_empty()), (2, false));
        let batch = f.next_batch().await.expect("a batch");
        assert_eq!(tasks(&batch), vec![2, 3]);
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn abort_all_cuts_off_the_running_and_drops_the_ended() {
        let mut f = InFlight::new();
        f.spawn(std::future::pending());
        f.ended(done(2));
        assert_eq!(f.take_ended().len(), 1);
        f.ended(done(3));
        f.abort_all().await;
        assert!(f.is_empty());
        assert!(f.next_batch().await.is_none());
    }
}
