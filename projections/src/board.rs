//! The `board` projection: labels, categories, tasks (with labels, assignees and comment
//! counts) and comments, from `label.*`, `category.*` and `task.*` events.

use domain::label::{CategoryEvent, LabelEvent};
use domain::task::TaskEvent;
use eventstore::RecordedEvent;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "board";

/// Builds `labels`, `categories`, `board_tasks` and `task_comments`.
#[derive(Debug, Default, Clone, Copy)]
pub struct BoardProjection;

fn decode<T: DeserializeOwned>(event: &RecordedEvent) -> Result<T, ProjectionError> {
    serde_json::from_value(event.payload.clone()).map_err(|source| ProjectionError::Decode {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        source,
    })
}

fn wire<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

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
            "task" => apply_task(conn, id, event, decode(event)?).await,
            _ => Ok(()),
        }
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

async fn apply_task(
    conn: &mut PgConnection,
    task: Uuid,
    event: &RecordedEvent,
    change: TaskEvent,
) -> Result<(), ProjectionError> {
    use TaskEvent as V;
    let at = event.recorded_at;
    // Most changes are one column on the task row; the rest are listed below.
    let set = |column: &'static str| {
        format!("UPDATE board_tasks SET {column} = $2, updated_at = $3 WHERE task_id = $1")
    };
    match change {
        V::Created {
            org_id,
            title,
            description,
            status,
            priority,
            category_id,
            labels,
            assignees,
        } => {
            let labels: Vec<Uuid> = labels.iter().map(|l| l.as_uuid()).collect();
            let assignees: Vec<Uuid> = assignees.iter().map(|u| u.as_uuid()).collect();
            sqlx::query(
                "INSERT INTO board_tasks (task_id, org_id, title, description, status, priority,
                     category_id, labels, assignees, created_position, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING",
            )
            .bind(task)
            .bind(org_id.as_uuid())
            .bind(title.as_str())
            .bind(description.as_str())
            .bind(wire(&status))
            .bind(wire(&priority))
            .bind(category_id.map(|c| c.as_uuid()))
            .bind(labels)
            .bind(assignees)
            .bind(event.global_position)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        V::TitleChanged { title } => {
            sqlx::query(&set("title"))
                .bind(task)
                .bind(title.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::DescriptionChanged { description } => {
            sqlx::query(&set("description"))
                .bind(task)
                .bind(description.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::StatusChanged { status } => {
            sqlx::query(&set("status"))
                .bind(task)
                .bind(wire(&status))
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::PriorityChanged { priority } => {
            sqlx::query(&set("priority"))
                .bind(task)
                .bind(wire(&priority))
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::CategoryChanged { category_id } => {
            sqlx::query(&set("category_id"))
                .bind(task)
                .bind(category_id.map(|c| c.as_uuid()))
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::Assigned { user_id } => {
            sqlx::query(
                "UPDATE board_tasks SET assignees = array_append(array_remove(assignees, $2), $2),
                        updated_at = $3 WHERE task_id = $1",
            )
            .bind(task)
            .bind(user_id.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        V::Unassigned { user_id } => {
            sqlx::query(&set("assignees").replace("= $2", "= array_remove(assignees, $2)"))
                .bind(task)
                .bind(user_id.as_uuid())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::Labeled { label_id } => {
            sqlx::query(
                "UPDATE board_tasks SET labels = array_append(array_remove(labels, $2), $2),
                        updated_at = $3 WHERE task_id = $1",
            )
            .bind(task)
            .bind(label_id.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        V::Unlabeled { label_id } => {
            sqlx::query(&set("labels").replace("= $2", "= array_remove(labels, $2)"))
                .bind(task)
                .bind(label_id.as_uuid())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::CommentAdded {
            comment_id,
            author,
            body,
        } => {
            sqlx::query(
                "INSERT INTO task_comments (comment_id, task_id, org_id, author, body, created_at)
                 SELECT $1, $2, t.org_id, $3, $4, $5 FROM board_tasks t WHERE t.task_id = $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(comment_id.as_uuid())
            .bind(task)
            .bind(author.map(|a| a.as_uuid()))
            .bind(body.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            recount(conn, task).await?;
        }
        V::CommentEdited { comment_id, body } => {
            sqlx::query("UPDATE task_comments SET body = $2, edited_at = $3 WHERE comment_id = $1")
                .bind(comment_id.as_uuid())
                .bind(body.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        V::CommentDeleted { comment_id } => {
            sqlx::query(
                "UPDATE task_comments SET deleted_at = coalesce(deleted_at, $2) WHERE comment_id = $1",
            )
            .bind(comment_id.as_uuid())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            recount(conn, task).await?;
        }
        V::Deleted {} => {
            sqlx::query(
                "UPDATE board_tasks SET deleted_at = coalesce(deleted_at, $2) WHERE task_id = $1",
            )
            .bind(task)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Sets a task's comment count from its live comments (idempotent, unlike `+ 1`).
async fn recount(conn: &mut PgConnection, task: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE board_tasks SET comment_count =
            (SELECT count(*) FROM task_comments WHERE task_id = $1 AND deleted_at IS NULL)
          WHERE task_id = $1",
    )
    .bind(task)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
