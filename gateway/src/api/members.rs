//! The members and teams of an organization, as the memberships read model lists them (their
//! writes are organization commands, in `orgs`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::doc::{
    BadRequest, Forbidden, NotFound, PermissionName, TooManyRequests, Unauthorized, Unavailable,
};
use crate::api::paging::ListQuery;
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::principal::Auth;
use crate::state::AppState;

use crate::api::board::{at, readable};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/members"),
    (Method::GET, "/orgs/{org}/teams"),
];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(members, teams))]
pub(super) struct Doc;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/teams", get(teams))
}

// ---- members and teams ----

/// A page of an organization's members, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct MembersPage {
    /// The members.
    members: Vec<Member>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// A member and the permissions their teams give them.
#[derive(Debug, Serialize, ToSchema)]
struct Member {
    /// Their user id.
    user_id: Uuid,
    /// When they joined (RFC 3339).
    #[schema(format = DateTime)]
    added_at: String,
    /// Their effective permissions.
    #[schema(value_type = Vec<PermissionName>)]
    permissions: Vec<String>,
}

/// A page of an organization's teams, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct TeamsPage {
    /// The teams.
    teams: Vec<Team>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// A team: its name, permissions and members.
#[derive(Debug, Serialize, ToSchema)]
struct Team {
    /// Its id.
    id: Uuid,
    /// Its name.
    name: String,
    /// What its members may do.
    #[schema(value_type = Vec<PermissionName>)]
    permissions: Vec<String>,
    /// Its members' user ids.
    members: Vec<Uuid>,
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/members",
    tag = "organizations",
    operation_id = "listMembers",
    summary = "The organization's members with their effective permissions (any member; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), ListQuery),
    responses(
        (status = 200, description = "A page of members", body = MembersPage),
        BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
    )
)]
async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<MembersPage>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::memberships::NAME,
    )
    .await?;
    let mut rows = projections::read_models::memberships::members(
        ready.store.pool(),
        org,
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |m| (at(m.added_at), m.user_id));
    let members = rows
        .into_iter()
        .map(|m| Member {
            user_id: m.user_id,
            added_at: at(m.added_at),
            permissions: m.permissions,
        })
        .collect();
    Ok(Json(MembersPage { members, next }))
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/teams",
    tag = "organizations",
    operation_id = "listTeams",
    summary = "The organization's teams (any member; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), ListQuery),
    responses(
        (status = 200, description = "A page of teams", body = TeamsPage),
        BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
    )
)]
async fn teams(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TeamsPage>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::memberships::NAME,
    )
    .await?;
    let mut rows = projections::read_models::memberships::teams(
        ready.store.pool(),
        org,
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |t| (at(t.created_at), t.team_id));
    let teams = rows
        .into_iter()
        .map(|t| Team {
            id: t.team_id,
            name: t.name,
            permissions: t.permissions,
            members: t.members,
        })
        .collect();
    Ok(Json(TeamsPage { teams, next }))
}
