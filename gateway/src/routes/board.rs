//! Task boards: labels, categories, tasks, assignees, task labels and comments, plus the
//! members and teams of an organization, all under `/api/v1/orgs/{org}/...`.
//!
//! Permissions come from the `memberships` read model and travel into each command as a
//! [`Grant`]; the aggregates decide. Reads come from the `board` and `memberships` read models
//! and accept `?after=<cursor>` (a write's `Cairn-Cursor`) to wait until they include it.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, patch};
use axum::{Json, Router};
use commands::{CommandError, Receipt};
use cqrs_es::Aggregate;
use domain::label::{Category, Color, Label, TagCommand, TagError, TagRequest};
use domain::task::{
    NewTask, Priority, Status, Task, TaskCommand, TaskEdit, TaskError, TaskRequest, BODY_MAX,
    TITLE_MAX,
};
use domain::{
    CategoryId, CommentId, Grant, LabelId, Name, OrgId, Permission, Scope, TaskId, Text, UserId,
};
use projections::read_models::access::Class;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::orgs::written;
use super::paging::ListQuery;
use crate::auth::{Auth, Principal};
use crate::error::{ApiError, DomainStatus};
use crate::extract::{parse_id, ApiJson, ApiPath, ApiQuery, RequestMeta};
use crate::state::{AppState, Ready};

/// What [`router`] serves (under `/api/v1`), for the OpenAPI parity test
/// ([`super::api_routes`]): keep it in step with `router` below.
pub(super) const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/orgs/{org}/members"),
    (Method::GET, "/orgs/{org}/teams"),
    (Method::GET, "/orgs/{org}/labels"),
    (Method::POST, "/orgs/{org}/labels"),
    (Method::PATCH, "/orgs/{org}/labels/{id}"),
    (Method::DELETE, "/orgs/{org}/labels/{id}"),
    (Method::GET, "/orgs/{org}/categories"),
    (Method::POST, "/orgs/{org}/categories"),
    (Method::PATCH, "/orgs/{org}/categories/{id}"),
    (Method::DELETE, "/orgs/{org}/categories/{id}"),
    (Method::GET, "/orgs/{org}/tasks"),
    (Method::POST, "/orgs/{org}/tasks"),
    (Method::GET, "/orgs/{org}/tasks/{task}"),
    (Method::PATCH, "/orgs/{org}/tasks/{task}"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}"),
    (Method::POST, "/orgs/{org}/tasks/{task}/assignees"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}/assignees/{user}"),
    (Method::POST, "/orgs/{org}/tasks/{task}/labels"),
    (Method::DELETE, "/orgs/{org}/tasks/{task}/labels/{label}"),
    (Method::GET, "/orgs/{org}/tasks/{task}/comments"),
    (Method::POST, "/orgs/{org}/tasks/{task}/comments"),
    (Method::PATCH, "/orgs/{org}/tasks/{task}/comments/{comment}"),
    (
        Method::DELETE,
        "/orgs/{org}/tasks/{task}/comments/{comment}",
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/teams", get(teams))
        .route("/orgs/{org}/labels", get(list_labels).post(create_label))
        .route(
            "/orgs/{org}/labels/{id}",
            patch(update_label).delete(delete_label),
        )
        .route(
            "/orgs/{org}/categories",
            get(list_categories).post(create_category),
        )
        .route(
            "/orgs/{org}/categories/{id}",
            patch(update_category).delete(delete_category),
        )
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
        .route(
            "/orgs/{org}/tasks/{task}/comments",
            get(list_comments).post(add_comment),
        )
        .route(
            "/orgs/{org}/tasks/{task}/comments/{comment}",
            patch(edit_comment).delete(delete_comment),
        )
}

impl DomainStatus for TagError {
    fn classify(&self) -> (StatusCode, &'static str) {
        let status = match self {
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::AlreadyExists => StatusCode::CONFLICT,
            Self::NotFound => StatusCode::NOT_FOUND,
        };
        (status, self.code())
    }
}

