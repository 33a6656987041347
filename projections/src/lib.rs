//! Cairn's read side, in two homes kept apart, and the loop both run on.
//!
//! - [`read_models`]: pure folds of events into tables, and their typed queries (the only SQL
//!   that reads read-model tables), plus the access policy built on them. **A read model never
//!   has a side effect**: no mail, no HTTP, no bus. It only writes its own tables, idempotently
//!   (a batch applied twice changes nothing), and its tables are created by `migrations/`.
//! - [`consumers`]: side effects, each with its own progress: the [`consumers::relay`] to the
//!   [`consumers::bus`], and the [`consumers::mailer`]. They never run on a rebuild.
//! - `consumer`: the one loop every runner and consumer uses: supervision with backoff, the
//!   leader lock, the gapless tail, the compare-and-set [`checkpoint`], wake-ups and the slow
//!   poll, and stopping between batches.
//! - [`runner`]: a read model on that loop, each batch applied with its checkpoint in one
//!   transaction; [`registry`]: which projections exist, spawning, rebuilding
//!   (`cairn replay`) and their positions (`cairn projections`, `/metrics`); [`progress`]:
//!   waiting until a projection has passed a cursor (read-your-writes); [`changes`]: caches of
//!   read-model queries, valid until the projection commits a change.
//!
//! Start reading at `consumer`, then [`runner`].

pub mod changes;
pub mod checkpoint;
pub(crate) mod consumer;
pub mod consumers;
pub mod progress;
pub mod read_models;
pub mod registry;
pub mod runner;

pub use runner::{decode, Projection, ProjectionError, Runner};
