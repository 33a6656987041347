//! The access policy: the one place that answers "may this reader read this event, stream,
//! channel or document". Every read path (stream history, the feeds, `/ws`, the board reads,
//! `/me`) asks it, and asks it again when access changes, so the paths cannot drift apart.
//!
//! Rights come from the `memberships` and `identity` read models, loaded once into an
//! [`Access`]; the questions themselves are pure functions of that snapshot.
//!
//! - Every event belongs to a [`Class`]: the organization's public name ([`Class::Public`]),
//!   its board ([`Class::Board`]: tasks, labels, categories), its documents ([`Class::Docs`]),
//!   its administration
//!   ([`Class::Admin`]: members, teams, permissions) or a person's account ([`Class::Account`]).
//! - **Public** is open to anyone, signed in or not.
//! - **Board** and **Docs** need membership of the organization.
//! - **Admin** needs an `admin.*` permission there (`admin.administrator` implies all).
//! - **Account** is its owner's alone.
//! - An API key reads no more than its owner and no more than its scopes: `tasks:read` for the
//!   board, `docs:read` for documents, `admin` for the administration, and `events:read` (the integrators' scope) for
//!   every class its owner may read.
//! - A revoked key, a revoked or expired session and an erased person read nothing at all
//!   ([`Access::is_live`]).

use std::collections::{BTreeSet, HashMap};

use domain::Scope;
use sqlx::PgPool;
use uuid::Uuid;

/// Who reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// Not signed in.
    Anonymous,
    /// A person in a browser session (which holds every scope).
    Session {
        /// The person.
        user: Uuid,
        /// The session.
        session: Uuid,
    },
    /// A person's API key.
    ApiKey {
        /// The key's owner.
        user: Uuid,
        /// The key.
        key: Uuid,
        /// What it may do.
        scopes: BTreeSet<Scope>,
    },
}

impl Reader {
    /// The person, if signed in.
    pub fn user(&self) -> Option<Uuid> {
        match self {
            Self::Anonymous => None,
            Self::Session { user, .. } | Self::ApiKey { user, .. } => Some(*user),
        }
    }

    /// Whether the credential lets its owner read `class` at all (scopes only; the owner's
    /// own rights are checked separately).
    pub fn scoped_for(&self, class: Class) -> bool {
        let scopes = match self {
            Self::Anonymous => return class == Class::Public,
            Self::Session { .. } => return true,
            Self::ApiKey { scopes, .. } => scopes,
        };
        let needed = match class {
            Class::Public | Class::Account => return true,
            Class::Board => Scope::TasksRead,
            Class::Docs => Scope::DocsRead,
            Class::Admin => Scope::Admin,
            Class::Hidden => return false,
        };
        scopes.contains(&needed) || scopes.contains(&Scope::EventsRead)
    }
}

/// What an event (or a stream, or a channel) is, for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// An organization's public face: that it exists and its name.
    Public,
    /// An organization's board: tasks, labels, categories.
    Board,
    /// An organization's documents: their tree, titles and content.
    Docs,
    /// An organization's administration: members, teams and their permissions.
    Admin,
    /// A person's account: sign-ins, sessions, keys.
    Account,
    /// Anything the policy does not know: nobody reads it.
    Hidden,
}

impl Class {
    /// The class of an event of `event_type` (`noun.verb`) in a stream of `aggregate_type`.
    pub fn of_event(aggregate_type: &str, event_type: &str) -> Self {
        match aggregate_type {
            "organization" => match event_type {
                "organization.created" | "organization.renamed" => Self::Public,
                _ => Self::Admin,
            },
            _ => Self::of_stream(aggregate_type),
        }
    }

    /// The class of a whole stream: an organization's stream is its administration's (it
    /// holds member and team changes), a task's is its board's.
    pub fn of_stream(aggregate_type: &str) -> Self {
        match aggregate_type {
            "organization" => Self::Admin,
            "task" | "label" | "category" => Self::Board,
            "document" => Self::Docs,
            "account" => Self::Account,
            _ => Self::Hidden,
        }
    }
}

/// A reader's standing in one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Holds an `admin.*` permission there.
    pub admin: bool,
}

/// What a reader may read, as the read models said when it was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    reader: Reader,
    live: bool,
    /// The organizations the person belongs to (only the one asked about, for
    /// [`Access::load_org`]).
    orgs: HashMap<Uuid, Standing>,
}

impl Access {
    /// An anonymous reader's access (no query needed).
    pub fn anonymous() -> Self {
        Self {
            reader: Reader::Anonymous,
            live: true,
            orgs: HashMap::new(),
        }
    }

