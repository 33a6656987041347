//! The OpenAPI 3.1 description of `/api/v1`, generated from the handlers' own types: each
//! resource module keeps a `Doc` (its `#[utoipa::path]` operations) beside its `router()` and
//! `ROUTES`, and [`document`] merges them. The DTOs derive `ToSchema`, so a documented body is
//! the type the handler reads or writes.
//!
//! Also here: what several operations share in the document (the error statuses, each
//! referencing the one `Error` schema; the `Idempotency-Key` header; schemas for values the
//! handlers take as text, such as cursors, permissions and scopes).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use domain::{Permission, Scope};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

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
            API's base path; its message protocol is in the README)."
    ),
    servers((url = "/api/v1")),
    paths(openapi),
    components(schemas(ErrorBody, ErrorCode, Written, Created, ReceiptBody)),
    modifiers(&Security),
    security(("session" = []), ("apiKey" = [])),
    tags(
        (name = "organizations", description = "Organizations, members and teams"),
        (name = "board", description = "Labels, categories, tasks and comments"),
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

// ---- error statuses: each references the one `Error` schema ----

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

/// Declares a unit type whose `IntoResponses` is one error status, for `responses(...)`.
macro_rules! error_status {
    ($(#[doc = $doc:literal])+ $name:ident = $status:literal) => {
        $(#[doc = $doc])+
        pub(crate) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let description = concat!($($doc),+).trim();
                BTreeMap::from([($status.to_owned(), error_response(description).into())])
            }
        }
    };
}

error_status! {
    /// Bad input: malformed JSON, an unknown field, a bad id, query parameter, cursor or
    /// `Idempotency-Key`, an unknown permission or scope.
    BadRequest = "400"
}
error_status! {
    /// Not signed in, or the API key is malformed, unknown or revoked.
    Unauthorized = "401"
}
error_status! {
    /// Not allowed: a missing organization permission or API key scope, a key where a session
    /// is needed, or a cookie-authenticated mutation from another origin.
    Forbidden = "403"
}
error_status! {
    /// No such thing (or the caller may not see it).
    NotFound = "404"
}
error_status! {
    /// A conflict: it exists already, other writers kept winning, or the `Idempotency-Key` was
    /// used for a different request.
    Conflict = "409"
}
error_status! {
    /// The body is over the limit (1 MiB).
    PayloadTooLarge = "413"
}
error_status! {
    /// Well-formed, but a rule refuses it (a value's rule, or the domain's).
    Unprocessable = "422"
}
error_status! {
    /// The database is unreachable or not ready yet, or a read model did not catch up with
    /// `?after=` in time; retry later.
    Unavailable = "503"
}

/// 429, with `Retry-After`.
pub(crate) struct TooManyRequests;

impl IntoResponses for TooManyRequests {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut response = error_response("Rate limited: retry after `Retry-After` seconds.");
        response.headers.insert(
            "Retry-After".to_owned(),
            HeaderBuilder::new()
                .schema(integer(Some(1.0), None))
                .description(Some("Seconds to wait"))
                .build(),
        );
        BTreeMap::from([("429".to_owned(), response.into())])
    }
}

// ---- what writes answer ----

fn written_response(description: &str, body: Cow<'static, str>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .header(
            "Cairn-Cursor",
            HeaderBuilder::new()
                .schema(Ref::from_schema_name(CursorSchema::name()))
                .description(Some(
                    "The cursor after the write's events; pass it as `?after=` to read your write",
                ))
                .build(),
        )
        .header(
            "Idempotent-Replayed",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .enum_values(Some(["true"])),
                )
                .description(Some(
                    "Present when this answers a repeated `Idempotency-Key`: the first receipt, \
                     nothing appended",
                ))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(body)))
                .build(),
        )
        .build()
}

impl IntoResponses for Written {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let response = written_response(
            "Applied (an empty receipt when nothing changed)",
            Written::name(),
        );
        BTreeMap::from([("200".to_owned(), response.into())])
    }
}

impl IntoResponses for Created {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let response = written_response("Created", Created::name());
        BTreeMap::from([("201".to_owned(), response.into())])
    }
}

// ---- parameters and values the handlers take as text ----

/// The optional `Idempotency-Key` header of every write.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Documentation only: `RequestMeta` reads the header.
pub(crate) struct IdempotencyKey {
    /// Repeating a request with the same key returns the first receipt and appends nothing
    /// (`Idempotent-Replayed: true`); the same key on a different request is 409
    /// `idempotency_key_reused`.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x20-\\x7e]*$"
    )]
    key: Option<String>,
}

