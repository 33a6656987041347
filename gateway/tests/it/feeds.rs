//! The integrator feeds (`/api/v1/events` pages and the `/api/v1/events/stream` SSE): paging to
//! the end, resuming, the `types` filter, the scope, the heartbeat and the end at shutdown
//! (test review 2026-12-03, missing test 8).

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::ws::{create_task, key_for};

/// A whole deadline for anything a test waits on.
const WITHIN: Duration = Duration::from_secs(10);

/// An SSE response read by hand: events as `(id, data)`.
struct Sse {
    body: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(client: &reqwest::Client, url: &str) -> Self {
        let body = client.get(url).send().await.expect("sse");
        assert_eq!(body.status(), 200, "{url}");
        assert_eq!(
            body.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Self {
            body,
            buffer: String::new(),
        }
    }

    /// Reads one more chunk: `false` once the stream has ended.
    async fn read(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.body.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
                true
            }
            Ok(Ok(None)) | Ok(Err(_)) => false,
            Err(_) => panic!("nothing arrived on the stream in time"),
        }
    }

    /// The next event, within [`WITHIN`] (comments are skipped).
    async fn next(&mut self) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let id = block.lines().find_map(|l| l.strip_prefix("id: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    return (id.to_owned(), serde_json::from_str(data).expect("json"));
                }
            }
            assert!(self.read(deadline).await, "the stream ended early");
        }
    }
}

/// The cursor a write answered with.
fn cursor_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .expect("a write has a cursor")
        .to_owned()
}

async fn page(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(&url).send().await.expect("page");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("json")
}

#[tokio::test]
async fn json_pages_follow_next_to_the_end_with_every_event_once_in_order() {
    let app = support::spawn_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let mut tasks = Vec::new();
    for n in 0..7 {
        tasks.push(create_task(&app, &ada, &org, &format!("t{n}")).await);
    }
    let feed = support::with_key(&key);
    let whole = page(&feed, app.url("/api/v1/events?limit=1000")).await;
    let whole: Vec<Value> = whole["events"].as_array().expect("events").clone();
    assert!(whole.len() >= tasks.len(), "{whole:?}");

    // Pages of 3, each starting at the last one's `next`, until an empty page.
    let mut after = String::new();
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let body = page(
            &feed,
            app.url(&format!("/api/v1/events?limit=3&after={after}")),
        )
        .await;
        let events = body["events"].as_array().expect("events");
        let next = body["next"].as_str().expect("next").to_owned();
        pages += 1;
        assert!(pages < 100, "paging never ended");
        assert!(events.len() <= 3, "page {pages}: {body}");
        if events.is_empty() {
            // The end: an empty page whose `next` is where it started.
            assert_eq!(next, after, "page {pages}: {body}");
            break;
        }
        assert_eq!(
            next,
            events[events.len() - 1]["cairncursor"]
                .as_str()
                .expect("cursor"),
            "page {pages}"
        );
        paged.extend(events.iter().cloned());
        after = next;
    }
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&paged), ids(&whole), "the pages hold the whole feed");
    let cursors: Vec<&str> = paged
        .iter()
        .map(|e| e["cairncursor"].as_str().expect("cursor"))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "in commit order, no repeat: {cursors:?}"
    );
    let created: Vec<String> = paged
        .iter()
        .filter(|e| e["type"] == "cairn.task.created.v1")
        .map(|e| e["subject"].as_str().expect("subject").to_owned())
        .collect();
    let expected: Vec<String> = tasks.iter().map(|t| format!("task/{t}")).collect();
    assert_eq!(created, expected);
    app.stop().await;
}

