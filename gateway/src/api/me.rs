//! The signed-in person: who they are, their sessions, their API keys, and erasure.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use domain::{ApiKeyId, Name, Scope, SessionId};
use eventstore::encode::rfc3339;
use eventstore::vault::fields;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::doc::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge, ScopeName,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use crate::api::paging::ListQuery;
use crate::api::receipt::{ReceiptBody, Written};
use crate::http::auth::with_session_cookie;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Via};
use crate::state::{AppState, Ready};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/me"),
    (Method::DELETE, "/me"),
    (Method::GET, "/me/sessions"),
    (Method::DELETE, "/me/sessions/{id}"),
    (Method::GET, "/me/api-keys"),
    (Method::POST, "/me/api-keys"),
    (Method::DELETE, "/me/api-keys/{id}"),
];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    me,
    erase,
    sessions,
    revoke_session,
    api_keys,
    issue_api_key,
    revoke_api_key
))]
pub(super) struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me).delete(erase))
        .route("/me/sessions", get(sessions))
        .route("/me/sessions/{id}", delete(revoke_session))
        .route("/me/api-keys", get(api_keys).post(issue_api_key))
        .route("/me/api-keys/{id}", delete(revoke_api_key))
}

/// The signed-in person.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Me)]
struct MeBody {
    /// Their user id.
    user_id: Uuid,
    /// Their email address (`[erased]` once erased).
    email: String,
    /// When they first signed in (RFC 3339).
    #[schema(format = DateTime)]
    registered_at: String,
    /// How this request was authenticated.
    auth: AuthBody,
}

/// How a request was authenticated.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = Authentication)]
enum AuthBody {
    /// A browser session.
    Session,
    /// An API key.
    ApiKey {
        /// Its public prefix.
        prefix: String,
        /// What it may do.
        #[schema(value_type = Vec<ScopeName>)]
        scopes: BTreeSet<Scope>,
    },
}

/// A page of the caller's live sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct SessionsPage {
    /// The sessions.
    sessions: Vec<SessionBody>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// A live session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session)]
struct SessionBody {
    /// Its id.
    id: Uuid,
    /// Whether this request came with it.
    current: bool,
    /// When it started (RFC 3339).
    #[schema(format = DateTime)]
    started_at: String,
    /// When it ends unless renewed (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: String,
    /// The address it started from.
    ip: Option<String>,
    /// The browser it started from.
    user_agent: Option<String>,
}

/// A page of the caller's live API keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct ApiKeysPage {
    /// The keys.
    api_keys: Vec<ApiKeyBody>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// A live API key (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
struct ApiKeyBody {
    /// Its id.
    id: Uuid,
    /// Its label.
    name: String,
    /// Its public prefix.
    prefix: String,
    /// What it may do.
    #[schema(value_type = Vec<ScopeName>)]
    scopes: Vec<String>,
    /// When it was issued (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new API key: shown once, with `key`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = IssuedApiKey)]
struct IssuedBody {
    /// Its id.
    #[schema(value_type = Uuid)]
    id: ApiKeyId,
    /// The key, `cairn_<prefix>_<secret>`: keep it, it is not shown again.
    key: String,
    /// Its public prefix.
    prefix: String,
    /// Its label.
    #[schema(value_type = String)]
    name: Name,
    /// What it may do.
    #[schema(value_type = Vec<ScopeName>)]
    scopes: BTreeSet<Scope>,
    /// The receipt.
    receipt: ReceiptBody,
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "me",
    operation_id = "me",
    summary = "Who is calling, and how",
    responses(
        (status = 200, description = "The signed-in person", body = MeBody),
        Unauthorized, NotFound, TooManyRequests, Unavailable
    )
)]
async fn me(State(state): State<AppState>, Auth(caller): Auth) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let account =
        projections::read_models::identity::account(ready.store.pool(), caller.user_id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::AccountNotFound, "no such account"))?;
    let email = match &account.email_sealed {
        Some(sealed) => ready.identity.vault().opener().open(sealed).await?,
        None => eventstore::vault::ERASED.to_owned(),
    };
    let auth = match &caller.via {
        Via::Session { .. } => AuthBody::Session,
        Via::ApiKey { prefix, scopes, .. } => AuthBody::ApiKey {
            prefix: prefix.clone(),
            scopes: scopes.clone(),
        },
    };
    Ok(Json(MeBody {
        user_id: account.user_id,
        email,
        registered_at: rfc3339(account.registered_at),
        auth,
    })
    .into_response())
}

#[utoipa::path(
    delete,
    path = "/me",
    tag = "me",
    operation_id = "eraseMe",
    summary = "Erase the caller: their personal data is crypto-shredded, every session and key ends (a session only)",
    params(IdempotencyKey),
    responses((status = 200, description = "Erased; the session cookie is cleared", body = Written), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests, Unavailable)
)]
async fn erase(
    State(state): State<AppState>,
    Auth(caller): Auth,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    caller.require_session()?;
    let ready = state.ready()?;
    let receipt = ready.identity.erase(caller.user_id, &meta.0).await?;
    // Their mail waiting in the outbox, and its files, go with them.
    ready.outbox.forget(caller.user_id.as_uuid()).await?;
    ready.identity_applied(receipt.cursor).await?;
    let response = Json(Written::from(&receipt)).into_response();
    Ok(with_session_cookie(response, &state, "", 0))
}