    /// Everything `reader` may read, in every organization: two indexed queries.
    pub async fn load(pool: &PgPool, reader: Reader) -> Result<Self, sqlx::Error> {
        Self::load_in(pool, reader, None).await
    }

    /// What `reader` may read in `org` (and nowhere else): two indexed queries.
    pub async fn load_org(pool: &PgPool, reader: Reader, org: Uuid) -> Result<Self, sqlx::Error> {
        Self::load_in(pool, reader, Some(org)).await
    }

    async fn load_in(
        pool: &PgPool,
        reader: Reader,
        org: Option<Uuid>,
    ) -> Result<Self, sqlx::Error> {
        let Some(user) = reader.user() else {
            return Ok(Self::anonymous());
        };
        let live = is_live(pool, &reader).await?;
        let rows: Vec<(Uuid, bool)> = if live {
            sqlx::query_as(
                "SELECT m.org_id,
                        EXISTS (SELECT 1 FROM effective_permissions p
                                 WHERE p.org_id = m.org_id AND p.user_id = m.user_id
                                   AND p.permission LIKE 'admin.%')
                   FROM org_members m
                  WHERE m.user_id = $1 AND ($2::uuid IS NULL OR m.org_id = $2)",
            )
            .bind(user)
            .bind(org)
            .fetch_all(pool)
            .await?
        } else {
            Vec::new()
        };
        Ok(Self {
            reader,
            live,
            orgs: rows
                .into_iter()
                .map(|(org, admin)| (org, Standing { admin }))
                .collect(),
        })
    }

    /// Who this is about.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Whether the credential still stands: the key is not revoked, the session is neither
    /// revoked nor expired, the person is not erased. A dead credential reads nothing.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Whether the person belongs to `org`.
    pub fn is_member(&self, org: Uuid) -> bool {
        self.live && self.orgs.contains_key(&org)
    }

    /// The organizations whose events this reader may see any of, sorted.
    pub fn orgs(&self) -> Vec<Uuid> {
        let mut orgs: Vec<Uuid> = if self.live {
            self.orgs.keys().copied().collect()
        } else {
            Vec::new()
        };
        orgs.sort();
        orgs
    }

    /// May this reader read something of `class` in `org` (or, for [`Class::Account`], of
    /// the account `owner`)?
    pub fn may_read(&self, class: Class, org: Option<Uuid>, owner: Option<Uuid>) -> bool {
        if !self.live || !self.reader.scoped_for(class) {
            return false;
        }
        let standing = org.and_then(|o| self.orgs.get(&o));
        match class {
            Class::Public => true,
            Class::Board | Class::Docs => standing.is_some(),
            Class::Admin => standing.is_some_and(|s| s.admin),
            Class::Account => owner.is_some() && owner == self.reader.user(),
            Class::Hidden => false,
        }
    }

    /// May this reader read one stored event? `org` is the event's tenant (`org_id`).
    pub fn may_read_event(
        &self,
        org: Option<&str>,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
    ) -> bool {
        let class = Class::of_event(aggregate_type, event_type);
        let org = org.and_then(|o| Uuid::parse_str(o).ok());
        let owner = match class {
            Class::Account => Uuid::parse_str(aggregate_id).ok(),
            _ => None,
        };
        self.may_read(class, org, owner)
    }

    /// May this reader read a whole stream? `org` is the organization the stream belongs to
    /// (for an organization's own stream, itself).
    pub fn may_read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        org: Option<Uuid>,
    ) -> bool {
        let class = Class::of_stream(aggregate_type);
        let owner = match class {
            Class::Account => Uuid::parse_str(aggregate_id).ok(),
            _ => None,
        };
        self.may_read(class, org, owner)
    }

    /// Whether this reader has lost anything `before` could read: a dead credential, an
    /// organization left, an administration right dropped. Open streams end on it.
    pub fn lost_since(&self, before: &Access) -> bool {
        if before.live && !self.live {
            return true;
        }
        before
            .orgs
            .iter()
            .any(|(org, was)| match self.orgs.get(org) {
                None => true,
                Some(now) => was.admin && !now.admin,
            })
    }
}

