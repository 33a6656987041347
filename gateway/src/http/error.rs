//! The one API error type. Every failure a client sees has the shape
//! `{"error":{"code","message","details"}}`, with a `code` that is stable across releases.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::{CommandError, LookupError};
use domain::account::AccountError;
use domain::organization::OrganizationError;
use eventstore::StoreError;
use serde_json::{json, Value};

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (syntax, unknown field, bad parameter).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 401: not signed in, or the credentials are not valid.
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 403: signed in, but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 429: too many requests; retry after the given time.
    #[error("too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When to retry.
        retry_after: std::time::Duration,
    },
    /// 404: no such resource.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflict with the current state, or a precondition.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 413: the body is larger than the limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 422: well-formed, but a domain rule refuses it.
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 503: the database is not reachable (yet); retry later.
    #[error("service unavailable")]
    Unavailable(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// 500: a bug or an unexpected failure; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The cause of a 5xx, left in the response for the logging middleware (conversions never log).
#[derive(Debug, Clone)]
pub struct LoggedCause(pub Arc<String>);

impl ApiError {
    /// A 401: the request needs a signed-in caller.
    pub fn unauthenticated() -> Self {
        Self::Unauthorized {
            code: "unauthenticated",
            message: "sign in, or send `Authorization: Bearer <api key>`".to_owned(),
        }
    }

    /// A 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": {"code": self.code(), "message": self.to_string(), "details": Value::Null}});
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after } = &self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.max(1).to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if status.is_server_error() {
            let cause = match &self {
                Self::Unavailable(Some(e)) | Self::Internal(e) => error_chain(e.as_ref()),
                _ => self.to_string(),
            };
            response
                .extensions_mut()
                .insert(LoggedCause(Arc::new(cause)));
        }
        response
    }
}

/// `error: cause: cause`, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(sqlx::Error::Database(_))
            | StoreError::Serde(_)
            | StoreError::OutOfSequence(_) => Self::Internal(Box::new(e)),
            StoreError::Database(_) | StoreError::Unavailable(_) | StoreError::Closed => {
                Self::Unavailable(Some(Box::new(e)))
            }
            StoreError::Conflict => Self::Conflict {
                code: "conflict",
                message: e.to_string(),
            },
            StoreError::CommandIdReused(_) | StoreError::Duplicate(_) => Self::Conflict {
                code: "idempotency_key_reused",
                message: e.to_string(),
            },
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e).into()
    }
}

/// How a domain error maps to HTTP.
pub trait DomainStatus: std::error::Error {
    /// 404, 409 or 422, and the stable code.
    fn classify(&self) -> (StatusCode, &'static str);
}

impl DomainStatus for OrganizationError {
    fn classify(&self) -> (StatusCode, &'static str) {
        let status = match self {
            Self::NotFound | Self::TeamNotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::AlreadyExists | Self::TeamExists(_) => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (status, self.code())
    }
}

impl DomainStatus for AccountError {
    fn classify(&self) -> (StatusCode, &'static str) {
        let status = match self {
            Self::LinkInvalid => StatusCode::BAD_REQUEST,
            Self::NotRegistered | Self::Erased | Self::SessionNotFound | Self::ApiKeyNotFound => {
                StatusCode::NOT_FOUND
            }
            // TooManyLinks never reaches a client: sign-in requests always answer 202.
            Self::NoScopes | Self::TooManyLinks => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (status, self.code())
    }
}

impl<E: DomainStatus + Send + Sync + 'static> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Domain(e) => {
                let (status, code) = e.classify();
                let message = e.to_string();
                match status {
                    StatusCode::BAD_REQUEST => Self::BadRequest { code, message },
                    StatusCode::FORBIDDEN => Self::Forbidden { code, message },
                    StatusCode::NOT_FOUND => Self::NotFound { code, message },
                    StatusCode::CONFLICT => Self::Conflict { code, message },
                    _ => Self::Unprocessable { code, message },
                }
            }
            CommandError::Conflict => Self::Conflict {
                code: "conflict",
                message: e.to_string(),
            },
            CommandError::IdempotencyKeyReused => Self::Conflict {
                code: "idempotency_key_reused",
                message: e.to_string(),
            },
            CommandError::Store(e) => e.into(),
            CommandError::Lookup(LookupError::Database(e)) => e.into(),
            CommandError::Lookup(e @ LookupError::Behind(_)) => {
                Self::Unavailable(Some(Box::new(e)))
            }
        }
    }
}
