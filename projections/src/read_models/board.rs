//! The `board` projection: labels, categories, tasks (with labels, assignees and comment
//! counts) and comments, from `label.*`, `category.*` and `task.*` events.

use domain::label::{CategoryEvent, LabelEvent};
use domain::task::TaskEvent;
use eventstore::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{decode, Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "board";

/// Builds `labels`, `categories`, `board_tasks` and `task_comments`.
#[derive(Debug, Default, Clone, Copy)]
pub struct BoardProjection;

impl Projection for BoardProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["labels", "categories", "board_tasks", "task_comments"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let Ok(id) = Uuid::parse_str(&event.aggregate_id) else {
            return Ok(());
        };
        match event.aggregate_type.as_str() {
            "label" => {
                let change: LabelEvent = decode(event)?;
                apply_tag(conn, "labels", "label_id", id, event, change.into()).await
            }
            "category" => {
                let change: CategoryEvent = decode(event)?;
                apply_tag(conn, "categories", "category_id", id, event, change.into()).await
            }
            // One event is a batch of one: the same fold, so the two paths cannot differ.
            "task" => Self::fold_tasks(conn, &[(event, id, decode(event)?)]).await,
            _ => Ok(()),
        }
    }

    /// Task events are folded in memory ([`BoardProjection::fold_tasks`]); labels and
    /// categories, which are few, are applied one by one. The two never touch the same tables,
    /// so their relative order does not matter.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut task_events = Vec::with_capacity(events.len());
        for event in events {
            if event.aggregate_type == "task" {
                if let Ok(id) = Uuid::parse_str(&event.aggregate_id) {
                    task_events.push((event, id, decode::<TaskEvent>(event)?));
                }
            } else {
                self.apply(conn, event).await?;
            }
        }
        if !task_events.is_empty() {
            Self::fold_tasks(conn, &task_events).await?;
        }
        Ok(())
    }
}

