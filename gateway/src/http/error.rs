//! The one API error type. Every failure a client sees has the shape
//! `{"error":{"code","message","details"}}`, with a `code` from one closed set, [`ErrorCode`]:
//! each code has its HTTP status and its wire string in one table, every [`ApiError`] is built
//! from a code (never a free string), and each domain error is mapped to its code here, in one
//! place ([`DomainCode`]).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::{CommandError, LookupError};
use domain::account::AccountError;
use domain::document::DocumentError;
use domain::label::TagError;
use domain::organization::OrganizationError;
use domain::task::TaskError;
use domain::ValueError;
use eventstore::StoreError;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Declares [`ErrorCode`] from one table: variant, status, wire string, and what it means.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = ($status:ident, $wire:literal),)+) => {
        /// Every code an API error can carry: the closed set. README's error table lists
        /// exactly these (a test compares them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant,)+];

            /// The stable wire string, e.g. `task_not_found`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The HTTP status every error with this code answers.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

error_codes! {
    /// 400: the body is not JSON.
    MalformedJson = (BAD_REQUEST, "malformed_json"),
    /// 400: the body is JSON of the wrong shape (an unknown field, a wrong type).
    InvalidBody = (BAD_REQUEST, "invalid_body"),
    /// 400: the body is not `application/json`.
    UnsupportedContentType = (BAD_REQUEST, "unsupported_content_type"),
    /// 400: an id in the path or body is not an id.
    InvalidId = (BAD_REQUEST, "invalid_id"),
    /// 400: a path segment could not be read.
    InvalidPath = (BAD_REQUEST, "invalid_path"),
    /// 400: a query parameter is unknown, malformed or out of range.
    InvalidQuery = (BAD_REQUEST, "invalid_query"),
    /// 400: `after` (or `Last-Event-ID`) is no cursor, or one past the newest event.
    InvalidCursor = (BAD_REQUEST, "invalid_cursor"),
    /// 400: a permission name Cairn does not know.
    UnknownPermission = (BAD_REQUEST, "unknown_permission"),
    /// 400: an API key scope Cairn does not know.
    UnknownScope = (BAD_REQUEST, "unknown_scope"),
    /// 400: an `Idempotency-Key` that is empty, too long or not visible ASCII.
    InvalidIdempotencyKey = (BAD_REQUEST, "invalid_idempotency_key"),
    /// 400: a sign-in link that is invalid, used or expired (answered as an HTML page).
    InvalidLink = (BAD_REQUEST, "invalid_link"),
    /// 401: not signed in.
    Unauthenticated = (UNAUTHORIZED, "unauthenticated"),
    /// 401: an API key that is malformed, unknown or revoked.
    InvalidCredentials = (UNAUTHORIZED, "invalid_credentials"),
    /// 403: the organization does not grant the permission this needs.
    Forbidden = (FORBIDDEN, "forbidden"),
    /// 403: the API key lacks the scope this needs.
    InsufficientScope = (FORBIDDEN, "insufficient_scope"),
    /// 403: this needs a signed-in session, not an API key.
    SessionRequired = (FORBIDDEN, "session_required"),
    /// 403: a cookie-authenticated mutation from another origin.
    CsrfRejected = (FORBIDDEN, "csrf_rejected"),
    /// 403: only a comment's author (or an administrator) changes it.
    NotCommentAuthor = (FORBIDDEN, "not_comment_author"),
    /// 404: no such organization, or the caller may not see it.
    OrganizationNotFound = (NOT_FOUND, "organization_not_found"),
    /// 404: no such team.
    TeamNotFound = (NOT_FOUND, "team_not_found"),
    /// 404: no such task.
    TaskNotFound = (NOT_FOUND, "task_not_found"),
    /// 404: no such comment.
    CommentNotFound = (NOT_FOUND, "comment_not_found"),
    /// 404: no such document (or no published document by that name).
    DocumentNotFound = (NOT_FOUND, "document_not_found"),
    /// 404: no such label or category.
    NotFound = (NOT_FOUND, "not_found"),
    /// 404: no such stream, or the caller may not read it.
    StreamNotFound = (NOT_FOUND, "stream_not_found"),
    /// 404: no such route.
    RouteNotFound = (NOT_FOUND, "route_not_found"),
    /// 404: no such account.
    AccountNotFound = (NOT_FOUND, "account_not_found"),
    /// 404: the account was erased.
    AccountErased = (NOT_FOUND, "account_erased"),
    /// 404: no such session of the caller's.
    SessionNotFound = (NOT_FOUND, "session_not_found"),
    /// 404: no such API key of the caller's.
    ApiKeyNotFound = (NOT_FOUND, "api_key_not_found"),
    /// 405: the route exists, but not with this method.
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed"),
    /// 409: the organization exists already.
    OrganizationExists = (CONFLICT, "organization_exists"),
    /// 409: the team exists already.
    TeamExists = (CONFLICT, "team_exists"),
    /// 409: the task exists already.
    TaskExists = (CONFLICT, "task_exists"),
    /// 409: the document exists already.
    DocumentExists = (CONFLICT, "document_exists"),
    /// 409: another document of the organization is published under that slug.
    SlugTaken = (CONFLICT, "slug_taken"),
    /// 409: the label or category exists already.
    AlreadyExists = (CONFLICT, "already_exists"),
    /// 409: other writers kept winning the concurrency retries.
    Conflict = (CONFLICT, "conflict"),
    /// 409: the `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused = (CONFLICT, "idempotency_key_reused"),
    /// 413: the body is over the limit.
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "payload_too_large"),
    /// 422: a value breaks its rule (an empty or long name, control characters, a bad email
    /// or color).
    ValidationFailed = (UNPROCESSABLE_ENTITY, "validation_failed"),
    /// 422: an API key needs at least one scope.
    NoScopes = (UNPROCESSABLE_ENTITY, "no_scopes"),
    /// 422: the address has reached its sign-in link limit (never answered: sign-in requests
    /// always answer 202).
    TooManyLinks = (UNPROCESSABLE_ENTITY, "too_many_links"),
    /// 422: the organization would be left without an administrator.
    LastAdministrator = (UNPROCESSABLE_ENTITY, "last_administrator"),
    /// 422: already a member.
    AlreadyMember = (UNPROCESSABLE_ENTITY, "already_member"),
    /// 422: not a member.
    NotMember = (UNPROCESSABLE_ENTITY, "not_member"),
    /// 422: another team has that name.
    TeamNameTaken = (UNPROCESSABLE_ENTITY, "team_name_taken"),
    /// 422: already in the team.
    AlreadyTeamMember = (UNPROCESSABLE_ENTITY, "already_team_member"),
    /// 422: not in the team.
    NotTeamMember = (UNPROCESSABLE_ENTITY, "not_team_member"),
    /// 422: the document is deleted (restore it first).
    DocumentDeleted = (UNPROCESSABLE_ENTITY, "document_deleted"),
    /// 422: the document is not deleted.
    DocumentNotDeleted = (UNPROCESSABLE_ENTITY, "document_not_deleted"),
    /// 422: the parent is not a live document of the organization.
    UnknownParent = (UNPROCESSABLE_ENTITY, "unknown_parent"),
    /// 422: a document cannot move under itself or one of its descendants.
    WouldCycle = (UNPROCESSABLE_ENTITY, "would_cycle"),
    /// 422: the document is not published.
    NotPublished = (UNPROCESSABLE_ENTITY, "not_published"),
    /// 422: already assigned to the task.
    AlreadyAssigned = (UNPROCESSABLE_ENTITY, "already_assigned"),
    /// 422: not assigned to the task.
    NotAssigned = (UNPROCESSABLE_ENTITY, "not_assigned"),
    /// 422: the task has the label already.
    AlreadyLabeled = (UNPROCESSABLE_ENTITY, "already_labeled"),
    /// 422: the task does not have the label.
    NotLabeled = (UNPROCESSABLE_ENTITY, "not_labeled"),
    /// 422: a label that is not the organization's.
    UnknownLabel = (UNPROCESSABLE_ENTITY, "unknown_label"),
    /// 422: a category that is not the organization's.
    UnknownCategory = (UNPROCESSABLE_ENTITY, "unknown_category"),
    /// 422: an assignee who is not a member of the organization.
    AssigneeNotMember = (UNPROCESSABLE_ENTITY, "assignee_not_member"),
    /// 429: too many requests; retry after `Retry-After` seconds.
    RateLimited = (TOO_MANY_REQUESTS, "rate_limited"),
    /// 500: a bug or an unexpected failure; the cause is logged, never shown.
    Internal = (INTERNAL_SERVER_ERROR, "internal"),
    /// 503: the database is unreachable, or a read model did not catch up with `?after=` in
    /// time; retry later.
    Unavailable = (SERVICE_UNAVAILABLE, "unavailable"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "The stable error code (README's error table says when each is answered).",
            ))
            .enum_values(Some(Self::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// Every error code with its status, for the test that compares them with README's table.
#[doc(hidden)]
pub fn error_codes() -> Vec<(&'static str, u16)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.status().as_u16()))
        .collect()
}

/// The one error shape on the wire: `{"error":{"code","message","details"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// An error: its code, an explanation, and details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The stable code.
    code: ErrorCode,
    /// A human-readable explanation (not stable; do not match on it).
    message: String,
    /// More about the error; `null` for every code today.
    #[schema(value_type = Option<Object>, required = true)]
    details: Option<Value>,
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A refusal (4xx): its code decides the status.
    #[error("{message}")]
    Refused {
        /// Which one.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// 429: too many requests; retry after the given time.
    #[error("too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When to retry.
        retry_after: std::time::Duration,
    },
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is larger than the limit.
    #[error("request body too large")]
    PayloadTooLarge,
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
    /// The error `code`, explained by `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// A 401: the request needs a signed-in caller.
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "sign in, or send `Authorization: Bearer <api key>`",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details: None,
            },
        };
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
            StoreError::Conflict => Self::new(ErrorCode::Conflict, e.to_string()),
            StoreError::CommandIdReused(_) | StoreError::Duplicate(_) => {
                Self::new(ErrorCode::IdempotencyKeyReused, e.to_string())
            }
        }
    }
}