#[utoipa::path(
    get,
    path = "/me/sessions",
    tag = "me",
    operation_id = "listSessions",
    summary = "The caller's live sessions, newest first (a session only)",
    params(ListQuery),
    responses((status = 200, description = "A page of sessions", body = SessionsPage), BadRequest, Unauthorized, Forbidden, TooManyRequests, Unavailable)
)]
async fn sessions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require_account_access()?;
    let paging = q.paging()?;
    let ready = state.ready()?;
    let current = match caller.via {
        Via::Session { session_id, .. } => Some(session_id.as_uuid()),
        Via::ApiKey { .. } => None,
    };
    let mut rows = projections::read_models::identity::sessions_of(
        ready.store.pool(),
        caller.user_id.as_uuid(),
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |s| (rfc3339(s.started_at), s.session_id));
    // The IP and user agent are sealed with the person's own key.
    let mut opener = ready.identity.vault().opener();
    let mut sessions = Vec::with_capacity(rows.len());
    for s in rows {
        let ip = match &s.ip {
            Some(v) => Some(opener.open_for_display(fields::IP, v).await?),
            None => None,
        };
        let user_agent = match &s.user_agent {
            Some(v) => Some(opener.open_for_display(fields::USER_AGENT, v).await?),
            None => None,
        };
        sessions.push(SessionBody {
            id: s.session_id,
            current: Some(s.session_id) == current,
            started_at: rfc3339(s.started_at),
            expires_at: rfc3339(s.expires_at),
            ip,
            user_agent,
        });
    }
    Ok(Json(SessionsPage { sessions, next }).into_response())
}

#[utoipa::path(
    delete,
    path = "/me/sessions/{id}",
    tag = "me",
    operation_id = "revokeSession",
    summary = "Revoke one of the caller's sessions (a session only)",
    params(("id" = Uuid, Path, description = "The session"), IdempotencyKey),
    responses((status = 200, description = "Revoked", body = Written), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests, Unavailable)
)]
async fn revoke_session(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    caller.require_account_access()?;
    let session_id: SessionId = parse_id(&id, "session")?;
    let ready = state.ready()?;
    let receipt = ready
        .identity
        .revoke_session(caller.user_id, session_id, &meta.0)
        .await?;
    ready.identity_applied(receipt.cursor).await?;
    Ok(Json(Written::from(&receipt)).into_response())
}

#[utoipa::path(
    get,
    path = "/me/api-keys",
    tag = "me",
    operation_id = "listApiKeys",
    summary = "The caller's live API keys, newest first (a session only)",
    params(ListQuery),
    responses((status = 200, description = "A page of API keys", body = ApiKeysPage), BadRequest, Unauthorized, Forbidden, TooManyRequests, Unavailable)
)]
async fn api_keys(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require_account_access()?;
    let paging = q.paging()?;
    let after = Ready::parse_after(q.after.as_deref())?;
    let ready = state.ready()?;
    ready
        .read_after(after, projections::read_models::identity::NAME, None)
        .await?;
    let mut rows = projections::read_models::identity::api_keys_of(
        ready.store.pool(),
        caller.user_id.as_uuid(),
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |k| (rfc3339(k.created_at), k.key_id));
    let api_keys = rows
        .into_iter()
        .map(|k| ApiKeyBody {
            id: k.key_id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: rfc3339(k.created_at),
        })
        .collect();
    Ok(Json(ApiKeysPage { api_keys, next }).into_response())
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// A label: 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100, example = "CI")]
    name: String,
    /// What it may do: at least one scope (422 `no_scopes` otherwise).
    #[schema(value_type = Vec<ScopeName>)]
    scopes: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/me/api-keys",
    tag = "me",
    operation_id = "issueApiKey",
    summary = "Issue an API key; the key is shown once (a session only)",
    params(IdempotencyKey),
    request_body = NewKey,
    responses((status = 201, description = "Issued", body = IssuedBody), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
async fn issue_api_key(
    State(state): State<AppState>,
    Auth(caller): Auth,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<Response, ApiError> {
    caller.require_session()?;
    let name = Name::parse("name", &body.name).map_err(ApiError::from)?;
    let scopes = body
        .scopes
        .iter()
        .map(|s| {
            s.parse::<Scope>().map_err(|e| {
                ApiError::new(
                    ErrorCode::UnknownScope,
                    format!(
                        "{e}; expected one of {}",
                        Scope::ALL.map(Scope::as_str).join(", ")
                    ),
                )
            })
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let ready = state.ready()?;
    let issued = ready
        .identity
        .issue_api_key(caller.user_id, name.clone(), scopes.clone(), &meta.0)
        .await?;
    ready.identity_caught_up(issued.receipt.cursor).await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedBody {
            id: issued.key_id,
            receipt: ReceiptBody::from(&issued.receipt),
            key: issued.key,
            prefix: issued.prefix,
            name,
            scopes,
        }),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/me/api-keys/{id}",
    tag = "me",
    operation_id = "revokeApiKey",
    summary = "Revoke one of the caller's API keys (a session only)",
    params(("id" = Uuid, Path, description = "The API key"), IdempotencyKey),
    responses((status = 200, description = "Revoked", body = Written), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests, Unavailable)
)]
async fn revoke_api_key(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    caller.require_account_access()?;
    let key_id: ApiKeyId = parse_id(&id, "API key")?;
    let ready = state.ready()?;
    let receipt = ready
        .identity
        .revoke_api_key(caller.user_id, key_id, &meta.0)
        .await?;
    ready.identity_applied(receipt.cursor).await?;
    Ok(Json(Written::from(&receipt)).into_response())
}
