use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Cursor;

/// One appended event's place: in its stream and in the global log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The event's sequence in its stream (1-based).
    pub sequence: i64,
    /// Its global position.
    pub position: i64,
}

/// What a command did: the events it appended and the cursor after them. Stored in
/// `command_receipts` with the events, so a repeated command id gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The command's id (an `Idempotency-Key` becomes one).
    pub command_id: Uuid,
    /// The aggregate type it addressed.
    pub aggregate_type: String,
    /// The aggregate it addressed.
    pub aggregate_id: String,
    /// The appended events in order; empty when the command changed nothing.
    pub events: Vec<Appended>,
    /// The cursor just after the last appended event; `None` when nothing was appended.
    pub cursor: Option<Cursor>,
    /// A digest of the command, set when the client chose the command id, so a key reused for
    /// a different request can be told apart from a repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Uuid>,
    /// True when this receipt answers a repeat of an earlier command (nothing new appended).
    #[serde(skip)]
    pub replayed: bool,
}

impl Receipt {
    /// A receipt for a command that changed nothing.
    pub fn empty(command_id: Uuid, aggregate_type: &str, aggregate_id: &str) -> Self {
        Self {
            command_id,
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            events: Vec::new(),
            cursor: None,
            fingerprint: None,
            replayed: false,
        }
    }

    /// The stream's sequence after this command, if it appended anything.
    pub fn last_sequence(&self) -> Option<i64> {
        self.events.last().map(|e| e.sequence)
    }
}

/// What [`crate::Store::append_bulk`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkAppended {
    /// Requests written, each with its receipt.
    pub commands: u64,
    /// Events written.
    pub events: u64,
    /// The cursor after the last statement's newest event; `None` when nothing was written.
    pub cursor: Option<Cursor>,
}
