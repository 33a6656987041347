//! Tasks: create, edit, delete, assignees and task labels, and the board's task reads.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use commands::Receipt;
use domain::task::{NewTask, Priority, Status, Task, TaskCommand, TaskEdit, BODY_MAX, TITLE_MAX};
use domain::{CategoryId, LabelId, OrgId, Scope, TaskId, UserId};
use projections::read_models::board::{BoardTask, TaskFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::api::doc::{
    BadRequest, Conflict, CursorSchema, Forbidden, IdempotencyKey, NotFound, PayloadTooLarge,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use crate::api::receipt::{created, written, Created, Written};
use crate::http::error::{ApiError, ErrorCode};
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

/// The operations of [`router`], for the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_tasks,
        create_task,
        get_task,
        edit_task,
        delete_task,
        assign,
        unassign,
        add_label,
        remove_label
    ),
    components(schemas(TaskStatus, TaskPriority))
)]
pub(super) struct Doc;

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

/// Where a task stands (the API's own type; the domain's `Status` is not a wire type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Status)]
enum TaskStatus {
    /// Not planned yet.
    Backlog,
    /// Planned.
    Todo,
    /// Being worked on.
    InProgress,
    /// Finished.
    Done,
    /// Dropped.
    Canceled,
}

impl From<TaskStatus> for Status {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Backlog => Self::Backlog,
            TaskStatus::Todo => Self::Todo,
            TaskStatus::InProgress => Self::InProgress,
            TaskStatus::Done => Self::Done,
            TaskStatus::Canceled => Self::Canceled,
        }
    }
}

/// How urgent a task is (the API's own type, like [`TaskStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Priority)]
enum TaskPriority {
    /// Not set.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl From<TaskPriority> for Priority {
    fn from(p: TaskPriority) -> Self {
        match p {
            TaskPriority::None => Self::None,
            TaskPriority::Low => Self::Low,
            TaskPriority::Medium => Self::Medium,
            TaskPriority::High => Self::High,
            TaskPriority::Urgent => Self::Urgent,
        }
    }
}

/// A new task. Labels, category and assignees must be the organization's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTaskBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Fix the login page")]
    title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    #[schema(max_length = 10000)]
    description: String,
    /// Default `todo`.
    status: Option<TaskStatus>,
    /// Default `none`.
    priority: Option<TaskPriority>,
    /// A category of the organization.
    #[schema(value_type = Option<Uuid>)]
    category_id: Option<CategoryId>,
    /// Labels of the organization.
    #[serde(default)]
    #[schema(value_type = Vec<Uuid>)]
    labels: BTreeSet<LabelId>,
    /// Members of the organization (needs `tasks.assign`).
    #[serde(default)]
    #[schema(value_type = Vec<Uuid>)]
    assignees: BTreeSet<UserId>,
}

/// A change to a task: what is given changes (`category_id: null` clears the category).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TaskPatch {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Fix the login page")]
    title: Option<String>,
    /// Up to 10,000 characters.
    #[schema(max_length = 10000)]
    description: Option<String>,
    /// The new status.
    status: Option<TaskStatus>,
    /// The new priority.
    priority: Option<TaskPriority>,
    /// A category of the organization, or `null` for none.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
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

#[utoipa::path(
    post,
    path = "/orgs/{org}/tasks",
    tag = "board",
    operation_id = "createTask",
    summary = "Create a task (tasks.create; tasks.assign with assignees; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), IdempotencyKey),
    request_body = NewTaskBody,
    responses(Created, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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
        status: body.status.map_or(Status::Todo, Status::from),
        priority: body.priority.map_or(Priority::None, Priority::from),
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
    Ok(created(&receipt, task.as_uuid()))
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
    Ok(written(&receipt))
}

#[utoipa::path(
    patch,
    path = "/orgs/{org}/tasks/{task}",
    tag = "board",
    operation_id = "editTask",
    summary = "Edit a task (tasks.edit; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), IdempotencyKey),
    request_body = TaskPatch,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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
        status: body.status.map(Status::from),
        priority: body.priority.map(Priority::from),
        category_id: body.category_id,
    };
    update_task(&state, &caller, &org, &task, TaskCommand::Edit(edit), meta).await
}

#[utoipa::path(
    delete,
    path = "/orgs/{org}/tasks/{task}",
    tag = "board",
    operation_id = "deleteTask",
    summary = "Delete a task (tasks.delete; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests, Unavailable)
)]
async fn delete_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    update_task(&state, &caller, &org, &task, TaskCommand::Delete, meta).await
}

/// Someone to assign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Assignee)]
struct UserBody {
    /// A member of the organization.
    #[schema(value_type = Uuid)]
    user_id: UserId,
}

