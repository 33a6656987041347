//! The resources: one module per resource, each a thin DTO -> command -> response with its
//! `router()` and the `ROUTES` it serves (for the OpenAPI parity test).

pub(crate) mod board;
pub(crate) mod comments;
pub(crate) mod doc;
pub(crate) mod documents;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod me;
pub(crate) mod members;
pub(crate) mod openapi;
pub(crate) mod orgs;
pub(crate) mod pages;
pub(crate) mod paging;
pub(crate) mod receipt;
pub(crate) mod streams;
pub(crate) mod tags;
pub(crate) mod tasks;

use axum::http::Method;
use axum::Router;

use crate::state::AppState;

/// Every operation the `/api/v1` router serves, as (method, path under `/api/v1`), gathered
/// from the `ROUTES` each module keeps beside its `router()`. Only for the OpenAPI parity test,
/// which checks the document against this list both ways and probes each entry (and every
/// other method on its path) against the running server.
#[doc(hidden)]
pub fn api_routes() -> Vec<(Method, &'static str)> {
    [
        orgs::ROUTES,
        members::ROUTES,
        tags::ROUTES,
        tasks::ROUTES,
        comments::ROUTES,
        documents::ROUTES,
        me::ROUTES,
        streams::ROUTES,
        events::ROUTES,
        openapi::ROUTES,
    ]
    .concat()
}

/// Everything under `/api/v1`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(orgs::router())
        .merge(members::router())
        .merge(tags::router())
        .merge(tasks::router())
        .merge(comments::router())
        .merge(documents::router())
        .merge(me::router())
        .merge(streams::router())
        .merge(events::router())
        .merge(openapi::router())
}