/// Whether `reader`'s credential still stands (see [`Access::is_live`]).
pub async fn is_live(pool: &PgPool, reader: &Reader) -> Result<bool, sqlx::Error> {
    match reader {
        Reader::Anonymous => Ok(true),
        Reader::Session { user, session } => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sessions s JOIN accounts a ON a.user_id = s.user_id
                                 WHERE s.session_id = $1 AND s.user_id = $2
                                   AND s.revoked_at IS NULL AND s.expires_at > now()
                                   AND a.erased_at IS NULL)",
            )
            .bind(session)
            .bind(user)
            .fetch_one(pool)
            .await
        }
        Reader::ApiKey { user, key, .. } => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM api_keys k JOIN accounts a ON a.user_id = k.user_id
                                 WHERE k.key_id = $1 AND k.user_id = $2 AND k.revoked_at IS NULL
                                   AND a.erased_at IS NULL)",
            )
            .bind(key)
            .bind(user)
            .fetch_one(pool)
            .await
        }
    }
}

/// What an event does to access, for open streams that must react before they deliver the
/// next event. Decided from the event alone, so every node reacts in the bus's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The person's credential ended: a key revoked, a session revoked, or the person erased
    /// (`key` and `session` both `None`).
    CredentialEnded {
        /// The person.
        user: Uuid,
        /// The key, if one key was revoked.
        key: Option<Uuid>,
        /// The session, if one session was revoked.
        session: Option<Uuid>,
    },
    /// The person left the organization: every right there ends.
    LeftOrganization {
        /// The organization.
        org: Uuid,
        /// The person.
        user: Uuid,
    },
    /// Team rights changed in the organization: administration rights there must be read
    /// again (`user` when one person's standing changed, `None` when a whole team's did).
    RightsChanged {
        /// The organization.
        org: Uuid,
        /// The person, if only one.
        user: Option<Uuid>,
    },
}

impl Change {
    /// Whether events of streams of `aggregate_type` can change access at all (accounts and
    /// organizations): a cheap first filter for those who follow every event.
    pub fn may_come_from(aggregate_type: &str) -> bool {
        matches!(aggregate_type, "account" | "organization")
    }

    /// The access change an event of `event_type` makes, if any. `payload` is its JSON.
    pub fn of_event(
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Fields {
            user_id: Option<Uuid>,
            key_id: Option<Uuid>,
            session_id: Option<Uuid>,
        }
        if !Self::may_come_from(aggregate_type) {
            return None;
        }
        let id = Uuid::parse_str(aggregate_id).ok()?;
        let fields: Fields = serde_json::from_str(payload).ok()?;
        match event_type {
            "account.api_key_revoked" => Some(Self::CredentialEnded {
                user: id,
                key: fields.key_id,
                session: None,
            }),
            "account.session_revoked" => Some(Self::CredentialEnded {
                user: id,
                key: None,
                session: fields.session_id,
            }),
            "account.erased" => Some(Self::CredentialEnded {
                user: id,
                key: None,
                session: None,
            }),
            "organization.member_removed" => Some(Self::LeftOrganization {
                org: id,
                user: fields.user_id?,
            }),
            "organization.team_member_removed" => Some(Self::RightsChanged {
                org: id,
                user: fields.user_id,
            }),
            "organization.team_permissions_set" | "organization.team_deleted" => {
                Some(Self::RightsChanged {
                    org: id,
                    user: None,
                })
            }
            _ => None,
        }
    }

