//! What a caller may do in one organization, looked up (from the memberships read model) by
//! the command side and carried inside the command, so the domain can decide without I/O.

use std::collections::BTreeSet;

use crate::{Permission, UserId};

/// A caller's standing in an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The person, or `None` for the system (which may do anything).
    pub user: Option<UserId>,
    /// Whether the person is a member.
    pub member: bool,
    /// The permissions their teams give them.
    pub permissions: BTreeSet<Permission>,
}

impl Grant {
    /// The system: allowed everything.
    pub fn system() -> Self {
        Self {
            user: None,
            member: true,
            permissions: BTreeSet::new(),
        }
    }

    /// A member holding `permissions`.
    pub fn member(user: UserId, permissions: impl IntoIterator<Item = Permission>) -> Self {
        Self {
            user: Some(user),
            member: true,
            permissions: permissions.into_iter().collect(),
        }
    }

    /// Whether the caller may act with `permission` (administrator implies all).
    pub fn allows(&self, permission: Permission) -> bool {
        self.user.is_none()
            || (self.member && self.permissions.iter().any(|held| held.grants(permission)))
    }
}
