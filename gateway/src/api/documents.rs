//! Documents: the tree, each document's metadata and content (now or as it was), and the
//! commands that create, rename, move, publish, delete and restore them. Edits arrive as Yjs
//! updates over `/collab`, not here.
//!
//! Members read (scope `docs:read`), `docs.edit` writes (scope `docs:write`). A published
//! document is also readable without signing in, as a page at `/p/{org}/{slug}`
//! ([`crate::api::pages`]).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::document::{Document, DocumentCommand, Slug, TITLE_MAX};
use domain::{DocId, OrgId, Scope};
use projections::read_models::access::Class;
use projections::read_models::documents::{self as read, At, DocumentRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::board::{at, readable_as, run, text};
use crate::api::doc::{
    BadRequest, Conflict, CursorSchema, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use crate::api::receipt::{created, written, Created, Written};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::{AppState, Ready};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/docs"),
    (Method::POST, "/orgs/{org}/docs"),
    (Method::GET, "/orgs/{org}/docs/{doc}"),
    (Method::PATCH, "/orgs/{org}/docs/{doc}"),
    (Method::DELETE, "/orgs/{org}/docs/{doc}"),
    (Method::POST, "/orgs/{org}/docs/{doc}/move"),
    (Method::POST, "/orgs/{org}/docs/{doc}/restore"),
    (Method::PUT, "/orgs/{org}/docs/{doc}/publication"),
    (Method::DELETE, "/orgs/{org}/docs/{doc}/publication"),
    (Method::GET, "/orgs/{org}/docs/{doc}/content"),
    (Method::POST, "/orgs/{org}/docs/{doc}/ticket"),
    (Method::GET, "/orgs/{org}/docs/{doc}/backlinks"),
];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    list_docs,
    create_doc,
    get_doc,
    rename_doc,
    delete_doc,
    move_doc,
    restore_doc,
    publish_doc,
    unpublish_doc,
    doc_content,
    doc_ticket,
    doc_backlinks
))]
pub(super) struct Doc;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/docs", get(list_docs).post(create_doc))
        .route(
            "/orgs/{org}/docs/{doc}",
            get(get_doc).patch(rename_doc).delete(delete_doc),
        )
        .route("/orgs/{org}/docs/{doc}/move", post(move_doc))
        .route("/orgs/{org}/docs/{doc}/restore", post(restore_doc))
        .route(
            "/orgs/{org}/docs/{doc}/publication",
            axum::routing::put(publish_doc).delete(unpublish_doc),
        )
        .route("/orgs/{org}/docs/{doc}/content", get(doc_content))
        .route("/orgs/{org}/docs/{doc}/ticket", post(doc_ticket))
        .route("/orgs/{org}/docs/{doc}/backlinks", get(doc_backlinks))
}

// ---- bodies ----

/// A new document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDocument {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200, example = "Meeting notes")]
    title: String,
    /// The document it sits under (a live document of the organization); absent or `null`
    /// for the root.
    parent: Option<Uuid>,
}

/// A new title.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rename {
    /// 1 to 200 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 200, example = "Meeting notes")]
    title: String,
}

/// Where a document goes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Move {
    /// The new parent (never the document itself or one of its descendants); `null` for the
    /// root.
    parent: Option<Uuid>,
}

/// The public name of a published document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Publication {
    /// 1 to 100 characters of `a-z`, `0-9` and `-`, not starting or ending with `-` (spaces
    /// around it are trimmed).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^\\s*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\s*$",
        example = "handbook"
    )]
    slug: String,
}

/// A document.
#[derive(Debug, Serialize, ToSchema)]
struct DocumentView {
    /// Its id.
    id: Uuid,
    /// Its title.
    title: String,
    /// The document it sits under, `null` at the root.
    parent: Option<Uuid>,
    /// Its public name when published (readable at `/p/{org}/{slug}`), else `null`.
    slug: Option<String>,
    /// Whether it is deleted (it can be restored). The tree lists only live documents.
    deleted: bool,
    /// When it was created (RFC 3339).
    created_at: String,
    /// When its title, place or publication last changed (RFC 3339).
    updated_at: String,
}