    /// Whether this change ends `reader`'s credential outright.
    pub fn ends(&self, reader: &Reader) -> bool {
        let Self::CredentialEnded { user, key, session } = self else {
            return false;
        };
        match reader {
            Reader::Anonymous => false,
            Reader::Session {
                user: u,
                session: s,
            } => u == user && key.is_none() && session.is_none_or(|x| x == *s),
            Reader::ApiKey {
                user: u, key: k, ..
            } => u == user && session.is_none() && key.is_none_or(|x| x == *k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(reader: Reader, orgs: &[(Uuid, bool)]) -> Access {
        Access {
            reader,
            live: true,
            orgs: orgs
                .iter()
                .map(|(o, admin)| (*o, Standing { admin: *admin }))
                .collect(),
        }
    }

    #[test]
    fn classes_follow_the_event() {
        assert_eq!(
            Class::of_event("organization", "organization.renamed"),
            Class::Public
        );
        assert_eq!(
            Class::of_event("organization", "organization.team_permissions_set"),
            Class::Admin
        );
        assert_eq!(
            Class::of_event("organization", "organization.member_added"),
            Class::Admin
        );
        assert_eq!(Class::of_event("task", "task.created"), Class::Board);
        assert_eq!(Class::of_event("document", "document.edited"), Class::Docs);
        assert_eq!(
            Class::of_event("account", "account.registered"),
            Class::Account
        );
        assert_eq!(Class::of_event("mystery", "mystery.made"), Class::Hidden);
        assert_eq!(Class::of_stream("organization"), Class::Admin);
    }

    #[test]
    fn members_read_the_board_and_admins_the_administration() {
        let org = Uuid::now_v7();
        let user = Uuid::now_v7();
        let session = Reader::Session {
            user,
            session: Uuid::now_v7(),
        };
        let member = with(session.clone(), &[(org, false)]);
        let admin = with(session, &[(org, true)]);
        let stranger = with(
            Reader::Session {
                user: Uuid::now_v7(),
                session: Uuid::now_v7(),
            },
            &[],
        );
        for (who, board, administration) in [
            (&member, true, false),
            (&admin, true, true),
            (&stranger, false, false),
        ] {
            assert_eq!(who.may_read(Class::Board, Some(org), None), board);
            assert_eq!(who.may_read(Class::Admin, Some(org), None), administration);
            assert!(who.may_read(Class::Public, Some(org), None));
        }
        assert!(Access::anonymous().may_read(Class::Public, Some(org), None));
        assert!(!Access::anonymous().may_read(Class::Board, Some(org), None));
        assert!(member.may_read(Class::Account, None, Some(user)));
        assert!(!member.may_read(Class::Account, None, Some(Uuid::now_v7())));
    }

    #[test]
    fn a_key_reads_no_more_than_its_scopes() {
        let org = Uuid::now_v7();
        let key = |scopes: &[Scope]| {
            with(
                Reader::ApiKey {
                    user: Uuid::now_v7(),
                    key: Uuid::now_v7(),
                    scopes: scopes.iter().copied().collect(),
                },
                &[(org, true)],
            )
        };
        let tasks = key(&[Scope::TasksRead]);
        assert!(tasks.may_read(Class::Board, Some(org), None));
        assert!(!tasks.may_read(Class::Admin, Some(org), None));
        let admin = key(&[Scope::Admin]);
        assert!(!admin.may_read(Class::Board, Some(org), None));
        assert!(admin.may_read(Class::Admin, Some(org), None));
        let events = key(&[Scope::EventsRead]);
        assert!(events.may_read(Class::Board, Some(org), None));
        assert!(events.may_read(Class::Admin, Some(org), None));
        let docs = key(&[Scope::DocsRead]);
        assert!(!docs.may_read(Class::Board, Some(org), None));
        assert!(docs.may_read(Class::Public, Some(org), None));
        assert!(docs.may_read(Class::Docs, Some(org), None));
        assert!(!tasks.may_read(Class::Docs, Some(org), None));
        assert!(events.may_read(Class::Docs, Some(org), None));
        assert!(!docs.may_read(Class::Docs, Some(Uuid::now_v7()), None));
    }

    #[test]
    fn a_dead_credential_reads_nothing_and_counts_as_a_loss() {
        let org = Uuid::now_v7();
        let reader = Reader::Session {
            user: Uuid::now_v7(),
            session: Uuid::now_v7(),
        };
        let before = with(reader.clone(), &[(org, true)]);
        let mut dead = before.clone();
        dead.live = false;
        assert!(!dead.may_read(Class::Public, Some(org), None));
        assert!(dead.lost_since(&before));
        let demoted = with(reader.clone(), &[(org, false)]);
        assert!(demoted.lost_since(&before));
        assert!(!before.lost_since(&demoted), "gaining is not losing");
        let gone = with(reader, &[]);
        assert!(gone.lost_since(&demoted));
    }

    #[test]
    fn changes_are_read_from_the_event_alone() {
        let user = Uuid::now_v7();
        let key = Uuid::now_v7();
        let session = Uuid::now_v7();
        let revoked = Change::of_event(
            "account",
            &user.to_string(),
            "account.api_key_revoked",
            &format!(r#"{{"key_id":"{key}"}}"#),
        )
        .expect("a change");
        let key_reader = Reader::ApiKey {
            user,
            key,
            scopes: BTreeSet::new(),
        };
        let session_reader = Reader::Session { user, session };
        assert!(revoked.ends(&key_reader));
        assert!(!revoked.ends(&session_reader));
        let erased = Change::of_event("account", &user.to_string(), "account.erased", "{}")
            .expect("a change");
        assert!(erased.ends(&key_reader) && erased.ends(&session_reader));
        let org = Uuid::now_v7();
        assert_eq!(
            Change::of_event(
                "organization",
                &org.to_string(),
                "organization.member_removed",
                &format!(r#"{{"user_id":"{user}"}}"#),
            ),
            Some(Change::LeftOrganization { org, user })
        );
        assert_eq!(
            Change::of_event("task", &org.to_string(), "task.created", "{}"),
            None
        );
    }
}
