//! The `document_text` projection: each document's plain text (for search next) and the links
//! between documents (backlinks), from `document.*` events.
//!
//! The text is the document's Yjs state read as [`documents::text_of`] reads it. Rebuilding it
//! for every batch from the stream would cost a load per edited document per batch, so the
//! projection keeps the documents it last applied in memory (an LRU of [`KEPT`]), each with
//! the sequence it holds: a batch that continues it applies only its own updates, anything
//! else (a rebuild, another node's runner before this one, an evicted document) is loaded from
//! the stream as of the batch's last event. The memory is a cache; the stream is the truth.
//!
//! Links are `[[Title]]` (to the organization's live documents of that title, as the tree read
//! model has them when the text changes) and `/docs/<id>` (to that document, if it is one of
//! the organization's).

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use domain::document::DocumentEvent;
use domain::{DocId, OrgId};
use eventstore::{RecordedEvent, Store};
use lru::LruCache;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::read_models::documents::{self, At};
use crate::{Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "document_text";

/// How many documents the projection keeps in memory.
pub const KEPT: usize = 256;

/// Builds `document_text` and `document_links`.
#[derive(Clone)]
pub struct DocumentTextProjection {
    store: Store,
    kept: Arc<Mutex<LruCache<DocId, (yrs::Doc, u64)>>>,
}

impl std::fmt::Debug for DocumentTextProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentTextProjection")
            .finish_non_exhaustive()
    }
}

impl DocumentTextProjection {
    /// The projection over `store`'s document streams.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            kept: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(KEPT).unwrap_or(NonZeroUsize::MIN),
            ))),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, LruCache<DocId, (yrs::Doc, u64)>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Document `doc` after `events` (its events of this batch, in order): continued from
    /// memory when it holds the sequence just before them, else loaded from the stream.
    async fn advance(
        &self,
        doc: DocId,
        events: &[&RecordedEvent],
    ) -> Result<Option<yrs::Doc>, ProjectionError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(None);
        };
        let kept = self.kept().pop(&doc);
        let ydoc = match kept {
            Some((ydoc, sequence)) if sequence + 1 == first.sequence as u64 => {
                use yrs::updates::decoder::Decode;
                use yrs::Transact;
                for event in events {
                    // A compaction is the state as of an event before it, all of which this
                    // document holds already: applying it (decoding the whole state, every
                    // block found present) would change nothing, at the price of the whole
                    // document's size, for every open document at once when they compact
                    // together.
                    if event.event_type == "document.compacted" {
                        continue;
                    }
                    let update = match crate::decode::<DocumentEvent>(event)? {
                        DocumentEvent::Edited { update, .. } => update,
                        _ => continue,
                    };
                    // A stored update always decodes (the room checked it); one that does not
                    // is left out of the text rather than stopping the read model.
                    if let Ok(update) = yrs::Update::decode_v1(update.as_slice()) {
                        let _ = ydoc.transact_mut().apply_update(update);
                    }
                }
                ydoc
            }
            _ => {
                match documents::load(&self.store, doc, Some(At::Sequence(last.sequence as u64)))
                    .await
                {
                    Ok(loaded) => loaded.doc,
                    Err(documents::ContentError::Store(e)) => return Err(e.into()),
                    Err(corrupt) => {
                        tracing::warn!(%doc, error = %corrupt, "document unreadable; its text is left as it was");
                        return Ok(None);
                    }
                }
            }
        };
        self.kept().put(doc, (ydoc.clone(), last.sequence as u64));
        Ok(Some(ydoc))
    }
}

