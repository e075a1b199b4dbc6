//! A reader of the event stream from an id on, for every subscriber of it (the API's SSE
//! stream, `wait` and log `follow`, its metrics, the alerter). It catches up from the store by
//! id, then takes each new event from the store's in-process broadcast as it commits (no
//! polling); a reader that lags behind the broadcast catches up from the store again. Without
//! the broadcast (a process that runs no engine: its store handle commits nothing the engine
//! does) it reads new events from the store by id every `poll`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Event, EventQuery, Order, Store, StoreError};
use tokio::sync::broadcast::{self, error::RecvError};

/// How many events one catch-up read takes.
const PAGE: u32 = 500;

/// Where a follower takes new events from once it has caught up.
pub enum Live {
    /// The broadcast of the store handle the engine commits through (subscribed by the
    /// caller before anything it should see can commit).
    Broadcast(broadcast::Receiver<Arc<Event>>),
    /// Reads of the store by id, this often.
    Poll(Duration),
}

pub struct EventFollower {
    store: Arc<dyn Store>,
    after: i64,
    dag_id: Option<String>,
    run_id: Option<String>,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    poll: Duration,
    buffer: VecDeque<Event>,
    caught_up: bool,
}

impl EventFollower {
    /// Events after `after` (`None`: from the newest event on), of one DAG or run when given.
    pub async fn new(
        store: Arc<dyn Store>,
        live: Live,
        after: Option<i64>,
        dag_id: Option<String>,
        run_id: Option<String>,
    ) -> Result<EventFollower, StoreError> {
        // Subscribed before the store is read: nothing committed in between is missed (an
        // event seen twice is dropped by its id).
        let (live, poll) = match live {
            Live::Broadcast(rx) => (Some(rx), Duration::from_secs(1)),
            Live::Poll(every) => (None, every),
        };
        let after = match after {
            Some(id) => id,
            None => latest_event_id(store.as_ref()).await?,
        };
        Ok(EventFollower { store, after, dag_id, run_id, live, poll, buffer: VecDeque::new(), caught_up: false })
    }

    /// The id of the last event handed out (or the starting point).
    pub fn position(&self) -> i64 {
        self.after
    }

    fn wanted(&self, e: &Event) -> bool {
        e.id > self.after
            && self.dag_id.as_ref().is_none_or(|d| e.dag_id.as_ref() == Some(d))
            && self.run_id.as_ref().is_none_or(|r| e.run_id.as_ref() == Some(r))
    }

    /// The next event; waits for it.
    pub async fn next(&mut self) -> Result<Event, StoreError> {
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
                let page = self.store.events(&q).await?;
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
                    tokio::time::sleep(self.poll).await;
                    self.caught_up = false;
                }
            }
        }
    }
}

/// The id of the newest event in the store (0 when there is none).
pub async fn latest_event_id(store: &dyn Store) -> Result<i64, StoreError> {
    let q = EventQuery { limit: 1, order: Order::Newest, ..EventQuery::default() };
    Ok(store.events(&q).await?.first().map_or(0, |e| e.id))
}
