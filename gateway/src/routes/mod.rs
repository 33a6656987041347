//! The HTTP surface: one module per resource, each with its `router()`.

mod health;
mod openapi;
mod orgs;
mod streams;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::{ApiError, LoggedCause};
use crate::state::AppState;

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The receipt header: the cursor after a write's events, for read-your-writes.
pub const CURSOR_HEADER: &str = "cairn-cursor";

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .merge(orgs::router())
        .merge(streams::router())
        .merge(openapi::router());
    Router::new()
        .merge(health::router())
        .nest("/api/v1", api)
        .fallback(|| async {
            ApiError::not_found("route_not_found", "no such route")
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
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
                            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = id)
                        })
                        .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(SetResponseHeaderLayer::overriding(
                    HeaderName::from_static("x-content-type-options"),
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    HeaderName::from_static("referrer-policy"),
                    HeaderValue::from_static("no-referrer"),
                )),
        )
        .with_state(state)
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
