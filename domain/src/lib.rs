//! Cairn's domain: aggregates, commands, events and value types.
//!
//! **This crate is pure.** It does no I/O, reads no clock and generates no ids: anything a
//! decision needs from outside (the time, a fresh id, a lookup) arrives inside the command, put
//! there by the `commands` crate. That is what makes a command safe to retry after a
//! concurrency conflict.
//!
//! Each aggregate lives in its own module with its commands, events and error enum. Events are a
//! stored contract: their JSON is pinned by tests in each module, and their wire type is
//! `noun.verb` (see [`organization::OrganizationEvent`]), written once, in the serde tag that
//! `event_type()` reads back. Start reading at [`organization`], then
//! [`account`] (identity: magic links, sessions, API keys, erasure).

pub mod account;
mod caller;
pub mod document;
mod event_type;
mod grant;
pub mod ids;
pub mod label;
pub mod organization;
pub mod permission;
pub mod scope;
pub mod task;
pub mod values;

pub use caller::{Caller, Request};
pub use grant::Grant;
pub use ids::{
    ApiKeyId, CategoryId, CommentId, DocId, LabelId, OrgId, SessionId, TaskId, TeamId, UserId,
};
pub use permission::Permission;
pub use scope::Scope;
/// Writes decided events to cqrs-es's sink, which applies each to the aggregate as it goes:
/// the body every aggregate's `handle` shares.
pub(crate) async fn record<A: cqrs_es::Aggregate>(
    aggregate: &mut A,
    sink: &cqrs_es::event_sink::EventSink<A>,
    events: impl IntoIterator<Item = A::Event>,
) {
    for event in events {
        sink.write(event, aggregate).await;
    }
}

pub use values::{Digest, Email, Name, Sealed, Text, ValueError};
