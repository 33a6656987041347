use crate::Receipt;

/// What can go wrong in the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first (a primary-key violation). Reload and retry.
    #[error("another command changed this aggregate first")]
    Conflict,
    /// The command id was already used for a different aggregate.
    #[error("command id {0} was already used for another aggregate")]
    CommandIdReused(uuid::Uuid),
    /// The command id was already executed; here is its first receipt.
    #[error("command already executed")]
    Duplicate(Box<Receipt>),
    /// Events given out of order: a gap, a repeat or a sequence below 1 in one stream, or a
    /// stream continued without its predecessor stored ([`crate::Store::append_bulk`]).
    #[error("events out of sequence: {0}")]
    OutOfSequence(String),
    /// PostgreSQL failed or is unreachable.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// PostgreSQL could not be reached while writing a batch.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// An event or snapshot could not be (de)serialized.
    #[error("could not (de)serialize an event or snapshot")]
    Serde(#[from] serde_json::Error),
    /// The group-commit writer has stopped (the store is shutting down).
    #[error("the event store is shutting down")]
    Closed,
}

impl StoreError {
    /// Whether retrying after a reload may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict)
    }
}
