use std::collections::HashMap;
use std::fmt;

use eventstore::vault::{fields, SubjectKey};
use uuid::Uuid;

/// Who issued a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Cairn itself, or an operator at the CLI.
    System,
    /// A signed-in person.
    User(domain::UserId),
    /// An API key (recorded by its public prefix), acting for its owner.
    ApiKey {
        /// The key's public prefix.
        prefix: String,
        /// The person it acts for.
        owner: domain::UserId,
    },
}

impl Actor {
    /// The party the domain authorizes: a key acts with its owner's memberships.
    pub fn caller(&self) -> domain::Caller {
        match self {
            Self::System => domain::Caller::System,
            Self::User(id) | Self::ApiKey { owner: id, .. } => domain::Caller::User(*id),
        }
    }

    /// The person behind this actor, if any.
    pub fn user(&self) -> Option<domain::UserId> {
        match self {
            Self::System => None,
            Self::User(id) | Self::ApiKey { owner: id, .. } => Some(*id),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::ApiKey { prefix, .. } => write!(f, "apikey:{prefix}"),
        }
    }
}

/// A command's id, and whether the client chose it (an `Idempotency-Key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandId {
    id: Uuid,
    from_client: bool,
}

/// Idempotency keys are namespaced so the same key from two actors never collides.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6361_6972_6e2d_6964_656d_706f_7465_6e74);

impl CommandId {
    /// A fresh id for a command the client did not key.
    pub fn generate() -> Self {
        Self {
            id: Uuid::now_v7(),
            from_client: false,
        }
    }

    /// The id a client's `Idempotency-Key` maps to, scoped to the actor.
    pub fn from_idempotency_key(actor: &Actor, key: &str) -> Self {
        let name = format!("{actor}\u{0}{key}");
        Self {
            id: Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes()),
            from_client: true,
        }
    }

    /// The id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// A new id for something this command creates (`purpose` names it, such as `"team"`).
    ///
    /// Deterministic for a client-chosen command id, so a repeated create addresses the same
    /// aggregate and gets the first receipt back; time-ordered (v7) otherwise.
    pub fn derive_id(&self, purpose: &str) -> Uuid {
        if self.from_client {
            Uuid::new_v5(&self.id, purpose.as_bytes())
        } else {
            Uuid::now_v7()
        }
    }

    /// Whether the client chose it, so that a repeat is possible and worth checking for.
    pub fn from_client(&self) -> bool {
        self.from_client
    }
}

/// What every event records besides its payload.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Who.
    pub actor: Actor,
    /// The tenant the command belongs to.
    pub org_id: Option<String>,
    /// The command's id.
    pub command_id: CommandId,
    /// Ties together everything one user action caused.
    pub correlation_id: Uuid,
    /// The event or command that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// The HTTP request id.
    pub request_id: Option<String>,
    /// The client's address. Stored only sealed with the actor's key (see [`Self::to_map`]).
    pub ip: Option<String>,
    /// The client's user agent. Stored only sealed with the actor's key.
    pub user_agent: Option<String>,
    /// The key that seals `ip` and `user_agent`, once looked up.
    personal_key: PersonalKey,
}

/// Whose key seals a command's request details.
#[derive(Debug, Clone)]
enum PersonalKey {
    /// Not looked up yet: [`crate::Commands::execute`] looks up the actor's.
    Unknown,
    /// This one (the actor's, or the person whose account a sign-in link is for).
    Key(SubjectKey),
    /// There is none (a system actor, or an erased person): the details are not stored.
    None,
}

impl Metadata {
    /// Metadata for `actor` with a fresh command id, correlated to nothing else.
    pub fn new(actor: Actor) -> Self {
        let command_id = CommandId::generate();
        Self {
            actor,
            org_id: None,
            correlation_id: command_id.id(),
            command_id,
            causation_id: None,
            request_id: None,
            ip: None,
            user_agent: None,
            personal_key: PersonalKey::Unknown,
        }
    }

