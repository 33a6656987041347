//! Who is calling, once [`crate::http::auth::authenticate`] has resolved it: a [`Principal`]
//! (a person, and how they proved it), and the extractors handlers take it with.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use commands::Actor;
use domain::{ApiKeyId, Scope, SessionId, UserId};
use projections::read_models::access::Reader;
use time::OffsetDateTime;

use crate::http::error::{ApiError, ErrorCode};

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// A browser session.
    Session {
        /// The session.
        session_id: SessionId,
        /// When it ends unless renewed (long-lived streams check again then).
        expires_at: OffsetDateTime,
    },
    /// An API key.
    ApiKey {
        /// The key.
        key_id: ApiKeyId,
        /// Its public prefix.
        prefix: String,
        /// What it may do.
        scopes: BTreeSet<Scope>,
    },
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The person.
    pub user_id: UserId,
    /// How they signed in.
    pub via: Via,
}

impl Principal {
    /// Fails with 403 unless the caller may use `scope` (sessions hold every scope).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.via {
            Via::Session { .. } => Ok(()),
            Via::ApiKey { scopes, .. } if scopes.contains(&scope) => Ok(()),
            Via::ApiKey { .. } => Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this API key lacks the `{scope}` scope"),
            )),
        }
    }

    /// Fails with 403 unless the caller is in a browser session (some operations, such as
    /// issuing keys or erasing the account, are not for keys).
    pub fn is_api_key(&self) -> bool {
        matches!(self.via, Via::ApiKey { .. })
    }

    /// A session, not an API key (403 `session_required` otherwise).
    pub fn require_session(&self) -> Result<SessionId, ApiError> {
        match &self.via {
            Via::Session { session_id, .. } => Ok(*session_id),
            Via::ApiKey { .. } => Err(ApiError::new(
                ErrorCode::SessionRequired,
                "this needs a signed-in session, not an API key",
            )),
        }
    }

    /// The principal as the access policy knows it.
    pub fn reader(&self) -> Reader {
        let user = self.user_id.as_uuid();
        match &self.via {
            Via::Session { session_id, .. } => Reader::Session {
                user,
                session: session_id.as_uuid(),
            },
            Via::ApiKey { key_id, scopes, .. } => Reader::ApiKey {
                user,
                key: key_id.as_uuid(),
                scopes: scopes.clone(),
            },
        }
    }

    /// When a session must be checked again (it expires unless renewed); `None` for keys,
    /// which end only by an event (revocation, erasure).
    pub fn recheck_at(&self) -> Option<OffsetDateTime> {
        match &self.via {
            Via::Session { expires_at, .. } => Some(*expires_at),
            Via::ApiKey { .. } => None,
        }
    }

    /// Fails with 403 `insufficient_scope` for an API key: no scope lets a key read or manage
    /// its owner's sessions and keys (a leaked key must not be able to lock its owner out).
    pub fn require_account_access(&self) -> Result<(), ApiError> {
        match &self.via {
            Via::Session { .. } => Ok(()),
            Via::ApiKey { .. } => Err(ApiError::new(
                ErrorCode::InsufficientScope,
                "API keys cannot list or revoke sessions and keys; sign in",
            )),
        }
    }

    /// The actor recorded in event metadata.
    pub fn actor(&self) -> Actor {
        match &self.via {
            Via::Session { .. } => Actor::User(self.user_id),
            Via::ApiKey { prefix, .. } => Actor::ApiKey {
                prefix: prefix.clone(),
                owner: self.user_id,
            },
        }
    }

    pub(crate) fn rate_key(&self) -> String {
        match &self.via {
            Via::Session { session_id, .. } => format!("session:{session_id}"),
            Via::ApiKey { key_id, .. } => format!("key:{key_id}"),
        }
    }
}

/// The resolved caller, stored in request extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

/// Requires a signed-in caller (401 otherwise).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(Caller(Some(p))) => Ok(Self(p.clone())),
            _ => Err(ApiError::unauthenticated()),
        }
    }
}

/// The caller, if signed in.
#[derive(Debug, Clone)]
pub struct MaybeAuth(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts.extensions.get::<Caller>().and_then(|c| c.0.clone()),
        ))
    }
}
