//! The event stream: a page by id (`GET /events?after=ID`) and the live stream as Server-Sent
//! Events (`GET /events/stream`), resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_store::{Event, EventQuery, Order};

use super::{limit, Feed, Query};
use crate::error::{ApiResult, Problem};
use crate::Api;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this id, oldest first; without it, the newest `limit` events.
    pub after: Option<i64>,
    pub dag_id: Option<String>,
    /// The run id (`scheduled__...`).
    pub run_id: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A page of events, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass it as `after` for the events that follow (the last id of this page, or the
    /// `after` given when the page is empty).
    pub next_after: Option<i64>,
}

pub(crate) async fn list(State(api): State<Api>, Query(q): Query<EventsQuery>) -> ApiResult<Json<EventPage>> {
    let n = limit(q.limit, 100, 1000, "limit")?;
    let order = if q.after.is_some() { Order::Oldest } else { Order::Newest };
    let query = EventQuery { after: q.after, dag_id: q.dag_id, run_id: q.run_id, limit: n, order };
    let mut events = api.store().events(&query).await?;
    if order == Order::Newest {
        events.reverse();
    }
    let next_after = events.last().map(|e| e.id).or(q.after);
    Ok(Json(EventPage { events, next_after }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this id (as `Last-Event-ID` does); without either, from now on.
    pub after: Option<i64>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
}

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn stream(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Response> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| Problem::bad_request("Last-Event-ID must be an event id (an integer)"))?,
        ),
    };
    let after = last_event_id.or(q.after);
    let feed = Feed::new(&api, after, q.dag_id, q.run_id).await?;
    let closing = api.closing();
    let events = futures_util::stream::unfold((feed, closing), |(mut feed, mut closing)| async move {
        let event = tokio::select! {
            e = feed.next() => e.ok()?,
            _ = closing.wait_for(|c| *c) => return None,
        };
        let sse = SseEvent::default()
            .id(event.id.to_string())
            .event(event.kind.name())
            .json_data(&event)
            .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"));
        Some((Ok::<_, Infallible>(sse), (feed, closing)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}