async fn apply_tag(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    id: Uuid,
    event: &RecordedEvent,
    change: domain::label::TagChange,
) -> Result<(), ProjectionError> {
    use domain::label::TagChange as T;
    let at = event.recorded_at;
    match change {
        T::Created {
            org_id,
            name,
            color,
        } => {
            sqlx::query(&format!(
                "INSERT INTO {table} ({key}, org_id, name, color, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING"
            ))
            .bind(id)
            .bind(org_id.as_uuid())
            .bind(name.as_str())
            .bind(color.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        T::Updated { name, color } => {
            sqlx::query(&format!(
                "UPDATE {table} SET name = $2, color = $3, updated_at = $4 WHERE {key} = $1"
            ))
            .bind(id)
            .bind(name.as_str())
            .bind(color.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        T::Deleted => {
            sqlx::query(&format!(
                "UPDATE {table} SET deleted_at = coalesce(deleted_at, $2) WHERE {key} = $1"
            ))
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A task row in memory, for folding a batch.
#[derive(Debug, Clone, sqlx::FromRow)]
struct TaskRow {
    task_id: Uuid,
    org_id: Uuid,
    title: String,
    description: String,
    status: String,
    priority: String,
    category_id: Option<Uuid>,
    labels: Vec<Uuid>,
    assignees: Vec<Uuid>,
    comment_count: i32,
    created_position: i64,
    created_at: time::OffsetDateTime,
    updated_at: time::OffsetDateTime,
    deleted_at: Option<time::OffsetDateTime>,
}

/// A comment row in memory, for folding a batch.
#[derive(Debug, Clone, sqlx::FromRow)]
struct CommentRow {
    comment_id: Uuid,
    task_id: Uuid,
    org_id: Uuid,
    author: Option<Uuid>,
    body: String,
    created_at: time::OffsetDateTime,
    edited_at: Option<time::OffsetDateTime>,
    deleted_at: Option<time::OffsetDateTime>,
}

/// Sets membership in a list the way `array_append(array_remove(..))` does.
fn add_last(list: &mut Vec<Uuid>, id: Uuid) {
    list.retain(|x| *x != id);
    list.push(id);
}

impl BoardProjection {
    /// Folds the task events of a batch in memory: one read of the touched tasks and their
    /// comments, then one upsert per table. `apply` runs it on a batch of one event.
    async fn fold_tasks(
        conn: &mut PgConnection,
        events: &[(&RecordedEvent, Uuid, TaskEvent)],
    ) -> Result<(), ProjectionError> {
        use std::collections::{HashMap, HashSet};
        use TaskEvent as V;

        // A rebuild starts from empty tables, so plans cached early would scan them whole once
        // they have grown; plan these keyed lookups per execution instead.
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *conn)
            .await?;
        // A task whose first event in this batch is `task.created` has its whole history in
        // the batch (a rebuild's common case): nothing to read back for it.
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for (_, id, change) in events {
            if seen.insert(*id) && !matches!(change, V::Created { .. }) {
                ids.push(*id);
            }
        }
        let mut tasks: HashMap<Uuid, TaskRow> = if ids.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, TaskRow>(
                "SELECT task_id, org_id, title, description, status, priority, category_id, labels,
                    assignees, comment_count, created_position, created_at, updated_at, deleted_at
               FROM board_tasks WHERE task_id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.task_id, r))
            .collect()
        };
        let mut comments: HashMap<Uuid, CommentRow> = if ids.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, CommentRow>(
            "SELECT comment_id, task_id, org_id, author, body, created_at, edited_at, deleted_at
               FROM task_comments WHERE task_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|c| (c.comment_id, c))
        .collect()
        };
        let mut touched_tasks = HashSet::new();
        let mut touched_comments = HashSet::new();
        let mut recount = HashSet::new();

        for (event, task, change) in events {
            let at = event.recorded_at;
            let task = *task;
            if let V::Created {
                org_id,
                title,
                description,
                status,
                priority,
                category_id,
                labels,
                assignees,
            } = change
            {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(task) {
                    slot.insert(TaskRow {
                        task_id: task,
                        org_id: org_id.as_uuid(),
                        title: title.as_str().to_owned(),
                        description: description.as_str().to_owned(),
                        status: status.as_str().to_owned(),
                        priority: priority.as_str().to_owned(),
                        category_id: category_id.map(|c| c.as_uuid()),
                        labels: labels.iter().map(|l| l.as_uuid()).collect(),
                        assignees: assignees.iter().map(|u| u.as_uuid()).collect(),
                        comment_count: 0,
                        created_position: event.global_position,
                        created_at: at,
                        updated_at: at,
                        deleted_at: None,
                    });
                    touched_tasks.insert(task);
                }
                continue;
            }
            // Every other change applies only to a task that exists, as an UPDATE would.
            let Some(row) = tasks.get_mut(&task) else {
                continue;
            };
            let mut updated = true;
            match change {
                V::Created { .. } => {}
                V::TitleChanged { title } => row.title = title.as_str().to_owned(),
                V::DescriptionChanged { description } => {
                    row.description = description.as_str().to_owned()
                }
                V::StatusChanged { status } => row.status = status.as_str().to_owned(),
                V::PriorityChanged { priority } => row.priority = priority.as_str().to_owned(),
                V::CategoryChanged { category_id } => {
                    row.category_id = category_id.map(|c| c.as_uuid())
                }
                V::Assigned { user_id } => add_last(&mut row.assignees, user_id.as_uuid()),
                V::Unassigned { user_id } => row.assignees.retain(|u| *u != user_id.as_uuid()),
                V::Labeled { label_id } => add_last(&mut row.labels, label_id.as_uuid()),
                V::Unlabeled { label_id } => row.labels.retain(|l| *l != label_id.as_uuid()),
                V::CommentAdded {
                    comment_id,
                    author,
                    body,
                } => {
                    updated = false;
                    comments.entry(comment_id.as_uuid()).or_insert_with(|| {
                        touched_comments.insert(comment_id.as_uuid());
                        CommentRow {
                            comment_id: comment_id.as_uuid(),
                            task_id: task,
                            org_id: row.org_id,
                            author: author.map(|a| a.as_uuid()),
                            body: body.as_str().to_owned(),
                            created_at: at,
                            edited_at: None,
                            deleted_at: None,
                        }
                    });
                    recount.insert(task);
                }
                V::CommentEdited { comment_id, body } => {
                    updated = false;
                    if let Some(c) = comments.get_mut(&comment_id.as_uuid()) {
                        c.body = body.as_str().to_owned();
                        c.edited_at = Some(at);
                        touched_comments.insert(c.comment_id);
                    }
                }
                V::CommentDeleted { comment_id } => {
                    updated = false;
                    if let Some(c) = comments.get_mut(&comment_id.as_uuid()) {
                        c.deleted_at = c.deleted_at.or(Some(at));
                        touched_comments.insert(c.comment_id);
                    }
                    recount.insert(task);
                }
                V::Deleted {} => {
                    updated = false;
                    row.deleted_at = row.deleted_at.or(Some(at));
                }
            }
            if updated {
                row.updated_at = at;
            }
            touched_tasks.insert(task);
        }
        if !recount.is_empty() {
            let mut live: HashMap<Uuid, i32> = recount.iter().map(|t| (*t, 0)).collect();
            for c in comments.values().filter(|c| c.deleted_at.is_none()) {
                if let Some(n) = live.get_mut(&c.task_id) {
                    *n += 1;
                }
            }
            for (task, n) in live {
                if let Some(row) = tasks.get_mut(&task) {
                    row.comment_count = n;
                    touched_tasks.insert(task);
                }
            }
        }

        let rows: Vec<&TaskRow> = touched_tasks.iter().filter_map(|t| tasks.get(t)).collect();
        if !rows.is_empty() {
            let json_list = |ids: &[Uuid]| {
                serde_json::Value::from(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>())
            };
            sqlx::query(
                "INSERT INTO board_tasks (task_id, org_id, title, description, status, priority,
                     category_id, labels, assignees, comment_count, created_position, created_at,
                     updated_at, deleted_at)
                 SELECT u.id, u.org, u.title, u.descr, u.status, u.prio, u.cat,
                        ARRAY(SELECT jsonb_array_elements_text(u.labels)::uuid),
                        ARRAY(SELECT jsonb_array_elements_text(u.assignees)::uuid),
                        u.cc, u.pos, u.created, u.updated, u.deleted
                   FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                               $7::uuid[], $8::jsonb[], $9::jsonb[], $10::int4[], $11::int8[],
                               $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])
                        AS u(id, org, title, descr, status, prio, cat, labels, assignees, cc, pos,
                             created, updated, deleted)
                 ON CONFLICT (task_id) DO UPDATE SET
                     title = EXCLUDED.title, description = EXCLUDED.description,
                     status = EXCLUDED.status, priority = EXCLUDED.priority,
                     category_id = EXCLUDED.category_id, labels = EXCLUDED.labels,
                     assignees = EXCLUDED.assignees, comment_count = EXCLUDED.comment_count,
                     updated_at = EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at",
            )
            .bind(rows.iter().map(|r| r.task_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.org_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.description.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.priority.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.category_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| json_list(&r.labels)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| json_list(&r.assignees)).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.comment_count).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_position).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deleted_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let rows: Vec<&CommentRow> = touched_comments
            .iter()
            .filter_map(|c| comments.get(c))
            .collect();
        if !rows.is_empty() {
            sqlx::query(
                "INSERT INTO task_comments (comment_id, task_id, org_id, author, body, created_at,
                     edited_at, deleted_at)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
                                      $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
                 ON CONFLICT (comment_id) DO UPDATE SET
                     body = EXCLUDED.body, edited_at = EXCLUDED.edited_at,
                     deleted_at = EXCLUDED.deleted_at",
            )
            .bind(rows.iter().map(|r| r.comment_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.task_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.org_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.author).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.edited_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deleted_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

// ---- Queries: the only SQL that reads the board's tables. ----

use std::collections::BTreeSet;

use domain::task::Status;
use domain::{CategoryId, LabelId, OrgId, TaskId, UserId};
use sqlx::PgPool;

/// A task as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BoardTask {
    /// Its id.
    pub task_id: Uuid,
    /// Its organization.
    pub org_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Its status, as the events spell it (`in_progress`).
    pub status: String,
    /// Its priority, as the events spell it.
    pub priority: String,
    /// Its category.
    pub category_id: Option<Uuid>,
    /// Its labels, in the order they were added.
    pub labels: Vec<Uuid>,
    /// Its assignees, in the order they were assigned.
    pub assignees: Vec<Uuid>,
    /// How many live comments it has.
    pub comment_count: i32,
    /// The global position of its creation: the board's order, and its page cursor.
    pub created_position: i64,
    /// When it was created.
    pub created_at: time::OffsetDateTime,
    /// When a field last changed.
    pub updated_at: time::OffsetDateTime,
}

const BOARD_TASK_COLUMNS: &str = "task_id, org_id, title, description, status, priority, category_id, labels, assignees, comment_count, created_position, created_at, updated_at";

/// Which of an organization's tasks a board list shows (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks with this status.
    pub status: Option<Status>,
    /// Only tasks with this label.
    pub label: Option<LabelId>,
    /// Only tasks assigned to this user.
    pub assignee: Option<UserId>,
    /// Only tasks in this category.
    pub category: Option<CategoryId>,
}

/// The live tasks of `org` that pass `filter`, in board order, from the first created after
/// `after_position` (0 for the first page), at most `limit`.
pub async fn tasks(
    pool: &PgPool,
    org: OrgId,
    filter: &TaskFilter,
    after_position: i64,
    limit: i64,
) -> Result<Vec<BoardTask>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {BOARD_TASK_COLUMNS} FROM board_tasks
          WHERE org_id = $1 AND deleted_at IS NULL AND created_position > $2
            AND ($3::text IS NULL OR status = $3)
            AND ($4::uuid IS NULL OR $4 = ANY(labels))
            AND ($5::uuid IS NULL OR $5 = ANY(assignees))
            AND ($6::uuid IS NULL OR category_id = $6)
          ORDER BY created_position LIMIT $7"
    ))
    .bind(org.as_uuid())
    .bind(after_position)
    .bind(filter.status.map(Status::as_str))
    .bind(filter.label.map(|l| l.as_uuid()))
    .bind(filter.assignee.map(|u| u.as_uuid()))
    .bind(filter.category.map(|c| c.as_uuid()))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Live task `task` of `org`, if there is one.