impl From<DocumentRow> for DocumentView {
    fn from(d: DocumentRow) -> Self {
        Self {
            id: d.doc_id,
            title: d.title,
            parent: d.parent_id,
            slug: d.slug,
            deleted: d.deleted,
            created_at: at(d.created_at),
            updated_at: at(d.updated_at),
        }
    }
}

/// An organization's live documents, by title. Each names its parent; a document whose parent
/// is deleted still names it.
#[derive(Debug, Serialize, ToSchema)]
struct DocumentTree {
    /// The documents (at most 10,000).
    documents: Vec<DocumentView>,
}

/// `?after=` for a read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    /// A write's `Cairn-Cursor`: wait (a bounded time) until the read model includes it (503
    /// if it does not in time; 400 `invalid_cursor` for a cursor past the newest event).
    #[param(value_type = Option<CursorSchema>)]
    after: Option<String>,
}

/// What `GET …/content` answers.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// The document's text, `text/plain; charset=utf-8`.
    #[default]
    Text,
    /// The whole Yjs state as one update (`Y.applyUpdate` takes it), `application/octet-stream`.
    Yjs,
}

/// The query of `GET …/content`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ContentQuery {
    /// `text` (default) or `yjs`.
    #[param(inline)]
    format: Option<Format>,
    /// The document as it was: after its event with this sequence (an integer from 0), or at
    /// this time (RFC 3339). Absent: as it is now.
    #[param(example = "2026-12-03T10:00:00Z")]
    at: Option<String>,
}

// ---- reads ----

/// 403 `insufficient_scope` for an API key that may not read documents (`docs:read` or
/// `events:read`); sessions may.
fn require_docs_scope(caller: &Principal) -> Result<(), ApiError> {
    if caller.reader().scoped_for(Class::Docs) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "this API key lacks the `docs:read` scope (or `events:read`)",
        ))
    }
}

/// The organization, if the access policy lets the caller read its documents (404 otherwise),
/// after `?after=` if given.
async fn docs_readable(
    ready: &Ready,
    org: &str,
    caller: &Principal,
    after: Option<&str>,
) -> Result<OrgId, ApiError> {
    require_docs_scope(caller)?;
    readable_as(ready, org, caller, after, read::NAME, Class::Docs).await
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::DocumentNotFound, "no such document")
}