impl From<projections::read_models::documents::ContentError> for ApiError {
    fn from(e: projections::read_models::documents::ContentError) -> Self {
        use projections::read_models::documents::ContentError;
        match e {
            ContentError::Store(e) => e.into(),
            corrupt @ ContentError::Corrupt { .. } => Self::Internal(Box::new(corrupt)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e).into()
    }
}

/// A value that breaks its rule: 422 `validation_failed`, whichever rule it was.
impl From<ValueError> for ApiError {
    fn from(e: ValueError) -> Self {
        Self::new(ErrorCode::ValidationFailed, e.to_string())
    }
}

/// The code of each domain error: the one place domain refusals meet HTTP. Every match is
/// exhaustive, so a new refusal does not compile until it has a code.
pub trait DomainCode: std::error::Error {
    /// The code this refusal answers with (its status follows from the code).
    fn error_code(&self) -> ErrorCode;
}

impl DomainCode for OrganizationError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::AlreadyExists => ErrorCode::OrganizationExists,
            Self::NotFound => ErrorCode::OrganizationNotFound,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::LastAdministrator => ErrorCode::LastAdministrator,
            Self::AlreadyMember(_) => ErrorCode::AlreadyMember,
            Self::NotMember(_) => ErrorCode::NotMember,
            Self::TeamExists(_) => ErrorCode::TeamExists,
            Self::TeamNotFound(_) => ErrorCode::TeamNotFound,
            Self::TeamNameTaken(_) => ErrorCode::TeamNameTaken,
            Self::AlreadyTeamMember { .. } => ErrorCode::AlreadyTeamMember,
            Self::NotTeamMember { .. } => ErrorCode::NotTeamMember,
        }
    }
}

