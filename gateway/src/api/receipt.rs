//! What a write answers: its receipt, the `Cairn-Cursor` header for read-your-writes, and
//! `Idempotent-Replayed` when it answers a repeat.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::Receipt;
use serde::Serialize;
use serde_json::json;

/// The receipt header: the cursor after a write's events, for read-your-writes.
pub const CURSOR_HEADER: &str = "cairn-cursor";

/// A receipt as JSON.
pub fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    serde_json::to_value(ReceiptBody::from(receipt)).unwrap_or_default()
}

/// The wire form of a receipt (API types are not store types).
#[derive(Debug, Serialize)]
struct ReceiptBody {
    command_id: String,
    aggregate_type: String,
    aggregate_id: String,
    events: Vec<AppendedBody>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct AppendedBody {
    sequence: i64,
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

/// A write's response: the receipt (and `extra` fields), `Cairn-Cursor`, and
/// `Idempotent-Replayed` when it answers a repeat.
pub fn written(status: StatusCode, receipt: &Receipt, extra: serde_json::Value) -> Response {
    let mut body = json!({ "receipt": ReceiptBody::from(receipt) });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
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