impl DomainStatus for TaskError {
    fn classify(&self) -> (StatusCode, &'static str) {
        let status = match self {
            Self::Forbidden(_) | Self::NotCommentAuthor => StatusCode::FORBIDDEN,
            Self::NotMember | Self::NotFound | Self::CommentNotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (status, self.code())
    }
}

// ---- read-your-writes, grants and references ----

/// The caller's grant in `org`, from the memberships read model.
async fn grant(ready: &Ready, org: OrgId, caller: &Principal) -> Result<Grant, ApiError> {
    ready
        .caught_up_locally(projections::read_models::memberships::NAME)
        .await?;
    let pool = ready.store.pool();
    let member = projections::read_models::memberships::is_member(
        pool,
        org.as_uuid(),
        caller.user_id.as_uuid(),
    )
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT permission FROM effective_permissions WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(caller.user_id.as_uuid())
    .fetch_all(pool)
    .await?;
    Ok(Grant {
        org_id: org,
        user: Some(caller.user_id),
        member,
        permissions: names
            .iter()
            .filter_map(|n| n.parse::<Permission>().ok())
            .collect(),
    })
}

/// Lets whoever the access policy lets read `org`'s board read it, after `?after=` if given.
/// Access is decided first (a stranger learns nothing and costs no wait: 404), the cursor is
/// checked at once (400 if malformed or never returned), and only then does the read wait.
async fn readable(
    ready: &Ready,
    org: &str,
    caller: &Principal,
    after: Option<&str>,
    projection: &str,
) -> Result<OrgId, ApiError> {
    if !caller.reader().scoped_for(Class::Board) {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "this API key lacks the `tasks:read` scope (or `events:read`)",
        ));
    }
    let org: OrgId = parse_id(org, "organization")?;
    let after = Ready::parse_after(after)?;
    let access = ready.access(Some(caller), Some(org.as_uuid())).await?;
    if !access.may_read(Class::Board, Some(org.as_uuid()), None) {
        return Err(ApiError::not_found(
            "organization_not_found",
            "no such organization",
        ));
    }
    ready
        .read_after(
            after,
            projection,
            Some(projections::read_models::memberships::NAME),
        )
        .await?;
    Ok(org)
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable {
        code,
        message: message.into(),
    }
}

/// Every label is a live label of `org` (422 `unknown_label` otherwise).
async fn check_labels(
    ready: &Ready,
    org: OrgId,
    labels: &BTreeSet<LabelId>,
) -> Result<(), ApiError> {
    if labels.is_empty() {
        return Ok(());
    }
    ready
        .caught_up_locally(projections::read_models::board::NAME)
        .await?;
    let ids: Vec<Uuid> = labels.iter().map(|l| l.as_uuid()).collect();
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM labels WHERE org_id = $1 AND label_id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(org.as_uuid())
    .bind(&ids)
    .fetch_one(ready.store.pool())
    .await?;
    if found as usize == ids.len() {
        Ok(())
    } else {
        Err(unprocessable(
            "unknown_label",
            "a label does not exist in this organization",
        ))
    }
}

/// The category is a live category of `org` (422 `unknown_category` otherwise).
async fn check_category(
    ready: &Ready,
    org: OrgId,
    category: Option<CategoryId>,
) -> Result<(), ApiError> {
    let Some(category) = category else {
        return Ok(());
    };
    ready
        .caught_up_locally(projections::read_models::board::NAME)
        .await?;
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM categories WHERE org_id = $1 AND category_id = $2 AND deleted_at IS NULL)",
    )
    .bind(org.as_uuid())
    .bind(category.as_uuid())
    .fetch_one(ready.store.pool())
    .await?;
    if found {
        Ok(())
    } else {
        Err(unprocessable(
            "unknown_category",
            "the category does not exist in this organization",
        ))
    }
}

/// Every assignee is a member of `org` (422 `assignee_not_member` otherwise), in one query.
async fn check_assignees(
    ready: &Ready,
    org: OrgId,
    users: &BTreeSet<UserId>,
) -> Result<(), ApiError> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
    let members = projections::read_models::memberships::members_among(
        ready.store.pool(),
        org.as_uuid(),
        &ids,
    )
    .await?;
    match users.iter().find(|u| !members.contains(&u.as_uuid())) {
        None => Ok(()),
        Some(user) => Err(unprocessable(
            "assignee_not_member",
            format!("user {user} is not a member"),
        )),
    }
}

// ---- running commands ----

async fn run<A>(
    state: &AppState,
    id: &str,
    command: A::Command,
    meta: RequestMeta,
    org: OrgId,
) -> Result<Receipt, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: Aggregate + Clone,
    A::Command: Clone + std::fmt::Debug,
    A::Error: DomainStatus + Send + Sync + 'static,
{
    let ready = state.ready()?;
    let meta = meta.0.in_org(org);
    let started = Instant::now();
    let result = ready.commands.execute::<A>(id, command, &meta).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::Domain(_)) => "refused",
        Err(CommandError::Conflict | CommandError::IdempotencyKeyReused) => "conflict",
        Err(CommandError::Store(_)) => "error",
    };
    state.metrics().command(A::TYPE, outcome, started.elapsed());
    Ok(result?)
}

