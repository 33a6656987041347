//! `/ws` conformance: every data message type with its whole envelope, every protocol error,
//! the rate limit's close, a `since` resume under load, and isolation between organizations
//! and channels (test review 2026-12-03, missing tests 2 and 7).

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::SinkExt;
use serde_json::{json, Value};
use support::ws::{self as live, closed, connect, key_for, next, send, Ws};
use support::{TestApp, ORIGIN};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The cursor every `/ws` replay may start from: before the first event.
const START: &str = "00000000000000000000000000000000";

/// An app whose `/ws` accepts client messages back to back, so a test that sends a few
/// messages in a row never trips the minimum interval however fast the machine is.
async fn relaxed_app() -> TestApp {
    support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.001".to_owned())]).await
}

/// Sends a write and returns `(status, body, Cairn-Cursor)`.
async fn write(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = client.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("write");
    let status = r.status().as_u16();
    let cursor = r
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body, cursor)
}

/// The next data message (anything but `PING` and presence) on `ws`.
async fn next_data(ws: &mut Ws) -> Value {
    loop {
        let m = next(ws).await;
        let kind = m["type"].as_str().unwrap_or_default();
        if !matches!(kind, "USER_SUBSCRIBED" | "USER_UNSUBSCRIBED") {
            return m;
        }
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// One expected data message.
struct Expected {
    kind: String,
    aggregate_type: &'static str,
    event: String,
    id: String,
    cursor: String,
    /// The aggregate's sequence number this event has, where the test knows it.
    sequence: Option<i64>,
}

/// Checks `m` against `want` on `org`'s `channel`, field by field, naming the case.
fn check_envelope(m: &Value, want: &Expected, org: &str, channel: &str) {
    let case = format!("{} on {channel}", want.kind);
    assert_eq!(
        keys(m),
        ["channel", "cursor", "data", "orgId", "scope", "ts", "type"]
            .map(str::to_owned)
            .into(),
        "{case}: envelope fields of {m}"
    );
    assert_eq!(m["type"], want.kind.as_str(), "{case}: {m}");
    assert_eq!(m["scope"], "CHANNEL", "{case}: {m}");
    assert_eq!(m["orgId"], org, "{case}: {m}");
    assert_eq!(m["channel"], channel, "{case}: {m}");
    assert!(m["ts"].as_i64().is_some_and(|t| t > 0), "{case}: ts {m}");
    assert_eq!(m["cursor"], want.cursor.as_str(), "{case}: cursor {m}");
    let data = &m["data"];
    assert_eq!(
        keys(data),
        [
            "aggregateType",
            "changes",
            "event",
            "eventId",
            "id",
            "sequence",
            "time"
        ]
        .map(str::to_owned)
        .into(),
        "{case}: data fields of {m}"
    );
    assert_eq!(data["id"], want.id.as_str(), "{case}: {m}");
    assert_eq!(data["aggregateType"], want.aggregate_type, "{case}: {m}");
    assert_eq!(data["event"], want.event.as_str(), "{case}: {m}");
    assert!(
        data["eventId"].as_str().is_some_and(|s| !s.is_empty()),
        "{case}: eventId {m}"
    );
    let sequence = data["sequence"].as_i64();
    assert!(sequence.is_some_and(|n| n >= 1), "{case}: sequence {m}");
    if let Some(want) = want.sequence {
        assert_eq!(sequence, Some(want), "{case}: {m}");
    }
    assert!(
        data["time"]
            .as_str()
            .is_some_and(|t| time::OffsetDateTime::parse(
                t,
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()),
        "{case}: time {m}"
    );
    assert!(data["changes"].is_object(), "{case}: changes {m}");
}

#[tokio::test]
async fn every_data_message_type_has_the_full_envelope_on_its_channel() {
    let app = relaxed_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read", "admin"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let eve = app.sign_in("eve@example.com").await;
    let eve_id: Value = eve
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");

    let mut tasks = connect(&app, Some(&key)).await;
    assert_eq!(next(&mut tasks).await["type"], "CONNECTION_STATUS");
    live::subscribe(&mut tasks, &org, "tasks").await;
    let mut admin = connect(&app, Some(&key)).await;
    next(&mut admin).await;
    live::subscribe(&mut admin, &org, "admin").await;
    let mut public = connect(&app, None).await;
    next(&mut public).await;
    live::subscribe(&mut public, &org, "public").await;

    let base = app.url(&format!("/api/v1/orgs/{org}"));
    let mut board = Vec::new();
    // Tasks, labels and categories: created, updated, deleted.
    for (aggregate_type, path, create_body, patch_body, updated_event) in [
        (
            "task",
            "tasks",
            json!({"title": "one"}),
            json!({"title": "two"}),
            "task.title_changed",
        ),
        (
            "label",
            "labels",
            json!({"name": "bug", "color": "#ff0000"}),
            json!({"name": "defect"}),
            "label.updated",
        ),
        (
            "category",
            "categories",
            json!({"name": "Backend", "color": "#00ff00"}),
            json!({"color": "#0000ff"}),
            "category.updated",
        ),
    ] {
        let (status, body, created) = write(
            &ada,
            reqwest::Method::POST,
            format!("{base}/{path}"),
            Some(create_body),
        )
        .await;
        assert_eq!(status, 201, "create {aggregate_type}: {body}");
        let id = body["id"].as_str().expect("id").to_owned();
        let url = format!("{base}/{path}/{id}");
        let (status, body, updated) =
            write(&ada, reqwest::Method::PATCH, url.clone(), Some(patch_body)).await;
        assert_eq!(status, 200, "update {aggregate_type}: {body}");
        let (status, body, deleted) = write(&ada, reqwest::Method::DELETE, url, None).await;
        assert_eq!(status, 200, "delete {aggregate_type}: {body}");
        let noun = aggregate_type.to_uppercase();
        for (sequence, (action, event, cursor)) in [
            ("CREATE", format!("{aggregate_type}.created"), created),
            ("UPDATE", updated_event.to_owned(), updated),
            ("DELETE", format!("{aggregate_type}.deleted"), deleted),
        ]
        .into_iter()
        .enumerate()
        {
            let kind = format!("{action}_{noun}");
            board.push(Expected {
                cursor: cursor.unwrap_or_else(|| panic!("{kind}: a write has a cursor")),
                kind,
                aggregate_type,
                event,
                id: id.clone(),
                sequence: Some(sequence as i64 + 1),
            });
        }
    }
    // Membership only for the admin channel, then a rename for both admin and public.
    let (status, body, added) = write(
        &ada,
        reqwest::Method::POST,
        format!("{base}/members"),
        Some(json!({"user_id": eve_id["user_id"]})),
    )
    .await;
    assert_eq!(status, 200, "add member: {body}");
    let (status, body, renamed) = write(
        &ada,
        reqwest::Method::PATCH,
        base.clone(),
        Some(json!({"name": "Acme Corp"})),
    )
    .await;
    assert_eq!(status, 200, "rename: {body}");

    for want in &board {
        let m = next_data(&mut tasks).await;
        check_envelope(&m, want, &org, "tasks");
    }
    // The organization's founding took a few events; the member's arrival (two: they join the
    // default team too) and the rename are the next three.
    let arrival = next_data(&mut admin).await;
    assert_eq!(
        arrival["data"]["event"], "organization.member_added",
        "admin: {arrival}"
    );
    let mut sequences = vec![arrival["data"]["sequence"].as_i64().expect("sequence")];
    for (event, cursor) in [
        ("organization.team_member_added", &added),
        ("organization.renamed", &renamed),
    ] {
        let want = Expected {
            kind: "UPDATE_ORGANIZATION".to_owned(),
            aggregate_type: "organization",
            event: event.to_owned(),
            id: org.clone(),
            cursor: cursor.clone().expect("a write has a cursor"),
            sequence: None,
        };
        let m = next_data(&mut admin).await;
        check_envelope(&m, &want, &org, "admin");
        sequences.push(m["data"]["sequence"].as_i64().expect("sequence"));
    }
    assert_eq!(
        sequences,
        [sequences[0], sequences[0] + 1, sequences[0] + 2],
        "admin: consecutive sequences"
    );
    // `public` gets the rename and nothing before it: not the member's arrival.
    let want = Expected {
        kind: "UPDATE_ORGANIZATION".to_owned(),
        aggregate_type: "organization",
        event: "organization.renamed".to_owned(),
        id: org.clone(),
        cursor: renamed.clone().expect("cursor"),
        sequence: Some(sequences[2]),
    };
    let m = next_data(&mut public).await;
    check_envelope(&m, &want, &org, "public");
    assert_eq!(m["data"]["changes"]["name"], "Acme Corp", "{m}");
    app.stop().await;
}

/// Sends `message` and returns the `ERROR` it is answered with, checking its shape.
async fn refused(ws: &mut Ws, case: &str, message: Message) -> String {
    ws.send(message).await.expect("send");
    let reply = next(ws).await;
    assert_eq!(reply["type"], "ERROR", "{case}: {reply}");
    assert!(reply["message"].is_string(), "{case}: {reply}");
    reply["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no code in {reply}"))
        .to_owned()
}

#[tokio::test]
async fn every_protocol_error_has_its_code() {
    let app = relaxed_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    // A member's key without `tasks:read`.
    let (unscoped, _) = key_for(&app, "bob@example.com", json!(["events:read"])).await;

    let text = |v: Value| Message::text(v.to_string());
    let mut anon = connect(&app, None).await;
    assert_eq!(next(&mut anon).await["data"]["authenticated"], false);
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "binary frame",
            Message::binary(b"{\"type\":\"PONG\"}".to_vec()),
            "BAD_MESSAGE",
        ),
        (
            "text that is not JSON",
            Message::text("hello"),
            "BAD_MESSAGE",
        ),
        (
            "JSON without a type",
            text(json!({"orgId": org})),
            "BAD_MESSAGE",
        ),
        (
            "another type before SUBSCRIBE",
            text(json!({"type": "HELLO"})),
            "WAITING_ROOM",
        ),
        (
            "SUBSCRIBE without a channel",
            text(json!({"type": "SUBSCRIBE", "orgId": org})),
            "BAD_REQUEST",
        ),
        (
            "SUBSCRIBE without an orgId",
            text(json!({"type": "SUBSCRIBE", "channel": "public"})),
            "BAD_REQUEST",
        ),
        (
            "SUBSCRIBE to an orgId that is no id",
            text(json!({"type": "SUBSCRIBE", "orgId": "acme", "channel": "public"})),
            "BAD_REQUEST",
        ),
        (
            "SUBSCRIBE to an unknown channel",
            text(json!({"type": "SUBSCRIBE", "orgId": org, "channel": "secret"})),
            "BAD_REQUEST",
        ),
        (
            "SUBSCRIBE with a since that is no cursor",
            text(
                json!({"type": "SUBSCRIBE", "orgId": org, "channel": "public", "since": "yesterday"}),
            ),
            "BAD_CURSOR",
        ),
        (
            "anonymous SUBSCRIBE to tasks",
            text(json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks"})),
            "UNAUTHORIZED",
        ),
        (
            "anonymous SUBSCRIBE to admin",
            text(json!({"type": "SUBSCRIBE", "orgId": org, "channel": "admin"})),
            "UNAUTHORIZED",
        ),
    ];
    for (case, message, code) in cases {
        assert_eq!(refused(&mut anon, case, message).await, code, "{case}");
    }
    // After all that, the connection still works: the waiting room is left by subscribing,
    // and only then is an unknown type UNKNOWN_TYPE.
    live::subscribe(&mut anon, &org, "public").await;
    assert_eq!(
        refused(
            &mut anon,
            "unknown type in a room",
            text(json!({"type": "HELLO"}))
        )
        .await,
        "UNKNOWN_TYPE"
    );

    let mut member = connect(&app, Some(&key)).await;
    assert_eq!(next(&mut member).await["data"]["authenticated"], true);
    assert_eq!(
        refused(
            &mut member,
            "a member without the admin scope",
            text(json!({"type": "SUBSCRIBE", "orgId": org, "channel": "admin"}))
        )
        .await,
        "FORBIDDEN"
    );
    let mut bob = connect(&app, Some(&unscoped)).await;
    assert_eq!(next(&mut bob).await["data"]["authenticated"], true);
    assert_eq!(
        refused(
            &mut bob,
            "a key without tasks:read",
            text(json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks"}))
        )
        .await,
        "FORBIDDEN"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_tenth_message_too_soon_closes_the_connection_with_1008() {
    // A minute between messages: every message after the first is too soon on any machine.
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "60000".to_owned())]).await;
    let mut ws = connect(&app, None).await;
    assert_eq!(next(&mut ws).await["type"], "CONNECTION_STATUS");
    send(&mut ws, json!({"type": "PONG"})).await;
    for n in 1..=9 {
        send(&mut ws, json!({"type": "PONG"})).await;
        let m = next(&mut ws).await;
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("ERROR"), Some("RATE_LIMITED")),
            "offence {n}: {m}"
        );
    }
    // Nine offences leave it open; the tenth is answered, then closed as a policy violation.
    send(&mut ws, json!({"type": "PONG"})).await;
    let m = next(&mut ws).await;
    assert_eq!(m["code"], "RATE_LIMITED", "offence 10: {m}");
    let ended = closed(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(ended.map(|(code, _)| code), Some(1008));
    app.stop().await;
}

