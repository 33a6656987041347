//! Comments on a task: any member comments; only the author or an administrator edits.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use domain::task::{TaskCommand, BODY_MAX};
use domain::{CommentId, OrgId, TaskId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::paging::ListQuery;
use crate::api::receipt::written;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    body: String,
}

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
    Ok(written(
        StatusCode::CREATED,
        &receipt,
        json!({ "id": comment }),
    ))
}

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

async fn list_comments(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let comments: Vec<Value> = rows
        .into_iter()
        .map(|c| {
            json!({"id": c.comment_id, "author": c.author, "body": c.body,
                   "created_at": at(c.created_at), "edited_at": c.edited_at.map(at)})
        })
        .collect();
    Ok(Json(json!({ "comments": comments, "next": next })))
}
