//! The `documents` read model against the real PostgreSQL: the tree built from real commands'
//! events, and the placement lookup the command side makes before a document moves or is
//! published, which is what keeps the tree free of cycles and slugs unique.

use commands::{Actor, CommandError, Commands, Metadata};
use domain::document::{
    Document, DocumentCommand as C, DocumentError, DocumentRequest, Slug, TITLE_MAX,
};
use domain::{DocId, Grant, OrgId, Text};
use eventstore::testing::TestDb;
use eventstore::{Cursor, Store, StoreOptions};
use projections::read_models::documents::{self, DocumentsProjection};
use projections::Projection;
use sqlx::PgPool;
use uuid::Uuid;

struct World {
    commands: Commands,
    pool: PgPool,
    org: OrgId,
    /// How far the read model has been built.
    applied: Cursor,
}

impl World {
    /// Applies every event not applied yet to the read model.
    async fn sync(&mut self) {
        let store = self.commands.store().clone();
        let events = store.tail(self.applied, 10_000).await.expect("tail");
        if let Some(last) = events.last() {
            self.applied = last.cursor();
        }
        let mut tx = self.pool.begin().await.expect("begin");
        DocumentsProjection
            .apply_batch(&mut tx, &events)
            .await
            .expect("apply");
        tx.commit().await.expect("commit");
    }

    /// Runs `command` on `doc` as the system, with the placement the read model gives now.
    async fn ask(&mut self, doc: DocId, command: C) -> Result<(), CommandError<DocumentError>> {
        self.sync().await;
        let (parent, slug) = match &command {
            C::Create { parent, .. } | C::Move { parent } => (*parent, None),
            C::Publish { slug } => (None, Some(slug.as_str().to_owned())),
            _ => (None, None),
        };
        let known = documents::placement(&self.pool, self.org, doc, parent, slug.as_deref())
            .await
            .expect("placement");
        let request = DocumentRequest {
            grant: Grant::system(self.org),
            known,
            command,
        };
        self.commands
            .execute::<Document>(&doc.to_string(), request, &Metadata::new(Actor::System))
            .await
            .map(|_| ())
    }

    async fn create(&mut self, title: &str, parent: Option<DocId>) -> DocId {
        let doc = DocId::from_uuid(Uuid::now_v7());
        let title = Text::parse("title", title, TITLE_MAX, false).expect("title");
        self.ask(
            doc,
            C::Create {
                doc_id: doc,
                org_id: self.org,
                title,
                parent,
            },
        )
        .await
        .expect("create");
        doc
    }
}

fn refusal(result: Result<(), CommandError<DocumentError>>) -> DocumentError {
    match result {
        Err(CommandError::Domain(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tree_has_no_cycles_and_slugs_are_unique() {
    let db = TestDb::new().await;
    let pool = db.pool(4).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let mut world = World {
        commands: Commands::new(store),
        pool: pool.clone(),
        org: OrgId::from_uuid(Uuid::now_v7()),
        applied: Cursor::START,
    };
    // a ── b ── c, and d at the root.
    let a = world.create("Handbook", None).await;
    let b = world.create("Engineering", Some(a)).await;
    let c = world.create("On call", Some(b)).await;
    let d = world.create("Scratch", None).await;

    assert_eq!(
        refusal(world.ask(a, C::Move { parent: Some(c) }).await),
        DocumentError::WouldCycle,
        "under its grandchild"
    );
    assert_eq!(
        refusal(world.ask(a, C::Move { parent: Some(a) }).await),
        DocumentError::WouldCycle,
        "under itself"
    );
    let stranger = DocId::from_uuid(Uuid::now_v7());
    assert_eq!(
        refusal(
            world
                .ask(
                    d,
                    C::Move {
                        parent: Some(stranger)
                    }
                )
                .await
        ),
        DocumentError::UnknownParent
    );
    world
        .ask(c, C::Move { parent: Some(d) })
        .await
        .expect("c moves under d");
    // c is no longer a descendant of a (d ── c, a ── b), so a may now go under c.
    world
        .ask(a, C::Move { parent: Some(c) })
        .await
        .expect("a moves under c");

    let notes = Slug::parse("notes").expect("slug");
    world
        .ask(
            b,
            C::Publish {
                slug: notes.clone(),
            },
        )
        .await
        .expect("publish b");
    assert_eq!(
        refusal(
            world
                .ask(
                    c,
                    C::Publish {
                        slug: notes.clone()
                    }
                )
                .await
        ),
        DocumentError::SlugTaken("notes".to_owned())
    );
    world.ask(b, C::Delete).await.expect("delete b");
    world
        .ask(c, C::Publish { slug: notes })
        .await
        .expect("a deleted document's slug is free again");

    world.sync().await;
    let tree = documents::tree(&pool, world.org).await.expect("tree");
    let shape: Vec<(Uuid, Option<Uuid>, Option<&str>)> = tree
        .iter()
        .map(|n| (n.doc_id, n.parent_id, n.slug.as_deref()))
        .collect();
    assert_eq!(
        shape,
        [
            (a.as_uuid(), Some(c.as_uuid()), None),
            (c.as_uuid(), Some(d.as_uuid()), Some("notes")),
            (d.as_uuid(), None, None),
        ],
        "by title, without the deleted one"
    );
    let other = documents::tree(&pool, OrgId::from_uuid(Uuid::now_v7()))
        .await
        .expect("tree");
    assert!(other.is_empty(), "another organization sees none of it");
}
