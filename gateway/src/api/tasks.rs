//! Tasks: create, edit, delete, assignees and task labels, and the board's task reads.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Json, Router};
use commands::Receipt;
use domain::task::{
    NewTask, Priority, Status, Task, TaskCommand, TaskEdit, TaskRequest, BODY_MAX, TITLE_MAX,
};
use domain::{CategoryId, LabelId, OrgId, Scope, TaskId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::receipt::written;
use crate::http::error::ApiError;
use crate::http::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::http::principal::{Auth, Principal};
use crate::state::AppState;

use crate::api::board::{
    at, check_assignees, check_category, check_labels, double_option, grant, readable, run, text,
    After,
};

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
    let ready = state.ready()?;
    let request = TaskRequest {
        grant: grant(ready, org, caller).await?,
        command,
    };
    run::<Task>(state, &task.to_string(), request, meta, org).await
}

async fn create_task(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<NewTaskBody>,
) -> Result<Response, ApiError> {
    let org: OrgId = parse_id(&org, "organization")?;
    let ready = state.ready()?;
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
    check_labels(ready, org, &new.labels).await?;
    check_category(ready, org, new.category_id).await?;
    check_assignees(ready, org, &new.assignees).await?;
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
    let org_id: OrgId = parse_id(&org, "organization")?;
    let ready = state.ready()?;
    if let Some(category) = body.category_id {
        check_category(ready, org_id, category).await?;
    }
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
    let org_id: OrgId = parse_id(&org, "organization")?;
    check_assignees(state.ready()?, org_id, &[body.user_id].into()).await?;
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
    let org_id: OrgId = parse_id(&org, "organization")?;
    check_labels(state.ready()?, org_id, &[body.label_id].into()).await?;
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

type TaskRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    Option<Uuid>,
    Vec<Uuid>,
    Vec<Uuid>,
    i32,
    i64,
    time::OffsetDateTime,
    time::OffsetDateTime,
);

const TASK_COLUMNS: &str = "task_id, org_id, title, description, status, priority, category_id, labels, assignees, comment_count, created_position, created_at, updated_at";

fn task_json(r: TaskRow) -> Value {
    json!({
        "id": r.0, "org_id": r.1, "title": r.2, "description": r.3, "status": r.4,
        "priority": r.5, "category_id": r.6, "labels": r.7, "assignees": r.8,
        "comment_count": r.9, "created_at": at(r.11), "updated_at": at(r.12),
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
    let rows: Vec<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM board_tasks
          WHERE org_id = $1 AND deleted_at IS NULL AND created_position > $2
            AND ($3::text IS NULL OR status = $3)
            AND ($4::uuid IS NULL OR $4 = ANY(labels))
            AND ($5::uuid IS NULL OR $5 = ANY(assignees))
            AND ($6::uuid IS NULL OR category_id = $6)
          ORDER BY created_position LIMIT $7"
    ))
    .bind(org.as_uuid())
    .bind(page)
    .bind(q.status.and_then(|s| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }))
    .bind(q.label.map(|l| l.as_uuid()))
    .bind(q.assignee.map(|u| u.as_uuid()))
    .bind(q.category.map(|c| c.as_uuid()))
    .bind(limit)
    .fetch_all(ready.store.pool())
    .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.10.to_string()))
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
    let row: Option<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM board_tasks WHERE org_id = $1 AND task_id = $2 AND deleted_at IS NULL"
    ))
    .bind(org.as_uuid())
    .bind(task.as_uuid())
    .fetch_optional(ready.store.pool())
    .await?;
    row.map(|r| Json(task_json(r)))
        .ok_or_else(|| ApiError::not_found("task_not_found", "no such task"))
}
