//! Documents over REST: the tree, moves that would make a cycle, publication under a unique
//! slug and the public page, deletion and restoration, who may read and write; and the
//! content, now and as it was (`?at=`), as text and as Yjs state, rebuilt by yrs from the
//! stored updates.

use commands::{Actor, Commands, Metadata};
use domain::document::{Bytes, Document, DocumentCommand, DocumentRequest, Placement};
use domain::{Grant, OrgId};
use eventstore::{Store, StoreOptions};
use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, Text, Transact};

use crate::support::{
    cursor_of, error_code, json_with, key_with, member_with, spawn_app, str_of, with_key, TestApp,
};

/// Creates a document; returns its id and the write's cursor.
async fn create_doc(
    app: &TestApp,
    client: &reqwest::Client,
    org: &str,
    body: Value,
) -> (String, String) {
    let created = app
        .post_as(client, &format!("/api/v1/orgs/{org}/docs"), body)
        .await;
    let cursor = cursor_of(&created);
    (str_of(&json_with(created, 201).await, "id"), cursor)
}

/// The cursor of a write that must answer 200.
async fn done(response: reqwest::Response) -> String {
    let cursor = cursor_of(&response);
    json_with(response, 200).await;
    cursor
}

/// The titles of the tree, read after `after`.
async fn tree_titles(
    app: &TestApp,
    client: &reqwest::Client,
    org: &str,
    after: &str,
) -> Vec<String> {
    let tree = client
        .get(app.url(&format!("/api/v1/orgs/{org}/docs?after={after}")))
        .send()
        .await
        .expect("tree");
    let tree = json_with(tree, 200).await;
    tree["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| str_of(d, "title"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_moves_publication_deletion_and_who_may_read_and_write() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Docs").await;
    let docs = format!("/api/v1/orgs/{org}/docs");
    let get_one = |doc: &str, after: &str| {
        ada.get(app.url(&format!("{docs}/{doc}?after={after}")))
            .send()
    };

    let (handbook, _) = create_doc(&app, &ada, &org, json!({"title": "Handbook"})).await;
    let (onboarding, at) = create_doc(
        &app,
        &ada,
        &org,
        json!({"title": "Onboarding", "parent": handbook}),
    )
    .await;
    assert_eq!(
        tree_titles(&app, &ada, &org, &at).await,
        ["Handbook", "Onboarding"]
    );
    let one = json_with(get_one(&onboarding, &at).await.expect("get"), 200).await;
    assert_eq!(one["parent"], json!(handbook));
    assert_eq!(one["deleted"], json!(false));

    // A parent that is no document, and a move under one's own descendant, change nothing.
    let before = app.event_count().await;
    let stray = app
        .post_as(
            &ada,
            &docs,
            json!({"title": "Stray", "parent": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(error_code(stray, 422).await, "unknown_parent");
    let cycle = app
        .post_as(
            &ada,
            &format!("{docs}/{handbook}/move"),
            json!({"parent": onboarding}),
        )
        .await;
    assert_eq!(error_code(cycle, 422).await, "would_cycle");
    assert_eq!(app.event_count().await, before);

    // Renamed, moved to the root.
    done(
        ada.patch(app.url(&format!("{docs}/{onboarding}")))
            .json(&json!({"title": "Welcome"}))
            .send()
            .await
            .expect("rename"),
    )
    .await;
    let at = done(
        app.post_as(
            &ada,
            &format!("{docs}/{onboarding}/move"),
            json!({"parent": null}),
        )
        .await,
    )
    .await;
    let one = json_with(get_one(&onboarding, &at).await.expect("get"), 200).await;
    assert_eq!(
        (one["title"].clone(), one["parent"].clone()),
        (json!("Welcome"), Value::Null)
    );

    // Published: readable without signing in, under a slug no other document holds.
    let publish = |doc: &str, slug: &str| {
        ada.put(app.url(&format!("{docs}/{doc}/publication")))
            .json(&json!({ "slug": slug }))
            .send()
    };
    let at = done(publish(&handbook, "handbook").await.expect("publish")).await;
    let taken = publish(&onboarding, "handbook").await.expect("publish");
    assert_eq!(error_code(taken, 409).await, "slug_taken");
    let bad = publish(&onboarding, "Not A Slug").await.expect("publish");
    assert_eq!(error_code(bad, 422).await, "validation_failed");
    // The public page reads the read model too: wait until it has the publication.
    tree_titles(&app, &ada, &org, &at).await;
    let page = app
        .http
        .get(app.url(&format!("/p/{org}/handbook")))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<h1>Handbook</h1>"));

    // Deleted: gone from the tree and the public page, still readable as deleted, restorable.
    let at = done(
        ada.delete(app.url(&format!("{docs}/{handbook}")))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(tree_titles(&app, &ada, &org, &at).await, ["Welcome"]);
    let gone = app
        .http
        .get(app.url(&format!("/p/{org}/handbook")))
        .send()
        .await
        .expect("page");
    assert_eq!(gone.status(), 404);
    let one = json_with(get_one(&handbook, &at).await.expect("get"), 200).await;
    assert_eq!(one["deleted"], json!(true));
    let again = ada
        .patch(app.url(&format!("{docs}/{handbook}")))
        .json(&json!({"title": "Still here?"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(error_code(again, 422).await, "document_deleted");
    let at = done(
        app.post_as(&ada, &format!("{docs}/{handbook}/restore"), json!({}))
            .await,
    )
    .await;
    assert_eq!(
        tree_titles(&app, &ada, &org, &at).await,
        ["Handbook", "Welcome"]
    );

    // Readers: a stranger sees no organization; a member without docs.edit reads but does
    // not write; keys read with docs:read (not tasks:read) and write with docs:write.
    let bob = app.sign_in("bob@example.com").await;
    let hidden = bob.get(app.url(&docs)).send().await.expect("tree");
    assert_eq!(error_code(hidden, 404).await, "organization_not_found");
    let (reader, _) = member_with(&app, &org, &ada, &[]).await;
    assert_eq!(
        tree_titles(&app, &reader, &org, &at).await,
        ["Handbook", "Welcome"]
    );
    let refused = app.post_as(&reader, &docs, json!({"title": "Mine"})).await;
    assert_eq!(error_code(refused, 403).await, "forbidden");
    let tasks_key = with_key(&key_with(&app, &ada, &["tasks:read"]).await);
    let wrong = tasks_key.get(app.url(&docs)).send().await.expect("tree");
    assert_eq!(error_code(wrong, 403).await, "insufficient_scope");
    let docs_key = with_key(&key_with(&app, &ada, &["docs:read"]).await);
    assert_eq!(
        tree_titles(&app, &docs_key, &org, &at).await,
        ["Handbook", "Welcome"]
    );
    let write = docs_key
        .post(app.url(&docs))
        .json(&json!({"title": "Keyed"}))
        .send()
        .await
        .expect("create");
    assert_eq!(error_code(write, 403).await, "insufficient_scope");
    let writer = with_key(&key_with(&app, &ada, &["docs:read", "docs:write"]).await);
    create_doc(&app, &writer, &org, json!({"title": "Keyed"})).await;

    // The history of a document's stream is the documents' class: members read it.
    let history = reader
        .get(app.url(&format!("/api/v1/streams/document/{handbook}/events")))
        .send()
        .await
        .expect("history");
    let history = json_with(history, 200).await;
    let types: Vec<String> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| str_of(e, "type"))
        .collect();
    assert_eq!(
        types,
        [
            "document.created",
            "document.published",
            "document.deleted",
            "document.restored"
        ]
    );
    let stranger = bob
        .get(app.url(&format!("/api/v1/streams/document/{handbook}/events")))
        .send()
        .await
        .expect("history");
    assert_eq!(error_code(stranger, 404).await, "stream_not_found");
    app.stop().await;
}

/// A Yjs update typing `text` at `index` of the `content` text, made by a client that has
/// seen `state`.
fn typing(state: &[u8], index: u32, text: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let content = doc.get_or_insert_text("content");
    {
        let mut txn = doc.transact_mut();
        txn.apply_update(yrs::Update::decode_v1(state).expect("state"))
            .expect("apply");
    }
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        content.insert(&mut txn, index, text);
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    update
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_now_and_as_it_was_as_text_and_as_yjs_state() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Docs").await;
    let (doc, _) = create_doc(&app, &ada, &org, json!({"title": "Notes"})).await;
    let content = format!("/api/v1/orgs/{org}/docs/{doc}/content");

    // Edits arrive over /collab; here they are appended through the command side directly.
    let pool = app.db.pool(2).await;
    let commands = Commands::new(Store::new(pool.clone(), StoreOptions::default()));
    let org_id: OrgId = org.parse().expect("org id");
    let edit = |updates: Vec<Vec<u8>>| {
        let commands = commands.clone();
        let doc = doc.clone();
        async move {
            commands
                .execute::<Document>(
                    &doc,
                    DocumentRequest {
                        grant: Grant::system(org_id),
                        known: Placement::default(),
                        command: DocumentCommand::Edit {
                            updates: updates.into_iter().map(Bytes::from).collect(),
                        },
                    },
                    &Metadata::new(Actor::System).in_org(org_id),
                )
                .await
                .expect("edit")
        }
    };
    let first = typing(&[0, 0], 0, "hello");
    edit(vec![first.clone()]).await;
    let mut state = first.clone();
    let second = typing(&state, 5, " world");
    state = yrs::merge_updates_v1([state.as_slice(), second.as_slice()]).expect("merge");
    let third = typing(&state, 11, "!");
    edit(vec![second, third]).await;
    let after_all = time::OffsetDateTime::now_utc();

    let get = |query: &str| ada.get(app.url(&format!("{content}{query}"))).send();
    let now = get("").await.expect("content");
    assert_eq!(now.status(), 200);
    assert_eq!(now.headers()["cairn-document-sequence"], "4");
    assert_eq!(now.text().await.expect("text"), "hello world!");
    // Sequence 2 is the first edit (1 is the creation).
    assert_eq!(
        get("?at=2").await.expect("at").text().await.expect("text"),
        "hello"
    );
    assert_eq!(
        get("?at=1").await.expect("at").text().await.expect("text"),
        ""
    );
    let later = get(&format!(
        "?at={}",
        after_all
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc 3339")
    ))
    .await
    .expect("at");
    assert_eq!(later.text().await.expect("text"), "hello world!");

    // The Yjs state rebuilds the same document in any Yjs client.
    let yjs = get("?format=yjs").await.expect("yjs");
    assert_eq!(yjs.headers()["content-type"], "application/octet-stream");
    let bytes = yjs.bytes().await.expect("bytes");
    let copy = yrs::Doc::new();
    let text = copy.get_or_insert_text("content");
    copy.transact_mut()
        .apply_update(yrs::Update::decode_v1(&bytes).expect("update"))
        .expect("apply");
    assert_eq!(text.get_string(&copy.transact()), "hello world!");

    for bad in ["?at=yesterday", "?at=-1", "?format=pdf", "?evil=1"] {
        let refused = get(bad).await.expect("content");
        assert_eq!(error_code(refused, 400).await, "invalid_query", "{bad}");
    }
    let stranger = app.sign_in("bob@example.com").await;
    let hidden = stranger
        .get(app.url(&content))
        .send()
        .await
        .expect("content");
    assert_eq!(error_code(hidden, 404).await, "organization_not_found");
    let unknown = ada
        .get(app.url(&format!(
            "/api/v1/orgs/{org}/docs/{}/content",
            uuid::Uuid::now_v7()
        )))
        .send()
        .await
        .expect("content");
    assert_eq!(error_code(unknown, 404).await, "document_not_found");
    pool.close().await;
    app.stop().await;
}
