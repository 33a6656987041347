//! What a write answers: its receipt, the `Cairn-Cursor` header for read-your-writes, and
//! `Idempotent-Replayed` when it answers a repeat.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::Receipt;
use serde::Serialize;
use utoipa::openapi::response::Response as ResponseDoc;
use utoipa::openapi::RefOr;
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use crate::api::doc::{written_response, CursorSchema};

/// The receipt header: the cursor after a write's events, for read-your-writes.
pub const CURSOR_HEADER: &str = "cairn-cursor";

/// The wire form of a receipt (API types are not store types).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Receipt)]
pub struct ReceiptBody {
    /// The command's id (derived from `Idempotency-Key` when one was sent).
    #[schema(format = Uuid)]
    command_id: String,
    /// The aggregate the command went to, e.g. `task`.
    aggregate_type: String,
    /// Its id.
    aggregate_id: String,
    /// The events appended, in order (none when nothing changed).
    events: Vec<AppendedBody>,
    /// The cursor after the last event (`null` when nothing was appended).
    #[schema(value_type = Option<CursorSchema>)]
    cursor: Option<String>,
}

/// One appended event: where it landed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Appended)]
struct AppendedBody {
    /// Its sequence in the stream, from 1.
    sequence: i64,
    /// Its global position.
    position: i64,
}

impl From<&Receipt> for ReceiptBody {
    fn from(r: &Receipt) -> Self {
        Self {
            command_id: r.command_id.to_string(),
            aggregate_type: r.aggregate_type.clone(),
            aggregate_id: r.aggregate_id.clone(),
            events: r
                .events
                .iter()
                .map(|e| AppendedBody {
                    sequence: e.sequence,
                    position: e.position,
                })
                .collect(),
            cursor: r.cursor.map(|c| c.to_string()),
        }
    }
}

/// What a write answers: its receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written {
    /// The receipt.
    pub receipt: ReceiptBody,
}

impl From<&Receipt> for Written {
    fn from(receipt: &Receipt) -> Self {
        Self {
            receipt: receipt.into(),
        }
    }
}

/// What a creation answers: the new id and the receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The id of what was created.
    pub id: Uuid,
    /// The receipt.
    pub receipt: ReceiptBody,
}

/// A write's 200 answer: [`Written`], `Cairn-Cursor`, and `Idempotent-Replayed` when it
/// answers a repeat.
pub fn written(receipt: &Receipt) -> Response {
    with_receipt_headers(StatusCode::OK, receipt, Written::from(receipt))
}

/// A creation's 201 answer: [`Created`] with `id`, and the headers of [`written`].
pub fn created(receipt: &Receipt, id: Uuid) -> Response {
    let body = Created {
        id,
        receipt: receipt.into(),
    };
    with_receipt_headers(StatusCode::CREATED, receipt, body)
}

fn with_receipt_headers(status: StatusCode, receipt: &Receipt, body: impl Serialize) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(cursor) = receipt.cursor {
        if let Ok(v) = HeaderValue::from_str(&cursor.to_string()) {
            headers.insert(CURSOR_HEADER, v);
        }
    }
    if receipt.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    (status, headers, Json(body)).into_response()
}

impl IntoResponses for Written {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let response = written_response(
            "Applied (an empty receipt when nothing changed)",
            Written::name(),
        );
        BTreeMap::from([("200".to_owned(), response.into())])
    }
}

impl IntoResponses for Created {
    fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
        let response = written_response("Created", Created::name());
        BTreeMap::from([("201".to_owned(), response.into())])
    }
}
