//! The API's reader of the event stream from an id on, for the SSE stream, `wait` and a log's
//! `follow`: a [`sluice_scheduler::follow::EventFollower`] over the API's store, taking new
//! events from the engine's broadcast inside the daemon, and reading the store by id once a
//! second in `dagctl server` (no engine in this process), as `dagctl events --follow` does.

use std::time::Duration;

use sluice_scheduler::follow::{EventFollower, Live};
use sluice_store::Event;

use crate::error::Problem;
use crate::Api;

/// How often a reader without the broadcast looks for new events.
const POLL: Duration = Duration::from_secs(1);

pub(crate) struct Feed {
    inner: EventFollower,
}

impl Feed {
    /// Events after `after` (none: from now on), of one DAG or run when given.
    pub(crate) async fn new(
        api: &Api,
        after: Option<i64>,
        dag_id: Option<String>,
        run_id: Option<String>,
    ) -> Result<Feed, Problem> {
        let live = match api.engine() {
            Some(_) => Live::Broadcast(api.events_store().subscribe()),
            None => Live::Poll(POLL),
        };
        Ok(Feed { inner: EventFollower::new(api.store_handle(), live, after, dag_id, run_id).await? })
    }

    /// The next event; waits for it.
    pub(crate) async fn next(&mut self) -> Result<Event, Problem> {
        Ok(self.inner.next().await?)
    }
}
