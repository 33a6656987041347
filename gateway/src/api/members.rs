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
    let mut rows: Vec<(Uuid, time::OffsetDateTime, Vec<String>)> = sqlx::query_as(
        "SELECT m.user_id, m.added_at,
                coalesce(array_agg(DISTINCT p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}')
           FROM org_members m
           LEFT JOIN effective_permissions p ON p.org_id = m.org_id AND p.user_id = m.user_id
          WHERE m.org_id = $1
            AND ($2::timestamptz IS NULL OR (m.added_at, m.user_id) > ($2::timestamptz, $3::uuid))
          GROUP BY m.user_id, m.added_at ORDER BY m.added_at, m.user_id LIMIT $4",
    )
    .bind(org.as_uuid())
    .bind(paging.key())
    .bind(paging.id())
    .bind(paging.fetch())
    .fetch_all(ready.store.pool())
    .await?;
    let next = paging.finish(&mut rows, |(user, added, _)| (at(*added), *user));
    let members = rows
        .into_iter()
        .map(|(user_id, added, permissions)| Member {
            user_id,
            added_at: at(added),
            permissions,
        })
        .collect();
    Ok(Json(MembersPage { members, next }))
}

/// A team: id, name, permissions, members, created.
type TeamRow = (Uuid, String, Vec<String>, Vec<Uuid>, time::OffsetDateTime);

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
    let mut rows: Vec<TeamRow> =
        sqlx::query_as(
            "SELECT t.team_id, t.name, t.permissions,
                    coalesce(array_agg(tm.user_id) FILTER (WHERE tm.user_id IS NOT NULL), '{}'),
                    t.created_at
               FROM org_teams t LEFT JOIN org_team_members tm ON tm.team_id = t.team_id
              WHERE t.org_id = $1
                AND ($2::timestamptz IS NULL OR (t.created_at, t.team_id) > ($2::timestamptz, $3::uuid))
              GROUP BY t.team_id ORDER BY t.created_at, t.team_id LIMIT $4",
        )
        .bind(org.as_uuid())
        .bind(paging.key())
        .bind(paging.id())
        .bind(paging.fetch())
        .fetch_all(ready.store.pool())
        .await?;
    let next = paging.finish(&mut rows, |r| (at(r.4), r.0));
    let teams = rows
        .into_iter()
        .map(|(id, name, permissions, members, _)| Team {
            id,
            name,
            permissions,
            members,
        })
        .collect();
    Ok(Json(TeamsPage { teams, next }))
}