#[tokio::test]
async fn a_since_resume_while_writes_keep_committing_has_no_gap_and_no_duplicate() {
    let app = relaxed_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let mut first = connect(&app, Some(&key)).await;
    next(&mut first).await;
    live::subscribe(&mut first, &org, "tasks").await;

    const TOTAL: usize = 40;
    let base = app.url("");
    let writer = {
        let (ada, org) = (ada.clone(), org.clone());
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(TOTAL);
            for n in 0..TOTAL {
                ids.push(live::create_task_at(&base, &ada, &org, &format!("t{n}")).await);
            }
            ids
        })
    };
    // Read a few, remember the last cursor, and go away while the writer carries on.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    while seen.len() < 8 {
        let m = live::until(&mut first, "CREATE_TASK").await;
        seen.push(m["data"]["id"].as_str().expect("id").to_owned());
        cursor = m["cursor"].as_str().expect("cursor").to_owned();
    }
    drop(first);
    let mut resumed = connect(&app, Some(&key)).await;
    next(&mut resumed).await;
    send(
        &mut resumed,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": cursor}),
    )
    .await;
    assert_eq!(next(&mut resumed).await["type"], "SUBSCRIBED");
    while seen.len() < TOTAL {
        let m = live::until(&mut resumed, "CREATE_TASK").await;
        seen.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    let written = writer.await.expect("writer");
    assert_eq!(seen, written, "every task once, in commit order");
    app.stop().await;
}