fn text(field: &'static str, raw: &str, max: usize, allow_empty: bool) -> Result<Text, ApiError> {
    Text::parse(field, raw, max, allow_empty)
        .map_err(|e| unprocessable("validation_failed", e.to_string()))
}

/// Missing means `None`; `null` means `Some(None)`.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn at(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

// ---- members and teams ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct After {
    after: Option<String>,
}

async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::memberships::NAME,
    )
    .await?;
    let mut rows: Vec<(Uuid, time::OffsetDateTime, Vec<String>)> = sqlx::query_as(
        "SELECT m.user_id, m.added_at,
                coalesce(array_agg(DISTINCT p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}')
           FROM org_members m
           LEFT JOIN effective_permissions p ON p.org_id = m.org_id AND p.user_id = m.user_id
          WHERE m.org_id = $1
            AND ($2::timestamptz IS NULL OR (m.added_at, m.user_id) > ($2::timestamptz, $3::uuid))
          GROUP BY m.user_id, m.added_at ORDER BY m.added_at, m.user_id LIMIT $4",
    )
    .bind(org.as_uuid())
    .bind(paging.key())
    .bind(paging.id())
    .bind(paging.fetch())
    .fetch_all(ready.store.pool())
    .await?;
    let next = paging.finish(&mut rows, |(user, added, _)| (at(*added), *user));
    let members: Vec<Value> = rows
        .into_iter()
        .map(|(user, added, perms)| json!({"user_id": user, "added_at": at(added), "permissions": perms}))
        .collect();
    Ok(Json(json!({ "members": members, "next": next })))
}

/// A team: id, name, permissions, members, created.
type TeamRow = (Uuid, String, Vec<String>, Vec<Uuid>, time::OffsetDateTime);

async fn teams(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        &org,
        &caller,
        q.after.as_deref(),
        projections::read_models::memberships::NAME,
    )
    .await?;
    let mut rows: Vec<TeamRow> =
        sqlx::query_as(
            "SELECT t.team_id, t.name, t.permissions,
                    coalesce(array_agg(tm.user_id) FILTER (WHERE tm.user_id IS NOT NULL), '{}'),
                    t.created_at
               FROM org_teams t LEFT JOIN org_team_members tm ON tm.team_id = t.team_id
              WHERE t.org_id = $1
                AND ($2::timestamptz IS NULL OR (t.created_at, t.team_id) > ($2::timestamptz, $3::uuid))
              GROUP BY t.team_id ORDER BY t.created_at, t.team_id LIMIT $4",
        )
        .bind(org.as_uuid())
        .bind(paging.key())
        .bind(paging.id())
        .bind(paging.fetch())
        .fetch_all(ready.store.pool())
        .await?;
    let next = paging.finish(&mut rows, |r| (at(r.4), r.0));
    let teams: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, perms, members, _)| json!({"id": id, "name": name, "permissions": perms, "members": members}))
        .collect();
    Ok(Json(json!({ "teams": teams, "next": next })))
}

// ---- labels and categories ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTag {
    name: String,
    color: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagPatch {
    name: Option<String>,
    color: Option<String>,
}

fn tag_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse("name", raw).map_err(|e| unprocessable("validation_failed", e.to_string()))
}

fn tag_color(raw: &str) -> Result<Color, ApiError> {
    Color::parse(raw).map_err(|e| unprocessable("validation_failed", e.to_string()))
}

async fn list_tags(
    state: &AppState,
    caller: &Principal,
    org: &str,
    q: &ListQuery,
    table: &str,
    key: &str,
) -> Result<Json<Value>, ApiError> {
    let paging = q.paging()?;
    let ready = state.ready()?;
    let org = readable(
        ready,
        org,
        caller,
        q.after.as_deref(),
        projections::read_models::board::NAME,
    )
    .await?;
    let mut rows: Vec<(Uuid, String, String)> = sqlx::query_as(&format!(
        "SELECT {key}, name, color FROM {table}
          WHERE org_id = $1 AND deleted_at IS NULL
            AND ($2::text IS NULL OR (name, {key}) > ($2, $3::uuid))
          ORDER BY name, {key} LIMIT $4"
    ))
    .bind(org.as_uuid())
    .bind(paging.key())
    .bind(paging.id())
    .bind(paging.fetch())
    .fetch_all(ready.store.pool())
    .await?;
    let next = paging.finish(&mut rows, |(id, name, _)| (name.clone(), *id));
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, color)| json!({"id": id, "name": name, "color": color}))
        .collect();
    Ok(Json(json!({ table: items, "next": next })))
}