impl DomainCode for AccountError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::LinkInvalid => ErrorCode::InvalidLink,
            Self::NotRegistered => ErrorCode::AccountNotFound,
            Self::Erased => ErrorCode::AccountErased,
            Self::SessionNotFound => ErrorCode::SessionNotFound,
            Self::ApiKeyNotFound => ErrorCode::ApiKeyNotFound,
            Self::NoScopes => ErrorCode::NoScopes,
            Self::TooManyLinks => ErrorCode::TooManyLinks,
        }
    }
}

impl DomainCode for TaskError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Forbidden(_) => ErrorCode::Forbidden,
            // A stranger learns nothing: the organization is "not found" to them.
            Self::NotMember => ErrorCode::OrganizationNotFound,
            Self::AlreadyExists => ErrorCode::TaskExists,
            Self::NotFound => ErrorCode::TaskNotFound,
            Self::AlreadyAssigned(_) => ErrorCode::AlreadyAssigned,
            Self::NotAssigned(_) => ErrorCode::NotAssigned,
            Self::AlreadyLabeled(_) => ErrorCode::AlreadyLabeled,
            Self::NotLabeled(_) => ErrorCode::NotLabeled,
            Self::CommentNotFound => ErrorCode::CommentNotFound,
            Self::NotCommentAuthor => ErrorCode::NotCommentAuthor,
            Self::UnknownLabel(_) => ErrorCode::UnknownLabel,
            Self::UnknownCategory(_) => ErrorCode::UnknownCategory,
            Self::AssigneeNotMember(_) => ErrorCode::AssigneeNotMember,
        }
    }
}