pub async fn task(
    pool: &PgPool,
    org: OrgId,
    task: TaskId,
) -> Result<Option<BoardTask>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {BOARD_TASK_COLUMNS} FROM board_tasks
          WHERE org_id = $1 AND task_id = $2 AND deleted_at IS NULL"
    ))
    .bind(org.as_uuid())
    .bind(task.as_uuid())
    .fetch_optional(pool)
    .await
}

/// A label or a category.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tag {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its color, `#rrggbb`.
    pub color: String,
}

/// The live labels of `org` by name (then id), after `after` (a name and an id), at most
/// `limit`.
pub async fn labels(
    pool: &PgPool,
    org: OrgId,
    after: Option<(&str, Uuid)>,
    limit: i64,
) -> Result<Vec<Tag>, sqlx::Error> {
    tags(pool, "labels", "label_id", org, after, limit).await
}

/// The live categories of `org` by name (then id), after `after` (a name and an id), at most
/// `limit`.
pub async fn categories(
    pool: &PgPool,
    org: OrgId,
    after: Option<(&str, Uuid)>,
    limit: i64,
) -> Result<Vec<Tag>, sqlx::Error> {
    tags(pool, "categories", "category_id", org, after, limit).await
}

async fn tags(
    pool: &PgPool,
    table: &str,
    key: &str,
    org: OrgId,
    after: Option<(&str, Uuid)>,
    limit: i64,
) -> Result<Vec<Tag>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {key} AS id, name, color FROM {table}
          WHERE org_id = $1 AND deleted_at IS NULL
            AND ($2::text IS NULL OR (name, {key}) > ($2, $3::uuid))
          ORDER BY name, {key} LIMIT $4"
    ))
    .bind(org.as_uuid())
    .bind(after.map(|(name, _)| name))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Which of `labels` are live labels of `org` (one query, however many are asked about).
