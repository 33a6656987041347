//! API key scopes: what a key may do on its owner's behalf.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One thing an API key is allowed to do. A session (a person in a browser) holds them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read tasks.
    #[serde(rename = "tasks:read")]
    TasksRead,
    /// Change tasks.
    #[serde(rename = "tasks:write")]
    TasksWrite,
    /// Read documents.
    #[serde(rename = "docs:read")]
    DocsRead,
    /// Change documents.
    #[serde(rename = "docs:write")]
    DocsWrite,
    /// Read recordings.
    #[serde(rename = "recordings:read")]
    RecordingsRead,
    /// Change recordings.
    #[serde(rename = "recordings:write")]
    RecordingsWrite,
    /// Read event streams and feeds.
    #[serde(rename = "events:read")]
    EventsRead,
    /// Manage webhook endpoints.
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    /// Administer organizations: members, teams, settings.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 9] = [
        Self::TasksRead,
        Self::TasksWrite,
        Self::DocsRead,
        Self::DocsWrite,
        Self::RecordingsRead,
        Self::RecordingsWrite,
        Self::EventsRead,
        Self::WebhooksManage,
        Self::Admin,
    ];

    /// The wire name, such as `tasks:write`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TasksRead => "tasks:read",
            Self::TasksWrite => "tasks:write",
            Self::DocsRead => "docs:read",
            Self::DocsWrite => "docs:write",
            Self::RecordingsRead => "recordings:read",
            Self::RecordingsWrite => "recordings:write",
            Self::EventsRead => "events:read",
            Self::WebhooksManage => "webhooks:manage",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}
