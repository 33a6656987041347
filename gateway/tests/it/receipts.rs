//! The receipt a write answers, field by field: `command_id`, `aggregate_type`,
//! `aggregate_id`, `events[{sequence, position}]` and `cursor` (equal to `Cairn-Cursor`),
//! each required to exist and checked against what the store recorded.

use commands::{Actor, CommandId};
use domain::UserId;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, TestApp};

/// A write's status, `Cairn-Cursor` header and body.
async fn written(label: &str, r: reqwest::Response, status: u16) -> (String, Value) {
    assert_eq!(r.status().as_u16(), status, "{label}: status");
    let cursor = r
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{label}: a Cairn-Cursor header"))
        .to_owned();
    let body: Value = r.json().await.expect("json");
    (cursor, body)
}

/// (sequence, global position, metadata command_id) of every event in a stream, in order.
async fn stream(app: &TestApp, aggregate_type: &str, id: &str) -> Vec<(i64, i64, String)> {
    let pool = app.db.pool(1).await;
    let rows = sqlx::query_as(
        "SELECT sequence, global_position, metadata->>'command_id' FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("stream");
    pool.close().await;
    rows
}

/// Checks every field of `body["receipt"]` against the stream's events from `first` on.
async fn check_receipt(
    app: &TestApp,
    label: &str,
    header_cursor: &str,
    body: &Value,
    aggregate_type: &str,
    aggregate_id: &str,
    first: i64,
) -> Uuid {
    let receipt = body
        .get("receipt")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{label}: a receipt object in {body}"));
    let command_id: Uuid = receipt
        .get("command_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{label}: `command_id` is a UUID in {body}"));
    assert_eq!(
        receipt.get("aggregate_type").and_then(Value::as_str),
        Some(aggregate_type),
        "{label}: aggregate_type"
    );
    assert_eq!(
        receipt.get("aggregate_id").and_then(Value::as_str),
        Some(aggregate_id),
        "{label}: aggregate_id"
    );
    let cursor = receipt
        .get("cursor")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{label}: `cursor` is a string in {body}"));
    assert_eq!(cursor, header_cursor, "{label}: cursor = Cairn-Cursor");
    assert!(
        cursor.len() == 32 && cursor.bytes().all(|b| b.is_ascii_hexdigit()),
        "{label}: a cursor is 32 hex digits: {cursor}"
    );
    let events = receipt
        .get("events")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{label}: `events` is a list in {body}"));
    let stored: Vec<(i64, i64, String)> = stream(app, aggregate_type, aggregate_id)
        .await
        .into_iter()
        .filter(|(sequence, _, _)| *sequence >= first)
        .collect();
    assert!(!stored.is_empty(), "{label}: the write stored events");
    assert_eq!(events.len(), stored.len(), "{label}: one entry per event");
    for (i, (event, (sequence, position, meta_command))) in events.iter().zip(&stored).enumerate() {
        let keys: Vec<&String> = event
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys.len(),
            2,
            "{label}, event {i}: sequence and position only: {event}"
        );
        assert_eq!(
            event.get("sequence").and_then(Value::as_i64),
            Some(*sequence),
            "{label}, event {i}: sequence"
        );
        assert_eq!(
            event.get("position").and_then(Value::as_i64),
            Some(*position),
            "{label}, event {i}: position is the stored global position"
        );
        assert_eq!(
            meta_command,
            &command_id.to_string(),
            "{label}, event {i}: the event's metadata carries the receipt's command id"
        );
    }
    assert_eq!(
        receipt.keys().map(String::as_str).collect::<Vec<_>>().len(),
        5,
        "{label}: exactly command_id, aggregate_type, aggregate_id, events, cursor: {body}"
    );
    command_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_name_the_command_the_stream_its_events_and_the_cursor() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let me: Value = ada
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let ada_id: UserId = me["user_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("user_id");

    // A keyed create: the command id is the key scoped to the caller.
    let r = ada
        .post(app.url("/api/v1/orgs"))
        .header("idempotency-key", "receipt-org")
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("create org");
    let (cursor, body) = written("create organization", r, 201).await;
    let org = body["id"].as_str().expect("id").to_owned();
    let command = check_receipt(
        &app,
        "create organization",
        &cursor,
        &body,
        "organization",
        &org,
        1,
    )
    .await;
    assert_eq!(
        command,
        CommandId::from_idempotency_key(&Actor::User(ada_id), "receipt-org").id(),
        "the Idempotency-Key, scoped to the caller, is the command id"
    );
    assert_eq!(
        body["receipt"]["events"].as_array().map(Vec::len),
        Some(8),
        "a creation records eight events"
    );

    // An unkeyed task create, then an edit of it.
    let r = ada
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": "Ship it"}))
        .send()
        .await
        .expect("create task");
    let (cursor, body) = written("create task", r, 201).await;
    let task = body["id"].as_str().expect("id").to_owned();
    let created = check_receipt(&app, "create task", &cursor, &body, "task", &task, 1).await;
    let r = ada
        .patch(app.url(&format!("/api/v1/orgs/{org}/tasks/{task}")))
        .json(&json!({"title": "Ship it now", "status": "done"}))
        .send()
        .await
        .expect("edit task");
    let (edit_cursor, body) = written("edit task", r, 200).await;
    let edited = check_receipt(&app, "edit task", &edit_cursor, &body, "task", &task, 2).await;
    assert_ne!(created, edited, "each command has its own id");
    assert_ne!(edit_cursor, cursor, "a later write has its own cursor");
    assert_eq!(
        body["receipt"]["events"].as_array().map(Vec::len),
        Some(2),
        "a title and a status change"
    );
    app.stop().await;
}
