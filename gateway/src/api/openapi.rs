use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The OpenAPI 3.1 description of `/api/v1`, kept beside the code (`api::openapi_*` tests
/// check it against [`super::api_routes`] and the running router, both ways).
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[(Method::GET, "/openapi.json")];

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], OPENAPI)
}
