//! Consumers with side effects, each with its own progress, never run on a rebuild.
//!
//! - [`relay`]: publishes every committed event to the [`bus`], in commit order, at least
//!   once; an event consumer on the shared loop (`crate::consumer`) with its own checkpoint.
//! - [`bus`]: the `Bus` trait, in process or over NATS JetStream, that live readers subscribe to.
//! - [`mailer`]: the mail outbox and its sender, on the same loop, over its own table.

pub mod bus;
pub mod mailer;
pub mod relay;
