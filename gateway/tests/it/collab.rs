//! `/collab/{doc}` with real clients over real WebSockets, speaking the y-websocket protocol:
//! yrs clients (two writers converge, a late joiner gets the whole document, a read-only
//! member's edits never reach the store, a stranger is refused with the auth message, a killed
//! server still has every edit a peer saw) and the stock JavaScript `y-websocket` provider
//! under Node, editing beside a yrs client; and `/collab` (Hocuspocus), both through the stock
//! `@hocuspocus/provider` and spoken by hand (scopes, tokens, queues before a token).

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, Text, TextRef, Transact};

use crate::support::{self, json_with, key_with, member_with, spawn_app, str_of, TestApp};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A y-websocket client: a yrs document kept in sync with the server's over one socket.
struct Client {
    ws: Socket,
    doc: yrs::Doc,
    text: TextRef,
    /// Set when the server refused with the auth message.
    denied: Option<String>,
    /// Set once the server's sync step 1 arrived.
    synced: bool,
}

impl Client {
    async fn connect(app: &TestApp, key: &str, doc: &str) -> Self {
        Self::connect_to(&app.url(""), key, doc).await
    }

    /// A client of the server at `base` (`http://host:port`).
    async fn connect_to(base: &str, key: &str, doc: &str) -> Self {
        Self::open(&format!("{base}/collab/{doc}"), Some(key)).await
    }

    /// A client with a ticket and no other credential.
    async fn with_ticket(app: &TestApp, doc: &str, ticket: &str) -> Self {
        Self::open(&app.url(&format!("/collab/{doc}?ticket={ticket}")), None).await
    }

    /// The same client (its document, with whatever was typed while away) over a new socket.
    async fn reconnect(self, app: &TestApp, key: &str, doc: &str) -> Self {
        let Self {
            doc: ydoc, text, ..
        } = self;
        let mut client = Self::connect(app, key, doc).await;
        // `connect` announced an empty document; announce the real one (as a provider does).
        client.doc = ydoc;
        client.text = text;
        let step1 = Message::Sync(SyncMessage::SyncStep1(client.doc.transact().state_vector()));
        client.send(step1).await;
        client
    }

    async fn open(url: &str, key: Option<&str>) -> Self {
        let mut request = url
            .replacen("http://", "ws://", 1)
            .into_client_request()
            .expect("request");
        if let Some(key) = key {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("header"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        let ydoc = yrs::Doc::new();
        let text = ydoc.get_or_insert_text("content");
        let mut client = Self {
            ws,
            doc: ydoc,
            text,
            denied: None,
            synced: false,
        };
        // As the y-websocket provider does: announce what it has. (A refused client's socket
        // may already be closing: the refusal is what it then reads.)
        let step1 = Message::Sync(SyncMessage::SyncStep1(client.doc.transact().state_vector()));
        let _ = client
            .ws
            .send(WsMessage::Binary(step1.encode_v1().into()))
            .await;
        client
    }

    async fn send(&mut self, message: Message) {
        self.ws
            .send(WsMessage::Binary(message.encode_v1().into()))
            .await
            .expect("send");
    }

    /// Types `text` at `index` and sends the update.
    async fn type_at(&mut self, index: u32, text: &str) {
        let before = self.doc.transact().state_vector();
        self.text.insert(&mut self.doc.transact_mut(), index, text);
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send(Message::Sync(SyncMessage::Update(update))).await;
    }

    fn content(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Handles frames until `done` holds (or 10 s pass, which fails the test).
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(self) {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {what}; have {:?}", self.content())
                });
            match frame {
                Some(Ok(WsMessage::Binary(bytes))) => self.handle(&bytes).await,
                Some(Ok(WsMessage::Close(_))) | None => {
                    assert!(done(self), "closed while waiting for {what}");
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error waiting for {what}: {e}"),
            }
        }
    }

    /// Reads frames until an awareness message `done` accepts (other frames are handled as
    /// usual), at most 10 s.
    async fn awareness_until(
        &mut self,
        what: &str,
        done: impl Fn(&yrs::sync::AwarenessUpdate) -> bool,
    ) -> yrs::sync::AwarenessUpdate {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    if let Ok(Message::Awareness(update)) = Message::decode_v1(&bytes) {
                        if done(&update) {
                            return update;
                        }
                    } else {
                        self.handle(&bytes).await;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {what}: {other:?}"),
            }
        }
    }

    async fn handle(&mut self, frame: &[u8]) {
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let messages: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .expect("y-protocol frame");
        for message in messages {
            match message {
                Message::Sync(SyncMessage::SyncStep1(state)) => {
                    self.synced = true;
                    let diff = self.doc.transact().encode_diff_v1(&state);
                    self.send(Message::Sync(SyncMessage::SyncStep2(diff))).await;
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    self.doc
                        .transact_mut()
                        .apply_update(yrs::Update::decode_v1(&update).expect("update"))
                        .expect("apply");
                }
                Message::Auth(reason) => self.denied = reason,
                _ => {}
            }
        }
    }
}

