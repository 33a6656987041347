//! What several operations share in the OpenAPI document (`api::openapi` assembles it): the
//! error statuses, each referencing the one `Error` schema; what a write answers; the
//! `Idempotency-Key` header; and schemas for values the handlers take as text (cursors,
//! permissions, scopes, the CloudEvents envelope).

use std::borrow::Cow;
use std::collections::BTreeMap;

use domain::{Permission, Scope};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToSchema};

use crate::http::error::ErrorBody;

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

/// A write's success: `body` (a schema's name) with `Cairn-Cursor` and `Idempotent-Replayed`.
pub(crate) fn written_response(description: &str, body: Cow<'static, str>) -> Response {
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
        pattern = "^[\\t\\x20-\\x7e]*$"
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

/// The CloudEvents 1.0 envelope of `projections::consumers::bus::CloudEvent`, as the feeds send it (a
/// unit test checks the fields against a serialized event).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CloudEvent)]
#[allow(dead_code)] // Documentation only: the feeds serialize `projections::consumers::bus::CloudEvent`.
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
        let event = projections::consumers::bus::CloudEvent {
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
            // Bus only: the feeds build their envelopes without it.
            cairnprev: None,
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
