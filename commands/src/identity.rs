//! Identity flows: the side of each login and key operation that needs the outside world
//! (randomness, the clock, the key vault), before the `Account` aggregate decides.

use std::collections::BTreeSet;

use domain::account::{Account, AccountCommand as C, AccountError, NewSession};
use domain::{ApiKeyId, Email, Name, Scope, Sealed, SessionId, UserId};
use eventstore::vault::{fields, Vault};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::secrets::{digest, new_api_key, new_token};
use crate::{CommandError, Commands, Metadata, Receipt};

/// How long a sign-in link works.
pub const LINK_TTL: Duration = Duration::minutes(15);
/// How long a session lasts without use.
pub const SESSION_TTL: Duration = Duration::days(30);
/// A session used when less than this remains is renewed (sliding expiry).
pub const RENEW_WHEN_LEFT: Duration = Duration::days(15);

/// The result of an identity command.
pub type IdentityResult<T> = Result<T, CommandError<AccountError>>;

/// A link to mail: `token` goes into the URL, only its digest was stored.
#[derive(Debug)]
pub struct MagicLink {
    /// The person (new or known).
    pub user_id: UserId,
    /// The token for `/auth/verify/{token}`.
    pub token: String,
    /// The command's receipt.
    pub receipt: Receipt,
}

/// A started session: `token` goes into the cookie, only its digest was stored.
#[derive(Debug)]
pub struct SignedIn {
    /// The person.
    pub user_id: UserId,
    /// The session.
    pub session_id: SessionId,
    /// The cookie value.
    pub token: String,
    /// When it ends unless renewed.
    pub expires_at: OffsetDateTime,
    /// The command's receipt.
    pub receipt: Receipt,
}

/// A new API key: `key` is shown once, only its digest was stored.
#[derive(Debug)]
pub struct IssuedKey {
    /// The key's id.
    pub key_id: ApiKeyId,
    /// The full key, `cairn_<prefix>_<secret>`.
    pub key: String,
    /// Its public prefix.
    pub prefix: String,
    /// The command's receipt.
    pub receipt: Receipt,
}

/// Identity operations over the command side and the key vault.
#[derive(Debug, Clone)]
pub struct Identity {
    commands: Commands,
    vault: Vault,
    link_ttl: Duration,
}

impl Identity {
    /// Identity flows over `commands`, sealing personal data with `vault`.
    pub fn new(commands: Commands, vault: Vault) -> Self {
        Self {
            commands,
            vault,
            link_ttl: LINK_TTL,
        }
    }

