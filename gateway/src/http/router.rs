//! The router: every resource's routes under their layers (request ids, tracing, security
//! headers, metrics, CSRF, authentication, body limits, CORS on the API).

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::api;
use crate::http::error::{ApiError, ErrorCode, LoggedCause};
use crate::state::AppState;
use crate::ws;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // CORS applies to the API only: bearer-token clients on other origins, never cookies.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static(api::receipt::CURSOR_HEADER),
            HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600));
    let api = api::router()
        // Inside the CORS layer, so a preflight for a POST-only route is answered by CORS.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(cors);
    let hsts = state.config().public_url.scheme() == "https";
    Router::new()
        .merge(api::health::router())
        .merge(api::pages::router())
        .merge(ws::router())
        .merge(crate::collab::router())
        .merge(crate::collab::hocuspocus::router())
        // Applies to the routes registered so far; the API sets its own.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .nest("/api/v1", api)
        .fallback(|| async {
            ApiError::new(ErrorCode::RouteNotFound, "no such route")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), crate::http::auth::authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), crate::http::auth::csrf))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(move |req, next| security_headers(hsts, req, next)))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!("request", method = %req.method(), uri = %loggable_path(req.uri().path()), request_id = id)
                        })
                        .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
        .with_state(state)
}

/// The path as logged: sign-in tokens are secrets, so `/auth/verify/<token>` is cut short.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/auth/verify/") {
        "/auth/verify/…"
    } else {
        path
    }
}

/// The content security policy: Cairn's pages need nothing but their own inline styles and
/// same-origin forms.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the usual security headers on every response.
async fn security_headers(hsts: bool, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}

/// Records request metrics and logs server errors with their cause, inside the request span.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state
        .metrics()
        .http(&method, status.as_u16(), started.elapsed());
    if let Some(LoggedCause(cause)) = response.extensions().get::<LoggedCause>() {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(status = status.as_u16(), cause = %cause, "request failed");
        } else {
            tracing::error!(status = status.as_u16(), cause = %cause, "request failed");
        }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE
        && response.headers().get("content-type").is_none()
    {
        // A limit hit below the extractors (e.g. by DefaultBodyLimit on a raw body).
        return ApiError::PayloadTooLarge.into_response();
    }
    response
}