pub async fn live_labels(
    pool: &PgPool,
    org: OrgId,
    labels: &BTreeSet<LabelId>,
) -> Result<BTreeSet<LabelId>, sqlx::Error> {
    let ids: Vec<Uuid> = labels.iter().map(|l| l.as_uuid()).collect();
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT label_id FROM labels
          WHERE org_id = $1 AND label_id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(org.as_uuid())
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(live.into_iter().map(LabelId::from_uuid).collect())
}

/// Which of `categories` are live categories of `org` (one query).
pub async fn live_categories(
    pool: &PgPool,
    org: OrgId,
    categories: &BTreeSet<CategoryId>,
) -> Result<BTreeSet<CategoryId>, sqlx::Error> {
    let ids: Vec<Uuid> = categories.iter().map(|c| c.as_uuid()).collect();
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT category_id FROM categories
          WHERE org_id = $1 AND category_id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(org.as_uuid())
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(live.into_iter().map(CategoryId::from_uuid).collect())
}

/// A comment on a task.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Comment {
    /// Its id.
    pub comment_id: Uuid,
    /// Who wrote it (`None`: the system).
    pub author: Option<Uuid>,
    /// Its text.
    pub body: String,
    /// When it was written.
    pub created_at: time::OffsetDateTime,
    /// When it was last edited.
    pub edited_at: Option<time::OffsetDateTime>,
}

/// The live comments on task `task` of `org`, oldest first, after `after` (a creation time and
/// an id), at most `limit`.
pub async fn comments(
    pool: &PgPool,
    org: OrgId,
    task: TaskId,
    after: Option<(time::OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<Comment>, sqlx::Error> {
    sqlx::query_as(
        "SELECT comment_id, author, body, created_at, edited_at FROM task_comments
          WHERE org_id = $1 AND task_id = $2 AND deleted_at IS NULL
            AND ($3::timestamptz IS NULL OR (created_at, comment_id) > ($3, $4::uuid))
          ORDER BY created_at, comment_id LIMIT $5",
    )
    .bind(org.as_uuid())
    .bind(task.as_uuid())
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}
