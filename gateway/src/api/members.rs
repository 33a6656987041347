//! The members and teams of an organization, as the memberships read model lists them (their
//! writes are organization commands, in `orgs`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use uuid::Uuid;

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

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/teams", get(teams))
}

// ---- members and teams ----

async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let members: Vec<Value> = rows
        .into_iter()
        .map(|(user, added, perms)| json!({"user_id": user, "added_at": at(added), "permissions": perms}))
        .collect();
    Ok(Json(json!({ "members": members, "next": next })))
}

/// A team: id, name, permissions, members, created.
type TeamRow = (Uuid, String, Vec<String>, Vec<Uuid>, time::OffsetDateTime);

async fn teams(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let teams: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, perms, members, _)| json!({"id": id, "name": name, "permissions": perms, "members": members}))
        .collect();
    Ok(Json(json!({ "teams": teams, "next": next })))
}
