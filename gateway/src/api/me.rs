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
use serde::Deserialize;
use serde_json::json;

use crate::api::paging::ListQuery;
use crate::api::receipt::receipt_json;
use crate::http::auth::with_session_cookie;
use crate::http::error::ApiError;
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

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me).delete(erase))
        .route("/me/sessions", get(sessions))
        .route("/me/sessions/{id}", delete(revoke_session))
        .route("/me/api-keys", get(api_keys).post(issue_api_key))
        .route("/me/api-keys/{id}", delete(revoke_api_key))
}

async fn me(State(state): State<AppState>, Auth(caller): Auth) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let account =
        projections::read_models::identity::account(ready.store.pool(), caller.user_id.as_uuid())
            .await?
            .ok_or_else(|| ApiError::not_found("account_not_found", "no such account"))?;
    let email = match &account.email_sealed {
        Some(sealed) => ready.identity.vault().opener().open(sealed).await?,
        None => eventstore::vault::ERASED.to_owned(),
    };
    let auth = match &caller.via {
        Via::Session { .. } => json!({"type": "session"}),
        Via::ApiKey { prefix, scopes, .. } => {
            json!({"type": "api_key", "prefix": prefix, "scopes": scopes})
        }
    };
    Ok(Json(json!({
        "user_id": account.user_id,
        "email": email,
        "registered_at": rfc3339(account.registered_at),
        "auth": auth,
    }))
    .into_response())
}

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
    let response = Json(json!({ "receipt": receipt_json(&receipt) })).into_response();
    Ok(with_session_cookie(response, &state, "", 0))
}

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
        sessions.push(json!({
            "id": s.session_id,
            "current": Some(s.session_id) == current,
            "started_at": rfc3339(s.started_at),
            "expires_at": rfc3339(s.expires_at),
            "ip": ip,
            "user_agent": user_agent,
        }));
    }
    Ok(Json(json!({ "sessions": sessions, "next": next })).into_response())
}

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
    Ok(Json(json!({ "receipt": receipt_json(&receipt) })).into_response())
}

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
    let keys: Vec<_> = rows
        .into_iter()
        .map(|k| {
            json!({
                "id": k.key_id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes,
                "created_at": rfc3339(k.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "api_keys": keys, "next": next })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    scopes: Vec<String>,
}

async fn issue_api_key(
    State(state): State<AppState>,
    Auth(caller): Auth,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<Response, ApiError> {
    caller.require_session()?;
    let name = Name::parse("name", &body.name).map_err(|e| ApiError::Unprocessable {
        code: "validation_failed",
        message: e.to_string(),
    })?;
    let scopes = body
        .scopes
        .iter()
        .map(|s| {
            s.parse::<Scope>().map_err(|e| {
                ApiError::bad_request(
                    "unknown_scope",
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
        Json(json!({
            "id": issued.key_id,
            "key": issued.key,
            "prefix": issued.prefix,
            "name": name,
            "scopes": scopes,
            "receipt": receipt_json(&issued.receipt),
        })),
    )
        .into_response())
}

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
    Ok(Json(json!({ "receipt": receipt_json(&receipt) })).into_response())
}