    /// Sets how long sign-in links work (default [`LINK_TTL`]).
    pub fn with_link_ttl(mut self, ttl: Duration) -> Self {
        self.link_ttl = ttl;
        self
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Commands that mint secrets (links, sessions, keys) cannot be replayed from a receipt:
    /// the secret is shown only once. They run under a fresh command id, whatever key the
    /// client sent.
    fn fresh(meta: &Metadata) -> Metadata {
        let mut meta = meta.clone();
        meta.command_id = crate::CommandId::generate();
        meta
    }

    async fn run(&self, user: UserId, command: C, meta: &Metadata) -> IdentityResult<Receipt> {
        self.commands
            .execute::<Account>(&user.to_string(), command, meta)
            .await
    }

    /// Records a sign-in link for `email`, known or not, and returns the token to send.
    /// [`AccountError::TooManyLinks`] means the address has as many live links, or was sent as
    /// many today, as it may: nothing was recorded, and nothing must be sent.
    pub async fn request_magic_link(
        &self,
        email: &Email,
        meta: &Metadata,
    ) -> IdentityResult<MagicLink> {
        let key = self
            .vault
            .subject_for_email(email.as_str())
            .await
            .map_err(CommandError::Store)?;
        let user_id = UserId::from_uuid(key.subject_id());
        let (secret, token_hash) = new_token();
        let now = OffsetDateTime::now_utc();
        let command = C::RequestMagicLink {
            now,
            user_id,
            email: Sealed::new(self.vault.seal(&key, fields::EMAIL, email.as_str())),
            token_hash,
            expires_at: now + self.link_ttl,
        };
        // Whoever asked, the request's details are kept with the account's own key, so they
        // shred with it.
        let meta = Self::fresh(meta).with_personal_key(Some(key));
        let receipt = self.run(user_id, command, &meta).await?;
        Ok(MagicLink {
            user_id,
            token: format!("{}.{secret}", user_id.as_uuid().simple()),
            receipt,
        })
    }

    /// Uses a sign-in link: registers the account on first use and starts a session.
    /// Unknown, used and expired links all give [`AccountError::LinkInvalid`].
    pub async fn consume_magic_link(
        &self,
        token: &str,
        meta: &Metadata,
    ) -> IdentityResult<SignedIn> {
        let invalid = || CommandError::Domain(AccountError::LinkInvalid);
        let (user, secret) = token.split_once('.').ok_or_else(invalid)?;
        let user_id = UserId::from_uuid(Uuid::try_parse(user).map_err(|_| invalid())?);
        let (session_token, session_hash) = new_token();
        let now = OffsetDateTime::now_utc();
        let session = NewSession {
            session_id: SessionId::from_uuid(Uuid::now_v7()),
            token_hash: session_hash,
            expires_at: now + SESSION_TTL,
        };
        let (session_id, expires_at) = (session.session_id, session.expires_at);
        let command = C::ConsumeMagicLink {
            token_hash: digest(secret),
            now,
            session,
        };
        let mut meta = Self::fresh(meta);
        meta.actor = crate::Actor::User(user_id);
        let receipt = self.run(user_id, command, &meta).await?;
        Ok(SignedIn {
            user_id,
            session_id,
            token: session_token,
            expires_at,
            receipt,
        })
    }

    /// Pushes a session's expiry out by [`SESSION_TTL`] from now.
    pub async fn renew_session(
        &self,
        user: UserId,
        session_id: SessionId,
        meta: &Metadata,
    ) -> IdentityResult<Receipt> {
        let command = C::RenewSession {
            session_id,
            expires_at: OffsetDateTime::now_utc() + SESSION_TTL,
        };
        self.run(user, command, &Self::fresh(meta)).await
    }

    /// Ends a session.
    pub async fn revoke_session(
        &self,
        user: UserId,
        session_id: SessionId,
        meta: &Metadata,
    ) -> IdentityResult<Receipt> {
        self.run(user, C::RevokeSession { session_id }, meta).await
    }

    /// Issues an API key with `scopes`.
    pub async fn issue_api_key(
        &self,
        user: UserId,
        name: Name,
        scopes: BTreeSet<Scope>,
        meta: &Metadata,
    ) -> IdentityResult<IssuedKey> {
        let meta = &Self::fresh(meta);
        let (key, prefix, key_hash) = new_api_key();
        let key_id = ApiKeyId::from_uuid(meta.command_id.derive_id("api_key"));
        let command = C::IssueApiKey {
            key_id,
            name,
            prefix: prefix.clone(),
            key_hash,
            scopes,
        };
        let receipt = self.run(user, command, meta).await?;
        Ok(IssuedKey {
            key_id,
            key,
            prefix,
            receipt,
        })
    }

    /// Revokes an API key.
    pub async fn revoke_api_key(
        &self,
        user: UserId,
        key_id: ApiKeyId,
        meta: &Metadata,
    ) -> IdentityResult<Receipt> {
        self.run(user, C::RevokeApiKey { key_id }, meta).await
    }

    /// Erases a person: deletes their data key (after which their sealed data reads as
    /// `[erased]` everywhere), then records it, which ends every session and key.
    ///
    /// The key goes first so that a failure in between leaves a retryable state: the person is
    /// still signed in and can ask again, while their data is already unreadable.
    pub async fn erase(&self, user: UserId, meta: &Metadata) -> IdentityResult<Receipt> {
        self.vault
            .erase(user.as_uuid())
            .await
            .map_err(CommandError::Store)?;
        self.run(user, C::Erase, meta).await
    }
}
