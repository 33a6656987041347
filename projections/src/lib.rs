//! Cairn's read side: the projection runner, read models, and the consumers with side effects.
//!
//! - [`runner`]: each projection is a task that tails the event store with the gapless cursor
//!   and applies each batch *and its checkpoint* in one transaction. It is woken after local
//!   commits and polls slowly as the correctness path, and one node at a time runs it (an
//!   advisory lock, plus a row lock on its checkpoint per batch).
//! - Read models: [`identity`] (accounts, sessions, API keys), [`memberships`] (organizations,
//!   members, teams, permissions).
//! - [`mailer`]: the mail outbox worker. It has side effects, so it is not a projection: it
//!   never runs on replay.
//!
//! **Projections must not** send mail, call HTTP or publish anything; they only write their own
//! tables, idempotently (a batch applied twice changes nothing). Their tables are created by
//! `migrations/`, never in code.

pub mod access;
pub mod board;
pub mod bus;
pub mod identity;
pub mod mailer;
pub mod memberships;
pub mod registry;
pub mod relay;
pub mod runner;

pub use runner::{decode, Projection, ProjectionError, Runner};