impl Projection for DocumentTextProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["document_text", "document_links"]
    }

    fn relevant(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == "document"
            && matches!(
                event.event_type.as_str(),
                "document.created" | "document.edited" | "document.compacted"
            )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Each document once per batch, with its events in order.
        let mut docs: Vec<(DocId, Vec<&RecordedEvent>)> = Vec::new();
        for event in events.iter().filter(|e| self.relevant(e)) {
            let Ok(id) = Uuid::parse_str(&event.aggregate_id) else {
                continue;
            };
            let doc = DocId::from_uuid(id);
            match docs.iter_mut().find(|(d, _)| *d == doc) {
                Some((_, list)) => list.push(event),
                None => docs.push((doc, vec![event])),
            }
        }
        // Every document of the batch in three statements (not three per document: a
        // batch of live typing touches every open document).
        let mut texts = Texts::default();
        let mut titles = Links::<String>::default();
        let mut ids = Links::<Uuid>::default();
        for (doc, list) in docs {
            let Some(org) = list
                .iter()
                .find_map(|e| e.org_id.as_deref())
                .and_then(|o| o.parse::<OrgId>().ok())
            else {
                continue;
            };
            let Some(ydoc) = self.advance(doc, &list).await? else {
                continue;
            };
            let Some(last) = list.last() else {
                continue;
            };
            let text = documents::text_of(&ydoc);
            let (named, linked) = links_in(&text);
            for title in named {
                titles.push(org, doc, title);
            }
            for id in linked {
                ids.push(org, doc, id);
            }
            texts.doc.push(doc.as_uuid());
            texts.org.push(org.as_uuid());
            texts.text.push(text);
            texts.at.push(last.recorded_at);
        }
        if texts.doc.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO document_text (doc_id, org_id, text, updated_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])
             ON CONFLICT (doc_id) DO UPDATE SET text = EXCLUDED.text,
                                                updated_at = EXCLUDED.updated_at",
        )
        .bind(&texts.doc)
        .bind(&texts.org)
        .bind(&texts.text)
        .bind(&texts.at)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM document_links WHERE from_doc = ANY($1)")
            .bind(&texts.doc)
            .execute(&mut *conn)
            .await?;
        if titles.from.is_empty() && ids.from.is_empty() {
            return Ok(());
        }
        // A `[[Title]]` names the organization's live documents of that title, a `/docs/<id>`
        // that document if it is the organization's; never the document itself.
        sqlx::query(
            "INSERT INTO document_links (org_id, from_doc, to_doc)
             SELECT l.org_id, l.from_doc, d.doc_id
               FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS l(org_id, from_doc, title)
               JOIN documents d ON d.org_id = l.org_id AND d.title = l.title
              WHERE d.deleted_at IS NULL AND d.doc_id <> l.from_doc
             UNION
             SELECT l.org_id, l.from_doc, d.doc_id
               FROM UNNEST($4::uuid[], $5::uuid[], $6::uuid[]) AS l(org_id, from_doc, to_doc)
               JOIN documents d ON d.doc_id = l.to_doc AND d.org_id = l.org_id
              WHERE d.deleted_at IS NULL AND d.doc_id <> l.from_doc
             ON CONFLICT DO NOTHING",
        )
        .bind(&titles.org)
        .bind(&titles.from)
        .bind(&titles.to)
        .bind(&ids.org)
        .bind(&ids.from)
        .bind(&ids.to)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// A batch's texts, as columns.
#[derive(Default)]
struct Texts {
    doc: Vec<Uuid>,
    org: Vec<Uuid>,
    text: Vec<String>,
    at: Vec<time::OffsetDateTime>,
}

/// A batch's links of one kind (to a title, or to an id), as columns.
struct Links<T> {
    org: Vec<Uuid>,
    from: Vec<Uuid>,
    to: Vec<T>,
}

impl<T> Default for Links<T> {
    fn default() -> Self {
        Self {
            org: Vec::new(),
            from: Vec::new(),
            to: Vec::new(),
        }
    }
}

impl<T> Links<T> {
    fn push(&mut self, org: OrgId, from: DocId, to: T) {
        self.org.push(org.as_uuid());
        self.from.push(from.as_uuid());
        self.to.push(to);
    }
}

/// The most links one document's text names (more are left out).
pub const MAX_LINKS: usize = 1_000;

/// The `[[Title]]` titles and `/docs/<id>` ids in `text`, at most [`MAX_LINKS`] of each.
pub fn links_in(text: &str) -> (BTreeSet<String>, BTreeSet<Uuid>) {
    let mut titles = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("]]") else { break };
        let title = rest[..end].trim();
        if !title.is_empty() && title.len() <= 200 && !title.contains('\n') {
            titles.insert(title.to_owned());
        }
        rest = &rest[end + 2..];
        if titles.len() >= MAX_LINKS {
            break;
        }
    }
    let mut ids = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("/docs/") {
        rest = &rest[start + 6..];
        if let Some(id) = rest.get(..36).and_then(|s| Uuid::parse_str(s).ok()) {
            ids.insert(id);
        }
        if ids.len() >= MAX_LINKS {
            break;
        }
    }
    (titles, ids)
}

/// A document that links to another.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Backlink {
    /// The linking document.
    pub doc_id: Uuid,
    /// Its title.
    pub title: String,
}

/// The most backlinks [`backlinks`] returns.
pub const MAX_BACKLINKS: i64 = 1_000;

/// The live documents of `org` that link to `doc`, by title.
pub async fn backlinks(
    pool: &PgPool,
    org: OrgId,
    doc: DocId,
) -> Result<Vec<Backlink>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.doc_id, d.title FROM document_links l
           JOIN documents d ON d.doc_id = l.from_doc
          WHERE l.to_doc = $1 AND l.org_id = $2 AND d.deleted_at IS NULL
          ORDER BY d.title, d.doc_id LIMIT $3",
    )
    .bind(doc.as_uuid())
    .bind(org.as_uuid())
    .bind(MAX_BACKLINKS)
    .fetch_all(pool)
    .await
}

/// Document `doc`'s text as the read model has it (`None` before its first event is applied).
pub async fn text(pool: &PgPool, doc: DocId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT text FROM document_text WHERE doc_id = $1")
        .bind(doc.as_uuid())
        .fetch_optional(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_titles_in_double_brackets_and_document_paths() {
        let id = Uuid::now_v7();
        let (titles, ids) = links_in(&format!(
            "See [[Handbook]] and [[ Onboarding ]], [[]] not, [[unclosed and /docs/{id}."
        ));
        assert_eq!(
            titles.into_iter().collect::<Vec<_>>(),
            ["Handbook", "Onboarding"]
        );
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), [id]);
    }
}
