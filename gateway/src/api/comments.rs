//! Comments on a task: any member comments; only the author or an administrator edits.

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use domain::task::{TaskCommand, BODY_MAX};
use domain::{CommentId, OrgId, TaskId};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::doc::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable,
};
use crate::api::paging::ListQuery;
use crate::api::receipt::{created, Created, Written};
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::Auth;
use crate::state::AppState;

use crate::api::board::{at, readable, text};
use crate::api::tasks::{task_command, update_task};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/tasks/{task}/comments"),
    (Method::POST, "/orgs/{org}/tasks/{task}/comments"),
    (Method::PATCH, "/orgs/{org}/tasks/{task}/comments/{comment}"),
    (
        Method::DELETE,
        "/orgs/{org}/tasks/{task}/comments/{comment}",
    ),
];

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(list_comments, add_comment, edit_comment, delete_comment))]
pub(super) struct Doc;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/orgs/{org}/tasks/{task}/comments",
            get(list_comments).post(add_comment),
        )
        .route(
            "/orgs/{org}/tasks/{task}/comments/{comment}",
            patch(edit_comment).delete(delete_comment),
        )
}

/// A comment's text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    /// 1 to 10,000 characters.
    #[schema(min_length = 1, max_length = 10000, example = "Looks good to me.")]
    body: String,
}

/// A comment on a task.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Comment)]
struct CommentView {
    /// Its id.
    id: Uuid,
    /// Who wrote it (`null` if unknown).
    author: Option<Uuid>,
    /// Its text.
    body: String,
    /// When it was written (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
    /// When it was last edited, if ever (RFC 3339).
    #[schema(format = DateTime)]
    edited_at: Option<String>,
}

/// A page of a task's comments, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct CommentsPage {
    /// The comments.
    comments: Vec<CommentView>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

#[utoipa::path(
    post,
    path = "/orgs/{org}/tasks/{task}/comments",
    tag = "board",
    operation_id = "addComment",
    summary = "Comment on a task (any member; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), IdempotencyKey),
    request_body = CommentBody,
    responses(Created, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
async fn add_comment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<CommentBody>,
) -> Result<Response, ApiError> {
    let org_id: OrgId = parse_id(&org, "organization")?;
    let task_id: TaskId = parse_id(&task, "task")?;
    let comment = CommentId::from_uuid(meta.0.command_id.derive_id("comment"));
    let command = TaskCommand::AddComment {
        comment_id: comment,
        body: text("body", &body.body, BODY_MAX, false)?,
    };
    let receipt = task_command(&state, &caller, org_id, task_id, command, meta).await?;
    Ok(created(&receipt, comment.as_uuid()))
}

#[utoipa::path(
    patch,
    path = "/orgs/{org}/tasks/{task}/comments/{comment}",
    tag = "board",
    operation_id = "editComment",
    summary = "Edit a comment (its author, or an administrator; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), ("comment" = Uuid, Path, description = "The comment"), IdempotencyKey),
    request_body = CommentBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
async fn edit_comment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task, comment)): ApiPath<(String, String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<CommentBody>,
) -> Result<Response, ApiError> {
    let command = TaskCommand::EditComment {
        comment_id: parse_id(&comment, "comment")?,
        body: text("body", &body.body, BODY_MAX, false)?,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

#[utoipa::path(
    delete,
    path = "/orgs/{org}/tasks/{task}/comments/{comment}",
    tag = "board",
    operation_id = "deleteComment",
    summary = "Delete a comment (its author, or an administrator; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), ("comment" = Uuid, Path, description = "The comment"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests, Unavailable)
)]
async fn delete_comment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task, comment)): ApiPath<(String, String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = TaskCommand::DeleteComment {
        comment_id: parse_id(&comment, "comment")?,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/tasks/{task}/comments",
    tag = "board",
    operation_id = "listComments",
    summary = "A task's comments, oldest first (any member; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), ListQuery),
    responses((status = 200, description = "A page of comments", body = CommentsPage), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn list_comments(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<CommentsPage>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::board::NAME,
    )
    .await?;
    let task: TaskId = parse_id(&task, "task")?;
    let mut rows = projections::read_models::board::comments(
        ready.store.pool(),
        org,
        task,
        paging.at()?,
        paging.fetch(),
    )
    .await?;
    let next = paging.finish(&mut rows, |c| (at(c.created_at), c.comment_id));
    let comments = rows
        .into_iter()
        .map(|c| CommentView {
            id: c.comment_id,
            author: c.author,
            body: c.body,
            created_at: at(c.created_at),
            edited_at: c.edited_at.map(at),
        })
        .collect();
    Ok(Json(CommentsPage { comments, next }))
}
