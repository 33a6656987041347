//! What the board's resources share (`members`, `tags`, `tasks`, `comments`, all under
//! `/api/v1/orgs/{org}/...`): grants, read access, reference checks, running a command.
//!
//! Permissions come from the `memberships` read model and travel into each command as a
//! [`Grant`]; the aggregates decide. Reads come from the `board` and `memberships` read models
//! and accept `?after=<cursor>` (a write's `Cairn-Cursor`) to wait until they include it.

use std::collections::BTreeSet;
use std::time::Instant;

use commands::{CommandError, Receipt};
use cqrs_es::Aggregate;
use domain::{CategoryId, Grant, LabelId, OrgId, Permission, Text, UserId};
use projections::read_models::access::Class;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use uuid::Uuid;

/// Timestamps on the wire: the one RFC 3339 encoder.
pub(crate) use eventstore::encode::rfc3339 as at;

use crate::api::doc::CursorSchema;
use crate::http::error::{ApiError, DomainCode, ErrorCode};
use crate::http::extract::{parse_id, RequestMeta};
use crate::http::principal::Principal;
use crate::state::{AppState, Ready};

// ---- read-your-writes, grants and references ----

/// The caller's grant in `org`, from the memberships read model.
pub(crate) async fn grant(
    ready: &Ready,
    org: OrgId,
    caller: &Principal,
) -> Result<Grant, ApiError> {
    ready
        .caught_up_locally(projections::read_models::memberships::NAME)
        .await?;
    let pool = ready.store.pool();
    let member = projections::read_models::memberships::is_member(
        pool,
        org.as_uuid(),
        caller.user_id.as_uuid(),
    )
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT permission FROM effective_permissions WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(caller.user_id.as_uuid())
    .fetch_all(pool)
    .await?;
    Ok(Grant {
        org_id: org,
        user: Some(caller.user_id),
        member,
        permissions: names
            .iter()
            .filter_map(|n| n.parse::<Permission>().ok())
            .collect(),
    })
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
    if !caller.reader().scoped_for(Class::Board) {
        return Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "this API key lacks the `tasks:read` scope (or `events:read`)",
        ));
    }
    let org: OrgId = parse_id(org, "organization")?;
    let after = Ready::parse_after(after)?;
    let access = ready.access(Some(caller), Some(org.as_uuid())).await?;
    if !access.may_read(Class::Board, Some(org.as_uuid()), None) {
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

/// Every label is a live label of `org` (422 `unknown_label` otherwise).
pub(crate) async fn check_labels(
    ready: &Ready,
    org: OrgId,
    labels: &BTreeSet<LabelId>,
) -> Result<(), ApiError> {
    if labels.is_empty() {
        return Ok(());
    }
    ready
        .caught_up_locally(projections::read_models::board::NAME)
        .await?;
    let ids: Vec<Uuid> = labels.iter().map(|l| l.as_uuid()).collect();
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM labels WHERE org_id = $1 AND label_id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(org.as_uuid())
    .bind(&ids)
    .fetch_one(ready.store.pool())
    .await?;
    if found as usize == ids.len() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnknownLabel,
            "a label does not exist in this organization",
        ))
    }
}

/// The category is a live category of `org` (422 `unknown_category` otherwise).
pub(crate) async fn check_category(
    ready: &Ready,
    org: OrgId,
    category: Option<CategoryId>,
) -> Result<(), ApiError> {
    let Some(category) = category else {
        return Ok(());
    };
    ready
        .caught_up_locally(projections::read_models::board::NAME)
        .await?;
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM categories WHERE org_id = $1 AND category_id = $2 AND deleted_at IS NULL)",
    )
    .bind(org.as_uuid())
    .bind(category.as_uuid())
    .fetch_one(ready.store.pool())
    .await?;
    if found {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnknownCategory,
            "the category does not exist in this organization",
        ))
    }
}

/// Every assignee is a member of `org` (422 `assignee_not_member` otherwise), in one query.
pub(crate) async fn check_assignees(
    ready: &Ready,
    org: OrgId,
    users: &BTreeSet<UserId>,
) -> Result<(), ApiError> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
    let members = projections::read_models::memberships::members_among(
        ready.store.pool(),
        org.as_uuid(),
        &ids,
    )
    .await?;
    match users.iter().find(|u| !members.contains(&u.as_uuid())) {
        None => Ok(()),
        Some(user) => Err(ApiError::new(
            ErrorCode::AssigneeNotMember,
            format!("user {user} is not a member"),
        )),
    }
}

// ---- running commands ----

pub(crate) async fn run<A>(
    state: &AppState,
    id: &str,
    command: A::Command,
    meta: RequestMeta,
    org: OrgId,
) -> Result<Receipt, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: Aggregate + Clone,
    A::Command: Clone + std::fmt::Debug,
    A::Error: DomainCode + Send + Sync + 'static,
{
    let ready = state.ready()?;
    let meta = meta.0.in_org(org);
    let started = Instant::now();
    let result = ready.commands.execute::<A>(id, command, &meta).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "refused",
        Err(CommandError::Conflict | CommandError::IdempotencyKeyReused) => "conflict",
        Err(CommandError::Store(_)) => "error",
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
