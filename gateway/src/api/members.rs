//! The members and teams of an organization, as the memberships read model lists them (their
//! writes are organization commands, in `orgs`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

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
    let mut rows = projections::read_models::memberships::members(
        ready.store.pool(),
        org,
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |m| (at(m.added_at), m.user_id));
    let members: Vec<Value> = rows
        .into_iter()
        .map(|m| json!({"user_id": m.user_id, "added_at": at(m.added_at), "permissions": m.permissions}))
        .collect();
    Ok(Json(json!({ "members": members, "next": next })))
}

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
    let mut rows = projections::read_models::memberships::teams(
        ready.store.pool(),
        org,
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |t| (at(t.created_at), t.team_id));
    let teams: Vec<Value> = rows
        .into_iter()
        .map(|t| json!({"id": t.team_id, "name": t.name, "permissions": t.permissions, "members": t.members}))
        .collect();
    Ok(Json(json!({ "teams": teams, "next": next })))
}
