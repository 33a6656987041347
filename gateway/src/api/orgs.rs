//! Organizations, members and teams: every `Organization` command over REST.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, patch, post, put};
use axum::Router;
use commands::{CommandError, Receipt};
use cqrs_es::Aggregate;
use domain::organization::{Organization, OrganizationCommand as C};
use domain::{Name, OrgId, Permission, Request, Scope, TeamId, UserId, ValueError};
use serde::Deserialize;
use serde_json::json;

use crate::api::receipt::written;
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::POST, "/orgs"),
    (Method::PATCH, "/orgs/{org}"),
    (Method::POST, "/orgs/{org}/members"),
    (Method::DELETE, "/orgs/{org}/members/{user}"),
    (Method::POST, "/orgs/{org}/teams"),
    (Method::PATCH, "/orgs/{org}/teams/{team}"),
    (Method::DELETE, "/orgs/{org}/teams/{team}"),
    (Method::PUT, "/orgs/{org}/teams/{team}/permissions"),
    (Method::POST, "/orgs/{org}/teams/{team}/members"),
    (Method::DELETE, "/orgs/{org}/teams/{team}/members/{user}"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs", post(create))
        .route("/orgs/{org}", patch(rename))
        .route("/orgs/{org}/members", post(add_member))
        .route("/orgs/{org}/members/{user}", delete(remove_member))
        .route("/orgs/{org}/teams", post(create_team))
        .route(
            "/orgs/{org}/teams/{team}",
            patch(rename_team).delete(delete_team),
        )
        .route("/orgs/{org}/teams/{team}/permissions", put(set_permissions))
        .route("/orgs/{org}/teams/{team}/members", post(add_team_member))
        .route(
            "/orgs/{org}/teams/{team}/members/{user}",
            delete(remove_team_member),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    permissions: Vec<String>,
}

fn name(raw: &str) -> Result<Name, ApiError> {
    Name::parse("name", raw).map_err(invalid)
}

fn invalid(e: ValueError) -> ApiError {
    ApiError::Unprocessable {
        code: "validation_failed",
        message: e.to_string(),
    }
}

fn user(raw: &str) -> Result<UserId, ApiError> {
    parse_id(raw, "user")
}

/// Runs an organization command, recording its latency and outcome.
async fn execute(
    state: &AppState,
    caller: &Principal,
    org: OrgId,
    command: C,
    meta: RequestMeta,
) -> Result<Receipt, ApiError> {
    caller.require(Scope::Admin)?;
    let ready = state.ready()?;
    let meta = meta.0.in_org(org);
    let command = Request {
        by: caller.actor().caller(),
        command,
    };
    let started = Instant::now();
    let result = ready
        .commands
        .execute::<Organization>(&org.to_string(), command, &meta)
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "refused",
        Err(CommandError::Conflict | CommandError::IdempotencyKeyReused) => "conflict",
        Err(CommandError::Store(_) | CommandError::Lookup(_)) => "error",
    };
    state.metrics().command(
        <Organization as Aggregate>::TYPE,
        outcome,
        started.elapsed(),
    );
    Ok(result?)
}

/// Runs a command on an existing organization and answers 200 with its receipt.
async fn update(
    state: &AppState,
    caller: &Principal,
    org: &str,
    meta: RequestMeta,
    command: C,
) -> Result<Response, ApiError> {
    let org = parse_id(org, "organization")?;
    let receipt = execute(state, caller, org, command, meta).await?;
    Ok(written(StatusCode::OK, &receipt, json!({})))
}

async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let name = name(&body.name)?;
    let org = OrgId::from_uuid(meta.0.command_id.derive_id("organization"));
    let admin_team = TeamId::from_uuid(meta.0.command_id.derive_id("admin_team"));
    let command = C::Create {
        org_id: org,
        name,
        admin_team,
    };
    let receipt = execute(&state, &caller, org, command, meta).await?;
    let mut response = written(StatusCode::CREATED, &receipt, json!({ "id": org }));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orgs/{org}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

async fn rename(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let command = C::Rename {
        name: name(&body.name)?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn add_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Response, ApiError> {
    let command = C::AddMember {
        user_id: user(&body.user_id)?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn remove_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, user_id)): ApiPath<(String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = C::RemoveMember {
        user_id: user(&user_id)?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn create_team(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let org = parse_id(&org, "organization")?;
    let team_id = TeamId::from_uuid(meta.0.command_id.derive_id("team"));
    let command = C::CreateTeam {
        team_id,
        name: name(&body.name)?,
    };
    let receipt = execute(&state, &caller, org, command, meta).await?;
    Ok(written(
        StatusCode::CREATED,
        &receipt,
        json!({ "id": team_id }),
    ))
}

async fn rename_team(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, team)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<Response, ApiError> {
    let command = C::RenameTeam {
        team_id: parse_id(&team, "team")?,
        name: name(&body.name)?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn delete_team(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, team)): ApiPath<(String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = C::DeleteTeam {
        team_id: parse_id(&team, "team")?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn set_permissions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, team)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<PermissionsBody>,
) -> Result<Response, ApiError> {
    let permissions = body
        .permissions
        .iter()
        .map(|p| {
            p.parse::<Permission>().map_err(|e| {
                ApiError::bad_request(
                    "unknown_permission",
                    format!(
                        "{e}; expected one of {}",
                        Permission::ALL.map(|p| p.as_str()).join(", ")
                    ),
                )
            })
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let command = C::SetTeamPermissions {
        team_id: parse_id(&team, "team")?,
        permissions,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn add_team_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, team)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Response, ApiError> {
    let command = C::AddTeamMember {
        team_id: parse_id(&team, "team")?,
        user_id: user(&body.user_id)?,
    };
    update(&state, &caller, &org, meta, command).await
}

async fn remove_team_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, team, user_id)): ApiPath<(String, String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = C::RemoveTeamMember {
        team_id: parse_id(&team, "team")?,
        user_id: user(&user_id)?,
    };
    update(&state, &caller, &org, meta, command).await
}
