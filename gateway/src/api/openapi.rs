//! The OpenAPI 3.1 description of `/api/v1`, generated from the handlers' own types: each
//! resource module keeps a `Doc` (its `#[utoipa::path]` operations) beside its `router()` and
//! `ROUTES`, and [`document`] merges them. The DTOs derive `ToSchema`, so a documented body is
//! the type the handler reads or writes. What several operations share is in `api::doc`.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use domain::Scope;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

use crate::api::doc::{
    CursorSchema, PermissionName, ScopeName, TooManyRequests, Unauthorized, Unavailable,
};
use crate::api::receipt::{Created, ReceiptBody, Written};
use crate::http::error::{ErrorBody, ErrorCode};
use crate::state::AppState;

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[(Method::GET, "/openapi.json")];

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document().to_json().unwrap_or_else(|e| {
        format!("{{\"error\":\"the OpenAPI document failed to serialize: {e}\"}}")
    })
});

/// The OpenAPI document itself (this very route is in it too).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses(
        (status = 200, description = "This document", content_type = "application/json", body = Object),
        Unauthorized,
        TooManyRequests,
        Unavailable,
    )
)]
async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn API",
        version = "1",
        description = "Event-sourced CQRS server. Every write answers with a receipt and a \
            `Cairn-Cursor` header; a read given that cursor as `?after=` waits until it includes \
            the write. Errors share one shape, `{\"error\":{\"code\",\"message\",\"details\"}}`, \
            with `code` from the closed set `ErrorCode`. Authenticate with the session cookie \
            (browser sign-in by magic link, see `/auth/send-link`) or `Authorization: Bearer \
            cairn_<prefix>_<secret>` (an API key with scopes). Cookie-authenticated mutations \
            must be same-origin. Live boards use the WebSocket endpoint `/ws` (outside this \
            API's base path; its message protocol is in docs/streaming.md)."
    ),
    servers((url = "/api/v1")),
    paths(openapi),
    components(schemas(
        ErrorBody,
        ErrorCode,
        Written,
        Created,
        ReceiptBody,
        CursorSchema,
        PermissionName,
        ScopeName
    )),
    modifiers(&Security),
    security(("session" = []), ("apiKey" = [])),
    tags(
        (name = "organizations", description = "Organizations, members and teams"),
        (name = "board", description = "Labels, categories, tasks and comments"),
        (name = "documents", description = "Collaborative documents: the tree, metadata, content and history"),
        (name = "me", description = "The signed-in person: sessions, API keys, erasure"),
        (name = "events", description = "Stream history and integrator feeds"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The whole document: every resource module's operations, and what they share.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        super::orgs::Doc::openapi(),
        super::members::Doc::openapi(),
        super::tags::Doc::openapi(),
        super::tasks::Doc::openapi(),
        super::comments::Doc::openapi(),
        super::documents::Doc::openapi(),
        super::me::Doc::openapi(),
        super::streams::Doc::openapi(),
        super::events::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                not_null(parameter);
            }
        }
    }
    doc
}

/// A path, query or header parameter is text or absent, never JSON `null`: the schema of an
/// optional one (an `Option` field) says what it is when present.
fn not_null(parameter: &mut utoipa::openapi::path::Parameter) {
    if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema {
        if let SchemaType::Array(types) = &object.schema_type {
            let types: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            if let [only] = types.as_slice() {
                object.schema_type = SchemaType::Type(only.clone());
            }
        }
    }
}

/// The two ways to authenticate.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-cairn_session",
                "Set by POST /auth/verify/{token}; `cairn_session` with \
                 CAIRN_DEV_INSECURE_COOKIES.",
            ))),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!(
                        "`cairn_<prefix>_<secret>`; scopes: {}.",
                        Scope::ALL.map(Scope::as_str).join(", ")
                    )))
                    .build(),
            ),
        );
    }
}
