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
        // Not the edits and compactions: the tree holds none of a document's content, and a
        // live document appends hundreds of them a second.
        event.aggregate_type == "document"
            && !matches!(
                event.event_type.as_str(),
                "document.edited" | "document.compacted"
            )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !self.relevant(event) {
            // Not decoded at all (an edit's payload is its update).
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

/// One document of `org` as the tree read model has it, deleted or not (`None` if `org` has
/// no such document).
pub async fn document(
    pool: &PgPool,
    org: OrgId,
    doc: DocId,
) -> Result<Option<DocumentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT doc_id, title, parent_id, slug, deleted_at IS NOT NULL AS deleted, created_at,
                updated_at
           FROM documents WHERE doc_id = $1 AND org_id = $2",
    )
    .bind(doc.as_uuid())
    .bind(org.as_uuid())
    .fetch_optional(pool)
    .await
}

/// A document with whether it is deleted ([`document`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DocumentRow {
    /// The document.
    pub doc_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its parent, `None` at the root.
    pub parent_id: Option<Uuid>,
    /// Its public name, if published.
    pub slug: Option<String>,
    /// Whether it is deleted.
    pub deleted: bool,
    /// When it was created.
    pub created_at: time::OffsetDateTime,
    /// When its title, place or publication last changed.
    pub updated_at: time::OffsetDateTime,
}

/// The live document `org` publishes as `slug` (the one published first, should two be), with
/// its title.
pub async fn published(
    pool: &PgPool,
    org: OrgId,
    slug: &str,
) -> Result<Option<(DocId, String)>, sqlx::Error> {
    let found: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT doc_id, title FROM documents
          WHERE org_id = $1 AND slug = $2 AND deleted_at IS NULL
          ORDER BY updated_at, doc_id LIMIT 1",
    )
    .bind(org.as_uuid())
    .bind(slug)
    .fetch_optional(pool)
    .await?;
    Ok(found.map(|(doc, title)| (DocId::from_uuid(doc), title)))
}

/// Which version of a document to read ([`content`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// After its event with this sequence (0: before any).
    Sequence(u64),
    /// As it was at this time: after its last event recorded at or before it.
    Time(time::OffsetDateTime),
}

/// A document's content at some point of its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The whole Yjs state as one update (v1 encoding).
    pub state: Vec<u8>,
    /// Its text ([`text_of`]).
    pub text: String,
    /// The sequence of the last event it includes (0 if none).
    pub sequence: u64,
}

/// Why [`content`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The event store could not be read.
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    /// A stored event is not a document event, or its update is not a Yjs update.
    #[error("document {doc} sequence {sequence}: {why}")]
    Corrupt {
        /// The document.
        doc: Uuid,
        /// The event.
        sequence: i64,
        /// What is wrong.
        why: String,
    },
}

/// Events read per query by [`content`].
const CONTENT_PAGE: i64 = 1_000;

/// Document `doc`'s content now, or [`At`] an earlier point, rebuilt from its stream: from
/// its last compaction at or before that point (each `document.compacted` holds the whole
/// state), then every update after it.
pub async fn content(
    store: &eventstore::Store,
    doc: DocId,
    at: Option<At>,
) -> Result<Content, ContentError> {
    let loaded = load(store, doc, at).await?;
    Ok(Content {
        state: state_of(&loaded.doc),
        text: text_of(&loaded.doc),
        sequence: loaded.sequence,
    })
}

/// Document `doc` as [`load`] found it.
#[derive(Debug)]
pub struct Loaded {
    /// The document.
    pub doc: yrs::Doc,
    /// The sequence of the last event it includes (0 if none).
    pub sequence: u64,
    /// Updates stored after the compaction it started from (all of them if none).
    pub updates_since: u64,
    /// Their bytes.
    pub bytes_since: u64,
}

