//! What the board's resources share (`members`, `tags`, `tasks`, `comments`, all under
//! `/api/v1/orgs/{org}/...`): read access, running a command, value parsing.
//!
//! A write goes to `commands`, which looks up the caller's grant and what the command names
//! (labels, category, assignees) in the read models; the aggregates decide. Reads come from
//! the `board` and `memberships` read models' typed queries and accept `?after=<cursor>` (a
//! write's `Cairn-Cursor`) to wait until they include it.

use std::time::Instant;

use commands::{Asked, CommandError, OnBoard, Receipt};
use domain::{OrgId, Text};
use projections::read_models::access::Class;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

/// Timestamps on the wire: the one RFC 3339 encoder.
pub(crate) use eventstore::encode::rfc3339 as at;

use crate::api::doc::CursorSchema;
use crate::http::error::{ApiError, DomainCode, ErrorCode};
use crate::http::extract::{parse_id, RequestMeta};
use crate::http::principal::Principal;
use crate::state::{AppState, Ready};

// ---- read access ----

/// 403 `insufficient_scope` for an API key that may not read boards (`tasks:read` or
/// `events:read`); sessions may.
pub(crate) fn require_board_scope(caller: &Principal) -> Result<(), ApiError> {
    if caller.reader().scoped_for(Class::Board) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "this API key lacks the `tasks:read` scope (or `events:read`)",
        ))
    }
}

/// Lets whoever the access policy lets read `org`'s board read it, after `?after=` if given.
/// Access is decided first (a stranger learns nothing and costs no wait: 404), the cursor is
/// checked at once (400 if malformed or never returned), and only then does the read wait.
pub(crate) async fn readable(
    ready: &Ready,
    org: &str,
    caller: &Principal,
    after: Option<&str>,
    projection: &str,
) -> Result<OrgId, ApiError> {
    require_board_scope(caller)?;
    readable_as(ready, org, caller, after, projection, Class::Board).await
}

/// [`readable`] for what is read as `class` (the scope is the caller's to check first).
pub(crate) async fn readable_as(
    ready: &Ready,
    org: &str,
    caller: &Principal,
    after: Option<&str>,
    projection: &str,
    class: Class,
) -> Result<OrgId, ApiError> {
    let org: OrgId = parse_id(org, "organization")?;
    let after = Ready::parse_after(after)?;
    let access = ready.access(Some(caller), Some(org.as_uuid())).await?;
    if !access.may_read(class, Some(org.as_uuid()), None) {
        return Err(ApiError::new(
            ErrorCode::OrganizationNotFound,
            "no such organization",
        ));
    }
    ready
        .read_after(
            after,
            projection,
            Some(projections::read_models::memberships::NAME),
        )
        .await?;
    Ok(org)
}

// ---- running commands ----

/// Runs `command` on board aggregate `A` with id `id` in `org` for the caller (`commands`
/// looks up their grant and what the command names; the aggregate decides), recording its
/// latency and outcome.
pub(crate) async fn run<A>(
    state: &AppState,
    id: &str,
    command: A::Asked,
    meta: RequestMeta,
    org: OrgId,
) -> Result<Receipt, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: OnBoard + Clone,
    A::Command: Clone + Asked,
    A::Error: DomainCode + Send + Sync + 'static,
{
    let ready = state.ready()?;
    let meta = meta.0.in_org(org);
    let started = Instant::now();
    let result = ready
        .commands
        .execute_board::<A>(org, id, command, &meta)
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "refused",
        Err(CommandError::Conflict | CommandError::IdempotencyKeyReused) => "conflict",
        Err(CommandError::Store(_) | CommandError::Lookup(_)) => "error",
    };
    state.metrics().command(A::TYPE, outcome, started.elapsed());
    Ok(result?)
}

pub(crate) fn text(
    field: &'static str,
    raw: &str,
    max: usize,
    allow_empty: bool,
) -> Result<Text, ApiError> {
    Text::parse(field, raw, max, allow_empty).map_err(ApiError::from)
}

/// Missing means `None`; `null` means `Some(None)`.
pub(crate) fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `?after=<cursor>` alone.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct After {
    /// A write's `Cairn-Cursor`: wait (a bounded time) until the read model includes it (503
    /// if it does not in time; 400 `invalid_cursor` for a cursor past the newest event).
    #[param(value_type = Option<CursorSchema>)]
    pub(crate) after: Option<String>,
}
