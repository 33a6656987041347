//! Integrator feeds: every event of the caller's organizations, in commit order, as CloudEvents.
//!
//! - `GET /events?after=&types=&aggregate_type=&aggregate_id=&limit=`: JSON pages with `next`.
//! - `GET /events/stream`: Server-Sent Events; `id:` is the cursor, `Last-Event-ID` (or
//!   `?after=`) resumes, and a comment line is sent every `CAIRN_SSE_HEARTBEAT_SECONDS`
//!   (15 s by default).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use domain::Scope;
use eventstore::{Cursor, EventFilter, RecordedEvent};
use futures::Stream;
use projections::consumers::bus::CloudEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::api::doc::{
    BadRequest, CloudEventDoc, CursorSchema, Forbidden, TooManyRequests, Unauthorized, Unavailable,
};

use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::ApiQuery;
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;
use projections::read_models::access::{Access, Change, Reader};
use uuid::Uuid;

const MAX_LIMIT: i64 = 1000;
/// How often an idle stream reads the caller's organizations and the store again, even without
/// a wake-up from the bus (the bus wakes a stream for every event it would return).
const POLL: Duration = Duration::from_secs(5);

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] =
    &[(Method::GET, "/events"), (Method::GET, "/events/stream")];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(page, stream))]
pub(super) struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(page))
        .route("/events/stream", get(stream))
}

/// The feeds' filters (and, for pages, the page size).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    /// Start after this cursor (empty or absent: from the beginning).
    #[param(
        pattern = "^([0-9a-fA-F]{16}[0-7][0-9a-fA-F]{15})?$",
        example = "00000000000000000000000000000000"
    )]
    after: Option<String>,
    /// Comma-separated event types, `noun.verb` (e.g. `task.created,task.deleted`).
    #[param(
        pattern = "^(\\s*,)*\\s*[a-z_.]*\\.[a-z_.]*\\s*(,\\s*([a-z_.]*\\.[a-z_.]*\\s*)?)*$",
        example = "task.created,task.deleted"
    )]
    types: Option<String>,
    /// Only this aggregate type.
    aggregate_type: Option<String>,
    /// Only this aggregate.
    aggregate_id: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
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
                    return Err(ApiError::new(
                        ErrorCode::InvalidQuery,
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
            .map_err(|_| ApiError::new(ErrorCode::InvalidCursor, "not a Cairn cursor")),
    }
}

/// The tenants whose events `access` may see any of (the feeds' scope), as stored.
fn scope(access: &Access) -> Vec<String> {
    access.orgs().iter().map(Uuid::to_string).collect()
}

/// Whether `access` lets its reader see `event`.
fn admits(access: &Access, event: &RecordedEvent) -> bool {
    access.may_read_event(
        event.org_id.as_deref(),
        &event.aggregate_type,
        &event.aggregate_id,
        &event.event_type,
    )
}

/// A page of the feed, in commit order.
#[derive(Debug, Serialize, ToSchema)]
struct FeedPage {
    /// The events the caller may read (possibly fewer than `limit`, even none).
    #[schema(value_type = Vec<CloudEventDoc>)]
    events: Vec<CloudEvent>,
    /// The `after` of the next page (the last event's cursor, or `after` if none came).
    #[schema(value_type = CursorSchema)]
    next: String,
}

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    operation_id = "listEvents",
    summary = "Every event of the caller's organizations the caller may read, in commit order, as CloudEvents (scope events:read)",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events", body = FeedPage),
        BadRequest, Unauthorized, Forbidden, TooManyRequests, Unavailable
    )
)]
async fn page(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    caller.require(Scope::EventsRead)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`limit` must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let after = parse_cursor(query.after.as_deref())?;
    let mut filter = query.filter()?;
    let ready = state.ready()?;
    let access = ready.access(Some(&caller), None).await?;
    filter.orgs = Some(scope(&access));
    let scanned: Vec<RecordedEvent> = if filter.orgs.as_ref().is_some_and(Vec::is_empty) {
        Vec::new()
    } else {
        ready.store.tail_filtered(after, limit, &filter).await?
    };
    // `next` passes what was read, shown or not, so a page of events the caller may not see
    // still moves the feed on.
    let next = scanned
        .last()
        .map_or(after, RecordedEvent::cursor)
        .to_string();
    Ok(Json(FeedPage {
        events: scanned
            .iter()
            .filter(|e| admits(&access, e))
            .map(CloudEvent::from_recorded)
            .collect(),
        next,
    }))
}