#[tokio::test]
async fn the_types_filter_holds_on_pages_and_on_the_stream_and_sse_resumes_after_a_cursor() {
    let app = support::spawn_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let tasks_url = app.url(&format!("/api/v1/orgs/{org}/tasks"));
    let mut cursors = Vec::new();
    let mut ids = Vec::new();
    for n in 0..4 {
        let r = ada
            .post(&tasks_url)
            .json(&json!({"title": format!("t{n}")}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        cursors.push(cursor_of(&r));
        let body: Value = r.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
        // An event of another type between every two creations.
        let r = ada
            .patch(format!("{tasks_url}/{}", ids[n]))
            .json(&json!({"title": format!("t{n}!")}))
            .send()
            .await
            .expect("edit");
        assert_eq!(r.status(), 200);
    }
    let deleted = ada
        .delete(format!("{tasks_url}/{}", ids[0]))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    let feed = support::with_key(&key);

    // Pages: two types, and nothing else.
    let body = page(
        &feed,
        app.url("/api/v1/events?types=task.created,task.deleted&limit=1000"),
    )
    .await;
    let got: Vec<(String, String)> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").to_owned(),
                e["subject"].as_str().expect("subject").to_owned(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = ids
        .iter()
        .map(|id| ("cairn.task.created.v1".to_owned(), format!("task/{id}")))
        .collect();
    want.push((
        "cairn.task.deleted.v1".to_owned(),
        format!("task/{}", ids[0]),
    ));
    assert_eq!(got, want);

    // The stream: from after the second creation, only creations: the third and fourth.
    let mut sse = Sse::open(
        &feed,
        &app.url(&format!(
            "/api/v1/events/stream?types=task.created&after={}",
            cursors[1]
        )),
    )
    .await;
    for (n, id) in ids.iter().enumerate().skip(2) {
        let (cursor, event) = sse.next().await;
        assert_eq!(event["type"], "cairn.task.created.v1", "event {n}: {event}");
        assert_eq!(event["subject"], format!("task/{id}"), "event {n}");
        assert_eq!(cursor, cursors[n], "event {n}: the id is the cursor");
    }
    // Live, an edit is filtered out and the next creation comes through.
    let r = ada
        .patch(format!("{tasks_url}/{}", ids[1]))
        .json(&json!({"title": "again"}))
        .send()
        .await
        .expect("edit");
    assert_eq!(r.status(), 200);
    let last = create_task(&app, &ada, &org, "live").await;
    let (_, event) = sse.next().await;
    assert_eq!(event["subject"], format!("task/{last}"), "{event}");
    assert_eq!(event["type"], "cairn.task.created.v1");
    app.stop().await;
}

#[tokio::test]
async fn a_key_without_events_read_gets_insufficient_scope_on_both_feeds() {
    let app = support::spawn_app().await;
    let (key, _) = key_for(
        &app,
        "ada@example.com",
        json!(["tasks:read", "tasks:write"]),
    )
    .await;
    let client = support::with_key(&key);
    for path in ["/api/v1/events", "/api/v1/events/stream"] {
        let r = client.get(app.url(path)).send().await.expect("feed");
        assert_eq!(
            support::error_code(r, 403).await,
            "insufficient_scope",
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_stream_ends_when_the_server_stops() {
    let app = support::spawn_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let task = create_task(&app, &ada, &org, "one").await;
    let feed = support::with_key(&key);
    let mut sse = Sse::open(&feed, &app.url("/api/v1/events/stream?types=task.created")).await;
    let (_, event) = sse.next().await;
    assert_eq!(event["subject"], format!("task/{task}"));
    // The stream is idle now; stopping the server ends it (and the server finishes).
    let stopping = tokio::spawn(app.stop());
    let deadline = tokio::time::Instant::now() + WITHIN;
    while sse.read(deadline).await {}
    assert!(
        !sse.buffer.contains("data: "),
        "no event after: {}",
        sse.buffer
    );
    tokio::time::timeout(WITHIN, stopping)
        .await
        .expect("the server stops in time")
        .expect("stop");
}

#[tokio::test]
async fn an_idle_stream_sends_a_heartbeat_every_configured_interval() {
    // With the default of 15 s no heartbeat would come within the 10 s deadline.
    let app = support::spawn_app_with(&[("CAIRN_SSE_HEARTBEAT_SECONDS", "0.2".to_owned())]).await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    app.create_org_as(&ada, "Acme").await;
    let feed = support::with_key(&key);
    // Nothing matches: the stream stays idle and sends only comments.
    let mut sse = Sse::open(&feed, &app.url("/api/v1/events/stream?types=task.deleted")).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while sse.buffer.matches(": heartbeat\n").count() < 3 {
        assert!(sse.read(deadline).await, "the stream ended");
    }
    assert!(!sse.buffer.contains("data: "), "{}", sse.buffer);
    app.stop().await;
}
