//! Live boards over real WebSockets (tokio-tungstenite) and the integrator feeds (JSON, SSE),
//! on the in-process bus.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::TestApp;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Signs `email` in and returns an API key with `scopes`, and the browser.
async fn key_for(app: &TestApp, email: &str, scopes: Value) -> (String, reqwest::Client) {
    let browser = app.sign_in(email).await;
    let key: Value = browser
        .post(app.url("/api/v1/me/api-keys"))
        .json(&json!({"name": "live", "scopes": scopes}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    (key["key"].as_str().expect("key").to_owned(), browser)
}

async fn connect(app: &TestApp, key: Option<&str>) -> Ws {
    let url = app.url("/ws").replacen("http://", "ws://", 1);
    let mut request = url.into_client_request().expect("request");
    if let Some(key) = key {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("header"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    ws
}

/// The next JSON message that is not a PING, within 10 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("json");
            if value["type"] != "PING" {
                return value;
            }
        }
    }
}

/// Messages until one of type `kind`.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

async fn create_task(app: &TestApp, c: &reqwest::Client, org: &str, title: &str) -> String {
    let r = c
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn boards_update_live_and_resume_with_since_without_gap_or_duplicate() {
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned())]).await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;

    let mut ws = connect(&app, Some(&key)).await;
    let status = next(&mut ws).await;
    assert_eq!(status["type"], "CONNECTION_STATUS");
    assert_eq!(status["data"]["authenticated"], true);

    // The waiting room: nothing but SUBSCRIBE, UNSUBSCRIBE and PONG before a subscription.
    send(&mut ws, json!({"type": "HELLO"})).await;
    let refused = next(&mut ws).await;
    assert_eq!(refused["type"], "ERROR");
    assert_eq!(refused["code"], "WAITING_ROOM");

    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks"}),
    )
    .await;
    let subscribed = next(&mut ws).await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    let first = create_task(&app, &ada, &org, "first").await;
    let created = until(&mut ws, "CREATE_TASK").await;
    assert_eq!(created["orgId"], org.as_str());
    assert_eq!(created["channel"], "tasks");
    assert_eq!(created["data"]["id"], first.as_str());
    assert!(created["ts"].is_i64());
    let cursor = created["cursor"].as_str().expect("cursor").to_owned();
    drop(ws);

    // Missed while away: three tasks. A `since` subscription replays them, then goes live.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(create_task(&app, &ada, &org, &format!("missed {n}")).await);
    }
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": cursor}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "SUBSCRIBED");
    let live = create_task(&app, &ada, &org, "live").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let m = until(&mut ws, "CREATE_TASK").await;
        seen.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    missed.push(live);
    assert_eq!(
        seen, missed,
        "every missed task once, in order, then the live one"
    );

    // Too far behind: RESYNC_REQUIRED.
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": "00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "SUBSCRIBED");
    // 5 task events exist; the limit in this test app is the default 1000, so this replays.
    assert_eq!(next(&mut ws).await["type"], "CREATE_TASK");
    app.stop().await;
}