/// Document `doc` as a `yrs::Doc`, now or [`At`] an earlier point: from its last
/// `document.compacted` at or before that point (which holds the whole state), then every
/// update after it. Opening a compacted document reads one snapshot and a short tail.
pub async fn load(
    store: &eventstore::Store,
    doc: DocId,
    at: Option<At>,
) -> Result<Loaded, ContentError> {
    let id = doc.to_string();
    let (at_most, recorded_by) = match at {
        Some(At::Sequence(n)) => (Some(i64::try_from(n).unwrap_or(i64::MAX)), None),
        Some(At::Time(t)) => (None, Some(t)),
        None => (None, None),
    };
    let mut from = store
        .last_of_type("document", &id, "document.compacted", at_most, recorded_by)
        .await?
        .unwrap_or(1);
    let mut updates: Vec<Vec<u8>> = Vec::new();
    let (mut sequence, mut updates_since, mut bytes_since) = (0, 0, 0);
    'pages: loop {
        let page = store
            .read_stream("document", &id, from, CONTENT_PAGE)
            .await?;
        for event in &page {
            let after = match at {
                Some(At::Sequence(n)) => event.sequence as u64 > n,
                Some(At::Time(t)) => event.recorded_at > t,
                None => false,
            };
            if after {
                break 'pages;
            }
            let corrupt = |why: String| ContentError::Corrupt {
                doc: doc.as_uuid(),
                sequence: event.sequence,
                why,
            };
            match crate::decode::<DocumentEvent>(event).map_err(|e| corrupt(e.to_string()))? {
                DocumentEvent::Edited { update, .. } => {
                    updates_since += 1;
                    bytes_since += update.len() as u64;
                    updates.push(update.as_slice().to_vec());
                }
                DocumentEvent::Compacted { state, .. } => {
                    (updates_since, bytes_since) = (0, 0);
                    updates.clear();
                    updates.push(state.as_slice().to_vec());
                }
                _ => {}
            }
            sequence = event.sequence as u64;
        }
        match page.last() {
            Some(last) if page.len() as i64 == CONTENT_PAGE => from = last.sequence + 1,
            _ => break,
        }
    }
    let ydoc = yrs::Doc::new();
    {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let corrupt = |why: String| ContentError::Corrupt {
            doc: doc.as_uuid(),
            sequence: sequence as i64,
            why,
        };
        let mut txn = ydoc.transact_mut();
        for update in &updates {
            let update = yrs::Update::decode_v1(update).map_err(|e| corrupt(e.to_string()))?;
            txn.apply_update(update)
                .map_err(|e| corrupt(e.to_string()))?;
        }
    }
    Ok(Loaded {
        doc: ydoc,
        sequence,
        updates_since,
        bytes_since,
    })
}

/// The organization of document `doc` and whether it is deleted (`None`: no such document).
pub async fn org_of(pool: &PgPool, doc: DocId) -> Result<Option<(OrgId, bool)>, sqlx::Error> {
    let found: Option<(Uuid, bool)> =
        sqlx::query_as("SELECT org_id, deleted_at IS NOT NULL FROM documents WHERE doc_id = $1")
            .bind(doc.as_uuid())
            .fetch_optional(pool)
            .await?;
    Ok(found.map(|(org, deleted)| (OrgId::from_uuid(org), deleted)))
}

/// `doc`'s whole state as one Yjs update (v1).
pub fn state_of(doc: &yrs::Doc) -> Vec<u8> {
    use yrs::{ReadTxn, Transact};
    doc.transact()
        .encode_state_as_update_v1(&yrs::StateVector::default())
}

/// The name of the `Y.Text` whose text is a document's text (`ydoc.getText("content")`): what
/// plain-text, CodeMirror and Quill clients edit.
pub const TEXT_ROOT: &str = "content";

/// The name of the XML fragment whose text is a document's text in rich-text editors
/// (ProseMirror, TipTap and Hocuspocus use `default`).
pub const XML_ROOT: &str = "default";

/// A document's plain text: the `Y.Text` named [`TEXT_ROOT`], then the text of the XML
/// fragment named [`XML_ROOT`] (one line per block element), whichever the document has.
pub fn text_of(doc: &yrs::Doc) -> String {
    use yrs::{GetString, Transact, XmlFragment};
    let text = doc.get_or_insert_text(TEXT_ROOT);
    let xml = doc.get_or_insert_xml_fragment(XML_ROOT);
    let txn = doc.transact();
    let mut out = text.get_string(&txn);
    let mut rich = String::new();
    for node in xml.children(&txn) {
        xml_text(&node, &txn, &mut rich);
    }
    if !rich.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(rich.trim_end_matches('\n'));
    }
    out
}

/// Appends the text of `node` to `out`: text as it reads, a line break after each element.
fn xml_text<T: yrs::ReadTxn>(node: &yrs::XmlOut, txn: &T, out: &mut String) {
    use yrs::{Text, XmlFragment};
    match node {
        yrs::XmlOut::Text(text) => {
            for chunk in text.diff(txn, |_| ()) {
                if let yrs::Out::Any(yrs::Any::String(s)) = chunk.insert {
                    out.push_str(&s);
                }
            }
        }
        yrs::XmlOut::Element(element) => {
            for child in element.children(txn) {
                xml_text(&child, txn, out);
            }
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        yrs::XmlOut::Fragment(fragment) => {
            for child in fragment.children(txn) {
                xml_text(&child, txn, out);
            }
        }
    }
}