#[utoipa::path(
    post,
    path = "/orgs/{org}/tasks/{task}/assignees",
    tag = "board",
    operation_id = "assignTask",
    summary = "Assign a member (tasks.assign; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), IdempotencyKey),
    request_body = UserBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    delete,
    path = "/orgs/{org}/tasks/{task}/assignees/{user}",
    tag = "board",
    operation_id = "unassignTask",
    summary = "Unassign someone (tasks.assign; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), ("user" = Uuid, Path, description = "The assignee"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
)]
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

/// A label to put on a task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskLabel)]
struct LabelBody {
    /// A label of the organization.
    #[schema(value_type = Uuid)]
    label_id: LabelId,
}

#[utoipa::path(
    post,
    path = "/orgs/{org}/tasks/{task}/labels",
    tag = "board",
    operation_id = "labelTask",
    summary = "Put a label on a task (tasks.edit; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), IdempotencyKey),
    request_body = LabelBody,
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests, Unavailable)
)]
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

#[utoipa::path(
    delete,
    path = "/orgs/{org}/tasks/{task}/labels/{label}",
    tag = "board",
    operation_id = "unlabelTask",
    summary = "Take a label off a task (tasks.edit; scope tasks:write)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), ("label" = Uuid, Path, description = "The label"), IdempotencyKey),
    responses(Written, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, TooManyRequests, Unavailable)
)]
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

/// A task as the board shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Task)]
struct TaskView {
    /// Its id.
    id: Uuid,
    /// Its organization.
    org_id: Uuid,
    /// Its title.
    title: String,
    /// Its description (may be empty).
    description: String,
    /// Where it stands.
    #[schema(value_type = TaskStatus)]
    status: String,
    /// How urgent it is.
    #[schema(value_type = TaskPriority)]
    priority: String,
    /// Its category, if any.
    category_id: Option<Uuid>,
    /// Its labels.
    labels: Vec<Uuid>,
    /// Who it is assigned to.
    assignees: Vec<Uuid>,
    /// How many live comments it has.
    comment_count: i32,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
    /// When it last changed (RFC 3339).
    #[schema(format = DateTime)]
    updated_at: String,
}

fn task_view(t: BoardTask) -> TaskView {
    TaskView {
        id: t.task_id,
        org_id: t.org_id,
        title: t.title,
        description: t.description,
        status: t.status,
        priority: t.priority,
        category_id: t.category_id,
        labels: t.labels,
        assignees: t.assignees,
        comment_count: t.comment_count,
        created_at: at(t.created_at),
        updated_at: at(t.updated_at),
    }
}

/// A page of the board's tasks, in creation order.
#[derive(Debug, Serialize, ToSchema)]
struct TasksPage {
    /// The tasks.
    tasks: Vec<TaskView>,
    /// Pass as `page` for the next page; `null` on the last.
    next: Option<String>,
}

/// The board's filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    /// Only tasks with this status.
    status: Option<TaskStatus>,
    /// Only tasks with this label.
    #[param(value_type = Option<Uuid>)]
    label: Option<LabelId>,
    /// Only tasks assigned to this person.
    #[param(value_type = Option<Uuid>)]
    assignee: Option<UserId>,
    /// Only tasks in this category.
    #[param(value_type = Option<Uuid>)]
    category: Option<CategoryId>,
    /// Tasks per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(pattern = "^[+-]?[0-9]+$", example = "0")]
    page: Option<String>,
    /// A write's `Cairn-Cursor`: wait (a bounded time) until the board includes it.
    #[param(value_type = Option<CursorSchema>)]
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/tasks",
    tag = "board",
    operation_id = "listTasks",
    summary = "The board: tasks, filtered, in creation order, paged (any member; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), TaskQuery),
    responses((status = 200, description = "A page of tasks", body = TasksPage), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn list_tasks(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<TasksPage>, ApiError> {
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
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "`limit` must be from 1 to 200",
        ));
    }
    let page: i64 = match q.page.as_deref() {
        None => 0,
        Some(p) => p
            .parse()
            .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "`page` is not a page cursor"))?,
    };
    let filter = TaskFilter {
        status: q.status.map(Status::from),
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
    Ok(Json(TasksPage {
        tasks: rows.into_iter().map(task_view).collect(),
        next,
    }))
}

#[utoipa::path(
    get,
    path = "/orgs/{org}/tasks/{task}",
    tag = "board",
    operation_id = "getTask",
    summary = "One task (any member; scope tasks:read)",
    params(("org" = Uuid, Path, description = "The organization"), ("task" = Uuid, Path, description = "The task"), After),
    responses((status = 200, description = "The task", body = TaskView), BadRequest, Unauthorized, Forbidden, NotFound, TooManyRequests, Unavailable)
)]
async fn get_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((org, task)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<After>,
) -> Result<Json<TaskView>, ApiError> {
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
    row.map(|t| Json(task_view(t)))
        .ok_or_else(|| ApiError::new(ErrorCode::TaskNotFound, "no such task"))
}
