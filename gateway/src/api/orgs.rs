//! Organizations, members and teams: every `Organization` command over REST.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use commands::{CommandError, Receipt};
use cqrs_es::Aggregate;
use domain::organization::{Organization, OrganizationCommand as C};
use domain::{Name, OrgId, Permission, Request, Scope, TeamId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::api::board::{readable, require_board_scope, After};
use crate::api::doc::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge, PermissionName,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use crate::api::receipt::{created, written, Created, Written};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;
use projections::read_models::access::Class;

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs"),
    (Method::POST, "/orgs"),
    (Method::GET, "/orgs/{org}"),
    (Method::PATCH, "/orgs/{org}"),
    (Method::POST, "/orgs/{org}/members"),
    (Method::DELETE, "/orgs/{org}/members/{user}"),
    (Method::POST, "/orgs/{org}/teams"),
    (Method::PATCH, "/orgs/{org}/teams/{team}"),
    (Method::DELETE, "/orgs/{org}/teams/{team}"),
    (Method::PUT, "/orgs/{org}/teams/{team}/permissions"),
    (Method::POST, "/orgs/{org}/teams/{team}/members"),
    (Method::DELETE, "/orgs/{org}/teams/{team}/members/{user}"),
    (Method::PUT, "/orgs/{org}/default-team"),
];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    list,
    create,
    show,
    rename,
    add_member,
    remove_member,
    create_team,
    rename_team,
    delete_team,
    set_permissions,
    add_team_member,
    remove_team_member,
    set_default_team
))]
pub(super) struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs", get(list).post(create))
        .route("/orgs/{org}", get(show).patch(rename))
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
        .route("/orgs/{org}/default-team", put(set_default_team))
}

/// A name for an organization or a team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NameBody {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100, example = "Acme")]
    name: String,
}

/// The team new members join.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DefaultTeamBody {
    /// A team of the organization, or `null` for none.
    #[serde(deserialize_with = "crate::api::board::double_option")]
    #[schema(value_type = Option<Uuid>, required = true)]
    team_id: Option<Option<String>>,
}

/// A person, by id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserBody {
    /// Their user id.
    #[schema(format = Uuid)]
    user_id: String,
}

/// A team's permissions, replacing the ones it had.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    /// Only an administrator hands out `admin.*` permissions.
    #[schema(value_type = Vec<PermissionName>)]
    permissions: Vec<String>,
}

/// The organizations the caller belongs to.
#[derive(Debug, Serialize, ToSchema)]
struct OrgList {
    /// By name (at most 1,000).
    organizations: Vec<OrgSummary>,
}

/// An organization: its id, name and creation time.
#[derive(Debug, Serialize, ToSchema)]
struct OrgSummary {
    /// Its id.
    id: uuid::Uuid,
    /// Its name.
    name: String,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
}

/// An organization, and what the caller may do in it.
#[derive(Debug, Serialize, ToSchema)]
struct OrgDetail {
    /// Its id.
    id: uuid::Uuid,
    /// Its name.
    name: String,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
    /// The caller's effective permissions in it.
    #[schema(value_type = Vec<PermissionName>)]
    permissions: Vec<String>,
    /// The team every member added from now on joins (a new organization's "Members" team:
    /// `tasks.create`, `tasks.edit`, `tasks.assign`, `docs.edit`), or `null`.
    default_team_id: Option<uuid::Uuid>,
}

impl From<projections::read_models::memberships::Organization> for OrgSummary {
    fn from(o: projections::read_models::memberships::Organization) -> Self {
        Self {
            id: o.org_id,
            name: o.name,
            created_at: eventstore::encode::rfc3339(o.created_at),
        }
    }
}