/// A cookie session signed in through the magic link, kept by hand (so it can open `/ws`).
async fn session_cookie(app: &TestApp, email: &str) -> String {
    let mut seen = app.outbox_files();
    assert_eq!(
        app.send_link(&support::browser(), email).await.status(),
        202
    );
    let link = app.next_outbox_link(&mut seen).await;
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let done = bare
        .post(app.url(link.trim_start_matches(ORIGIN)))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("confirm");
    assert_eq!(done.status(), 303);
    done.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

async fn ws_with_cookie(app: &TestApp, cookie: &str, origin: &str) -> Ws {
    let mut request = app
        .url("/ws")
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("cookie", cookie.parse().expect("cookie"));
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("origin"));
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    ws
}

#[tokio::test]
async fn rooms_are_isolated_between_organizations_live_and_by_since() {
    let app = relaxed_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let a = app.create_org_as(&ada, "Acme").await;
    let eve = app.sign_in("eve@example.com").await;
    let b = app.create_org_as(&eve, "Other").await;

    let mut watching = connect(&app, Some(&key)).await;
    next(&mut watching).await;
    live::subscribe(&mut watching, &a, "tasks").await;
    let mut ours = BTreeSet::new();
    for n in 0..3 {
        live::create_task(&app, &eve, &b, &format!("b{n}")).await;
        ours.insert(live::create_task(&app, &ada, &a, &format!("a{n}")).await);
        live::create_task(&app, &eve, &b, &format!("b{n}'")).await;
    }
    let sentinel = live::create_task(&app, &ada, &a, "last").await;
    ours.insert(sentinel.clone());

    // Live, then replayed from the beginning: only A's events, all of them, up to the
    // sentinel (created last, so anything of B's would have come before it).
    let mut replay = connect(&app, Some(&key)).await;
    next(&mut replay).await;
    send(
        &mut replay,
        json!({"type": "SUBSCRIBE", "orgId": a, "channel": "tasks", "since": START}),
    )
    .await;
    assert_eq!(next(&mut replay).await["type"], "SUBSCRIBED");
    for (case, ws) in [("live", &mut watching), ("since", &mut replay)] {
        let mut got = BTreeSet::new();
        loop {
            let m = next_data(ws).await;
            assert_eq!(m["orgId"], a.as_str(), "{case}: {m}");
            assert_eq!(m["type"], "CREATE_TASK", "{case}: {m}");
            let id = m["data"]["id"].as_str().expect("id").to_owned();
            assert!(ours.contains(&id), "{case}: not A's task: {m}");
            got.insert(id.clone());
            if id == sentinel {
                break;
            }
        }
        assert_eq!(got, ours, "{case}: every one of A's tasks");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_cookie_handshake_from_a_foreign_origin_is_anonymous() {
    let app = relaxed_app().await;
    let cookie = session_cookie(&app, "ada@example.com").await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", ORIGIN.parse().expect("origin"));
    headers.insert("cookie", cookie.parse().expect("cookie"));
    let ada = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");
    let org = app.create_org_as(&ada, "Acme").await;

    // The same cookie from our own page is signed in (so the cookie itself works)...
    let mut own = ws_with_cookie(&app, &cookie, ORIGIN).await;
    let status = next(&mut own).await;
    assert_eq!(status["data"]["authenticated"], true, "{status}");
    live::subscribe(&mut own, &org, "tasks").await;
    // ...and from another site's page it is not.
    let mut foreign = ws_with_cookie(&app, &cookie, "https://evil.example").await;
    let status = next(&mut foreign).await;
    assert_eq!(status["type"], "CONNECTION_STATUS");
    assert_eq!(status["data"]["authenticated"], false, "{status}");
    let denied = live::join(&mut foreign, &org, "tasks").await;
    assert_eq!(denied["code"], "UNAUTHORIZED", "{denied}");
    app.stop().await;
}