/// A Cairn cursor: 32 hexadecimal digits, opaque to clients (a transaction id and a position).
pub(crate) struct CursorSchema;

/// What [`CursorSchema`] admits, exactly as `eventstore::Cursor` parses it.
pub(crate) const CURSOR_PATTERN: &str = "^[0-9a-fA-F]{16}[0-7][0-9a-fA-F]{15}$";

impl PartialSchema for CursorSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(CURSOR_PATTERN))
            .description(Some(
                "A Cairn cursor (a write's `Cairn-Cursor`, an event's `cursor`), opaque to clients",
            ))
            .examples([serde_json::json!("00000000000000000000000000000000")])
            .into()
    }
}

impl ToSchema for CursorSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Cursor")
    }
}

/// An organization permission's name, e.g. `tasks.create`.
pub(crate) struct PermissionName;

impl PartialSchema for PermissionName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "An organization permission (`admin.administrator` implies all)",
            ))
            .enum_values(Some(Permission::ALL.map(Permission::as_str)))
            .into()
    }
}

impl ToSchema for PermissionName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Permission")
    }
}

/// An API key scope's name, e.g. `tasks:read`.
pub(crate) struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some("An API key scope"))
            .enum_values(Some(Scope::ALL.map(Scope::as_str)))
            .into()
    }
}

impl ToSchema for ScopeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

/// An integer schema with optional bounds.
fn integer(minimum: Option<f64>, maximum: Option<f64>) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .minimum(minimum)
        .maximum(maximum)
        .build()
}

/// The CloudEvents 1.0 envelope of `projections::bus::CloudEvent`, as the feeds send it (a
/// unit test checks the fields against a serialized event).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CloudEvent)]
#[allow(dead_code)] // Documentation only: the feeds serialize `projections::bus::CloudEvent`.
pub(crate) struct CloudEventDoc {
    /// Always `1.0`.
    specversion: String,
    /// The event id.
    id: String,
    /// `/orgs/<org>/<aggregate_type>/<aggregate_id>`, or `/<aggregate_type>/<aggregate_id>`.
    source: String,
    /// `cairn.<aggregate_type>.<verb>.v<version>`, e.g. `cairn.task.created.v1`.
    #[serde(rename = "type")]
    event_type: String,
    /// `<aggregate_type>/<aggregate_id>`.
    subject: String,
    /// When it was recorded (RFC 3339).
    #[schema(format = DateTime)]
    time: String,
    /// Always `application/json`.
    datacontenttype: String,
    /// The event's payload.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// The cursor after this event: resume from it (`?after=`, `Last-Event-ID`).
    #[schema(value_type = CursorSchema)]
    cairncursor: String,
    /// The event's position in its stream, from 1.
    #[schema(minimum = 1)]
    cairnsequence: i64,
    /// The organization, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, format = Uuid)]
    cairnorg: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(schema: RefOr<Schema>) -> Vec<String> {
        match schema {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => panic!("not an object schema"),
        }
    }

    /// The documented envelope has exactly the fields a serialized `CloudEvent` has.
    #[test]
    fn the_cloud_event_schema_matches_the_envelope() {
        let event = projections::bus::CloudEvent {
            specversion: "1.0".to_owned(),
            id: "e".to_owned(),
            source: "/orgs/o/task/t".to_owned(),
            event_type: "cairn.task.created.v1".to_owned(),
            subject: "task/t".to_owned(),
            time: "2026-01-01T00:00:00Z".to_owned(),
            datacontenttype: "application/json".to_owned(),
            data: serde_json::value::RawValue::from_string("{}".to_owned()).expect("raw"),
            cairncursor: "0".repeat(32),
            cairnsequence: 1,
            cairnorg: Some("o".to_owned()),
        };
        let serialized = serde_json::to_value(&event).expect("json");
        let mut fields: Vec<String> = serialized
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        let mut documented = properties(CloudEventDoc::schema());
        fields.sort();
        documented.sort();
        assert_eq!(fields, documented);
    }

    #[test]
    fn the_cursor_pattern_admits_what_a_cursor_parses() {
        let pattern = CURSOR_PATTERN;
        assert!(pattern.starts_with('^') && pattern.ends_with('$'));
        for text in [
            "0".repeat(32),
            format!("{}7{}", "F".repeat(16), "f".repeat(15)),
        ] {
            assert!(text.parse::<eventstore::Cursor>().is_ok(), "{text}");
        }
        // Past i64 in the position half: the pattern's `[0-7]` refuses it, and so does parsing.
        let too_far = format!("{}8{}", "0".repeat(16), "0".repeat(15));
        assert!(too_far.parse::<eventstore::Cursor>().is_err());
    }
}
