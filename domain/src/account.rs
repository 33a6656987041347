//! The `Account` aggregate: one person's identity. Magic links, registration, sessions, API
//! keys and erasure are all events of this one stream, whose id is the person's [`UserId`].
//!
//! Secrets never enter the domain: links, sessions and keys arrive as [`Digest`]s of tokens the
//! `commands` side generated, and the email address as a [`Sealed`] ciphertext.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{ApiKeyId, Digest, Name, Scope, Sealed, SessionId, UserId};

/// How many sign-in links may be live (sent, unused and unexpired) for one address at once.
/// A request while this many are live sends nothing: a new request never voids a link already
/// sent, so nobody can cancel someone else's sign-in by asking for links to their address.
pub const MAX_LIVE_LINKS: usize = 5;

/// How many sign-in links one address may be sent in a day ([`LINK_WINDOW`]). Further requests
/// send nothing until the oldest of them leaves the window.
pub const MAX_LINKS_PER_DAY: usize = 50;

/// The window [`MAX_LINKS_PER_DAY`] counts over. A link is counted from its request until this
/// long after it *expires* (the stored event carries the expiry, not the request time), so the
/// window is in effect a day plus a link's lifetime: never more lenient than a day.
pub const LINK_WINDOW: Duration = Duration::DAY;

/// A session about to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewSession {
    /// Its id.
    pub session_id: SessionId,
    /// The digest of its cookie token.
    pub token_hash: Digest,
    /// When it ends unless renewed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What can be asked of an account. It serializes (for the command side's idempotency
