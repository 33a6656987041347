//! Cairn's event store on PostgreSQL.
//!
//! **This crate is the only writer of the `events` table.** It owns the schema (the
//! `migrations/` folder is embedded as [`MIGRATOR`]), appends events with their per-stream hash
//! chain, loads aggregates from snapshots, tails the global log without gaps and verifies every
//! chain. It knows nothing of HTTP, of any particular aggregate, or of read models.
//!
//! Where to start reading:
//! - [`Store`]: the shared handle. Appends go through a group-commit writer ([`append`]) that
//!   packs concurrent commands into one transaction, the way the raw 100-row INSERT anchor does.
//! - [`AggregateStore`]: cqrs-es's [`cqrs_es::EventStore`] for one aggregate type, with a cache,
//!   correct snapshots and per-aggregate ordering.
//! - [`Store::tail`] and [`Cursor`]: the gapless `(xid, position)` tail.
//! - [`Store::verify`]: recomputes every hash chain.
//! - [`vault`]: per-person keys for personal data in events (crypto-shredding).
//! - [`Store::append_bulk`]: many streams written at once, for imports and benchmark data.
//! - [`encode`]: the one hex and the one RFC 3339 encoder every crate uses.
//!
//! The table stays readable and writable by postgres-es (its columns are postgres-es's, every
//! extra column has a default); a test shows postgres-es appending into it.

mod aggregate;
pub mod append;
mod cursor;
mod db;
pub mod encode;
mod error;
mod read;
mod receipt;
pub mod signal;
mod store;
pub mod vault;
mod verify;

pub use aggregate::{AggregateStore, StoreContext};
pub use cursor::{Cursor, CursorError};
pub use db::{connect, ensure_database, parse_url, tune, MIGRATOR};
pub use error::StoreError;
pub use read::{EventFilter, Kept, RecordedEvent};
pub use receipt::{Appended, BulkAppended, Receipt};
pub use signal::CommitTime;
pub use store::{Store, StoreOptions};
pub use verify::{BrokenLink, VerifyReport};

/// Metadata keys the store itself reads.
pub mod metadata_keys {
    /// The command id; a repeat of it is answered from `command_receipts`.
    pub const COMMAND_ID: &str = "command_id";
    /// The tenant; stored in the generated `org_id` column.
    pub const ORG_ID: &str = "org_id";
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
