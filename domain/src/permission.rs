//! Team permissions. `admin.administrator` implies every other permission.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A permission a team grants to its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Everything, including all permissions below.
    #[serde(rename = "admin.administrator")]
    Administrator,
    /// Add and remove organization members.
    #[serde(rename = "admin.manageMembers")]
    ManageMembers,
    /// Create, rename and delete teams and set their permissions.
    #[serde(rename = "admin.manageTeams")]
    ManageTeams,
    /// Change organization settings.
    #[serde(rename = "admin.manageSettings")]
    ManageSettings,
    /// Create, update and delete labels.
    #[serde(rename = "content.manageLabels")]
    ManageLabels,
    /// Create, update and delete categories.
    #[serde(rename = "content.manageCategories")]
    ManageCategories,
    /// Create tasks.
    #[serde(rename = "tasks.create")]
    CreateTasks,
    /// Edit tasks.
    #[serde(rename = "tasks.edit")]
    EditTasks,
    /// Delete tasks.
    #[serde(rename = "tasks.delete")]
    DeleteTasks,
    /// Assign tasks to members.
    #[serde(rename = "tasks.assign")]
    AssignTasks,
    /// Edit documents.
    #[serde(rename = "docs.edit")]
    EditDocs,
    /// Score recordings.
    #[serde(rename = "recordings.score")]
    ScoreRecordings,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 12] = [
        Self::Administrator,
        Self::ManageMembers,
        Self::ManageTeams,
        Self::ManageSettings,
        Self::ManageLabels,
        Self::ManageCategories,
        Self::CreateTasks,
        Self::EditTasks,
        Self::DeleteTasks,
        Self::AssignTasks,
        Self::EditDocs,
        Self::ScoreRecordings,
    ];

    /// The wire name, such as `tasks.create`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "admin.administrator",
            Self::ManageMembers => "admin.manageMembers",
            Self::ManageTeams => "admin.manageTeams",
            Self::ManageSettings => "admin.manageSettings",
            Self::ManageLabels => "content.manageLabels",
            Self::ManageCategories => "content.manageCategories",
            Self::CreateTasks => "tasks.create",
            Self::EditTasks => "tasks.edit",
            Self::DeleteTasks => "tasks.delete",
            Self::AssignTasks => "tasks.assign",
            Self::EditDocs => "docs.edit",
            Self::ScoreRecordings => "recordings.score",
        }
    }

    /// Whether holding `self` grants `wanted` (administrator grants everything).
    pub fn grants(self, wanted: Permission) -> bool {
        self == wanted || self == Self::Administrator
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was not one of [`Permission::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for p in Permission::ALL {
            let json = serde_json::to_string(&p).expect("serialize");
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert!("tasks.fly".parse::<Permission>().is_err());
    }

    #[test]
    fn administrator_implies_all() {
        for p in Permission::ALL {
            assert!(Permission::Administrator.grants(p));
        }
        assert!(!Permission::EditTasks.grants(Permission::DeleteTasks));
    }
}