/// fingerprint, never stored) but does not deserialize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AccountCommand {
    /// Record that a sign-in link is to be sent (the account may not be registered yet).
    /// Refused with [`AccountError::TooManyLinks`] while [`MAX_LIVE_LINKS`] links are live or
    /// [`MAX_LINKS_PER_DAY`] were sent in the window: then nothing is recorded or sent.
    RequestMagicLink {
        /// The current time.
        #[serde(with = "time::serde::rfc3339")]
        now: OffsetDateTime,
        /// The account's id.
        user_id: UserId,
        /// The address the link goes to, sealed.
        email: Sealed,
        /// The digest of the link's token.
        token_hash: Digest,
        /// When the link stops working.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// Use a link: registers the account on first use and starts a session.
    ConsumeMagicLink {
        /// The digest of the presented token.
        token_hash: Digest,
        /// The current time.
        #[serde(with = "time::serde::rfc3339")]
        now: OffsetDateTime,
        /// The session to start.
        session: NewSession,
    },
    /// Push a session's expiry out (sliding renewal).
    RenewSession {
        /// The session.
        session_id: SessionId,
        /// The new expiry.
        #[serde(with = "time::serde::rfc3339")]
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
        crate::event_type::tag_of(self)
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
    /// The person was erased (HTTP 404, code `account_erased`).
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
    /// This address has [`MAX_LIVE_LINKS`] live links, or was sent [`MAX_LINKS_PER_DAY`] in the
    /// window. Never shown to the requester, who gets the same 202 as always (no enumeration);
    /// the request sends nothing.
    #[error("too many sign-in links for this address; none sent")]
    TooManyLinks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenLink {
    token_hash: Digest,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    email: Sealed,
}

/// A sign-in link counted against [`MAX_LINKS_PER_DAY`], whether used or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SentLink {
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// The account aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    id: Option<UserId>,
    email: Option<Sealed>,
    registered: bool,
    erased: bool,
    /// Unused links, oldest first (at most [`MAX_LIVE_LINKS`]; expired ones leave as new ones
    /// come).
    links: Vec<OpenLink>,
    /// The last [`MAX_LINKS_PER_DAY`] links sent, oldest first. (Absent from snapshots taken
    /// before the daily limit: they start with an empty count.)
    #[serde(default)]
    sent: VecDeque<SentLink>,
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

    /// Why a sign-in link requested at `now` may not be sent, if it may not: too many live
    /// links, or too many sent in the window.
    fn link_refusal(&self, now: OffsetDateTime) -> Option<AccountError> {
        let live = self.links.iter().filter(|l| l.expires_at > now).count();
        let since = now - LINK_WINDOW;
        let today = self.sent.iter().filter(|l| l.expires_at > since).count();
        (live >= MAX_LIVE_LINKS || today >= MAX_LINKS_PER_DAY).then_some(AccountError::TooManyLinks)
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
                now,
                user_id,
                email,
                token_hash,
                expires_at,
            } => {
                if let Some(refused) = self.link_refusal(now) {
                    return Err(refused);
                }
                vec![V::MagicLinkRequested {
                    user_id,
                    email,
                    token_hash,
                    expires_at,
                }]
            }
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
                // `decide` let this link in only with fewer than MAX_LIVE_LINKS live, so any
                // link beyond the limit has expired, and the one expiring first is among them.
                // (Older histories, recorded under a looser limit, keep their newest links.)
                while self.links.len() > MAX_LIVE_LINKS {
                    let first = self
                        .links
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, l)| l.expires_at)
                        .map_or(0, |(i, _)| i);
                    self.links.remove(first);
                }
                self.sent.push_back(SentLink { expires_at });
                while self.sent.len() > MAX_LINKS_PER_DAY {
                    self.sent.pop_front();
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

    fn requested_expiring(n: u8, expires_at: OffsetDateTime) -> V {
        V::MagicLinkRequested {
            user_id: user(),
            email: sealed(),
            token_hash: digest(n),
            expires_at,
        }
    }
    /// A request at `now` for a link that works for 15 minutes.
    fn request(n: u8, now: OffsetDateTime) -> C {
        C::RequestMagicLink {
            now,
            user_id: user(),
            email: sealed(),
            token_hash: digest(n),
            expires_at: now + Duration::minutes(15),
        }
    }

    // Finding 12 of the 2026-12-03 security review: ten requests for someone's address voided
    // their pending link, and one address could be sent about 7,200 mails a day.

    #[tokio::test]
    async fn signin_links_a_new_request_leaves_earlier_links_working() {
        let now = datetime!(2026-01-01 12:01 UTC);
        Given::with(())
            .given(vec![requested(1)])
            .when_async(request(2, now))
            .await
            .then_expect_events(vec![requested_expiring(2, now + Duration::minutes(15))]);
        Given::with(())
            .given(vec![requested(1), requested(2)])
            .when_async(consume(1, now))
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
    async fn signin_links_at_most_five_are_live_and_a_sixth_request_sends_nothing() {
        let now = datetime!(2026-01-01 12:05 UTC);
        let five: Vec<V> = (1..=5).map(requested).collect();
        Given::with(())
            .given(five.clone())
            .when_async(request(6, now))
            .await
            .then_expect_error(E::TooManyLinks);
        // The refused request voided nothing: the oldest link still signs in.
        Given::with(())
            .given(five.clone())
            .when_async(consume(1, now))
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
        // A used link is no longer live ...
        let mut one_used = five.clone();
        one_used.push(V::MagicLinkConsumed {
            token_hash: digest(3),
        });
        Given::with(())
            .given(one_used)
            .when_async(request(6, now))
            .await
            .then_expect_events(vec![requested_expiring(6, now + Duration::minutes(15))]);
        // ... and neither is an expired one (all five expire at 12:15).
        let later = datetime!(2026-01-01 12:15 UTC);
        Given::with(())
            .given(five)
            .when_async(request(6, later))
            .await
            .then_expect_events(vec![requested_expiring(6, later + Duration::minutes(15))]);
    }

    #[test]
    fn signin_links_expired_links_make_way_for_new_ones() {
        let mut account = Account::default();
        for n in 1..=5 {
            account.apply(requested(n));
        }
        let later = datetime!(2026-01-01 13:00 UTC);
        account.apply(requested_expiring(6, later + Duration::minutes(15)));
        assert_eq!(account.links.len(), MAX_LIVE_LINKS);
        assert!(account.links.iter().all(|l| l.token_hash != digest(1)));
        assert!(account.links.iter().any(|l| l.token_hash == digest(6)));
    }

    #[tokio::test]
    async fn signin_links_at_most_fifty_a_day_per_address() {
        let start = datetime!(2026-01-01 00:00 UTC);
        // Fifty links, one every ten minutes, each used at once.
        let mut fifty = Vec::new();
        for n in 0..50u8 {
            let expires_at = start + Duration::minutes(10 * i64::from(n) + 15);
            fifty.push(requested_expiring(n, expires_at));
            fifty.push(V::MagicLinkConsumed {
                token_hash: digest(n),
            });
        }
        let evening = start + Duration::hours(12);
        Given::with(())
            .given(fifty.clone())
            .when_async(request(99, evening))
            .await
            .then_expect_error(E::TooManyLinks);
        // A day after the first link expired, it no longer counts.
        let next_day = start + Duration::minutes(15) + Duration::DAY + Duration::seconds(1);
        Given::with(())
            .given(fifty)
            .when_async(request(99, next_day))
            .await
            .then_expect_events(vec![requested_expiring(
                99,
                next_day + Duration::minutes(15),
            )]);
    }

    #[tokio::test]
    async fn replayed_histories_keep_at_most_five_links() {
        // Histories recorded under the old limit could hold ten open links; the oldest go.
        let given: Vec<V> = (1..=(MAX_LIVE_LINKS as u8 + 1)).map(requested).collect();
        Given::with(())
            .given(given.clone())
            .when_async(consume(1, datetime!(2026-01-01 12:00 UTC)))
            .await
            .then_expect_error(E::LinkInvalid);
        Given::with(())
            .given(given)
            .when_async(consume(2, datetime!(2026-01-01 12:00 UTC)))
            .await
            .then_expect_events(vec![
                V::Registered {
                    user_id: user(),
                    email: sealed(),
                },
                V::MagicLinkConsumed {
                    token_hash: digest(2),
                },
                started(),
            ]);
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
            (
                V::SessionStarted {
                    session_id: SessionId::from_uuid(Uuid::from_u128(5)),
                    token_hash: digest(4),
                    expires_at: datetime!(2026-02-01 08:30 UTC),
                },
                r#"{"type":"account.session_started","session_id":"00000000-0000-0000-0000-000000000005","token_hash":"0404040404040404040404040404040404040404040404040404040404040404","expires_at":"2026-02-01T08:30:00Z"}"#,
            ),
            (V::Erased {}, r#"{"type":"account.erased"}"#),
        ];
        // A new variant must be added here, and pinned above.
        let variant = |e: &V| match e {
            V::MagicLinkRequested { .. } => 0,
            V::Registered { .. } => 1,
            V::MagicLinkConsumed { .. } => 2,
            V::SessionStarted { .. } => 3,
            V::SessionRenewed { .. } => 4,
            V::SessionRevoked { .. } => 5,
            V::ApiKeyIssued { .. } => 6,
            V::ApiKeyRevoked { .. } => 7,
            V::Erased {} => 8,
        };
        let covered: std::collections::BTreeSet<i32> =
            cases.iter().map(|(e, _)| variant(e)).collect();
        assert_eq!(covered.len(), 9, "every account event is pinned");
        for (event, json) in cases {
            let label = event.event_type();
            assert_eq!(
                serde_json::to_string(&event).expect("serialize"),
                json,
                "{label}: serialized"
            );
            let pinned: serde_json::Value = serde_json::from_str(json).expect("json");
            assert_eq!(
                pinned["type"].as_str(),
                Some(label.as_str()),
                "{label}: the tag is the stored event_type"
            );
            assert_eq!(
                serde_json::from_str::<V>(json).expect("parse"),
                event,
                "{label}: deserialized"
            );
        }
    }
}