#[utoipa::path(
    get,
    path = "/events/stream",
    tag = "events",
    operation_id = "streamEvents",
    summary = "The same feed as Server-Sent Events: `id:` is the cursor; resume with Last-Event-ID (scope events:read)",
    params(
        ("after" = Option<String>, Query, pattern = "^([0-9a-fA-F]{16}[0-7][0-9a-fA-F]{15})?$", description = "Start after this cursor (empty or absent: from the beginning)"),
        ("types" = Option<String>, Query, pattern = "^(\\s*,)*\\s*[a-z_.]*\\.[a-z_.]*\\s*(,\\s*([a-z_.]*\\.[a-z_.]*\\s*)?)*$", description = "Comma-separated event types, `noun.verb`"),
        ("aggregate_type" = Option<String>, Query, description = "Only this aggregate type"),
        ("aggregate_id" = Option<String>, Query, description = "Only this aggregate"),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^([0-9a-fA-F]{16}[0-7][0-9a-fA-F]{15})?$", description = "Resume after this cursor (wins over `after`)")
    ),
    responses(
        (status = 200, description = "`data:` is one CloudEvent as JSON; `: heartbeat` comments keep the connection open", content_type = "text/event-stream", body = String),
        BadRequest, Unauthorized, Forbidden, TooManyRequests, Unavailable
    )
)]
async fn stream(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Scope::EventsRead)?;
    if query.limit.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
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
    let heartbeat = state.config().sse_heartbeat;
    let wake = state.bus().subscribe();
    let feed = Feed {
        state,
        reader: caller.reader(),
        caller,
        filter,
        cursor: start,
        pending: std::collections::VecDeque::new(),
        wake,
        access: None,
        reload: true,
        account_seq: 0,
        vetted: start,
        ending: false,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

/// The organization events that can take access away, looked for in every batch's range.
const ACCESS_EVENTS: [&str; 4] = [
    "organization.member_removed",
    "organization.team_member_removed",
    "organization.team_permissions_set",
    "organization.team_deleted",
];

/// One SSE client's position.
///
/// Access is the policy's answer, held while the stream is open and decided again, in commit
/// order, whenever an event could change it: before a batch is sent, the caller's account
/// stream is read for a revoked key or session or an erasure, and the caller's organizations
/// for a removal or a change of rights. The stream ends before the first event committed
/// after a loss (the client learns it on reconnecting); gains simply widen it.
struct Feed {
    state: AppState,
    caller: Principal,
    reader: Reader,
    filter: EventFilter,
    /// Where the next read starts (everything before it was sent or not for this caller).
    cursor: Cursor,
    /// Events admitted and not yet sent.
    pending: std::collections::VecDeque<RecordedEvent>,
    wake: tokio::sync::broadcast::Receiver<std::sync::Arc<CloudEvent>>,
    access: Option<Access>,
    /// Read access again before the next read (an organization event, the slow poll).
    reload: bool,
    /// The last sequence of the caller's account stream already looked at.
    account_seq: i64,
    /// Access changes up to here were decided already.
    vetted: Cursor,
    /// Access was lost: send what is pending, then end.
    ending: bool,
}

impl Feed {
    /// The next event, waiting for one as long as it takes; `None` ends the stream (access
    /// ended, the server is shutting down, or the database went away).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                let cloud = CloudEvent::from_recorded(&event);
                let body = serde_json::to_string(&cloud).ok()?;
                return Some(Event::default().id(cloud.cairncursor).data(body));
            }
            if self.ending {
                return None;
            }
            let state = self.state.clone();
            let ready = state.ready().ok()?;
            if self.reload {
                self.reload_access().await?;
            }
            let mut filter = self.filter.clone();
            filter.orgs = self.access.as_ref().map(scope);
            if !filter.orgs.as_ref().is_some_and(Vec::is_empty) {
                match ready.store.tail_filtered(self.cursor, 500, &filter).await {
                    Ok(events) if !events.is_empty() => {
                        self.admit(events).await?;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("event stream read failed, retrying: {e}"),
                }
            }
            // Nothing to send: a revocation may still have happened (it carries no org).
            if self.credential_ended_before(None).await?.is_some() {
                return None;
            }
            let shutdown = self.state.shutdown().clone();
            tokio::select! {
                () = self.wait(&filter) => {}
                // The server is stopping: end the stream (clients resume with Last-Event-ID).
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Reads access again; `None` (end the stream) if anything was lost.
    async fn reload_access(&mut self) -> Option<()> {
        let ready = self.state.ready().ok()?;
        let access = ready.access(Some(&self.caller), None).await.ok()?;
        if !access.is_live() {
            return None;
        }
        if let Some(before) = &self.access {
            if access.lost_since(before) {
                return None;
            }
        }
        self.access = Some(access);
        self.reload = false;
        Some(())
    }

    /// Vets a batch read from the store: what comes before any change of this caller's access
    /// is queued (if the caller may see it); at a change, access is decided again, and the
    /// stream ends there if it was lost. `None` ends the stream at once.
    async fn admit(&mut self, mut batch: Vec<RecordedEvent>) -> Option<()> {
        let state = self.state.clone();
        let ready = state.ready().ok()?;
        let end = batch.last()?.cursor();
        // The first event in the batch's range that may change access, if any.
        let mut stop = self.credential_ended_before(Some(end)).await?;
        let mut lost_credential = stop.is_some();
        let orgs = self.access.as_ref().map(scope).unwrap_or_default();
        let changes = EventFilter {
            orgs: Some(orgs),
            aggregate_types: Some(vec!["organization".to_owned()]),
            event_types: Some(ACCESS_EVENTS.map(str::to_owned).to_vec()),
            aggregate_id: None,
        };
        let limit = 100;
        let found = ready
            .store
            .tail_filtered(self.cursor, limit, &changes)
            .await
            .ok()?;
        if found.len() as i64 == limit {
            // More changes than one look takes: vet only up to the last one seen.
            if let Some(last) = found.last() {
                batch.retain(|e| e.cursor() <= last.cursor());
            }
        }
        let user = self.reader.user();
        if let Some(change) = found.iter().find(|e| {
            e.cursor() <= end
                && e.cursor() > self.vetted
                && match Change::of_event(
                    &e.aggregate_type,
                    &e.aggregate_id,
                    &e.event_type,
                    e.payload.get(),
                ) {
                    Some(Change::LeftOrganization { user: u, .. }) => Some(u) == user,
                    Some(Change::RightsChanged { user: u, .. }) => u.is_none() || u == user,
                    _ => false,
                }
        }) {
            if stop.is_none_or(|s| change.cursor() < s) {
                stop = Some(change.cursor());
                lost_credential = false;
            }
        }
        let access = self.access.as_ref()?;
        let mut last = self.cursor;
        for event in batch {
            let cursor = event.cursor();
            if stop.is_some_and(|s| cursor >= s) {
                break;
            }
            last = cursor;
            if admits(access, &event) {
                self.pending.push_back(event);
            }
        }
        self.cursor = last;
        match stop {
            None => {}
            Some(_) if lost_credential => self.ending = true,
            Some(at) => {
                // Decide again once the memberships read model includes the change; the
                // events from the change on are read again under the new answer.
                if ready
                    .caught_up(projections::read_models::memberships::NAME, at)
                    .await
                    .is_err()
                {
                    self.ending = true;
                } else {
                    self.vetted = at;
                    self.reload = true;
                }
            }
        }
        Some(())
    }

    /// The cursor of the first event (up to `end`, if given) that ended this caller's
    /// credential: a revoked key or session, or the person erased. Reads the caller's account
    /// stream from where it last looked (an indexed read, usually empty). Any such event
    /// committed before the batch being vetted is visible here, because the gapless tail
    /// returns an event only once every older transaction has finished. `None` (the outer
    /// option) if the store could not be read.
    async fn credential_ended_before(&mut self, end: Option<Cursor>) -> Option<Option<Cursor>> {
        let ready = self.state.ready().ok()?;
        let user = self.reader.user()?.to_string();
        loop {
            let events = ready
                .store
                .read_stream("account", &user, self.account_seq + 1, 100)
                .await
                .ok()?;
            for event in &events {
                if end.is_some_and(|end| event.cursor() > end) {
                    return Some(None);
                }
                self.account_seq = event.sequence;
                let change = Change::of_event(
                    &event.aggregate_type,
                    &event.aggregate_id,
                    &event.event_type,
                    event.payload.get(),
                );
                if change.is_some_and(|c| c.ends(&self.reader)) {
                    return Some(Some(event.cursor()));
                }
            }
            if events.len() < 100 {
                return Some(None);
            }
        }
    }

    /// Waits for a bus event this stream would return, one that may change the caller's
    /// access, or the slow poll; events for others wake nothing but this check.
    async fn wait(&mut self, filter: &EventFilter) {
        let deadline = tokio::time::Instant::now() + POLL;
        loop {
            match tokio::time::timeout_at(deadline, self.wake.recv()).await {
                Ok(Ok(event)) => {
                    let (aggregate_type, aggregate_id) = event.stream();
                    if aggregate_type == "organization" {
                        // Membership may have changed (a new organization to follow): read
                        // access again once projected.
                        if let (Ok(ready), Some(cursor)) = (self.state.ready(), event.cursor()) {
                            let _ = ready
                                .caught_up(projections::read_models::memberships::NAME, cursor)
                                .await;
                        }
                        self.reload = true;
                        return;
                    }
                    if aggregate_type == "account"
                        && self
                            .reader
                            .user()
                            .is_some_and(|u| u.to_string() == aggregate_id)
                    {
                        // Perhaps a revocation: the account stream is read next.
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
                    self.reload = true;
                    return;
                }
                // The slow poll: access is read again (a session may have expired).
                Err(_) => {
                    self.reload = true;
                    return;
                }
            }
        }
    }
}
