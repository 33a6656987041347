//! The `identity` projection: accounts, sessions and API keys, from `account.*` events.
//!
//! Authentication reads these tables (one indexed lookup per request), never an event stream.

use domain::account::AccountEvent;
use eventstore::RecordedEvent;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "identity";

/// Builds `accounts`, `sessions` and `api_keys`.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityProjection;

impl Projection for IdentityProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["accounts", "sessions", "api_keys"]
    }

    fn relevant(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == "account"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != "account" {
            return Ok(());
        }
        let Ok(user_id) = Uuid::parse_str(&event.aggregate_id) else {
            return Ok(());
        };
        let decoded: AccountEvent = crate::decode(event)?;
        let at = event.recorded_at;
        let metadata: serde_json::Map<String, serde_json::Value> =
            event.decode_metadata().unwrap_or_default();
        let meta = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        match decoded {
            AccountEvent::Registered { email, .. } => {
                sqlx::query(
                    "INSERT INTO accounts (user_id, email_sealed, registered_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id)
                .bind(email.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::SessionStarted {
                session_id,
                token_hash,
                expires_at,
            } => {
                sqlx::query(
                    "INSERT INTO sessions (session_id, user_id, token_hash, started_at, expires_at, ip, user_agent)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session_id.as_uuid())
                .bind(user_id)
                .bind(token_hash.as_bytes().as_slice())
                .bind(at)
                .bind(expires_at)
                .bind(meta("ip"))
                .bind(meta("user_agent"))
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::SessionRenewed {
                session_id,
                expires_at,
            } => {
                sqlx::query("UPDATE sessions SET expires_at = $2 WHERE session_id = $1")
                    .bind(session_id.as_uuid())
                    .bind(expires_at)
                    .execute(&mut *conn)
                    .await?;
            }
            AccountEvent::SessionRevoked { session_id } => {
                sqlx::query(
                    "UPDATE sessions SET revoked_at = coalesce(revoked_at, $2) WHERE session_id = $1",
                )
                .bind(session_id.as_uuid())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::ApiKeyIssued {
                key_id,
                name,
                prefix,
                key_hash,
                scopes,
            } => {
                let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                sqlx::query(
                    "INSERT INTO api_keys (key_id, user_id, name, prefix, key_hash, scopes, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(key_id.as_uuid())
                .bind(user_id)
                .bind(name.as_str())
                .bind(prefix)
                .bind(key_hash.as_bytes().as_slice())
                .bind(scopes)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::ApiKeyRevoked { key_id } => {
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE key_id = $1",
                )
                .bind(key_id.as_uuid())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            AccountEvent::Erased {} => {
                for sql in [
                    "UPDATE accounts SET erased_at = coalesce(erased_at, $2), email_sealed = NULL WHERE user_id = $1",
                    // The request details are sealed with the erased key already; sessions
                    // started before they were sealed hold them in plaintext.
                    "UPDATE sessions SET revoked_at = coalesce(revoked_at, $2), ip = NULL, user_agent = NULL
                      WHERE user_id = $1",
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE user_id = $1",
                ] {
                    sqlx::query(sql)
                        .bind(user_id)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            AccountEvent::MagicLinkRequested { .. } | AccountEvent::MagicLinkConsumed { .. } => {}
        }
        Ok(())
    }
}

/// A live session, as authentication needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSession {
    /// The session.
    pub session_id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// When it ends unless renewed.
    pub expires_at: OffsetDateTime,
}

/// The live session whose token hashes to `token_hash`: not revoked, not expired, owner not
/// erased.
pub async fn live_session(
    pool: &PgPool,
    token_hash: &[u8],
) -> Result<Option<LiveSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.session_id, s.user_id, s.expires_at FROM sessions s
           JOIN accounts a ON a.user_id = s.user_id
          WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
            AND a.erased_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await
}

/// A live API key, as authentication needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveApiKey {
    /// The key.
    pub key_id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// The digest of the whole key, to compare in constant time.
    pub key_hash: Vec<u8>,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// The live API key with `prefix`: not revoked, owner not erased.
pub async fn live_api_key(pool: &PgPool, prefix: &str) -> Result<Option<LiveApiKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.key_id, k.user_id, k.key_hash, k.scopes FROM api_keys k
           JOIN accounts a ON a.user_id = k.user_id
          WHERE k.prefix = $1 AND k.revoked_at IS NULL AND a.erased_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await
}

/// [`live_api_key`], kept in this process until the identity read model changes
/// ([`crate::changes`]): every request with a key asks it. Unknown prefixes are not kept (a
/// flood of made-up keys cannot push the real ones out).
#[derive(Debug, Clone)]
pub struct ApiKeys {
    pool: PgPool,
    cache: std::sync::Arc<crate::changes::ReadCache<String, Option<LiveApiKey>>>,
}

impl ApiKeys {
    /// Keys read on `pool`, kept while `changes` (the identity runner's) stands still.
    pub fn new(pool: PgPool, changes: crate::changes::Changes) -> Self {
        Self {
            pool,
            cache: std::sync::Arc::new(crate::changes::ReadCache::new(
                changes,
                crate::changes::KEPT,
            )),
        }
    }

    /// The live API key with `prefix` ([`live_api_key`]).
    pub async fn live(&self, prefix: &str) -> Result<Option<LiveApiKey>, sqlx::Error> {
        self.cache
            .get_or_load(
                prefix.to_owned(),
                live_api_key(&self.pool, prefix),
                Option::is_some,
            )
            .await
    }
}

/// An account, for `GET /me`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    /// The person.
    pub user_id: Uuid,
    /// Their email, sealed (`None` once erased).
    pub email_sealed: Option<String>,
    /// When they first signed in.
    pub registered_at: OffsetDateTime,
}

/// The account of `user_id`, if registered and not erased.
pub async fn account(pool: &PgPool, user_id: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, email_sealed, registered_at FROM accounts WHERE user_id = $1 AND erased_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// A session, as listed to its owner.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    /// The session.
    pub session_id: Uuid,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it ends unless renewed.
    pub expires_at: OffsetDateTime,
    /// The address it started from, sealed with its owner's key (plaintext if it started
    /// before request details were sealed).
    pub ip: Option<String>,
    /// The browser it started from, sealed like `ip`.
    pub user_agent: Option<String>,
}

/// Up to `limit` live sessions of `user_id`, newest first, after `before` (the
/// `(started_at, session_id)` of the previous page's last row).
pub async fn sessions_of(
    pool: &PgPool,
    user_id: Uuid,
    before: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT session_id, started_at, expires_at, ip, user_agent FROM sessions
          WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            AND ($2::timestamptz IS NULL OR (started_at, session_id) < ($2, $3))
          ORDER BY started_at DESC, session_id DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(before.map(|(at, _)| at))
    .bind(before.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An API key, as listed to its owner (never the secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// The key.
    pub key_id: Uuid,
    /// Its label.
    pub name: String,
    /// Its public prefix.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub created_at: OffsetDateTime,
}

/// Up to `limit` live API keys of `user_id`, newest first, after `before` (the
/// `(created_at, key_id)` of the previous page's last row).
pub async fn api_keys_of(
    pool: &PgPool,
    user_id: Uuid,
    before: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id, name, prefix, scopes, created_at FROM api_keys
          WHERE user_id = $1 AND revoked_at IS NULL
            AND ($2::timestamptz IS NULL OR (created_at, key_id) < ($2, $3))
          ORDER BY created_at DESC, key_id DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(before.map(|(at, _)| at))
    .bind(before.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}
