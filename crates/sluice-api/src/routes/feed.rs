//! A reader of the event stream from an id on: what the SSE stream, `wait` and a log's
//! `follow` read. It catches up from the store by id, then, inside the daemon, takes each new
//! event from the store's broadcast as it commits (no polling); a reader that lags behind the
//! broadcast catches up from the store again. In `dagctl server` (no engine in this process)
//! new events are read from the store by id once a second, as `dagctl events --follow` does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Event, EventQuery, Order};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::Problem;
use crate::Api;

/// How many events one catch-up read takes.
const PAGE: u32 = 500;
/// How often a reader without the broadcast looks for new events.
const POLL: Duration = Duration::from_secs(1);

pub(crate) struct Feed {
    api: Api,
    after: i64,
    dag_id: Option<String>,
    run_id: Option<String>,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    buffer: VecDeque<Event>,
    caught_up: bool,
}

impl Feed {
    /// Events after `after` (none: from now on), of one DAG or run when given.
    pub(crate) async fn new(
        api: &Api,
        after: Option<i64>,
        dag_id: Option<String>,
        run_id: Option<String>,
    ) -> Result<Feed, Problem> {
        // Subscribe before reading the store: nothing committed in between is missed (an
        // event seen twice is dropped by its id).
        let live = api.engine().map(|_| api.events_store().subscribe());
        let after = match after {
            Some(id) => id,
            None => {
                let q = EventQuery { limit: 1, order: Order::Newest, ..EventQuery::default() };
                api.store().events(&q).await?.first().map_or(0, |e| e.id)
            }
        };
        Ok(Feed { api: api.clone(), after, dag_id, run_id, live, buffer: VecDeque::new(), caught_up: false })
    }

    fn wanted(&self, e: &Event) -> bool {
        e.id > self.after
            && self.dag_id.as_ref().is_none_or(|d| e.dag_id.as_ref() == Some(d))
            && self.run_id.as_ref().is_none_or(|r| e.run_id.as_ref() == Some(r))
    }

    /// The next event; waits for it.
    pub(crate) async fn next(&mut self) -> Result<Event, Problem> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.after = e.id;
                return Ok(e);
            }
            if !self.caught_up {
                let q = EventQuery {
                    after: Some(self.after),
                    dag_id: self.dag_id.clone(),
                    run_id: self.run_id.clone(),
                    limit: PAGE,
                    order: Order::Oldest,
                };
                let page = self.api.store().events(&q).await?;
                self.caught_up = page.len() < PAGE as usize;
                self.buffer.extend(page);
                continue;
            }
            match self.live.as_mut() {
                Some(rx) => match rx.recv().await {
                    Ok(e) if self.wanted(&e) => {
                        self.after = e.id;
                        return Ok(Event::clone(&e));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.caught_up = false,
                    Err(RecvError::Closed) => self.live = None,
                },
                None => {
                    tokio::time::sleep(POLL).await;
                    self.caught_up = false;
                }
            }
        }
    }
}