#[utoipa::path(
    get,
    path = "/orgs",
    tag = "organizations",
    operation_id = "listOrganizations",
    summary = "The organizations the caller belongs to (scope tasks:read or events:read)",
    params(After),
    responses(
        (status = 200, description = "The caller's organizations", body = OrgList),
        BadRequest, Unauthorized, Forbidden, TooManyRequests, Unavailable
    )
)]
async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<After>,
) -> Result<Json<OrgList>, ApiError> {
    require_board_scope(&caller)?;
    let ready = state.ready()?;
    let after = crate::state::Ready::parse_after(q.after.as_deref())?;
    ready
        .read_after(after, projections::read_models::memberships::NAME, None)
        .await?;
    let access = ready.access(Some(&caller), None).await?;
    let orgs = projections::read_models::memberships::organizations_for(
        ready.store.pool(),
        caller.user_id.as_uuid(),
    )
    .await?;
    // The one access policy decides, as on every read.
    Ok(Json(OrgList {
        organizations: orgs
            .into_iter()
            .filter(|o| access.may_read(Class::Board, Some(o.org_id), None))
            .map(OrgSummary::from)
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/orgs/{org}",
    tag = "organizations",
    operation_id = "getOrganization",
    summary = "An organization and the caller's permissions in it (members; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), After),
    responses(
        (status = 200, description = "The organization", body = OrgDetail),
        BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
    )
)]
async fn show(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<After>,
) -> Result<Json<OrgDetail>, ApiError> {
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::memberships::NAME,
    )
    .await?;
    let pool = ready.store.pool();
    let found = projections::read_models::memberships::organization(pool, org.as_uuid())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::OrganizationNotFound, "no such organization"))?;
    let standing =
        projections::read_models::memberships::standing(pool, org, caller.user_id).await?;
    let default_team_id = found.default_team_id;
    let summary = OrgSummary::from(found);
    Ok(Json(OrgDetail {
        id: summary.id,
        name: summary.name,
        created_at: summary.created_at,
        default_team_id,
        permissions: standing
            .permissions
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

#[utoipa::path(
    put,
    path = "/orgs/{org}/default-team",
    tag = "organizations",
    operation_id = "setDefaultTeam",
    summary = "Choose the team new members join, or none (admin.manageTeams, and what adding to that team needs)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = DefaultTeamBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
async fn set_default_team(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<DefaultTeamBody>,
) -> Result<Response, ApiError> {
    let team_id = match body.team_id {
        None => {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "team_id is required (a team's id, or null for none)",
            ))
        }
        Some(team) => team.as_deref().map(|t| parse_id(t, "team")).transpose()?,
    };
    update(&state, &caller, &org, meta, C::SetDefaultTeam { team_id }).await
}

fn name(raw: &str) -> Result<Name, ApiError> {
    Name::parse("name", raw).map_err(ApiError::from)
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
    Ok(written(&receipt))
}

#[utoipa::path(
    post,
    path = "/orgs",
    tag = "organizations",
    operation_id = "createOrganization",
    summary = "Create an organization; the caller becomes its first administrator (scope admin)",
    params(IdempotencyKey),
    request_body = NameBody,
    responses(Created, BadRequest, Unauthorized, Forbidden, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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
    let mut response = created(&receipt, org.as_uuid());
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orgs/{org}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    patch,
    path = "/orgs/{org}",
    tag = "organizations",
    operation_id = "renameOrganization",
    summary = "Rename an organization (admin.manageSettings)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = NameBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    post,
    path = "/orgs/{org}/members",
    tag = "organizations",
    operation_id = "addMember",
    summary = "Add a member (admin.manageMembers)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = UserBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    delete,
    path = "/orgs/{org}/members/{user}",
    tag = "organizations",
    operation_id = "removeMember",
    summary = "Remove a member (admin.manageMembers)",
    params(("org" = Uuid, Path, description = "The organization"), ("user" = Uuid, Path, description = "The person"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    post,
    path = "/orgs/{org}/teams",
    tag = "organizations",
    operation_id = "createTeam",
    summary = "Create a team (admin.manageTeams)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = NameBody,
    responses(Created, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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
    Ok(created(&receipt, team_id.as_uuid()))
}

#[utoipa::path(
    patch,
    path = "/orgs/{org}/teams/{team}",
    tag = "organizations",
    operation_id = "renameTeam",
    summary = "Rename a team (admin.manageTeams)",
    params(("org" = Uuid, Path, description = "The organization"), ("team" = Uuid, Path, description = "The team"), IdempotencyKey),
    request_body = NameBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    delete,
    path = "/orgs/{org}/teams/{team}",
    tag = "organizations",
    operation_id = "deleteTeam",
    summary = "Delete a team (admin.manageTeams)",
    params(("org" = Uuid, Path, description = "The organization"), ("team" = Uuid, Path, description = "The team"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    put,
    path = "/orgs/{org}/teams/{team}/permissions",
    tag = "organizations",
    operation_id = "setTeamPermissions",
    summary = "Set a team's permissions (admin.manageTeams; admin.* only by an administrator)",
    params(("org" = Uuid, Path, description = "The organization"), ("team" = Uuid, Path, description = "The team"), IdempotencyKey),
    request_body = PermissionsBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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
                ApiError::new(
                    ErrorCode::UnknownPermission,
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

#[utoipa::path(
    post,
    path = "/orgs/{org}/teams/{team}/members",
    tag = "organizations",
    operation_id = "addTeamMember",
    summary = "Add a member to a team (admin.manageTeams)",
    params(("org" = Uuid, Path, description = "The organization"), ("team" = Uuid, Path, description = "The team"), IdempotencyKey),
    request_body = UserBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    delete,
    path = "/orgs/{org}/teams/{team}/members/{user}",
    tag = "organizations",
    operation_id = "removeTeamMember",
    summary = "Remove a member from a team (admin.manageTeams)",
    params(("org" = Uuid, Path, description = "The organization"), ("team" = Uuid, Path, description = "The team"), ("user" = Uuid, Path, description = "The person"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
)]
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