/// Document `doc` of `org` as the tree read model has it, deleted or not (404 if `org` has
/// no such document).
async fn existing(ready: &Ready, org: OrgId, doc: DocId) -> Result<DocumentRow, ApiError> {
    read::document(ready.store.pool(), org, doc)
        .await?
        .ok_or_else(not_found)
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/docs",
    tag = "documents",
    operation_id = "listDocuments",
    summary = "The organization's live documents, by title (any member; scope docs:read)",
    params(("org" = Uuid, Path, description = "The organization"), ReadQuery),
    responses((status = 200, description = "The tree", body = DocumentTree), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn list_docs(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<DocumentTree>, ApiError> {
    let ready = state.ready()?;
    let org = docs_readable(ready, &org, &caller, q.after.as_deref()).await?;
    let rows = read::tree(ready.store.pool(), org).await?;
    Ok(Json(DocumentTree {
        documents: rows
            .into_iter()
            .map(|d| DocumentView {
                id: d.doc_id,
                title: d.title,
                parent: d.parent_id,
                slug: d.slug,
                deleted: false,
                created_at: at(d.created_at),
                updated_at: at(d.updated_at),
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/docs/{doc}",
    tag = "documents",
    operation_id = "getDocument",
    summary = "One document's metadata, deleted or not (any member; scope docs:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document"), ReadQuery),
    responses((status = 200, description = "The document", body = DocumentView), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn get_doc(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, doc)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<DocumentView>, ApiError> {
    let ready = state.ready()?;
    let org = docs_readable(ready, &org, &caller, q.after.as_deref()).await?;
    let doc: DocId = parse_id(&doc, "document")?;
    Ok(Json(existing(ready, org, doc).await?.into()))
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/docs/{doc}/content",
    tag = "documents",
    operation_id = "getDocumentContent",
    summary = "A document's content, now or as it was: its text, or its Yjs state (any member; scope docs:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document"), ContentQuery),
    responses(
        (status = 200, description = "The text (`text/plain; charset=utf-8`) or the Yjs state (`application/octet-stream`); `Cairn-Document-Sequence` names the last event included", content((String = "text/plain"), (Vec<u8> = "application/octet-stream"))),
        BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable
    )
)]
async fn doc_content(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, doc)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ContentQuery>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let at = q.at.as_deref().map(parse_at).transpose()?;
    let org = docs_readable(ready, &org, &caller, None).await?;
    let doc: DocId = parse_id(&doc, "document")?;
    existing(ready, org, doc).await?;
    let content = read::content(&ready.store, doc, at).await?;
    let sequence = HeaderValue::from(content.sequence);
    let mut response = match q.format.unwrap_or_default() {
        Format::Text => {
            ([(CONTENT_TYPE, "text/plain; charset=utf-8")], content.text).into_response()
        }
        Format::Yjs => {
            ([(CONTENT_TYPE, "application/octet-stream")], content.state).into_response()
        }
    };
    response
        .headers_mut()
        .insert("cairn-document-sequence", sequence);
    Ok(response)
}

/// The live documents that link to a document.
#[derive(Debug, Serialize, ToSchema)]
struct Backlinks {
    /// By title (at most 1,000).
    documents: Vec<BacklinkView>,
}

/// A document that links to another.
#[derive(Debug, Serialize, ToSchema)]
struct BacklinkView {
    /// Its id.
    id: Uuid,
    /// Its title.
    title: String,
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/docs/{doc}/backlinks",
    tag = "documents",
    operation_id = "listDocumentBacklinks",
    summary = "The documents that link to this one with [[Title]] or /docs/<id> (any member; scope docs:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document"), ReadQuery),
    responses((status = 200, description = "The backlinks", body = Backlinks), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn doc_backlinks(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, doc)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<Backlinks>, ApiError> {
    let ready = state.ready()?;
    require_docs_scope(&caller)?;
    let org = readable_as(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::document_text::NAME,
        Class::Docs,
    )
    .await?;
    let doc: DocId = parse_id(&doc, "document")?;
    existing(ready, org, doc).await?;
    let rows =
        projections::read_models::document_text::backlinks(ready.store.pool(), org, doc).await?;
    Ok(Json(Backlinks {
        documents: rows
            .into_iter()
            .map(|b| BacklinkView {
                id: b.doc_id,
                title: b.title,
            })
            .collect(),
    }))
}

/// A ticket for `/collab/{doc}?ticket=…`.
#[derive(Debug, Serialize, ToSchema)]
struct Ticket {
    /// Pass as `?ticket=` (with y-websocket: `params: { ticket }`).
    ticket: String,
    /// When it stops opening the document (RFC 3339): 60 s from now.
    expires_at: String,
}

#[utoipa::path(
    post,
    path = "/orgs/{org}/docs/{doc}/ticket",
    tag = "documents",
    operation_id = "createDocumentTicket",
    summary = "A 60-second ticket that opens this document on /collab as the caller (any member; scope docs:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document")),
    responses((status = 200, description = "The ticket", body = Ticket), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn doc_ticket(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, doc)): ApiPath<(String, String)>,
) -> Result<Json<Ticket>, ApiError> {
    let ready = state.ready()?;
    let org = docs_readable(ready, &org, &caller, None).await?;
    let doc: DocId = parse_id(&doc, "document")?;
    if existing(ready, org, doc).await?.deleted {
        return Err(not_found());
    }
    let (ticket, expires) = crate::collab::ticket::issue(state.secret_key(), doc, &caller);
    Ok(Json(Ticket {
        ticket,
        expires_at: at(expires),
    }))
}

/// `?at=`: a sequence (digits) or an RFC 3339 time; 400 `invalid_query` otherwise.
fn parse_at(raw: &str) -> Result<At, ApiError> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().map(At::Sequence).map_err(|_| bad_at());
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(At::Time)
        .map_err(|_| bad_at())
}

fn bad_at() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidQuery,
        "`at` must be a sequence (an integer from 0) or an RFC 3339 time",
    )
}

// ---- writes ----

async fn command(
    state: &AppState,
    caller: &Principal,
    org: &str,
    doc: DocId,
    command: DocumentCommand,
    meta: RequestMeta,
    is_new: bool,
) -> Result<Response, ApiError> {
    caller.require(Scope::DocsWrite)?;
    let org: OrgId = parse_id(org, "organization")?;
    let receipt = run::<Document>(state, &doc.to_string(), command, meta, org).await?;
    Ok(if is_new {
        created(&receipt, doc.as_uuid())
    } else {
        written(&receipt)
    })
}