impl DomainCode for DocumentError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Forbidden(_) => ErrorCode::Forbidden,
            // A stranger learns nothing: the organization is "not found" to them.
            Self::NotMember => ErrorCode::OrganizationNotFound,
            Self::AlreadyExists => ErrorCode::DocumentExists,
            Self::NotFound => ErrorCode::DocumentNotFound,
            Self::Deleted => ErrorCode::DocumentDeleted,
            Self::NotDeleted => ErrorCode::DocumentNotDeleted,
            Self::UnknownParent => ErrorCode::UnknownParent,
            Self::WouldCycle => ErrorCode::WouldCycle,
            Self::SlugTaken(_) => ErrorCode::SlugTaken,
            Self::NotPublished => ErrorCode::NotPublished,
            // Edits arrive over `/collab`, which answers in its own protocol; compaction is
            // the system's.
            Self::BadEdit | Self::TooLarge | Self::CompactsTheFuture { .. } => {
                ErrorCode::ValidationFailed
            }
        }
    }
}

impl DomainCode for TagError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::AlreadyExists => ErrorCode::AlreadyExists,
            Self::NotFound => ErrorCode::NotFound,
        }
    }
}

impl<E: DomainCode + Send + Sync + 'static> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Domain(e) => Self::new(e.error_code(), e.to_string()),
            CommandError::Conflict => Self::new(ErrorCode::Conflict, e.to_string()),
            CommandError::IdempotencyKeyReused => {
                Self::new(ErrorCode::IdempotencyKeyReused, e.to_string())
            }
            CommandError::Store(e) => e.into(),
            CommandError::Lookup(LookupError::Database(e)) => e.into(),
            CommandError::Lookup(e @ LookupError::Behind(_)) => {
                Self::Unavailable(Some(Box::new(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code with its status and wire string: the contract clients rely on. Changing a
    /// row here is changing the API (and README's table).
    #[test]
    fn every_code_has_its_status_and_wire_string() {
        let expected: &[(&str, u16)] = &[
            ("malformed_json", 400),
            ("invalid_body", 400),
            ("unsupported_content_type", 400),
            ("invalid_id", 400),
            ("invalid_path", 400),
            ("invalid_query", 400),
            ("invalid_cursor", 400),
            ("unknown_permission", 400),
            ("unknown_scope", 400),
            ("invalid_idempotency_key", 400),
            ("invalid_link", 400),
            ("unauthenticated", 401),
            ("invalid_credentials", 401),
            ("forbidden", 403),
            ("insufficient_scope", 403),
            ("session_required", 403),
            ("csrf_rejected", 403),
            ("not_comment_author", 403),
            ("organization_not_found", 404),
            ("team_not_found", 404),
            ("task_not_found", 404),
            ("comment_not_found", 404),
            ("document_not_found", 404),
            ("not_found", 404),
            ("stream_not_found", 404),
            ("route_not_found", 404),
            ("account_not_found", 404),
            ("account_erased", 404),
            ("session_not_found", 404),
            ("api_key_not_found", 404),
            ("method_not_allowed", 405),
            ("organization_exists", 409),
            ("team_exists", 409),
            ("task_exists", 409),
            ("document_exists", 409),
            ("slug_taken", 409),
            ("already_exists", 409),
            ("conflict", 409),
            ("idempotency_key_reused", 409),
            ("payload_too_large", 413),
            ("validation_failed", 422),
            ("no_scopes", 422),
            ("too_many_links", 422),
            ("last_administrator", 422),
            ("already_member", 422),
            ("not_member", 422),
            ("team_name_taken", 422),
            ("already_team_member", 422),
            ("not_team_member", 422),
            ("document_deleted", 422),
            ("document_not_deleted", 422),
            ("unknown_parent", 422),
            ("would_cycle", 422),
            ("not_published", 422),
            ("already_assigned", 422),
            ("not_assigned", 422),
            ("already_labeled", 422),
            ("not_labeled", 422),
            ("unknown_label", 422),
            ("unknown_category", 422),
            ("assignee_not_member", 422),
            ("rate_limited", 429),
            ("internal", 500),
            ("unavailable", 503),
        ];
        assert_eq!(error_codes(), expected);
    }

    #[test]
    fn wire_strings_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "`{wire}` twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "`{wire}`"
            );
        }
    }

    #[test]
    fn every_error_answers_the_status_of_its_code() {
        let cases = [
            ApiError::new(ErrorCode::TaskNotFound, "no such task"),
            ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::MethodNotAllowed,
            ApiError::PayloadTooLarge,
            ApiError::Unavailable(None),
            ApiError::Internal("boom".into()),
            ApiError::from(CommandError::Domain(TaskError::NotMember)),
            ApiError::from(CommandError::<TagError>::IdempotencyKeyReused),
        ];
        let statuses: Vec<u16> = cases
            .into_iter()
            .map(|e| e.into_response().status().as_u16())
            .collect();
        assert_eq!(statuses, [404, 429, 405, 413, 503, 500, 404, 409]);
    }
}
