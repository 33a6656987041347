//! The `/ws` board protocol's messages (the Sayr protocol).
//!
//! - On connect the server sends `CONNECTION_STATUS {authenticated, wsClientId}`.
//! - Clients send `SUBSCRIBE {orgId, channel, since?}`, `UNSUBSCRIBE` and `PONG`; before the
//!   first `SUBSCRIBE` nothing else is accepted (the waiting room).
//! - The server sends `SUBSCRIBED`, `UNSUBSCRIBED`, `USER_SUBSCRIBED` / `USER_UNSUBSCRIBED`,
//!   `ERROR {code}`, `PING`, `RESYNC_REQUIRED` and data messages (`CREATE_TASK`, …) carrying
//!   `{orgId, channel, ts, cursor, data}`.

use axum::extract::ws::Utf8Bytes;
use projections::consumers::bus::CloudEvent;
use projections::read_models::access::Class;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// A room's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Open to anonymous clients: the organization's public name.
    Public,
    /// Members: tasks, labels and categories.
    Tasks,
    /// Administrators: membership and teams.
    Admin,
    /// Members: the documents' tree (created, renamed, moved, published, deleted); their
    /// content is live on `/collab`.
    Docs,
}

impl Channel {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "tasks" => Some(Self::Tasks),
            "admin" => Some(Self::Admin),
            "docs" => Some(Self::Docs),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Tasks => "tasks",
            Self::Admin => "admin",
            Self::Docs => "docs",
        }
    }

    /// What the access policy calls what this channel carries.
    pub(crate) fn class(self) -> Class {
        match self {
            Self::Public => Class::Public,
            Self::Tasks => Class::Board,
            Self::Admin => Class::Admin,
            Self::Docs => Class::Docs,
        }
    }

    /// The aggregate types whose events this channel carries (for `since` replays).
    pub(crate) fn aggregate_types(self) -> Vec<String> {
        match self {
            Self::Tasks => vec!["task".into(), "label".into(), "category".into()],
            Self::Docs => vec!["document".into()],
            Self::Public | Self::Admin => vec!["organization".into()],
        }
    }
}

/// `orgId:channel`.
pub(crate) type Room = (String, Channel);

/// The data messages an event of stored type `stored` (`noun.verb`) becomes:
/// `(channel, message type)`.
pub(crate) fn messages_for(stored: &str) -> Vec<(Channel, String)> {
    let (noun, verb) = stored.split_once('.').unwrap_or((stored, ""));
    match noun {
        "task" | "label" | "category" => {
            let action = match verb {
                "created" => "CREATE",
                "deleted" => "DELETE",
                _ => "UPDATE",
            };
            vec![(Channel::Tasks, format!("{action}_{}", noun.to_uppercase()))]
        }
        "document" => {
            let action = match verb {
                "created" => "CREATE",
                "deleted" => "DELETE",
                // Content is for `/collab`: an edit per keystroke has no place on a tree.
                "edited" | "compacted" => return Vec::new(),
                _ => "UPDATE",
            };
            vec![(Channel::Docs, format!("{action}_DOCUMENT"))]
        }
        "organization" => {
            let mut out = vec![(Channel::Admin, "UPDATE_ORGANIZATION".to_owned())];
            if matches!(verb, "created" | "renamed") {
                out.push((Channel::Public, "UPDATE_ORGANIZATION".to_owned()));
            }
            out
        }
        _ => Vec::new(),
    }
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn frame(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

pub(crate) fn error_frame(code: &str, message: &str) -> Utf8Bytes {
    frame(&json!({"type": "ERROR", "code": code, "message": message, "ts": now_ms()}))
}

/// What a member that lost `room` is told.
pub(crate) fn revoked_messages(room: &Room) -> [Utf8Bytes; 2] {
    [
        frame(&json!({
            "type": "ERROR", "code": "ACCESS_REVOKED", "orgId": room.0,
            "channel": room.1.as_str(), "message": "you may no longer read this channel",
            "ts": now_ms(),
        })),
        frame(&json!({
            "type": "UNSUBSCRIBED", "scope": "INDIVIDUAL", "orgId": room.0,
            "channel": room.1.as_str(), "ts": now_ms(),
        })),
    ]
}

/// A data message on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    scope: &'static str,
    org_id: &'a str,
    channel: &'static str,
    ts: i64,
    cursor: &'a str,
    data: DataBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataBody<'a> {
    id: &'a str,
    aggregate_type: &'a str,
    event: &'a str,
    event_id: &'a str,
    sequence: i64,
    time: &'a str,
    /// The event's payload, copied as stored (not parsed again).
    changes: &'a RawValue,
}

/// The data message for `event` (of stored type `stored`) on `channel`.
pub(crate) fn data_frame(
    event: &CloudEvent,
    stored: &str,
    org: &str,
    channel: Channel,
    kind: &str,
) -> Utf8Bytes {
    let (aggregate_type, aggregate_id) = event.stream();
    let message = DataMessage {
        kind,
        scope: "CHANNEL",
        org_id: org,
        channel: channel.as_str(),
        ts: now_ms(),
        cursor: &event.cairncursor,
        data: DataBody {
            id: aggregate_id,
            aggregate_type,
            event: stored,
            event_id: &event.id,
            sequence: event.cairnsequence,
            time: &event.time,
            changes: &event.data,
        },
    };
    // A struct of strings and a raw value always serializes.
    Utf8Bytes::from(serde_json::to_string(&message).unwrap_or_default())
}

pub(crate) fn resync(room: &Room) -> Utf8Bytes {
    frame(&json!({
        "type": "RESYNC_REQUIRED", "orgId": room.0, "channel": room.1.as_str(), "ts": now_ms(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientMessage {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) org_id: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) since: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_message_carries_the_payload_as_stored() {
        let event: CloudEvent = serde_json::from_value(json!({
            "specversion": "1.0",
            "id": "e1",
            "source": "/orgs/o1/task/t1",
            "type": "cairn.task.created.v1",
            "subject": "task/t1",
            "time": "2026-11-22T05:00:00Z",
            "datacontenttype": "application/json",
            "data": {"title": "Ship", "labels": [1, 2]},
            "cairncursor": "c1",
            "cairnsequence": 1,
            "cairnorg": "o1",
        }))
        .expect("event");
        let stored = event.stored_type();
        assert_eq!(
            messages_for(&stored),
            vec![(Channel::Tasks, "CREATE_TASK".to_owned())]
        );
        let message: Value = serde_json::from_str(&data_frame(
            &event,
            &stored,
            "o1",
            Channel::Tasks,
            "CREATE_TASK",
        ))
        .expect("json");
        assert_eq!(message["type"], "CREATE_TASK");
        assert_eq!(message["orgId"], "o1");
        assert_eq!(message["channel"], "tasks");
        assert_eq!(message["cursor"], "c1");
        assert_eq!(message["data"]["id"], "t1");
        assert_eq!(message["data"]["aggregateType"], "task");
        assert_eq!(message["data"]["event"], "task.created");
        assert_eq!(message["data"]["eventId"], "e1");
        assert_eq!(
            message["data"]["changes"],
            json!({"title": "Ship", "labels": [1, 2]})
        );
    }
}
