//! Integrator feeds: every event of the caller's organizations, in commit order, as CloudEvents.
//!
//! - `GET /events?after=&types=&aggregate_type=&aggregate_id=&limit=`: JSON pages with `next`.
//! - `GET /events/stream`: Server-Sent Events; `id:` is the cursor, `Last-Event-ID` (or
//!   `?after=`) resumes, and a comment line is sent every 15 s.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use domain::Scope;
use eventstore::{Cursor, EventFilter, RecordedEvent};
use futures::Stream;
use projections::bus::CloudEvent;
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, Principal};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

const MAX_LIMIT: i64 = 1000;
/// How often an idle stream reads the caller's organizations and the store again, even without
/// a wake-up from the bus (the bus wakes a stream for every event it would return).
const POLL: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(page))
        .route("/events/stream", get(stream))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// Start after this cursor (default: the beginning).
    after: Option<String>,
    /// Comma-separated event types, `noun.verb` (e.g. `task.created,task.deleted`).
    types: Option<String>,
    /// Only this aggregate type.
    aggregate_type: Option<String>,
    /// Only this aggregate.
    aggregate_id: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

impl FeedQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        let types = match &self.types {
            None => None,
            Some(list) => {
                let types: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
                if types.is_empty()
                    || types.iter().any(|t| {
                        !t.contains('.')
                            || !t
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                    })
                {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "`types` is a comma-separated list of event types such as `task.created`",
                    ));
                }
                Some(types)
            }
        };
        Ok(EventFilter {
            orgs: None,
            aggregate_types: self.aggregate_type.clone().map(|t| vec![t]),
            event_types: types,
            aggregate_id: self.aggregate_id.clone(),
        })
    }
}

fn parse_cursor(text: Option<&str>) -> Result<Cursor, ApiError> {
    match text {
        None | Some("") => Ok(Cursor::START),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_cursor", "not a Cairn cursor")),
    }
}

/// The organizations the caller belongs to (the feed's scope).
async fn scope(state: &AppState, caller: &Principal) -> Result<Vec<String>, ApiError> {
    let ready = state.ready()?;
    let orgs =
        projections::memberships::organizations_of(ready.store.pool(), caller.user_id.as_uuid())
            .await?;
    Ok(orgs.into_iter().map(|o| o.to_string()).collect())
}

#[derive(Debug, Serialize)]
struct FeedPage {
    events: Vec<CloudEvent>,
    /// The `after` of the next page (the last event's cursor, or `after` if none came).
    next: String,
}

async fn page(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    caller.require(Scope::EventsRead)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let after = parse_cursor(query.after.as_deref())?;
    let mut filter = query.filter()?;
    let ready = state.ready()?;
    crate::routes::board::caught_up_locally(ready, projections::memberships::NAME).await?;
    filter.orgs = Some(scope(&state, &caller).await?);
    let events: Vec<RecordedEvent> = if filter.orgs.as_ref().is_some_and(Vec::is_empty) {
        Vec::new()
    } else {
        ready.store.tail_filtered(after, limit, &filter).await?
    };
    let next = events
        .last()
        .map_or(after, RecordedEvent::cursor)
        .to_string();
    Ok(Json(FeedPage {
        events: events.iter().map(CloudEvent::from_recorded).collect(),
        next,
    }))
}

async fn stream(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Scope::EventsRead)?;
    if query.limit.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`limit` applies to /events pages, not the stream",
        ));
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.after.as_deref());
    let start = parse_cursor(resume)?;
    let filter = query.filter()?;
    state.ready()?;
    let wake = state.bus().subscribe();
    let feed = Feed {
        state,
        caller,
        filter,
        cursor: start,
        pending: std::collections::VecDeque::new(),
        wake,
        orgs: None,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("heartbeat"),
    ))
}

/// One SSE client's position.
struct Feed {
    state: AppState,
    caller: Principal,
    filter: EventFilter,
    cursor: Cursor,
    pending: std::collections::VecDeque<RecordedEvent>,
    wake: tokio::sync::broadcast::Receiver<std::sync::Arc<CloudEvent>>,
    /// The caller's organizations, read again after any organization event (membership may
    /// have changed) and on every slow poll.
    orgs: Option<Vec<String>>,
}

impl Feed {
    /// The next event, waiting for one as long as it takes; `None` ends the stream (the
    /// server is shutting down or the database went away).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.cursor();
                let cloud = CloudEvent::from_recorded(&event);
                let body = serde_json::to_string(&cloud).ok()?;
                return Some(Event::default().id(cloud.cairncursor).data(body));
            }
            let ready = self.state.ready().ok()?;
            if self.orgs.is_none() {
                self.orgs = Some(scope(&self.state, &self.caller).await.ok()?);
            }
            let mut filter = self.filter.clone();
            filter.orgs = self.orgs.clone();
            if !filter.orgs.as_ref().is_some_and(Vec::is_empty) {
                match ready.store.tail_filtered(self.cursor, 500, &filter).await {
                    Ok(events) if !events.is_empty() => {
                        self.pending.extend(events);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("event stream read failed, retrying: {e}"),
                }
            }
            let shutdown = self.state.shutdown().clone();
            tokio::select! {
                () = self.wait(&filter) => {}
                // The server is stopping: end the stream (clients resume with Last-Event-ID).
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Waits for a bus event this stream would return, or one that may change the caller's
    /// organizations, or the slow poll; events for others wake nothing but this check.
    async fn wait(&mut self, filter: &EventFilter) {
        let deadline = tokio::time::Instant::now() + POLL;
        loop {
            match tokio::time::timeout_at(deadline, self.wake.recv()).await {
                Ok(Ok(event)) => {
                    let (aggregate_type, aggregate_id) = event.stream();
                    if aggregate_type == "organization" {
                        // Membership may have changed: read it again once projected.
                        if let (Ok(ready), Some(cursor)) = (self.state.ready(), event.cursor()) {
                            let _ = crate::routes::board::caught_up(
                                ready,
                                projections::memberships::NAME,
                                cursor,
                            )
                            .await;
                        }
                        self.orgs = None;
                        return;
                    }
                    let event_type = event.stored_type();
                    if filter.matches(
                        event.cairnorg.as_deref(),
                        aggregate_type,
                        aggregate_id,
                        &event_type,
                    ) {
                        return;
                    }
                }
                // Behind the bus: look at the store.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => return,
                // No bus (shutting down): only the slow poll.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    tokio::time::sleep_until(deadline).await;
                    self.orgs = None;
                    return;
                }
                Err(_) => {
                    self.orgs = None;
                    return;
                }
            }
        }
    }
}