fn title(raw: &str) -> Result<domain::Text, ApiError> {
    text("title", raw, TITLE_MAX, false)
}

#[utoipa::path(
    post,
    path = "/orgs/{org}/docs",
    tag = "documents",
    operation_id = "createDocument",
    summary = "Create a document, at the root or under a parent (docs.edit; scope docs:write)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = NewDocument,
    responses(Created, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
async fn create_doc(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NewDocument>,
) -> Result<Response, ApiError> {
    let org_id: OrgId = parse_id(&org, "organization")?;
    let doc = DocId::from_uuid(meta.0.command_id.derive_id("document"));
    let asked = DocumentCommand::Create {
        doc_id: doc,
        org_id,
        title: title(&body.title)?,
        parent: body.parent.map(DocId::from_uuid),
    };
    command(&state, &caller, &org, doc, asked, meta, true).await
}

macro_rules! doc_write {
    ($name:ident, $method:ident, $path:literal, $op:literal, $summary:literal, $body:ty, |$b:ident| $make:expr) => {
        #[utoipa::path(
            $method,
            path = $path,
            tag = "documents",
            operation_id = $op,
            summary = $summary,
            params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document"), IdempotencyKey),
            request_body = $body,
            responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
        )]
        async fn $name(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, doc)): ApiPath<(String, String)>,
            meta: RequestMeta,
            ApiJson($b): ApiJson<$body>,
        ) -> Result<Response, ApiError> {
            let doc: DocId = parse_id(&doc, "document")?;
            let asked: DocumentCommand = $make;
            command(&state, &caller, &org, doc, asked, meta, false).await
        }
    };
    ($name:ident, $method:ident, $path:literal, $op:literal, $summary:literal, $asked:expr) => {
        #[utoipa::path(
            $method,
            path = $path,
            tag = "documents",
            operation_id = $op,
            summary = $summary,
            params(("org" = Uuid, Path, description = "The organization"), ("doc" = Uuid, Path, description = "The document"), IdempotencyKey),
            responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
        )]
        async fn $name(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, doc)): ApiPath<(String, String)>,
            meta: RequestMeta,
        ) -> Result<Response, ApiError> {
            let doc: DocId = parse_id(&doc, "document")?;
            command(&state, &caller, &org, doc, $asked, meta, false).await
        }
    };
}

doc_write!(
    rename_doc,
    patch,
    "/orgs/{org}/docs/{doc}",
    "renameDocument",
    "Rename a document (docs.edit; scope docs:write)",
    Rename,
    |body| DocumentCommand::Rename {
        title: title(&body.title)?
    }
);
doc_write!(
    move_doc,
    post,
    "/orgs/{org}/docs/{doc}/move",
    "moveDocument",
    "Move a document under another, or to the root; never under itself or a descendant (docs.edit; scope docs:write)",
    Move,
    |body| DocumentCommand::Move {
        parent: body.parent.map(DocId::from_uuid)
    }
);
doc_write!(
    publish_doc,
    put,
    "/orgs/{org}/docs/{doc}/publication",
    "publishDocument",
    "Publish a document at /p/{org}/{slug}, readable without signing in (docs.edit; scope docs:write)",
    Publication,
    |body| DocumentCommand::Publish {
        slug: Slug::parse(&body.slug)?
    }
);
doc_write!(
    unpublish_doc,
    delete,
    "/orgs/{org}/docs/{doc}/publication",
    "unpublishDocument",
    "Take a published document down (docs.edit; scope docs:write)",
    DocumentCommand::Unpublish
);
doc_write!(
    delete_doc,
    delete,
    "/orgs/{org}/docs/{doc}",
    "deleteDocument",
    "Delete a document; it can be restored (docs.edit; scope docs:write)",
    DocumentCommand::Delete
);
doc_write!(
    restore_doc,
    post,
    "/orgs/{org}/docs/{doc}/restore",
    "restoreDocument",
    "Restore a deleted document (docs.edit; scope docs:write)",
    DocumentCommand::Restore
);
