//! The `documents` projection: each organization's tree of documents (title, parent, slug,
//! deleted), from `document.*` events; and the lookups the command side makes in it before a
//! document moves or is published ([`placement`]).
//!
//! Edits (`document.edited`, `document.compacted`) change nothing here: the content is the Yjs
//! updates in the events, and the text and backlinks are other read models' work.

use domain::document::{DocumentEvent, Placement};
use domain::{DocId, OrgId};
use eventstore::RecordedEvent;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "documents";

/// How far up the tree [`placement`] follows parents. Deeper trees are refused a move under
/// their deepest documents (the aggregate then sees an ancestor chain that may be cut short,
/// which is why it is also bounded here, never looped on).
pub const MAX_DEPTH: i32 = 1_000;

/// Builds `documents`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DocumentsProjection;

impl Projection for DocumentsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["documents"]
    }

    fn relevant(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == "document"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != "document" {
            return Ok(());
        }
        let Ok(doc) = Uuid::parse_str(&event.aggregate_id) else {
            return Ok(());
        };
        let at = event.recorded_at;
        let update = |sql: &'static str| sqlx::query(sql).bind(doc).bind(at);
        match crate::decode::<DocumentEvent>(event)? {
            DocumentEvent::Created {
                org_id,
                title,
                parent,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO documents (doc_id, org_id, title, parent_id, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (doc_id) DO NOTHING",
                )
                .bind(doc)
                .bind(org_id.as_uuid())
                .bind(title.as_str())
                .bind(parent.map(|p| p.as_uuid()))
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            DocumentEvent::Renamed { title } => {
                update("UPDATE documents SET title = $3, updated_at = $2 WHERE doc_id = $1")
                    .bind(title.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Moved { parent } => {
                update("UPDATE documents SET parent_id = $3, updated_at = $2 WHERE doc_id = $1")
                    .bind(parent.map(|p| p.as_uuid()))
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Published { slug } => {
                update("UPDATE documents SET slug = $3, updated_at = $2 WHERE doc_id = $1")
                    .bind(slug.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Unpublished => {
                update("UPDATE documents SET slug = NULL, updated_at = $2 WHERE doc_id = $1")
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Deleted => {
                update("UPDATE documents SET deleted_at = $2, updated_at = $2 WHERE doc_id = $1")
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Restored => {
                update("UPDATE documents SET deleted_at = NULL, updated_at = $2 WHERE doc_id = $1")
                    .execute(&mut *conn)
                    .await?;
            }
            DocumentEvent::Edited { .. } | DocumentEvent::Compacted { .. } => {}
        }
        Ok(())
    }
}

/// A document in its organization's tree.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DocumentNode {
    /// The document.
    pub doc_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its parent, `None` at the root.
    pub parent_id: Option<Uuid>,
    /// Its public name, if published.
    pub slug: Option<String>,
    /// When it was created.
    pub created_at: time::OffsetDateTime,
    /// When its title, place or publication last changed.
    pub updated_at: time::OffsetDateTime,
}

/// The most documents [`tree`] returns.
pub const MAX_TREE: i64 = 10_000;

/// `org`'s live documents (not deleted), by title, at most [`MAX_TREE`]. A document whose
/// parent is deleted keeps its `parent_id`: clients show it under the deleted parent's place.
pub async fn tree(pool: &PgPool, org: OrgId) -> Result<Vec<DocumentNode>, sqlx::Error> {
    sqlx::query_as(
        "SELECT doc_id, title, parent_id, slug, created_at, updated_at FROM documents
          WHERE org_id = $1 AND deleted_at IS NULL
          ORDER BY title, doc_id LIMIT $2",
    )
    .bind(org.as_uuid())
    .bind(MAX_TREE)
    .fetch_all(pool)
    .await
}

/// What a command on document `doc` of `org` needs to know of the others: whether `parent` is
/// a live document of `org`, its ancestors (nearest first, at most [`MAX_DEPTH`]), and
/// whether another live document of `org` is published as `slug`. One query.
pub async fn placement(
    pool: &PgPool,
    org: OrgId,
    doc: DocId,
    parent: Option<DocId>,
    slug: Option<&str>,
) -> Result<Placement, sqlx::Error> {
    let (parent_live, ancestors, slug_taken): (bool, Vec<Uuid>, bool) = sqlx::query_as(
        "WITH RECURSIVE up (doc_id, parent_id, depth) AS (
             SELECT doc_id, parent_id, 0 FROM documents WHERE doc_id = $2 AND org_id = $1
             UNION
             SELECT d.doc_id, d.parent_id, up.depth + 1
               FROM documents d JOIN up ON d.doc_id = up.parent_id
              WHERE d.org_id = $1 AND up.depth < $5
         )
         SELECT EXISTS (SELECT 1 FROM documents
                         WHERE doc_id = $2 AND org_id = $1 AND deleted_at IS NULL),
                ARRAY(SELECT doc_id FROM up WHERE depth > 0 ORDER BY depth),
                EXISTS (SELECT 1 FROM documents
                         WHERE org_id = $1 AND slug = $3 AND deleted_at IS NULL AND doc_id <> $4)",
    )
    .bind(org.as_uuid())
    .bind(parent.map(|p| p.as_uuid()))
    .bind(slug)
    .bind(doc.as_uuid())
    .bind(MAX_DEPTH)
    .fetch_one(pool)
    .await?;
    Ok(Placement {
        parent_live: parent.is_some() && parent_live,
        parent_ancestors: ancestors.into_iter().map(DocId::from_uuid).collect(),
        slug_taken,
    })
}
