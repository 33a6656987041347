//! Who is asking. Commands that need authorization arrive wrapped in a [`Request`].

use crate::UserId;

/// The party a command is decided for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Cairn itself or an operator: not subject to permissions.
    System,
    /// A signed-in person (directly, or through one of their API keys).
    User(UserId),
}

/// A command together with its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<C> {
    /// Who asks.
    pub by: Caller,
    /// What is asked.
    pub command: C,
}

impl<C> Request<C> {
    /// A request by the system.
    pub fn system(command: C) -> Self {
        Self {
            by: Caller::System,
            command,
        }
    }

    /// A request by a person.
    pub fn by_user(user: UserId, command: C) -> Self {
        Self {
            by: Caller::User(user),
            command,
        }
    }
}