async fn new_doc(app: &TestApp, client: &reqwest::Client, org: &str) -> String {
    new_doc_titled(app, client, org, "Notes").await
}

/// The document's text as stored (rebuilt from its events).
async fn stored_text(app: &TestApp, client: &reqwest::Client, org: &str, doc: &str) -> String {
    let content = client
        .get(app.url(&format!("/api/v1/orgs/{org}/docs/{doc}/content")))
        .send()
        .await
        .expect("content");
    assert_eq!(content.status(), 200);
    content.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_converge_late_joiners_catch_up_and_readers_only_read() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;

    let mut one = Client::connect(&app, &key, &doc).await;
    let mut two = Client::connect(&app, &key, &doc).await;
    one.type_at(0, "Hello").await;
    two.until("the first edit", |c| c.content() == "Hello")
        .await;
    two.type_at(5, ", world").await;
    one.until("the second edit", |c| c.content() == "Hello, world")
        .await;
    // Concurrent edits at the same place converge on both sides.
    one.type_at(0, "A").await;
    two.type_at(0, "B").await;
    one.until("both concurrent edits", |c| c.content().len() == 14)
        .await;
    two.until("both concurrent edits", |c| c.content().len() == 14)
        .await;
    assert_eq!(one.content(), two.content());
    let agreed = one.content();

    // A late joiner gets the whole document from its first sync.
    let mut late = Client::connect(&app, &key, &doc).await;
    late.until("the whole document", |c| c.content() == agreed)
        .await;
    assert_eq!(stored_text(&app, &ada, &org, &doc).await, agreed);

    // A member without docs.edit reads live but writes nothing.
    let (reader, _) = member_with(&app, &org, &ada, &[]).await;
    let reader_key = key_with(&app, &reader, &["docs:read", "docs:write"]).await;
    let mut read_only = Client::connect(&app, &reader_key, &doc).await;
    read_only
        .until("the document", |c| c.content() == agreed)
        .await;
    let events = app.event_count().await;
    read_only.type_at(0, "nope ").await;
    one.type_at(0, "yes ").await;
    read_only
        .until("the writer's edit", |c| c.content().contains("yes "))
        .await;
    two.until("the writer's edit", |c| c.content().contains("yes "))
        .await;
    assert!(!two.content().contains("nope"), "{}", two.content());
    let stored = stored_text(&app, &ada, &org, &doc).await;
    assert!(
        stored.starts_with("yes ") && !stored.contains("nope"),
        "{stored}"
    );
    assert_eq!(
        app.event_count().await,
        events + 1,
        "only the writer's edit is stored"
    );

    // A stranger is refused with the auth message.
    let bob = app.sign_in("bob@example.com").await;
    let bob_key = key_with(&app, &bob, &["docs:read"]).await;
    let mut stranger = Client::connect(&app, &bob_key, &doc).await;
    stranger.until("the refusal", |c| c.denied.is_some()).await;
    assert!(stranger
        .denied
        .as_deref()
        .is_some_and(|r| r.starts_with("permission-denied")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_edit_a_peer_saw() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    // Another `cairn serve` on the same database serves the editors, then dies by SIGKILL.
    let node = crate::nodes::Node::start(&app.db.url(), "collab-b", &[]).await;
    node.wait_ready(Duration::from_secs(30)).await;
    let mut writer = Client::connect_to(&node.base(), &key, &doc).await;
    let mut peer = Client::connect_to(&node.base(), &key, &doc).await;
    for word in ["one ", "two ", "three "] {
        let at = writer.content().len() as u32;
        writer.type_at(at, word).await;
    }
    peer.until("every edit", |c| c.content() == "one two three ")
        .await;
    node.kill().await;
    // The peer saw them, so they were stored first: this server has every one.
    let mut after = Client::connect(&app, &key, &doc).await;
    after
        .until("every edit after the kill", |c| {
            c.content() == "one two three "
        })
        .await;
    app.stop().await;
}

/// `gateway/tests/js`, with its pinned packages installed (`npm ci`, once per test run, when
/// `node_modules` is missing: `.ci/run` installs them first).
async fn js_clients() -> std::path::PathBuf {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let at = dir.clone();
    INSTALLED
        .get_or_init(|| async move {
            if at.join("node_modules").exists() {
                return;
            }
            let status = tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&at)
                .status()
                .await
                .expect("npm (Node.js) is installed: .ci/run installs it");
            assert!(status.success(), "npm ci in {}", at.display());
        })
        .await;
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_y_websocket_provider_edits_beside_a_yrs_client() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let dir = js_clients().await;

    let mut rust = Client::connect(&app, &key, &doc).await;
    rust.type_at(0, "from yrs; ").await;
    let js = tokio::process::Command::new("node")
        .arg("y-websocket-client.mjs")
        .current_dir(&dir)
        .env(
            "CAIRN_URL",
            app.url("/collab").replacen("http://", "ws://", 1),
        )
        .env("CAIRN_DOC", &doc)
        .env("CAIRN_KEY", &key)
        .env("CAIRN_TYPE", "from y-websocket")
        .env("CAIRN_EXPECT", "from yrs; |from y-websocket")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    rust.until("the JavaScript client's edit", |c| {
        c.content().contains("from y-websocket")
    })
    .await;
    let out = js.wait_with_output().await.expect("node exits");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("node printed no report ({e}): {:?}", out));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["text"].as_str(), Some(rust.content().as_str()));
    assert_eq!(stored_text(&app, &ada, &org, &doc).await, rust.content());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_its_one_document_for_whoever_asked_for_it() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let other = new_doc(&app, &ada, &org).await;
    let issued = app
        .post_as(
            &ada,
            &format!("/api/v1/orgs/{org}/docs/{doc}/ticket"),
            json!({}),
        )
        .await;
    let ticket = str_of(&json_with(issued, 200).await, "ticket");

    // No cookie, no key: the ticket alone, and its holder (a session with docs.edit) writes.
    let mut holder = Client::with_ticket(&app, &doc, &ticket).await;
    // Synced: the server's first sync step came (a refusal would come instead).
    holder
        .until("the first sync", |c| {
            assert_eq!(c.denied, None, "the ticket was refused");
            c.synced
        })
        .await;
    holder.type_at(0, "by ticket").await;
    let key = key_with(&app, &ada, &["docs:read"]).await;
    let mut reader = Client::connect(&app, &key, &doc).await;
    reader
        .until("the ticket holder's edit", |c| c.content() == "by ticket")
        .await;

    // Another document, or a ticket altered by one character, opens nothing.
    let mut elsewhere = Client::with_ticket(&app, &other, &ticket).await;
    elsewhere.until("the refusal", |c| c.denied.is_some()).await;
    let mut forged = ticket.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let mut forger = Client::with_ticket(&app, &doc, &forged).await;
    forger.until("the refusal", |c| c.denied.is_some()).await;

    // A stranger gets no ticket.
    let bob = app.sign_in("bob@example.com").await;
    let refused = app
        .post_as(
            &bob,
            &format!("/api/v1/orgs/{org}/docs/{doc}/ticket"),
            json!({}),
        )
        .await;
    assert_eq!(
        support::error_code(refused, 404).await,
        "organization_not_found"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_content_and_history_and_opening_reads_the_snapshot() {
    let app = support::spawn_app_with(&[("CAIRN_COLLAB_COMPACT_EVERY", "10".to_owned())]).await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write", "events:read"]).await;
    let mut writer = Client::connect(&app, &key, &doc).await;
    let mut peer = Client::connect(&app, &key, &doc).await;
    let mut expected = String::new();
    for i in 0..25 {
        let word = format!("w{i} ");
        writer.type_at(expected.len() as u32, &word).await;
        expected.push_str(&word);
        // One update per stored batch: wait for each, so the room counts 25 updates.
        peer.until("the edit", |c| c.content() == expected).await;
    }
    // The stream holds compactions, each covering the stream up to the event before it.
    let history = support::with_key(&key)
        .get(app.url(&format!("/api/v1/streams/document/{doc}/events?limit=1000")))
        .send()
        .await
        .expect("history");
    let history = json_with(history, 200).await;
    let events = history["events"].as_array().expect("events");
    let compactions: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "document.compacted")
        .collect();
    // Every 10 updates, and up to a quarter more (drawn per room): after 10–12 and 20–24.
    assert_eq!(compactions.len(), 2, "two compactions in 25 updates");
    // Each edit names its author, as the room stored it for them.
    let me = support::user_id_of(&app, &ada).await;
    assert!(events
        .iter()
        .filter(|e| e["type"] == "document.edited")
        .all(|e| e["data"]["by"] == json!(me)));
    for c in &compactions {
        assert_eq!(
            c["data"]["covers"].as_u64(),
            c["sequence"].as_u64().map(|s| s - 1)
        );
    }
    // Content is the same however it is read: now (from the last snapshot and its tail), by a
    // new client (a room that unloads reads it the same way), and as it was before compacting.
    assert_eq!(stored_text(&app, &ada, &org, &doc).await, expected);
    let mut late = Client::connect(&app, &key, &doc).await;
    late.until("the whole document", |c| c.content() == expected)
        .await;
    let first_compaction = compactions[0]["sequence"].as_u64().expect("sequence");
    let before = ada
        .get(app.url(&format!(
            "/api/v1/orgs/{org}/docs/{doc}/content?at={}",
            first_compaction - 1
        )))
        .send()
        .await
        .expect("content");
    // One word per update: the words stored before the first compaction (10 to 12 of them).
    let edits_before = events
        .iter()
        .filter(|e| e["type"] == "document.edited")
        .filter(|e| e["sequence"].as_u64() < Some(first_compaction))
        .count();
    assert!((10..=12).contains(&edits_before), "{edits_before} edits");
    let words: String = (0..edits_before).map(|i| format!("w{i} ")).collect();
    assert_eq!(before.text().await.expect("text"), words);
    // The plain-text read model (for search) went through both compactions too (it skips
    // them: it holds every edit they cover already).
    let pool = app.db.pool(1).await;
    let doc_id = domain::DocId::from_uuid(doc.parse().expect("doc id"));
    let text = || async {
        projections::read_models::document_text::text(&pool, doc_id)
            .await
            .expect("text")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text().await.as_deref() != Some(expected.as_str()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "document_text holds {:?}",
            text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_hocuspocus_provider_edits_beside_a_yrs_client_and_is_acked_only_once_stored() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let dir = js_clients().await;
    let hocuspocus = |token: String, typed: &'static str, expect: &'static str| {
        tokio::process::Command::new("node")
            .arg("hocuspocus-client.mjs")
            .current_dir(&dir)
            .env(
                "CAIRN_URL",
                app.url("/collab").replacen("http://", "ws://", 1),
            )
            .env("CAIRN_DOC", &doc)
            .env("CAIRN_TOKEN", token)
            .env("CAIRN_TYPE", typed)
            .env("CAIRN_EXPECT", expect)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs")
    };

    let mut rust = Client::connect(&app, &key, &doc).await;
    rust.type_at(0, "from yrs; ").await;
    // The token is a ticket from ada's session.
    let issued = app
        .post_as(
            &ada,
            &format!("/api/v1/orgs/{org}/docs/{doc}/ticket"),
            json!({}),
        )
        .await;
    let ticket = str_of(&json_with(issued, 200).await, "ticket");
    let js = hocuspocus(ticket, "from hocuspocus", "from yrs; |from hocuspocus");
    let out = js.wait_with_output().await.expect("node exits");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("node printed no report ({e}): {out:?}"));
    assert_eq!(report["ok"], true, "{report}");
    rust.until("the Hocuspocus client's edit", |c| {
        c.content().contains("from hocuspocus")
    })
    .await;
    assert_eq!(report["scope"], "read-write", "{report}");
    assert_eq!(report["unsynced"], 0, "{report}");
    // No unsynced changes means stored: the store has its edit.
    let stored = stored_text(&app, &ada, &org, &doc).await;
    assert!(stored.contains("from hocuspocus"), "{stored}");
    assert_eq!(report["text"].as_str(), Some(rust.content().as_str()));

    // A read-only key's provider is told so; a token that is nothing is refused.
    let (reader, _) = member_with(&app, &org, &ada, &[]).await;
    let reader_key = key_with(&app, &reader, &["docs:read"]).await;
    let out = hocuspocus(reader_key, "", "from hocuspocus")
        .wait_with_output()
        .await
        .expect("node exits");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["scope"], "readonly", "{report}");
    let out = hocuspocus("nonsense".to_owned(), "x", "x")
        .wait_with_output()
        .await
        .expect("node exits");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no ticket")),
        "{report}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_access_ends_the_document_stops_arriving() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let mut writer = Client::connect(&app, &key, &doc).await;

    // A key revoked mid-session: its socket is told and closed.
    let issued = app
        .post_as(
            &ada,
            "/api/v1/me/api-keys",
            json!({"name": "short-lived", "scopes": ["docs:read"]}),
        )
        .await;
    let issued = json_with(issued, 201).await;
    let mut revoked = Client::connect(&app, &str_of(&issued, "key"), &doc).await;
    revoked.until("the first sync", |c| c.synced).await;
    let gone = ada
        .delete(app.url(&format!("/api/v1/me/api-keys/{}", str_of(&issued, "id"))))
        .send()
        .await
        .expect("revoke");
    assert!(gone.status().is_success(), "{}", gone.status());
    revoked.until("the refusal", |c| c.denied.is_some()).await;

    // A member removed from the organization: the same.
    let (member, member_id) = member_with(&app, &org, &ada, &["docs.edit"]).await;
    let member_key = key_with(&app, &member, &["docs:read", "docs:write"]).await;
    let mut removed = Client::connect(&app, &member_key, &doc).await;
    removed.until("the first sync", |c| c.synced).await;
    let left = ada
        .delete(app.url(&format!("/api/v1/orgs/{org}/members/{member_id}")))
        .send()
        .await
        .expect("remove");
    assert!(left.status().is_success(), "{}", left.status());
    removed.until("the refusal", |c| c.denied.is_some()).await;

    // The others carry on.
    writer.type_at(0, "still here").await;
    let mut reader = Client::connect(&app, &key, &doc).await;
    reader
        .until("the edit", |c| c.content() == "still here")
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlink_appears_once_one_document_links_another() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let handbook = new_doc_titled(&app, &ada, &org, "Handbook").await;
    let notes = new_doc_titled(&app, &ada, &org, "Notes").await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let (who, at, org_id) = (&ada, &app, &org);
    let backlinks_of = move |doc: String| async move {
        let answer = who
            .get(at.url(&format!("/api/v1/orgs/{org_id}/docs/{doc}/backlinks")))
            .send()
            .await
            .expect("backlinks");
        json_with(answer, 200).await["documents"]
            .as_array()
            .expect("documents")
            .iter()
            .map(|d| str_of(d, "title"))
            .collect::<Vec<_>>()
    };
    let backlinks = || backlinks_of(handbook.clone());
    assert!(backlinks().await.is_empty());
    let mut writer = Client::connect(&app, &key, &notes).await;
    writer.type_at(0, "Read the [[Handbook]] first.").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backlinks().await != ["Notes"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no backlink from Notes: {:?}",
            backlinks().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A link by id counts too, and a document naming itself is no backlink of its own.
    let index = new_doc_titled(&app, &ada, &org, "Index").await;
    let mut indexer = Client::connect(&app, &key, &index).await;
    indexer
        .type_at(0, &format!("See /docs/{handbook} and [[Index]]."))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backlinks().await != ["Index", "Notes"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no backlink from Index: {:?}",
            backlinks().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(backlinks_of(index.clone()).await.is_empty());
    // The link goes when the text no longer has it.
    let len = writer.content().len() as u32;
    writer
        .text
        .remove_range(&mut writer.doc.transact_mut(), 0, len);
    let update = writer
        .doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    writer
        .send(Message::Sync(SyncMessage::Update(update)))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backlinks().await != ["Index"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlink stayed: {:?}",
            backlinks().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// Creates a document titled `title` and waits until the tree read model (which the socket
/// looks documents up in) has it.
async fn new_doc_titled(app: &TestApp, client: &reqwest::Client, org: &str, title: &str) -> String {
    let created = app
        .post_as(
            client,
            &format!("/api/v1/orgs/{org}/docs"),
            json!({ "title": title }),
        )
        .await;
    let cursor = support::cursor_of(&created);
    let doc = str_of(&json_with(created, 201).await, "id");
    let tree = client
        .get(app.url(&format!("/api/v1/orgs/{org}/docs?after={cursor}")))
        .send()
        .await
        .expect("tree");
    json_with(tree, 200).await;
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ws_docs_channel_carries_the_tree_and_not_the_keystrokes() {
    use crate::support::ws as live;
    let app = spawn_app().await;
    let (key, ada) =
        live::key_for(&app, "ada@example.com", json!(["docs:read", "docs:write"])).await;
    let org = app.create_org_as(&ada, "Collab").await;
    let mut ws = live::connect(&app, Some(&key)).await;
    assert_eq!(live::next(&mut ws).await["type"], "CONNECTION_STATUS");
    live::subscribe(&mut ws, &org, "docs").await;
    // A key without docs:read may not join.
    let (tasks_key, _) = live::key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let mut other = live::connect(&app, Some(&tasks_key)).await;
    live::next(&mut other).await;
    assert_eq!(live::join(&mut other, &org, "docs").await["type"], "ERROR");

    let doc = new_doc(&app, &ada, &org).await;
    let created = live::until(&mut ws, "CREATE_DOCUMENT").await;
    assert_eq!(created["data"]["id"], json!(doc), "{created}");
    let mut writer = Client::connect(&app, &key, &doc).await;
    writer.type_at(0, "typing is not a tree change").await;
    let renamed = ada
        .patch(app.url(&format!("/api/v1/orgs/{org}/docs/{doc}")))
        .json(&json!({"title": "Renamed"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(renamed.status(), 200);
    // The next data message is the rename: the edit before it was not sent here.
    let next = live::until(&mut ws, "UPDATE_DOCUMENT").await;
    assert_eq!(next["data"]["changes"]["title"], "Renamed", "{next}");
    app.stop().await;
}

/// Two nodes on one PostgreSQL and one NATS, a writer on each: every edit reaches the other
/// node's client, concurrent edits (both rooms appending at once) converge, the store holds
/// exactly what both see, and each client's awareness reaches the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_under_concurrent_edits() {
    let namespace = support::nats::Namespace::shared();
    let vars = namespace.vars();
    let db = eventstore::testing::TestDb::new().await;
    let url = db.url();
    let app = support::start_with(db, &vars).await;
    app.wait_ready(Duration::from_secs(20)).await;
    let other = crate::nodes::Node::start(&url, "collab-two", &vars).await;
    other.wait_ready(Duration::from_secs(20)).await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Two nodes").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;

    let mut one = Client::connect(&app, &key, &doc).await;
    let mut two = Client::connect_to(&other.base(), &key, &doc).await;
    two.until("the first sync", |c| c.synced).await;
    one.until("the first sync", |c| c.synced).await;
    one.type_at(0, "Hello").await;
    two.until("the edit made on the other node", |c| {
        c.content() == "Hello"
    })
    .await;
    two.type_at(5, ", world").await;
    one.until("the edit made on the other node", |c| {
        c.content() == "Hello, world"
    })
    .await;

    // Both type at once, without waiting for each other: both rooms append concurrently.
    for i in 0..20 {
        one.type_at(0, &format!("a{i} ")).await;
        two.type_at(0, &format!("b{i} ")).await;
    }
    let full = |c: &Client| {
        (0..20).all(|i| {
            let text = c.content();
            text.contains(&format!("a{i} ")) && text.contains(&format!("b{i} "))
        })
    };
    one.until("every edit from both nodes", full).await;
    two.until("every edit from both nodes", full).await;
    assert_eq!(one.content(), two.content());
    // What the store holds is what both see (its content is read through node one's API).
    let agreed = one.content();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = stored_text(&app, &ada, &org, &doc).await;
        if stored == agreed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored {stored:?}, clients have {agreed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Awareness crosses nodes: a state set on node two reaches the client on node one.
    two.send(Message::Awareness(awareness_of(4242, "Ada on two")))
        .await;
    let frame = one
        .awareness_until("the other node's awareness", |update| {
            update
                .clients
                .contains_key(&yrs::block::ClientID::new(4242))
        })
        .await;
    assert!(frame.clients[&yrs::block::ClientID::new(4242)]
        .json
        .contains("Ada on two"));
    drop(other);
    app.stop().await;
}

/// A node that dies cannot say its clients left: the other node forgets their awareness once
/// it is older than the awareness timeout (1 s here), tells its own clients it is gone, and
/// never shows it to a client that joins afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_from_a_node_that_died_is_cleared() {
    let namespace = support::nats::Namespace::shared();
    let mut vars = namespace.vars();
    let db = eventstore::testing::TestDb::new().await;
    let url = db.url();
    let two = crate::nodes::Node::start(&url, "collab-dies", &vars).await;
    vars.push(("CAIRN_COLLAB_AWARENESS_TIMEOUT_SECONDS", "1".to_owned()));
    let app = support::start_with(db, &vars).await;
    app.wait_ready(Duration::from_secs(20)).await;
    two.wait_ready(Duration::from_secs(20)).await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "A node dies").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;

    let mut here = Client::connect(&app, &key, &doc).await;
    let mut there = Client::connect_to(&two.base(), &key, &doc).await;
    there.until("the first sync", |c| c.synced).await;
    here.until("the first sync", |c| c.synced).await;
    // The client here has a state too, so that a later joiner is sent the room's awareness.
    let here_id = yrs::block::ClientID::new(5151);
    here.send(Message::Awareness(awareness_of(5151, "Ada here")))
        .await;
    let there_id = yrs::block::ClientID::new(5252);
    there
        .send(Message::Awareness(awareness_of(5252, "Ada there")))
        .await;
    here.awareness_until("the other node's client", |u| {
        u.clients
            .get(&there_id)
            .is_some_and(|e| e.json.contains("Ada there"))
    })
    .await;

    two.kill().await;
    let gone = here
        .awareness_until("the dead node's client to be cleared", |u| {
            u.clients.get(&there_id).is_some_and(|e| &*e.json == "null")
        })
        .await;
    assert!(!gone.clients.contains_key(&here_id), "{gone:?}");
    // A client joining now is told about the live client only.
    let mut late = Client::connect(&app, &key, &doc).await;
    let everyone = late
        .awareness_until("the room's awareness", |u| u.clients.contains_key(&here_id))
        .await;
    assert!(!everyone.clients.contains_key(&there_id), "{everyone:?}");
    app.stop().await;
}

/// An awareness update from client `id` with the user name `name`.
fn awareness_of(id: u64, name: &str) -> yrs::sync::AwarenessUpdate {
    let mut awareness = yrs::sync::Awareness::new(yrs::Doc::with_client_id(id));
    awareness
        .set_local_state(json!({"user": {"name": name}}))
        .expect("awareness state");
    awareness.update().expect("awareness update")
}

/// A writer whose team loses `docs.edit` mid-session stays connected and reads on, but what it
/// types from then on is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_who_loses_docs_edit_becomes_read_only() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let (member, member_id) = member_with(&app, &org, &ada, &[]).await;
    let base = format!("/api/v1/orgs/{org}");
    let team = app
        .post_as(&ada, &format!("{base}/teams"), json!({"name": "Editors"}))
        .await;
    let team = str_of(&json_with(team, 201).await, "id");
    let permissions = |list: Vec<&'static str>| {
        let ada = ada.clone();
        let url = app.url(&format!("{base}/teams/{team}/permissions"));
        async move {
            let set = ada
                .put(url)
                .json(&json!({ "permissions": list }))
                .send()
                .await
                .expect("set permissions");
            json_with(set, 200).await;
        }
    };
    permissions(vec!["docs.edit"]).await;
    let joined = app
        .post_as(
            &ada,
            &format!("{base}/teams/{team}/members"),
            json!({ "user_id": member_id }),
        )
        .await;
    json_with(joined, 200).await;
    let member_key = key_with(&app, &member, &["docs:read", "docs:write"]).await;

    let mut writer = Client::connect(&app, &key, &doc).await;
    let mut editor = Client::connect(&app, &member_key, &doc).await;
    editor.until("the first sync", |c| c.synced).await;
    editor.type_at(0, "while an editor; ").await;
    writer
        .until("the editor's edit", |c| {
            c.content().contains("while an editor")
        })
        .await;

    permissions(vec![]).await;
    // The change reaches the read models (the member can no longer create a document)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tried = member
            .post(app.url(&format!("{base}/docs")))
            .json(&json!({"title": "Mine"}))
            .send()
            .await
            .expect("create");
        if tried.status() == 403 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "docs.edit never went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and the open connection follows: it reads on, but its edits are dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = app.event_count().await;
    editor.type_at(0, "nope ").await;
    writer.type_at(0, "yes ").await;
    editor
        .until("the writer's edit", |c| c.content().contains("yes "))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = stored_text(&app, &ada, &org, &doc).await;
    assert!(
        stored.contains("yes ") && !stored.contains("nope"),
        "{stored}"
    );
    assert!(stored.contains("while an editor"), "{stored}");
    assert_eq!(
        app.event_count().await,
        events + 1,
        "only the writer's edit"
    );
    app.stop().await;
}

/// A client that edits while disconnected uploads those edits when it reconnects (its sync
/// step 2 answers the server's step 1), and they are stored like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_uploads_its_offline_edits() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let doc = new_doc(&app, &ada, &org).await;
    let key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;

    let mut away = Client::connect(&app, &key, &doc).await;
    away.until("the first sync", |c| c.synced).await;
    away.type_at(0, "online. ").await;
    let mut peer = Client::connect(&app, &key, &doc).await;
    peer.until("the online edit", |c| c.content() == "online. ")
        .await;
    away.ws.close(None).await.expect("close");

    // Offline: typed into the local document only.
    let end = away.content().len() as u32;
    away.text
        .insert(&mut away.doc.transact_mut(), end, "typed offline.");
    peer.type_at(0, "Meanwhile: ").await;

    let mut back = away.reconnect(&app, &key, &doc).await;
    let whole = "Meanwhile: online. typed offline.";
    back.until("the peer's edit", |c| c.content() == whole)
        .await;
    peer.until("the offline edit", |c| c.content() == whole)
        .await;
    assert_eq!(stored_text(&app, &ada, &org, &doc).await, whole);
    app.stop().await;
}

/// One message from the server on `/collab` (the Hocuspocus protocol), by document name.
#[derive(Debug, PartialEq)]
enum Hocus {
    /// `Auth` / `Authenticated` with its scope.
    Authenticated(String),
    /// `Auth` / `PermissionDenied` with its reason.
    Denied(String),
    /// `SyncStatus`: whether the update was stored.
    SyncStatus(bool),
    /// A sync message (step 1, step 2 or update).
    Sync(SyncMessage),
    /// Anything else (awareness).
    Other(u64),
}

/// `name` then `body`, as one `/collab` frame.
fn hocus_frame(name: &str, body: impl FnOnce(&mut Vec<u8>)) -> WsMessage {
    let mut out = Vec::new();
    out.write_string(name);
    body(&mut out);
    WsMessage::Binary(out.into())
}

fn hocus_auth(name: &str, token: &str) -> WsMessage {
    hocus_frame(name, |f| {
        f.write_var(2u64); // Auth
        f.write_var(0u64); // Token
        f.write_string(token);
    })
}

fn hocus_sync(name: &str, message: SyncMessage) -> WsMessage {
    hocus_frame(name, |f| {
        f.extend_from_slice(&Message::Sync(message).encode_v1())
    })
}

/// The next frame's document name and message, at most 10 s away.
async fn hocus_next(ws: &mut Socket) -> (String, Hocus) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        let bytes = match frame {
            Some(Ok(WsMessage::Binary(bytes))) => bytes,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            other => panic!("expected a frame, got {other:?}"),
        };
        let mut decoder = DecoderV1::new(Cursor::new(&bytes));
        let name = decoder.read_string().expect("name").to_owned();
        let message = match decoder.read_var::<u64>().expect("type") {
            0 => Hocus::Sync(SyncMessage::decode(&mut decoder).expect("sync")),
            2 => match decoder.read_var::<u64>().expect("auth type") {
                1 => Hocus::Denied(decoder.read_string().expect("reason").to_owned()),
                2 => Hocus::Authenticated(decoder.read_string().expect("scope").to_owned()),
                other => panic!("auth message {other}"),
            },
            8 => Hocus::SyncStatus(decoder.read_var::<i64>().expect("status") == 1),
            other => Hocus::Other(other),
        };
        return (name, message);
    }
}

/// Reads until `want` for document `name` (other frames are skipped), at most 10 s each.
async fn hocus_until(ws: &mut Socket, name: &str, want: impl Fn(&Hocus) -> bool) -> Hocus {
    for _ in 0..100 {
        let (from, message) = hocus_next(ws).await;
        if from == name && want(&message) {
            return message;
        }
    }
    panic!("no such message for {name}");
}

/// The close code the server ends the socket with (frames before it are skipped).
async fn close_code(ws: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the socket ends within 10 s")
        {
            Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

async fn hocus_socket(app: &TestApp) -> Socket {
    let url = app.url("/collab").replacen("http://", "ws://", 1);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The Hocuspocus protocol spoken by hand, for what the stock provider never shows: several
/// documents on one socket, each with its own token and scope; messages sent before a token
/// are held and answered after it; a read-only document's update is answered `SyncStatus`
/// false and never stored; a bad token is `PermissionDenied` with a reason and leaves the
/// socket open; `Stateless` is accepted; and the queues before a token are bounded (4401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hocuspocus_protocol_by_hand_scopes_queues_and_refusals() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Collab").await;
    let written = new_doc(&app, &ada, &org).await;
    let read = new_doc_titled(&app, &ada, &org, "Read only").await;
    let writer_key = key_with(&app, &ada, &["docs:read", "docs:write"]).await;
    let reader_key = key_with(&app, &ada, &["docs:read"]).await;

    let mut ws = hocus_socket(&app).await;
    // Sync step 1 before the token, as a provider may send it: held, then answered.
    let empty = yrs::Doc::new();
    let step1 = || SyncMessage::SyncStep1(empty.transact().state_vector());
    ws.send(hocus_sync(&written, step1())).await.expect("send");
    ws.send(hocus_auth(&written, &writer_key))
        .await
        .expect("send");
    ws.send(hocus_auth(&read, &reader_key)).await.expect("send");
    // Frames for the two documents interleave: gather what each needs.
    let (mut scopes, mut answered) = (HashMap::new(), false);
    while scopes.len() < 2 || !answered {
        match hocus_next(&mut ws).await {
            (name, Hocus::Authenticated(scope)) => {
                scopes.insert(name, scope);
            }
            (name, Hocus::Sync(SyncMessage::SyncStep2(_))) if name == written => {
                // Only after the token: the step 1 sent before it was held till then.
                assert!(scopes.contains_key(&written), "answered before the token");
                answered = true;
            }
            (name, other) => assert!(
                !matches!(other, Hocus::Denied(_)),
                "{name} refused: {other:?}"
            ),
        }
    }
    assert_eq!(scopes[&written], "read-write");
    assert_eq!(scopes[&read], "readonly");

    // An update to each: stored and acknowledged on the one, refused on the other.
    let typed = |text: &str| {
        let doc = yrs::Doc::new();
        let content = doc.get_or_insert_text("content");
        content.insert(&mut doc.transact_mut(), 0, text);
        let update = doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        update
    };
    ws.send(hocus_sync(&written, SyncMessage::Update(typed("kept"))))
        .await
        .expect("send");
    ws.send(hocus_sync(&read, SyncMessage::Update(typed("dropped"))))
        .await
        .expect("send");
    // Either answer may come first (the refusal needs no store).
    let (mut kept, mut dropped) = (None, None);
    while kept.is_none() || dropped.is_none() {
        match hocus_next(&mut ws).await {
            (name, Hocus::SyncStatus(stored)) if name == written => kept = Some(stored),
            (name, Hocus::SyncStatus(stored)) if name == read => dropped = Some(stored),
            _ => {}
        }
    }
    assert_eq!((kept, dropped), (Some(true), Some(false)));
    // Acknowledged means stored: the content endpoint rebuilds it from the events.
    assert_eq!(stored_text(&app, &ada, &org, &written).await, "kept");
    assert_eq!(stored_text(&app, &ada, &org, &read).await, "");

    // A token that names nobody: refused with a reason, the other documents stay open.
    let stranger = new_doc_titled(&app, &ada, &org, "Third").await;
    ws.send(hocus_auth(&stranger, "not-a-key"))
        .await
        .expect("send");
    let refused = hocus_until(&mut ws, &stranger, |m| matches!(m, Hocus::Denied(_))).await;
    assert!(matches!(&refused, Hocus::Denied(reason) if !reason.is_empty()));
    // Stateless is accepted; the socket still carries the open document.
    ws.send(hocus_frame(&written, |f| {
        f.write_var(5u64);
        f.write_string("{\"hello\":1}");
    }))
    .await
    .expect("send");
    ws.send(hocus_sync(&written, SyncMessage::Update(typed("!"))))
        .await
        .expect("send");
    let status = |m: &Hocus| matches!(m, Hocus::SyncStatus(_));
    assert_eq!(
        hocus_until(&mut ws, &written, status).await,
        Hocus::SyncStatus(true)
    );

    // Before a token, at most 64 messages for a document (QUEUED_BEFORE_AUTH) ...
    let mut flood = hocus_socket(&app).await;
    for _ in 0..=64 {
        if flood.send(hocus_sync(&written, step1())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut flood).await, Some(4401));
    // ... and at most 16 documents waiting for theirs (PENDING_DOCUMENTS).
    let mut wide = hocus_socket(&app).await;
    for _ in 0..=16 {
        let name = uuid::Uuid::new_v4().to_string();
        if wide.send(hocus_sync(&name, step1())).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut wide).await, Some(4401));
    app.stop().await;
}
