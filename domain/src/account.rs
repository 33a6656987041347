//! The `Account` aggregate: one person's identity. Magic links, registration, sessions, API
//! keys and erasure are all events of this one stream, whose id is the person's [`UserId`].
//!
//! Secrets never enter the domain: links, sessions and keys arrive as [`Digest`]s of tokens the
//! `commands` side generated, and the email address as a [`Sealed`] ciphertext.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ApiKeyId, Digest, Name, Scope, Sealed, SessionId, UserId};

/// How many outstanding magic links an account remembers; older ones stop working.
pub const MAX_OPEN_LINKS: usize = 10;

/// A session about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Its id.
    pub session_id: SessionId,
    /// The digest of its cookie token.
    pub token_hash: Digest,
    /// When it ends unless renewed.
    pub expires_at: OffsetDateTime,
}

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Record that a sign-in link was sent (the account may not be registered yet).
    RequestMagicLink {
        /// The account's id.
        user_id: UserId,
        /// The address the link goes to, sealed.
        email: Sealed,
        /// The digest of the link's token.
        token_hash: Digest,
        /// When the link stops working.
        expires_at: OffsetDateTime,
    },
    /// Use a link: registers the account on first use and starts a session.
    ConsumeMagicLink {
        /// The digest of the presented token.
        token_hash: Digest,
        /// The current time.
        now: OffsetDateTime,
        /// The session to start.
        session: NewSession,
    },
    /// Push a session's expiry out (sliding renewal).
    RenewSession {
        /// The session.
        session_id: SessionId,
        /// The new expiry.
        expires_at: OffsetDateTime,
    },
    /// End a session.
    RevokeSession {
        /// The session.
        session_id: SessionId,
    },
    /// Issue an API key.
    IssueApiKey {
        /// Its id.
        key_id: ApiKeyId,
        /// A label chosen by the owner.
        name: Name,
        /// The public part of the key (`cairn_<prefix>_...`).
        prefix: String,
        /// The digest of the whole key.
        key_hash: Digest,
        /// What it may do.
        scopes: BTreeSet<Scope>,
    },
    /// Revoke an API key.
    RevokeApiKey {
        /// The key.
        key_id: ApiKeyId,
    },
    /// Forget the person: every session and key ends; their sealed data becomes unreadable once
    /// the caller deletes their key.
    Erase,
}