    /// Seals `ip` and `user_agent` with `key` (the person they belong to); `None` drops them.
    pub fn with_personal_key(mut self, key: Option<SubjectKey>) -> Self {
        self.personal_key = key.map_or(PersonalKey::None, PersonalKey::Key);
        self
    }

    /// The person whose key must be looked up before this metadata is stored: the actor, when
    /// the request had details to seal and no key was given.
    pub fn wants_personal_key(&self) -> Option<domain::UserId> {
        let has_details = self.ip.is_some() || self.user_agent.is_some();
        match self.personal_key {
            PersonalKey::Unknown if has_details => self.actor.user(),
            _ => None,
        }
    }

    /// Sets the tenant.
    pub fn in_org(mut self, org_id: impl ToString) -> Self {
        self.org_id = Some(org_id.to_string());
        self
    }

    /// The map stored in each event's `metadata` column.
    ///
    /// `ip` and `user_agent` are personal data: they are stored sealed with the person's key
    /// (so they shred with it), and left out when there is no key to seal them with. They never
    /// reach the event store in plaintext.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::with_capacity(8);
        m.insert("actor".to_owned(), self.actor.to_string());
        m.insert(
            eventstore::metadata_keys::COMMAND_ID.to_owned(),
            self.command_id.id().to_string(),
        );
        m.insert("correlation_id".to_owned(), self.correlation_id.to_string());
        let optional = [
            (eventstore::metadata_keys::ORG_ID, self.org_id.clone()),
            ("causation_id", self.causation_id.map(|c| c.to_string())),
            ("request_id", self.request_id.clone()),
            ("ip", self.sealed(fields::IP, self.ip.as_deref())),
            (
                "user_agent",
                self.sealed(fields::USER_AGENT, self.user_agent.as_deref()),
            ),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        m
    }

    fn sealed(&self, field: &str, value: Option<&str>) -> Option<String> {
        match (&self.personal_key, value) {
            (PersonalKey::Key(key), Some(value)) => Some(key.seal(field, value)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_scoped_per_actor_and_stable() {
        let a = CommandId::from_idempotency_key(&Actor::System, "k1");
        assert_eq!(a, CommandId::from_idempotency_key(&Actor::System, "k1"));
        assert_ne!(
            a,
            CommandId::from_idempotency_key(
                &Actor::ApiKey {
                    prefix: "x".into(),
                    owner: domain::UserId::from_uuid(Uuid::nil())
                },
                "k1"
            )
        );
        assert!(a.from_client() && !CommandId::generate().from_client());
    }

    #[test]
    fn metadata_map_has_the_design_keys() {
        let m = Metadata::new(Actor::System).in_org("o1");
        let map = m.to_map();
        for key in ["actor", "org_id", "command_id", "correlation_id"] {
            assert!(map.contains_key(key), "{key}");
        }
        assert!(!map.contains_key("user_agent"));
        assert_eq!(map["actor"], "system");
    }

    #[test]
    fn request_details_are_stored_only_sealed() {
        let user = domain::UserId::from_uuid(Uuid::now_v7());
        let mut m = Metadata::new(Actor::User(user));
        m.ip = Some("192.0.2.7".into());
        m.user_agent = Some("Probe/1".into());
        assert_eq!(m.wants_personal_key(), Some(user));
        // Without a key (none looked up, or the person was erased): left out.
        let map = m.to_map();
        assert!(!map.contains_key("ip") && !map.contains_key("user_agent"));
        let map = m.clone().with_personal_key(None).to_map();
        assert!(!map.contains_key("ip") && !map.contains_key("user_agent"));
        // The system asks for no key.
        let mut system = Metadata::new(Actor::System);
        system.ip = Some("192.0.2.7".into());
        assert_eq!(system.wants_personal_key(), None);
        assert!(!system.to_map().contains_key("ip"));
    }
}
