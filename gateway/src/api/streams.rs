//! A stream's history with metadata: who did what and when, with the hash chain.
//!
//! Auditors see a stream only if the access policy lets them (`projections::read_models::access`): their
//! own account, an organization's stream with an `admin.*` permission there, a task, label or
//! category stream as a member. Anything else answers 404, so nothing leaks. The fields an
//! event type declares sealed (and the request details in its metadata) are opened for
//! display, or shown as `[erased]` once their owner was erased; sealed-looking text anywhere
//! else is shown as it is.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use eventstore::encode::{hex, rfc3339};
use eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::api::doc::{
    BadRequest, CursorSchema, Forbidden, NotFound, TooManyRequests, Unauthorized, Unavailable,
};

use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;
use crate::state::Ready;
use domain::Scope;
use projections::read_models::access::Class;
use uuid::Uuid;

/// The most events one page returns.
const MAX_LIMIT: i64 = 1000;

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[(
    Method::GET,
    "/streams/{aggregate_type}/{aggregate_id}/events",
)];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(history))]
pub(super) struct Doc;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/streams/{aggregate_type}/{aggregate_id}/events",
        get(history),
    )
}

/// A page of a stream's history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// First sequence to return (inclusive), from 1 (default 1).
    #[param(minimum = 1)]
    from: Option<i64>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One stored event with its metadata and hash-chain links.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
struct EventBody {
    /// The event id.
    #[schema(format = Uuid)]
    event_id: String,
    /// The stream's aggregate type, e.g. `task`.
    aggregate_type: String,
    /// The stream's aggregate id.
    aggregate_id: String,
    /// Its sequence in the stream, from 1.
    sequence: i64,
    /// `noun.verb`, e.g. `task.created`.
    #[serde(rename = "type")]
    event_type: String,
    /// The payload's version.
    version: String,
    /// The payload (sealed personal data opened, or `[erased]`).
    #[schema(value_type = Object)]
    data: Value,
    /// Who did it and why: actor, org_id, correlation_id, causation_id, command_id,
    /// request_id, ip, user_agent.
    #[schema(value_type = Object)]
    metadata: Value,
    /// Its global position.
    position: i64,
    /// The cursor after it.
    #[schema(value_type = CursorSchema)]
    cursor: String,
    /// When it was recorded (RFC 3339).
    #[schema(format = DateTime)]
    recorded_at: String,
    /// The previous event's hash (hex), `null` for the first.
    prev_hash: Option<String>,
    /// `sha256(prev_hash || canonical(event))`, hex.
    hash: String,
}

impl EventBody {
    /// The wire form of `e`, with `data` and `metadata` after the vault opened the fields
    /// declared sealed.
    fn new(e: RecordedEvent, data: Value, metadata: Value) -> Self {
        let cursor = e.cursor().to_string();
        Self {
            event_id: e.event_id.to_string(),
            recorded_at: rfc3339(e.recorded_at),
            prev_hash: e.prev_hash.as_deref().map(hex),
            hash: hex(&e.hash),
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            version: e.event_version,
            data,
            metadata,
            position: e.global_position,
            cursor,
        }
    }
}

/// A page of a stream's history, in sequence order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = History)]
struct HistoryBody {
    /// The events.
    events: Vec<EventBody>,
    /// The `from` of the next page, when this one was full.
    next_from: Option<i64>,
}

/// Whether `caller` may read stream `aggregate_type/aggregate_id`, by the access policy: an
/// organization's stream is its administration's, a task's, label's or category's belongs to
/// the board of the organization its first event names (a document's to its documents), an
/// account's to its owner.
async fn may_read(
    ready: &Ready,
    caller: &Principal,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<bool, ApiError> {
    let org = match Class::of_stream(aggregate_type) {
        Class::Admin => Uuid::parse_str(aggregate_id).ok(),
        Class::Board | Class::Docs => ready
            .store
            .read_stream(aggregate_type, aggregate_id, 1, 1)
            .await?
            .first()
            .and_then(|e| e.org_id.as_deref())
            .and_then(|o| Uuid::parse_str(o).ok()),
        Class::Account => None,
        Class::Public | Class::Hidden => return Ok(false),
    };
    let access = match (Class::of_stream(aggregate_type), org) {
        // No organization is involved: only whether the credential still stands.
        (Class::Account, _) => ready.access(Some(caller), Some(Uuid::nil())).await?,
        (_, Some(org)) => ready.access(Some(caller), Some(org)).await?,
        (_, None) => return Ok(false),
    };
    Ok(access.may_read_stream(aggregate_type, aggregate_id, org))
}

#[utoipa::path(
    get,
    path = "/streams/{aggregate_type}/{aggregate_id}/events",
    tag = "events",
    operation_id = "streamHistory",
    summary = "A stream's history with metadata and hash chain (scope events:read; streams the caller may read)",
    params(
        ("aggregate_type" = String, Path, description = "e.g. `organization`, `task`, `label`, `category`, `account`"),
        ("aggregate_id" = String, Path, description = "The aggregate's id"),
        Page
    ),
    responses(
        (status = 200, description = "A page of events", body = HistoryBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
    )
)]
async fn history(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<HistoryBody>, ApiError> {
    caller.require(Scope::EventsRead)?;
    let from = page.from.unwrap_or(1);
    if from < 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "`from` must be 1 or more",
        ));
    }
    let limit = page.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`limit` must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let ready = state.ready()?;
    let not_found = || {
        ApiError::new(
            ErrorCode::StreamNotFound,
            format!("no events in stream {aggregate_type}/{aggregate_id}"),
        )
    };
    if !may_read(ready, &caller, &aggregate_type, &aggregate_id).await? {
        return Err(not_found());
    }
    let events = ready
        .store
        .read_stream(&aggregate_type, &aggregate_id, from, limit)
        .await?;
    if events.is_empty() && from == 1 {
        return Err(not_found());
    }
    let next_from = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.sequence + 1))
        .flatten();
    let mut opener = ready.identity.vault().opener();
    let mut bodies = Vec::with_capacity(events.len());
    for event in events {
        let mut data: Value = event.decode().map_err(eventstore::StoreError::from)?;
        opener.open_event(&event.event_type, &mut data).await?;
        let mut metadata: Value =
            serde_json::from_str(event.metadata.get()).map_err(eventstore::StoreError::from)?;
        opener.open_metadata(&mut metadata).await?;
        bodies.push(EventBody::new(event, data, metadata));
    }
    Ok(Json(HistoryBody {
        events: bodies,
        next_from,
    }))
}