async fn tag_command<A>(
    state: &AppState,
    caller: &Principal,
    org: &str,
    id: Uuid,
    command: TagCommand,
    meta: RequestMeta,
    created: bool,
) -> Result<Response, ApiError>
where
    commands::Commands: commands::Dispatch<A>,
    A: Aggregate<Command = TagRequest, Error = TagError> + Clone,
{
    caller.require(Scope::TasksWrite)?;
    let org: OrgId = parse_id(org, "organization")?;
    let ready = state.ready()?;
    let request = TagRequest {
        grant: grant(ready, org, caller).await?,
        command,
    };
    let receipt = run::<A>(state, &id.to_string(), request, meta, org).await?;
    Ok(if created {
        written(StatusCode::CREATED, &receipt, json!({ "id": id }))
    } else {
        written(StatusCode::OK, &receipt, json!({}))
    })
}

macro_rules! tag_routes {
    ($list:ident, $create:ident, $update:ident, $delete:ident, $agg:ty, $table:literal, $key:literal, $purpose:literal) => {
        async fn $list(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath(org): ApiPath<String>,
            ApiQuery(q): ApiQuery<ListQuery>,
        ) -> Result<Json<Value>, ApiError> {
            list_tags(&state, &caller, &org, &q, $table, $key).await
        }

        async fn $create(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath(org): ApiPath<String>,
            meta: RequestMeta,
            ApiJson(body): ApiJson<NewTag>,
        ) -> Result<Response, ApiError> {
            let org_id: OrgId = parse_id(&org, "organization")?;
            let command = TagCommand::Create {
                org_id,
                name: tag_name(&body.name)?,
                color: tag_color(&body.color)?,
            };
            let id = meta.0.command_id.derive_id($purpose);
            tag_command::<$agg>(&state, &caller, &org, id, command, meta, true).await
        }

        async fn $update(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, id)): ApiPath<(String, String)>,
            meta: RequestMeta,
            ApiJson(body): ApiJson<TagPatch>,
        ) -> Result<Response, ApiError> {
            let id: Uuid = parse_id(&id, $purpose)?;
            let command = TagCommand::Update {
                name: body.name.as_deref().map(tag_name).transpose()?,
                color: body.color.as_deref().map(tag_color).transpose()?,
            };
            tag_command::<$agg>(&state, &caller, &org, id, command, meta, false).await
        }

        async fn $delete(
            State(state): State<AppState>,
            Auth(caller): Auth,
            ApiPath((org, id)): ApiPath<(String, String)>,
            meta: RequestMeta,
        ) -> Result<Response, ApiError> {
            let id: Uuid = parse_id(&id, $purpose)?;
            tag_command::<$agg>(&state, &caller, &org, id, TagCommand::Delete, meta, false).await
        }
    };
}

tag_routes!(
    list_labels,
    create_label,
    update_label,
    delete_label,
    Label,
    "labels",
    "label_id",
    "label"
);
tag_routes!(
    list_categories,
    create_category,
    update_category,
    delete_category,
    Category,
    "categories",
    "category_id",
    "category"
);

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

async fn task_command(
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
async fn update_task(
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

type CommentRow = (
    Uuid,
    Option<Uuid>,
    String,
    time::OffsetDateTime,
    Option<time::OffsetDateTime>,
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
    let mut rows: Vec<CommentRow> = sqlx::query_as(
        "SELECT comment_id, author, body, created_at, edited_at FROM task_comments
          WHERE org_id = $1 AND task_id = $2 AND deleted_at IS NULL
            AND ($3::timestamptz IS NULL OR (created_at, comment_id) > ($3::timestamptz, $4::uuid))
          ORDER BY created_at, comment_id LIMIT $5",
    )
    .bind(org.as_uuid())
    .bind(task.as_uuid())
    .bind(paging.key())
    .bind(paging.id())
    .bind(paging.fetch())
    .fetch_all(ready.store.pool())
    .await?;
    let next = paging.finish(&mut rows, |r| (at(r.3), r.0));
    let comments: Vec<Value> = rows
        .into_iter()
        .map(|(id, author, body, created, edited)| {
            json!({"id": id, "author": author, "body": body, "created_at": at(created), "edited_at": edited.map(at)})
        })
        .collect();
    Ok(Json(json!({ "comments": comments, "next": next })))
}
