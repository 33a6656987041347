//! Who is calling: a session cookie or an API key, resolved once per request by middleware.
//!
//! - `Authorization: Bearer cairn_<prefix>_<secret>`: an API key; only its SHA-256 is stored.
//! - The session cookie (`__Host-cairn_session`, or `cairn_session` with
//!   `CAIRN_DEV_INSECURE_COOKIES`): a random token; only its SHA-256 is stored.
//!
//! Both are looked up in the `identity` projection's tables (one indexed query), never by
//! replaying a stream. Cookie-authenticated mutations must come from Cairn's own origin (CSRF).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commands::identity::{RENEW_WHEN_LEFT, SESSION_TTL};
use commands::secrets::{digest, parse_api_key, same_digest};
use commands::{Actor, Metadata};
use domain::{ApiKeyId, SessionId, UserId};
use time::OffsetDateTime;

use crate::http::error::{ApiError, ErrorCode};
use crate::http::principal::{Caller, Principal, Via};
use crate::state::AppState;

/// The secure session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-cairn_session";
/// The cookie's name with `CAIRN_DEV_INSECURE_COOKIES` (plain-http development only).
pub const DEV_SESSION_COOKIE: &str = "cairn_session";

/// The session cookie's name under this configuration.
pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config().dev_insecure_cookies {
        DEV_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a session token (`max_age` 0 clears it).
pub fn session_cookie(state: &AppState, token: &str, max_age: i64) -> String {
    let secure = if state.config().dev_insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(state)
    )
}

/// `response` with the session cookie set to `token` for `max_age` seconds (0 clears it).
pub fn with_session_cookie(
    mut response: Response,
    state: &AppState,
    token: &str,
    max_age: i64,
) -> Response {
    if let Ok(v) = HeaderValue::from_str(&session_cookie(state, token, max_age)) {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    response
}

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Rejects cross-site mutations that would ride on the session cookie (and login CSRF on
/// `/auth/*`): the request must say it comes from Cairn's own origin, by `Origin` or by
/// `Sec-Fetch-Site`. Bearer-authenticated requests carry no ambient credential and pass.
pub async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let guarded = is_mutation(request.method())
        && !headers.contains_key(AUTHORIZATION)
        && (cookie(headers, cookie_name(&state)).is_some()
            || request.uri().path().starts_with("/auth/"));
    if guarded {
        let own = state.config().public_url.origin().ascii_serialization();
        // `Origin: null` (privacy modes, some redirects) says nothing; fall back to Fetch
        // Metadata then.
        let origin = headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .filter(|o| *o != "null");
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let verdict = match (origin, fetch_site) {
            (Some(origin), _) => origin == own,
            (None, Some(site)) => matches!(site, "same-origin" | "none"),
            // No browser signal at all: a script, not a page. Refuse if it carries the cookie.
            (None, None) => cookie(headers, cookie_name(&state)).is_none(),
        };
        if !verdict {
            return ApiError::new(
                ErrorCode::CsrfRejected,
                "cross-site request refused; send it from Cairn's own origin",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Resolves the caller (if any credentials were sent), applies the per-caller rate limit, and
/// renews sessions past the middle of their life (sending the cookie again with its new age).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let (principal, renewed) = match resolve(&state, request.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |ci| ci.0.ip());
    let client = crate::http::extract::ClientIp::resolve(
        peer,
        request.headers(),
        &state.config().trusted_proxies,
    );
    request.extensions_mut().insert(client);
    let limited = match &principal {
        Some(p) => state.limits().api.check(&p.rate_key()),
        None if crate::http::limits::anonymous_limited(request.uri().path()) => {
            state.limits().anonymous(client.0)
        }
        None => Ok(()),
    };
    if let Err(retry_after) = limited {
        return ApiError::RateLimited { retry_after }.into_response();
    }
    request.extensions_mut().insert(Caller(principal));
    let mut response = next.run(request).await;
    // A handler that set the cookie itself (sign-in, sign-out) has the last word.
    if let Some(cookie) = renewed {
        if !response.headers().contains_key(SET_COOKIE) {
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(SET_COOKIE, v);
            }
        }
    }
    response
}

/// The person an API key stands for (401 `invalid_credentials` for a key that is malformed,
/// unknown or revoked). Also how `/collab`'s Hocuspocus tokens that are keys sign in.
pub(crate) async fn principal_of_key(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidCredentials,
            "the API key is malformed, unknown or revoked".to_owned(),
        )
    };
    let parts = parse_api_key(key).ok_or_else(invalid)?;
    let ready = state.ready()?;
    let found = ready
        .api_keys
        .live(parts.prefix)
        .await?
        .ok_or_else(invalid)?;
    if !same_digest(&found.key_hash, digest(key).as_bytes()) {
        return Err(invalid());
    }
    let scopes = found.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    Ok(Principal {
        user_id: UserId::from_uuid(found.user_id),
        via: Via::ApiKey {
            key_id: ApiKeyId::from_uuid(found.key_id),
            prefix: parts.prefix.to_owned(),
            scopes,
        },
    })
}

/// The caller, and a renewed session cookie to send back if the session was renewed.
async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Option<Principal>, Option<String>), ApiError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let invalid = || {
            ApiError::new(
                ErrorCode::InvalidCredentials,
                "the API key is malformed, unknown or revoked".to_owned(),
            )
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(invalid)?;
        return Ok((Some(principal_of_key(state, key).await?), None));
    }
    let Some(token) = cookie(headers, cookie_name(state)) else {
        return Ok((None, None));
    };
    let Ok(ready) = state.ready() else {
        return Ok((None, None));
    };
    let Some(session) = projections::read_models::identity::live_session(
        ready.store.pool(),
        digest(token).as_bytes(),
    )
    .await?
    else {
        // A stale or revoked cookie is simply not a sign-in.
        return Ok((None, None));
    };
    let user_id = UserId::from_uuid(session.user_id);
    let session_id = SessionId::from_uuid(session.session_id);
    let mut renewed = None;
    // One renewal at a time per session; the others see the new expiry soon after.
    if session.expires_at - OffsetDateTime::now_utc() < RENEW_WHEN_LEFT
        && state.start_renewal(session.session_id)
    {
        let identity = ready.identity.clone();
        let worker = state.clone();
        state.tasks().spawn(async move {
            let meta = Metadata::new(Actor::User(user_id));
            if let Err(e) = identity.renew_session(user_id, session_id, &meta).await {
                tracing::debug!("session renewal skipped: {e}");
            }
            worker.end_renewal(session_id.as_uuid());
        });
        renewed = Some(session_cookie(state, token, SESSION_TTL.whole_seconds()));
    }
    Ok((
        Some(Principal {
            user_id,
            via: Via::Session {
                session_id,
                expires_at: session.expires_at,
            },
        }),
        renewed,
    ))
}