#[tokio::test]
async fn channel_rules_heartbeat_and_rate_limit() {
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_PING_SECONDS", "0.2".to_owned()),
        ("CAIRN_WS_TIMEOUT_SECONDS", "0.5".to_owned()),
        ("CAIRN_WS_MIN_INTERVAL_MS", "200".to_owned()),
        ("CAIRN_WS_REPLAY_LIMIT", "2".to_owned()),
    ])
    .await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let (stranger, _) = key_for(&app, "eve@example.com", json!(["tasks:read"])).await;

    // Anonymous: public yes, tasks no.
    let mut anon = connect(&app, None).await;
    assert_eq!(next(&mut anon).await["data"]["authenticated"], false);
    send(
        &mut anon,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks"}),
    )
    .await;
    let denied = next(&mut anon).await;
    assert_eq!(
        (denied["type"].as_str(), denied["code"].as_str()),
        (Some("ERROR"), Some("UNAUTHORIZED"))
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    send(
        &mut anon,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "public"}),
    )
    .await;
    assert_eq!(next(&mut anon).await["type"], "SUBSCRIBED");

    // A signed-in non-member: tasks no; a member who is not an administrator: admin no.
    let mut eve = connect(&app, Some(&stranger)).await;
    next(&mut eve).await;
    send(
        &mut eve,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks"}),
    )
    .await;
    assert_eq!(next(&mut eve).await["code"], "FORBIDDEN");

    // Rate limit: two messages 200 ms apart are fine, back to back is not.
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "admin"}),
    )
    .await;
    send(&mut ws, json!({"type": "PONG"})).await;
    assert_eq!(
        next(&mut ws).await["type"],
        "SUBSCRIBED",
        "the founder administers"
    );
    let limited = next(&mut ws).await;
    assert_eq!(limited["code"], "RATE_LIMITED");

    // Too far behind for a replay of at most 2 events.
    for n in 0..3 {
        create_task(&app, &ada, &org, &format!("t{n}")).await;
    }
    let mut behind = connect(&app, Some(&key)).await;
    next(&mut behind).await;
    send(
        &mut behind,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": "00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(next(&mut behind).await["type"], "SUBSCRIBED");
    assert_eq!(next(&mut behind).await["type"], "RESYNC_REQUIRED");

    // Heartbeat: a client that never answers PING is closed after the timeout.
    let mut silent = connect(&app, None).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = silent.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| f.reason.to_string());
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(closed.as_deref(), Some("no PONG in time"));

    // The anonymous public subscriber answered no PING either, so it is gone too; a client
    // that answers stays.
    let mut lively = connect(&app, None).await;
    next(&mut lively).await;
    for _ in 0..6 {
        let m = tokio::time::timeout(Duration::from_secs(2), lively.next())
            .await
            .expect("ping")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            if t.contains("\"PING\"") {
                send(&mut lively, json!({"type": "PONG"})).await;
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_json_feed_and_sse_resume_and_stay_within_the_callers_orgs() {
    let app = support::spawn_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let eve = app.sign_in("eve@example.com").await;
    let other = app.create_org_as(&eve, "Other").await;
    let task = create_task(&app, &ada, &org, "one").await;
    create_task(&app, &eve, &other, "not for ada").await;

    let integrator = support::with_key(&key);
    let page: Value = integrator
        .get(app.url("/api/v1/events?limit=1000"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let events = page["events"].as_array().expect("events");
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["cairnorg"], org.as_str(), "only ada's organization: {e}");
        assert!(e["source"]
            .as_str()
            .expect("source")
            .starts_with(&format!("/orgs/{org}/")));
    }
    let filtered: Value = integrator
        .get(app.url("/api/v1/events?types=task.created"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let filtered = filtered["events"].as_array().expect("events");
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["type"], "cairn.task.created.v1");
    assert_eq!(filtered[0]["subject"], format!("task/{task}"));
    let bad = integrator
        .get(app.url("/api/v1/events?limit=0"))
        .send()
        .await
        .expect("feed");
    assert_eq!(support::error_code(bad, 400).await, "invalid_query");

    // SSE: read two events, disconnect, resume from the last id: every event exactly once.
    let read = |after: Option<String>, n: usize| {
        let integrator = integrator.clone();
        let url = app.url("/api/v1/events/stream?aggregate_type=task");
        async move {
            let mut request = integrator.get(url);
            if let Some(after) = after {
                request = request.header("last-event-id", after);
            }
            let mut body = request.send().await.expect("sse");
            let mut text = String::new();
            let mut out: Vec<(String, Value)> = Vec::new();
            while out.len() < n {
                let chunk = tokio::time::timeout(Duration::from_secs(10), body.chunk())
                    .await
                    .expect("an event in time")
                    .expect("chunk")
                    .expect("open");
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let id = block
                        .lines()
                        .find_map(|l| l.strip_prefix("id: "))
                        .map(str::to_owned);
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                    if let (Some(id), Some(data)) = (id, data) {
                        out.push((id, serde_json::from_str(data).expect("json")));
                    }
                }
            }
            out
        }
    };
    create_task(&app, &ada, &org, "two").await;
    let first = read(None, 2).await;
    create_task(&app, &ada, &org, "three").await;
    let rest = read(Some(first[1].0.clone()), 1).await;
    let titles: Vec<&str> = first
        .iter()
        .chain(rest.iter())
        .filter_map(|(_, e)| e["data"]["title"].as_str())
        .collect();
    assert_eq!(titles, ["one", "two", "three"]);
    app.stop().await;
}
