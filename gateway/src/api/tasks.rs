//! Tasks: create, edit, delete, assignees and task labels, and the board's task reads.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use commands::Receipt;
use domain::task::{NewTask, Priority, Status, Task, TaskCommand, TaskEdit, BODY_MAX, TITLE_MAX};
use domain::{CategoryId, LabelId, OrgId, Scope, TaskId, UserId};
use projections::read_models::board::{BoardTask, TaskFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::receipt::written;
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;

use crate::api::board::{at, double_option, readable, run, text, After};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/tasks"),
    (Method::POST, "/orgs/{org}/tasks"),
    (Method::GET, "/orgs/{org}/tasks/{task}"),
    (Method::PATCH, "/orgs/{org}/tasks/{task}"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}"),
    (Method::POST, "/orgs/{org}/tasks/{task}/assignees"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}/assignees/{user}"),
    (Method::POST, "/orgs/{org}/tasks/{task}/labels"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}/labels/{label}"),
];

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/tasks", get(list_tasks).post(create_task))
        .route(
            "/orgs/{org}/tasks/{task}",
            get(get_task).patch(edit_task).delete(delete_task),
        )
        .route(
            "/orgs/{org}/tasks/{task}/assignees",
            axum::routing::post(assign),
        )
        .route(
            "/orgs/{org}/tasks/{task}/assignees/{user}",
            delete(unassign),
        )
        .route(
            "/orgs/{org}/tasks/{task}/labels",
            axum::routing::post(add_label),
        )
        .route(
            "/orgs/{org}/tasks/{task}/labels/{label}",
            delete(remove_label),
        )
}

// ---- tasks ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskBody {
    title: String,
    #[serde(default)]
    description: String,
    status: Option<Status>,
    priority: Option<Priority>,
    category_id: Option<CategoryId>,
    #[serde(default)]
    labels: BTreeSet<LabelId>,
    #[serde(default)]
    assignees: BTreeSet<UserId>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskPatch {
    title: Option<String>,
    description: Option<String>,
    status: Option<Status>,
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "double_option")]
    category_id: Option<Option<CategoryId>>,
}

pub(crate) async fn task_command(
    state: &AppState,
    caller: &Principal,
    org: OrgId,
    task: TaskId,
    command: TaskCommand,
    meta: RequestMeta,
) -> Result<Receipt, ApiError> {
    caller.require(Scope::TasksWrite)?;
    run::<Task>(state, &task.to_string(), command, meta, org).await
}

async fn create_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NewTaskBody>,
) -> Result<Response, ApiError> {
    let org: OrgId = parse_id(&org, "organization")?;
    let new = NewTask {
        org_id: org,
        title: text("title", &body.title, TITLE_MAX, false)?,
        description: text("description", &body.description, BODY_MAX, true)?,
        status: body.status.unwrap_or(Status::Todo),
        priority: body.priority.unwrap_or(Priority::None),
        category_id: body.category_id,
        labels: body.labels,
        assignees: body.assignees,
    };
    let task = TaskId::from_uuid(meta.0.command_id.derive_id("task"));
    let receipt = task_command(
        &state,
        &caller,
        org,
        task,
        TaskCommand::Create(Box::new(new)),
        meta,
    )
    .await?;
    Ok(written(
        StatusCode::CREATED,
        &receipt,
        json!({ "id": task }),
    ))
}

/// Runs a task command given the route's `org` and `task` and answers 200 with the receipt.
pub(crate) async fn update_task(
    state: &AppState,
    caller: &Principal,
    org: &str,
    task: &str,
    command: TaskCommand,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let org: OrgId = parse_id(org, "organization")?;
    let task: TaskId = parse_id(task, "task")?;
    let receipt = task_command(state, caller, org, task, command, meta).await?;
    Ok(written(StatusCode::OK, &receipt, json!({})))
}

async fn edit_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<TaskPatch>,
) -> Result<Response, ApiError> {
    let edit = TaskEdit {
        title: body
            .title
            .as_deref()
            .map(|t| text("title", t, TITLE_MAX, false))
            .transpose()?,
        description: body
            .description
            .as_deref()
            .map(|d| text("description", d, BODY_MAX, true))
            .transpose()?,
        status: body.status,
        priority: body.priority,
        category_id: body.category_id,
    };
    update_task(&state, &caller, &org, &task, TaskCommand::Edit(edit), meta).await
}

async fn delete_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    update_task(&state, &caller, &org, &task, TaskCommand::Delete, meta).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user_id: UserId,
}

async fn assign(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Response, ApiError> {
    let command = TaskCommand::Assign {
        user_id: body.user_id,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

async fn unassign(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task, user)): ApiPath<(String, String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = TaskCommand::Unassign {
        user_id: parse_id(&user, "user")?,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    label_id: LabelId,
}

async fn add_label(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<LabelBody>,
) -> Result<Response, ApiError> {
    let command = TaskCommand::AddLabel {
        label_id: body.label_id,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

async fn remove_label(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task, label)): ApiPath<(String, String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    let command = TaskCommand::RemoveLabel {
        label_id: parse_id(&label, "label")?,
    };
    update_task(&state, &caller, &org, &task, command, meta).await
}

// ---- task reads ----

fn task_json(t: BoardTask) -> Value {
    json!({
        "id": t.task_id, "org_id": t.org_id, "title": t.title, "description": t.description,
        "status": t.status, "priority": t.priority, "category_id": t.category_id,
        "labels": t.labels, "assignees": t.assignees, "comment_count": t.comment_count,
        "created_at": at(t.created_at), "updated_at": at(t.updated_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    status: Option<Status>,
    label: Option<LabelId>,
    assignee: Option<UserId>,
    category: Option<CategoryId>,
    limit: Option<i64>,
    /// The `next` of the previous page.
    page: Option<String>,
    after: Option<String>,
}

async fn list_tasks(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::board::NAME,
    )
    .await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`limit` must be from 1 to 200",
        ));
    }
    let page: i64 = match q.page.as_deref() {
        None => 0,
        Some(p) => p
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_query", "`page` is not a page cursor"))?,
    };
    let filter = TaskFilter {
        status: q.status,
        label: q.label,
        assignee: q.assignee,
        category: q.category,
    };
    let rows =
        projections::read_models::board::tasks(ready.store.pool(), org, &filter, page, limit)
            .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|t| t.created_position.to_string()))
        .flatten();
    Ok(Json(json!({
        "tasks": rows.into_iter().map(task_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

async fn get_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<After>,
) -> Result<Json<Value>, ApiError> {
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
    let row = projections::read_models::board::task(ready.store.pool(), org, task).await?;
    row.map(|t| Json(task_json(t)))
        .ok_or_else(|| ApiError::not_found("task_not_found", "no such task"))
}
