//! What a caller may do in one organization, looked up (from the memberships read model) by
//! the command side and carried inside the command, so the domain can decide without I/O.

use std::collections::BTreeSet;

use crate::{OrgId, Permission, UserId};

/// A caller's standing in an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The organization this grant was looked up in. An aggregate of another organization
    /// refuses it, as if it did not exist.
    pub org_id: OrgId,
    /// The person, or `None` for the system (which may do anything).
    pub user: Option<UserId>,
    /// Whether the person is a member.
    pub member: bool,
    /// The permissions their teams give them.
    pub permissions: BTreeSet<Permission>,
}

impl Grant {
    /// The system: allowed everything in `org_id`.
    pub fn system(org_id: OrgId) -> Self {
        Self {
            org_id,
            user: None,
            member: true,
            permissions: BTreeSet::new(),
        }
    }

    /// A member of `org_id` holding `permissions`.
    pub fn member(
        org_id: OrgId,
        user: UserId,
        permissions: impl IntoIterator<Item = Permission>,
    ) -> Self {
        Self {
            org_id,
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