/// What happened to an account. The `type` tag is the stored `event_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AccountEvent {
    /// A sign-in link was sent.
    #[serde(rename = "account.magic_link_requested")]
    MagicLinkRequested {
        /// The account.
        user_id: UserId,
        /// The address, sealed.
        email: Sealed,
        /// The link token's digest.
        token_hash: Digest,
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The account was registered (at its first sign-in).
    #[serde(rename = "account.registered")]
    Registered {
        /// The account.
        user_id: UserId,
        /// The address, sealed.
        email: Sealed,
    },
    /// A sign-in link was used.
    #[serde(rename = "account.magic_link_consumed")]
    MagicLinkConsumed {
        /// The link token's digest.
        token_hash: Digest,
    },
    /// A session started.
    #[serde(rename = "account.session_started")]
    SessionStarted {
        /// The session.
        session_id: SessionId,
        /// Its token's digest.
        token_hash: Digest,
        /// When it ends unless renewed.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A session's expiry moved.
    #[serde(rename = "account.session_renewed")]
    SessionRenewed {
        /// The session.
        session_id: SessionId,
        /// The new expiry.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A session ended.
    #[serde(rename = "account.session_revoked")]
    SessionRevoked {
        /// The session.
        session_id: SessionId,
    },
    /// An API key was issued.
    #[serde(rename = "account.api_key_issued")]
    ApiKeyIssued {
        /// The key.
        key_id: ApiKeyId,
        /// Its label.
        name: Name,
        /// Its public prefix.
        prefix: String,
        /// The digest of the whole key.
        key_hash: Digest,
        /// What it may do.
        scopes: BTreeSet<Scope>,
    },
    /// An API key was revoked.
    #[serde(rename = "account.api_key_revoked")]
    ApiKeyRevoked {
        /// The key.
        key_id: ApiKeyId,
    },
    /// The person was erased.
    #[serde(rename = "account.erased")]
    Erased {},
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MagicLinkRequested { .. } => "account.magic_link_requested",
            Self::Registered { .. } => "account.registered",
            Self::MagicLinkConsumed { .. } => "account.magic_link_consumed",
            Self::SessionStarted { .. } => "account.session_started",
            Self::SessionRenewed { .. } => "account.session_renewed",
            Self::SessionRevoked { .. } => "account.session_revoked",
            Self::ApiKeyIssued { .. } => "account.api_key_issued",
            Self::ApiKeyRevoked { .. } => "account.api_key_revoked",
            Self::Erased {} => "account.erased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The link is unknown, used or expired. One error for all three, on purpose (HTTP 400).
    #[error("this sign-in link is invalid or has expired")]
    LinkInvalid,
    /// The account has not signed in yet (HTTP 404).
    #[error("no such account")]
    NotRegistered,
    /// The person was erased (HTTP 410).
    #[error("this account was erased")]
    Erased,
    /// No such live session (HTTP 404).
    #[error("no such session")]
    SessionNotFound,
    /// No such live API key (HTTP 404).
    #[error("no such API key")]
    ApiKeyNotFound,
    /// An API key needs at least one scope (HTTP 422).
    #[error("an API key needs at least one scope")]
    NoScopes,
}

impl AccountError {
    /// A stable machine-readable code for clients.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::LinkInvalid => "invalid_link",
            Self::NotRegistered => "account_not_found",
            Self::Erased => "account_erased",
            Self::SessionNotFound => "session_not_found",
            Self::ApiKeyNotFound => "api_key_not_found",
            Self::NoScopes => "no_scopes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenLink {
    token_hash: Digest,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    email: Sealed,
}

/// The account aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    id: Option<UserId>,
    email: Option<Sealed>,
    registered: bool,
    erased: bool,
    /// Unused links, oldest first (at most [`MAX_OPEN_LINKS`]).
    links: Vec<OpenLink>,
    /// Live sessions.
    sessions: BTreeSet<SessionId>,
    /// Live API keys.
    api_keys: BTreeMap<ApiKeyId, String>,
}

impl Account {
    /// Whether the person has signed in at least once.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Whether the person was erased.
    pub fn is_erased(&self) -> bool {
        self.erased
    }

    /// Decides which events a command produces. Pure.
    pub fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        use AccountCommand as C;
        use AccountError as E;
        use AccountEvent as V;

        if self.erased {
            return Err(match command {
                C::ConsumeMagicLink { .. } => E::LinkInvalid,
                _ => E::Erased,
            });
        }
        Ok(match command {
            C::RequestMagicLink {
                user_id,
                email,
                token_hash,
                expires_at,
            } => vec![V::MagicLinkRequested {
                user_id,
                email,
                token_hash,
                expires_at,
            }],
            C::ConsumeMagicLink {
                token_hash,
                now,
                session,
            } => {
                let link = self
                    .links
                    .iter()
                    .find(|l| l.token_hash == token_hash && l.expires_at > now)
                    .ok_or(E::LinkInvalid)?;
                let user_id = self.id.ok_or(E::LinkInvalid)?;
                let mut events = Vec::with_capacity(3);
                if !self.registered {
                    events.push(V::Registered {
                        user_id,
                        email: link.email.clone(),
                    });
                }
                events.push(V::MagicLinkConsumed { token_hash });
                events.push(V::SessionStarted {
                    session_id: session.session_id,
                    token_hash: session.token_hash,
                    expires_at: session.expires_at,
                });
                events
            }
            C::RenewSession {
                session_id,
                expires_at,
            } => {
                if !self.sessions.contains(&session_id) {
                    return Err(E::SessionNotFound);
                }
                vec![V::SessionRenewed {
                    session_id,
                    expires_at,
                }]
            }
            C::RevokeSession { session_id } => {
                if !self.sessions.contains(&session_id) {
                    return Err(E::SessionNotFound);
                }
                vec![V::SessionRevoked { session_id }]
            }
            C::IssueApiKey {
                key_id,
                name,
                prefix,
                key_hash,
                scopes,
            } => {
                if !self.registered {
                    return Err(E::NotRegistered);
                }
                if scopes.is_empty() {
                    return Err(E::NoScopes);
                }
                vec![V::ApiKeyIssued {
                    key_id,
                    name,
                    prefix,
                    key_hash,
                    scopes,
                }]
            }
            C::RevokeApiKey { key_id } => {
                if !self.api_keys.contains_key(&key_id) {
                    return Err(E::ApiKeyNotFound);
                }
                vec![V::ApiKeyRevoked { key_id }]
            }
            C::Erase => {
                if self.id.is_none() {
                    return Err(E::NotRegistered);
                }
                vec![V::Erased {}]
            }
        })
    }
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        crate::record(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use AccountEvent as V;
        match event {
            V::MagicLinkRequested {
                user_id,
                email,
                token_hash,
                expires_at,
            } => {
                self.id = Some(user_id);
                self.email = Some(email.clone());
                self.links.push(OpenLink {
                    token_hash,
                    expires_at,
                    email,
                });
                if self.links.len() > MAX_OPEN_LINKS {
                    self.links.remove(0);
                }
            }
            V::Registered { user_id, email } => {
                self.id = Some(user_id);
                self.email = Some(email);
                self.registered = true;
            }
            V::MagicLinkConsumed { token_hash } => {
                self.links.retain(|l| l.token_hash != token_hash);
            }
            V::SessionStarted { session_id, .. } => {
                self.sessions.insert(session_id);
            }
            V::SessionRenewed { .. } => {}
            V::SessionRevoked { session_id } => {
                self.sessions.remove(&session_id);
            }
            V::ApiKeyIssued { key_id, prefix, .. } => {
                self.api_keys.insert(key_id, prefix);
            }
            V::ApiKeyRevoked { key_id } => {
                self.api_keys.remove(&key_id);
            }
            V::Erased {} => {
                self.erased = true;
                self.email = None;
                self.links.clear();
                self.sessions.clear();
                self.api_keys.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use AccountCommand as C;
    use AccountError as E;
    use AccountEvent as V;

    type Given = TestFramework<Account>;

    fn user() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }
    fn digest(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }
    fn sealed() -> Sealed {
        Sealed::new("enc:v1:test".into())
    }
    fn requested(n: u8) -> V {
        V::MagicLinkRequested {
            user_id: user(),
            email: sealed(),
            token_hash: digest(n),
            expires_at: datetime!(2026-01-01 12:15 UTC),
        }
    }
    fn session(n: u128) -> NewSession {
        NewSession {
            session_id: SessionId::from_uuid(Uuid::from_u128(n)),
            token_hash: digest(200),
            expires_at: datetime!(2026-02-01 12:00 UTC),
        }
    }
    fn consume(n: u8, now: OffsetDateTime) -> C {
        C::ConsumeMagicLink {
            token_hash: digest(n),
            now,
            session: session(50),
        }
    }
    fn started() -> V {
        let s = session(50);
        V::SessionStarted {
            session_id: s.session_id,
            token_hash: s.token_hash,
            expires_at: s.expires_at,
        }
    }

    #[tokio::test]
    async fn the_first_link_used_registers_and_starts_a_session() {
        Given::with(())
            .given(vec![requested(1)])
            .when_async(consume(1, datetime!(2026-01-01 12:05 UTC)))
            .await
            .then_expect_events(vec![
                V::Registered {
                    user_id: user(),
                    email: sealed(),
                },
                V::MagicLinkConsumed {
                    token_hash: digest(1),
                },
                started(),
            ]);
    }

    #[tokio::test]
    async fn expired_reused_and_unknown_links_are_one_error() {
        let now = datetime!(2026-01-01 12:05 UTC);
        Given::with(())
            .given(vec![requested(1)])
            .when_async(consume(1, datetime!(2026-01-01 12:15 UTC)))
            .await
            .then_expect_error(E::LinkInvalid);
        Given::with(())
            .given(vec![
                requested(1),
                V::Registered {
                    user_id: user(),
                    email: sealed(),
                },
                V::MagicLinkConsumed {
                    token_hash: digest(1),
                },
            ])
            .when_async(consume(1, now))
            .await
            .then_expect_error(E::LinkInvalid);
        Given::with(())
            .given(vec![requested(1)])
            .when_async(consume(2, now))
            .await
            .then_expect_error(E::LinkInvalid);
        Given::with(())
            .given_no_previous_events()
            .when_async(consume(1, now))
            .await
            .then_expect_error(E::LinkInvalid);
    }

    #[tokio::test]
    async fn only_the_newest_links_stay_open() {
        let given: Vec<V> = (1..=(MAX_OPEN_LINKS as u8 + 1)).map(requested).collect();
        Given::with(())
            .given(given)
            .when_async(consume(1, datetime!(2026-01-01 12:00 UTC)))
            .await
            .then_expect_error(E::LinkInvalid);
    }

    #[tokio::test]
    async fn keys_need_registration_and_scopes_and_erasure_ends_everything() {
        let issue = |scopes: BTreeSet<Scope>| C::IssueApiKey {
            key_id: ApiKeyId::from_uuid(Uuid::from_u128(9)),
            name: Name::parse("name", "ci").expect("name"),
            prefix: "abcd1234".into(),
            key_hash: digest(9),
            scopes,
        };
        Given::with(())
            .given(vec![requested(1)])
            .when_async(issue([Scope::EventsRead].into()))
            .await
            .then_expect_error(E::NotRegistered);
        let registered = vec![
            requested(1),
            V::Registered {
                user_id: user(),
                email: sealed(),
            },
            started(),
        ];
        Given::with(())
            .given(registered.clone())
            .when_async(issue(BTreeSet::new()))
            .await
            .then_expect_error(E::NoScopes);
        let mut erased = registered.clone();
        erased.push(V::Erased {});
        Given::with(())
            .given(erased.clone())
            .when_async(C::RevokeSession {
                session_id: session(50).session_id,
            })
            .await
            .then_expect_error(E::Erased);
        Given::with(())
            .given(erased)
            .when_async(C::Erase)
            .await
            .then_expect_error(E::Erased);
        Given::with(())
            .given(registered)
            .when_async(C::RevokeSession {
                session_id: session(51).session_id,
            })
            .await
            .then_expect_error(E::SessionNotFound);
    }

    #[tokio::test]
    async fn live_sessions_renew_and_revoked_ones_do_not() {
        let s = session(50);
        let later = datetime!(2026-03-01 00:00 UTC);
        let registered = vec![
            requested(1),
            V::Registered {
                user_id: user(),
                email: sealed(),
            },
            started(),
        ];
        Given::with(())
            .given(registered.clone())
            .when_async(C::RenewSession {
                session_id: s.session_id,
                expires_at: later,
            })
            .await
            .then_expect_events(vec![V::SessionRenewed {
                session_id: s.session_id,
                expires_at: later,
            }]);
        let mut revoked = registered;
        revoked.push(V::SessionRevoked {
            session_id: s.session_id,
        });
        Given::with(())
            .given(revoked)
            .when_async(C::RenewSession {
                session_id: s.session_id,
                expires_at: later,
            })
            .await
            .then_expect_error(E::SessionNotFound);
    }

    #[test]
    fn event_json_is_pinned() {
        let cases: Vec<(V, &str)> = vec![
            (
                requested(1),
                r#"{"type":"account.magic_link_requested","user_id":"00000000-0000-0000-0000-000000000001","email":"enc:v1:test","token_hash":"0101010101010101010101010101010101010101010101010101010101010101","expires_at":"2026-01-01T12:15:00Z"}"#,
            ),
            (
                V::Registered {
                    user_id: user(),
                    email: sealed(),
                },
                r#"{"type":"account.registered","user_id":"00000000-0000-0000-0000-000000000001","email":"enc:v1:test"}"#,
            ),
            (
                V::MagicLinkConsumed {
                    token_hash: digest(2),
                },
                r#"{"type":"account.magic_link_consumed","token_hash":"0202020202020202020202020202020202020202020202020202020202020202"}"#,
            ),
            (
                V::SessionRevoked {
                    session_id: SessionId::from_uuid(Uuid::from_u128(5)),
                },
                r#"{"type":"account.session_revoked","session_id":"00000000-0000-0000-0000-000000000005"}"#,
            ),
            (
                V::SessionRenewed {
                    session_id: SessionId::from_uuid(Uuid::from_u128(5)),
                    expires_at: datetime!(2026-03-01 00:00 UTC),
                },
                r#"{"type":"account.session_renewed","session_id":"00000000-0000-0000-0000-000000000005","expires_at":"2026-03-01T00:00:00Z"}"#,
            ),
            (
                V::ApiKeyIssued {
                    key_id: ApiKeyId::from_uuid(Uuid::from_u128(9)),
                    name: Name::parse("name", "ci").expect("name"),
                    prefix: "abcd1234".into(),
                    key_hash: digest(3),
                    scopes: [Scope::TasksWrite, Scope::EventsRead].into(),
                },
                r#"{"type":"account.api_key_issued","key_id":"00000000-0000-0000-0000-000000000009","name":"ci","prefix":"abcd1234","key_hash":"0303030303030303030303030303030303030303030303030303030303030303","scopes":["tasks:write","events:read"]}"#,
            ),
            (
                V::ApiKeyRevoked {
                    key_id: ApiKeyId::from_uuid(Uuid::from_u128(9)),
                },
                r#"{"type":"account.api_key_revoked","key_id":"00000000-0000-0000-0000-000000000009"}"#,
            ),
            (V::Erased {}, r#"{"type":"account.erased"}"#),
        ];
        for (event, json) in cases {
            assert_eq!(serde_json::to_string(&event).expect("serialize"), json);
            assert_eq!(serde_json::from_str::<V>(json).expect("parse"), event);
        }
    }
}
