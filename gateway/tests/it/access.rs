//! The one access policy, seen from outside: every read path gives the same answers for the
//! same reader, and open streams stop delivering once access ends (on the in-process bus and on
//! two nodes over NATS). Named after the security review's findings (2026-12-03).

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::ws::{self as live, create_task, next, until, Ws};
use support::{TestApp, ORIGIN};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A signed-in person as a client: a cookie (sent by hand, so it can also open WebSockets)
/// and the page's `Origin`.
struct Person {
    http: reqwest::Client,
    cookie: String,
    id: String,
}

/// Signs `email` in through the magic link and keeps the session cookie.
async fn person(app: &TestApp, email: &str) -> Person {
    let mut seen = app.outbox_files();
    let plain = support::browser();
    assert_eq!(app.send_link(&plain, email).await.status(), 202);
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
    let cookie = done
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", ORIGIN.parse().expect("origin"));
    headers.insert("cookie", cookie.parse().expect("cookie"));
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The session counts once the identity read model has it (sign-in waits for that, but
    // only up to 5 s on a loaded machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let me: Value = loop {
        let r = http.get(app.url("/api/v1/me")).send().await.expect("me");
        if r.status() == 200 {
            break r.json().await.expect("json");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never worked: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = me["user_id"].as_str().expect("user id").to_owned();
    Person { http, cookie, id }
}

/// An API key of `owner` with `scopes`: `(key, key id)`.
async fn key_of(app: &TestApp, owner: &Person, scopes: Value) -> (String, String) {
    let issued: Value = owner
        .http
        .post(app.url("/api/v1/me/api-keys"))
        .json(&json!({"name": "matrix", "scopes": scopes}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    (
        issued["key"].as_str().expect("key").to_owned(),
        issued["id"].as_str().expect("id").to_owned(),
    )
}

/// How a reader reaches the server.
#[derive(Clone)]
enum Cred {
    Anonymous,
    Cookie(String),
    Key(String),
}

impl Cred {
    fn http(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        match self {
            Self::Anonymous => {}
            Self::Cookie(cookie) => {
                headers.insert("origin", ORIGIN.parse().expect("origin"));
                headers.insert("cookie", cookie.parse().expect("cookie"));
            }
            Self::Key(key) => {
                headers.insert(
                    "authorization",
                    format!("Bearer {key}").parse().expect("header"),
                );
            }
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    async fn ws(&self, base: &str) -> Ws {
        let url = format!("{base}/ws").replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().expect("request");
        match self {
            Self::Anonymous => {}
            Self::Cookie(cookie) => {
                request
                    .headers_mut()
                    .insert("cookie", cookie.parse().expect("cookie"));
                request
                    .headers_mut()
                    .insert("origin", ORIGIN.parse().expect("origin"));
            }
            Self::Key(key) => {
                request.headers_mut().insert(
                    "authorization",
                    format!("Bearer {key}").parse().expect("header"),
                );
            }
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        assert_eq!(next(&mut ws).await["type"], "CONNECTION_STATUS");
        ws
    }
}

/// The classes of an organization's events, as the policy names them.
fn class_of(event_type: &str) -> &'static str {
    match event_type {
        "organization.created" | "organization.renamed" => "public",
        t if t.starts_with("organization.") => "admin",
        _ => "board",
    }
}

/// What a reader sees of organization `org` through every read path.
#[derive(Debug, Default)]
struct Seen {
    ws: BTreeSet<&'static str>,
    feed: Option<BTreeSet<&'static str>>,
    sse: Option<BTreeSet<&'static str>>,
    task_history: Option<bool>,
    org_history: Option<bool>,
    me: u16,
}

/// The classes of `org`'s events among CloudEvents.
fn classes(events: &[Value], org: &str) -> BTreeSet<&'static str> {
    events
        .iter()
        .filter(|e| e["cairnorg"] == org)
        .map(|e| {
            let stored = e["type"]
                .as_str()
                .expect("type")
                .trim_start_matches("cairn.")
                .rsplit_once(".v")
                .expect("versioned")
                .0;
            class_of(stored)
        })
        .collect()
}

/// Reads `org` through every path as `cred`. The SSE stream is read until `sentinel` (a task
/// in an organization every signed-in reader belongs to, created last), so what did not come
/// before it was held back, not slow.
async fn look(app: &TestApp, cred: &Cred, org: &str, task: &str, sentinel: &str) -> Seen {
    let mut seen = Seen::default();
    let mut ws = cred.ws(&app.url("")).await;
    for channel in ["public", "tasks", "admin"] {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let reply = live::join(&mut ws, org, channel).await;
        if reply["type"] == "SUBSCRIBED" {
            seen.ws.insert(channel);
        } else {
            assert_eq!(reply["type"], "ERROR", "{reply}");
        }
    }
    let http = cred.http();
    seen.me = http
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .status()
        .as_u16();
    let page = http
        .get(app.url("/api/v1/events?limit=1000"))
        .send()
        .await
        .expect("feed");
    if page.status() == 200 {
        let body: Value = page.json().await.expect("json");
        seen.feed = Some(classes(body["events"].as_array().expect("events"), org));
        let mut sse = http
            .get(app.url("/api/v1/events/stream"))
            .send()
            .await
            .expect("sse");
        assert_eq!(sse.status(), 200);
        let mut text = String::new();
        let mut events = Vec::new();
        'read: loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
                .await
                .expect("the sentinel arrives")
                .expect("chunk")
                .expect("open");
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let event: Value = serde_json::from_str(data).expect("json");
                    if event["subject"] == format!("task/{sentinel}") {
                        break 'read;
                    }
                    events.push(event);
                }
            }
        }
        seen.sse = Some(classes(&events, org));
    } else {
        assert!(
            [401, 403].contains(&page.status().as_u16()),
            "{}",
            page.status()
        );
        let sse = http
            .get(app.url("/api/v1/events/stream"))
            .send()
            .await
            .expect("sse");
        assert_eq!(sse.status(), page.status(), "the stream refuses alike");
    }
    for (path, into) in [
        (format!("/api/v1/streams/task/{task}/events"), 0),
        (format!("/api/v1/streams/organization/{org}/events"), 1),
    ] {
        let status = http
            .get(app.url(&path))
            .send()
            .await
            .expect("history")
            .status()
            .as_u16();
        let readable = match status {
            200 => Some(true),
            404 => Some(false),
            401 | 403 => None,
            other => panic!("{path}: {other}"),
        };
        if into == 0 {
            seen.task_history = readable;
        } else {
            seen.org_history = readable;
        }
    }
    seen
}

#[tokio::test]
async fn one_access_matrix_holds_on_every_read_path() {
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned())]).await;
    let founder = person(&app, "founder@example.com").await;
    let manager = person(&app, "manager@example.com").await;
    let writer = person(&app, "writer@example.com").await;
    let member = person(&app, "member@example.com").await;
    let stranger = person(&app, "stranger@example.com").await;
    let org = app.create_org_as(&founder.http, "Acme").await;
    let common = app.create_org_as(&founder.http, "Common").await;
    let post = |path: String, body: Value| {
        let http = founder.http.clone();
        let url = app.url(&path);
        async move {
            let r = http.post(url).json(&body).send().await.expect("post");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<Value>().await.expect("json")
        }
    };
    for p in [&manager, &writer, &member] {
        post(
            format!("/api/v1/orgs/{org}/members"),
            json!({"user_id": p.id}),
        )
        .await;
    }
    for p in [&manager, &writer, &member, &stranger] {
        post(
            format!("/api/v1/orgs/{common}/members"),
            json!({"user_id": p.id}),
        )
        .await;
    }
    for (name, permission, who) in [
        ("Ops", "admin.manageTeams", &manager),
        ("Writers", "tasks.create", &writer),
    ] {
        let team = post(format!("/api/v1/orgs/{org}/teams"), json!({"name": name})).await;
        let team = team["id"].as_str().expect("team").to_owned();
        let set = founder
            .http
            .put(app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions")))
            .json(&json!({"permissions": [permission]}))
            .send()
            .await
            .expect("permissions");
        assert_eq!(set.status(), 200);
        post(
            format!("/api/v1/orgs/{org}/teams/{team}/members"),
            json!({"user_id": who.id}),
        )
        .await;
    }
    let task = create_task(&app, &founder.http, &org, "board").await;
    let renamed = founder
        .http
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .json(&json!({"name": "Acme Two"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(renamed.status(), 200);
    let mut keys = Vec::new();
    for scopes in [
        json!(["tasks:read"]),
        json!(["events:read"]),
        json!(["admin"]),
        json!(["docs:read"]),
    ] {
        keys.push((scopes.clone(), key_of(&app, &founder, scopes).await.0));
    }
    let sentinel = create_task(&app, &founder.http, &common, "sentinel").await;

    // Who may read which class of Acme's events, by the policy: the organization's public
    // face to anyone; its board to members; its administration to holders of an `admin.*`
    // permission; a key no more than its owner and its scopes (`events:read` reads all).
    let all = ["public", "tasks", "admin"];
    let mut cases: Vec<(String, Cred, Vec<&str>)> = vec![
        (
            "administrator".into(),
            Cred::Cookie(founder.cookie.clone()),
            all.to_vec(),
        ),
        (
            "member with admin.manageTeams".into(),
            Cred::Cookie(manager.cookie.clone()),
            all.to_vec(),
        ),
        (
            "member with tasks.create".into(),
            Cred::Cookie(writer.cookie.clone()),
            vec!["public", "tasks"],
        ),
        (
            "member without permissions".into(),
            Cred::Cookie(member.cookie.clone()),
            vec!["public", "tasks"],
        ),
        (
            "non-member".into(),
            Cred::Cookie(stranger.cookie.clone()),
            vec!["public"],
        ),
        ("anonymous".into(), Cred::Anonymous, vec!["public"]),
    ];
    for (scopes, key) in &keys {
        let rights = match scopes[0].as_str() {
            Some("tasks:read") => vec!["public", "tasks"],
            Some("events:read") => all.to_vec(),
            Some("admin") => vec!["public", "admin"],
            _ => vec!["public"],
        };
        cases.push((
            format!("administrator's key {scopes}"),
            Cred::Key(key.clone()),
            rights,
        ));
    }

    for (label, cred, rights) in cases {
        let seen = look(&app, &cred, &org, &task, &sentinel).await;
        let rights: BTreeSet<&str> = rights.into_iter().collect();
        assert_eq!(seen.ws, rights, "{label}: /ws channels");
        let member_rights: BTreeSet<&str> = rights
            .iter()
            .map(|c| if *c == "tasks" { "board" } else { *c })
            .collect();
        // The feeds carry the reader's own organizations: a non-member sees none of Acme.
        let in_feeds = if rights.contains("tasks") || rights.contains("admin") {
            member_rights.clone()
        } else {
            BTreeSet::new()
        };
        let key_without_events = matches!(&cred, Cred::Key(_)) && !label.contains("events:read");
        match (&cred, key_without_events) {
            (Cred::Anonymous, _) | (_, true) => {
                assert_eq!(seen.feed, None, "{label}: feed refused");
                assert_eq!(seen.task_history, None, "{label}: history refused");
            }
            _ => {
                assert_eq!(seen.feed.as_ref(), Some(&in_feeds), "{label}: feed");
                assert_eq!(seen.sse.as_ref(), Some(&in_feeds), "{label}: SSE");
                assert_eq!(
                    seen.task_history,
                    Some(rights.contains("tasks")),
                    "{label}: task history"
                );
                assert_eq!(
                    seen.org_history,
                    Some(rights.contains("admin")),
                    "{label}: organization history"
                );
            }
        }
        let expected_me = if matches!(cred, Cred::Anonymous) {
            401
        } else {
            200
        };
        assert_eq!(seen.me, expected_me, "{label}: /me");
    }
    app.stop().await;
}

#[tokio::test]
async fn feeds_do_not_give_members_the_organizations_admin_only_events() {
    let app = support::spawn_app().await;
    let founder = person(&app, "founder@example.com").await;
    let member = person(&app, "member@example.com").await;
    let org = app.create_org_as(&founder.http, "Acme").await;
    let added = founder
        .http
        .post(app.url(&format!("/api/v1/orgs/{org}/members")))
        .json(&json!({"user_id": member.id}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    let (key, _) = key_of(&app, &member, json!(["events:read"])).await;
    let page: Value = support::with_key(&key)
        .get(app.url("/api/v1/events?limit=1000"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let types: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"cairn.organization.created.v1"),
        "the public face is there: {types:?}"
    );
    for admin_only in [
        "cairn.organization.member_added.v1",
        "cairn.organization.team_permissions_set.v1",
        "cairn.organization.team_member_added.v1",
    ] {
        assert!(
            !types.contains(&admin_only),
            "{admin_only} leaked: {types:?}"
        );
    }
    app.stop().await;
}

/// Reads `/ws` until the server closes it: every message on the way, and the close code.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut seen = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(text))) => {
                    seen.push(serde_json::from_str(&text).expect("json"));
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    (seen, end)
}

/// An open SSE stream.
struct Sse(reqwest::Response, String);

impl Sse {
    async fn open(client: &reqwest::Client, base: &str) -> Self {
        let r = client
            .get(format!("{base}/api/v1/events/stream?aggregate_type=task"))
            .send()
            .await
            .expect("sse");
        assert_eq!(r.status(), 200);
        Self(r, String::new())
    }

    /// The titles sent until the server ends the stream (within 10 s).
    async fn titles_until_end(&mut self) -> Vec<String> {
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.0.chunk())
                .await
                .expect("the stream ends in time");
            match chunk {
                Ok(Some(bytes)) => self.1.push_str(&String::from_utf8_lossy(&bytes)),
                _ => break,
            }
        }
        self.1
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|e| e["data"]["title"].as_str().map(str::to_owned))
            .collect()
    }
}

/// One way access ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    KeyRevoked,
    LoggedOut,
    SessionRevoked,
    RemovedFromOrganization,
    Erased,
}

/// A reader watching the founder's board on `watch` (a node's base URL) over `/ws` and SSE
/// loses access through `writes` (another base URL, or the same); the next task must reach
/// neither stream. `/ws` is told `ACCESS_REVOKED`, and closed with 4401 when the credential
/// itself ended; SSE ends.
async fn access_ends(watch: &TestApp, writes: &TestApp, ending: Ending) {
    // One server may run every ending: each has its own people and organization.
    let founder = person(
        writes,
        &format!("founder-{ending:?}@example.com").to_lowercase(),
    )
    .await;
    let reader = person(writes, &format!("{ending:?}@example.com").to_lowercase()).await;
    let org = writes.create_org_as(&founder.http, "Acme").await;
    let added = founder
        .http
        .post(writes.url(&format!("/api/v1/orgs/{org}/members")))
        .json(&json!({"user_id": reader.id}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    let (key, key_id) = key_of(writes, &reader, json!(["tasks:read", "events:read"])).await;
    let cred = match ending {
        Ending::KeyRevoked | Ending::RemovedFromOrganization => Cred::Key(key),
        _ => Cred::Cookie(reader.cookie.clone()),
    };
    let base = watch.url("");
    // The watching node knows the reader once its read models do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut ws = loop {
        let mut ws = cred.ws(&base).await;
        if live::join(&mut ws, &org, "tasks").await["type"] == "SUBSCRIBED" {
            break ws;
        }
        assert!(tokio::time::Instant::now() < deadline, "never let in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut sse = Sse::open(&cred.http(), &base).await;
    create_task(writes, &founder.http, &org, "before").await;
    assert_eq!(
        until(&mut ws, "CREATE_TASK").await["data"]["changes"]["title"],
        "before"
    );

    let status = match ending {
        Ending::KeyRevoked => reader
            .http
            .delete(writes.url(&format!("/api/v1/me/api-keys/{key_id}")))
            .send()
            .await
            .expect("revoke")
            .status(),
        Ending::LoggedOut => reader
            .http
            .post(writes.url("/auth/logout"))
            .send()
            .await
            .expect("logout")
            .status(),
        Ending::SessionRevoked => {
            let sessions: Value = reader
                .http
                .get(writes.url("/api/v1/me/sessions"))
                .send()
                .await
                .expect("sessions")
                .json()
                .await
                .expect("json");
            let id = sessions["sessions"][0]["id"]
                .as_str()
                .expect("id")
                .to_owned();
            reader
                .http
                .delete(writes.url(&format!("/api/v1/me/sessions/{id}")))
                .send()
                .await
                .expect("revoke")
                .status()
        }
        Ending::RemovedFromOrganization => founder
            .http
            .delete(writes.url(&format!("/api/v1/orgs/{org}/members/{}", reader.id)))
            .send()
            .await
            .expect("remove")
            .status(),
        Ending::Erased => reader
            .http
            .delete(writes.url("/api/v1/me"))
            .send()
            .await
            .expect("erase")
            .status(),
    };
    assert!(
        status.is_success() || status.is_redirection(),
        "{ending:?}: {status}"
    );
    create_task(writes, &founder.http, &org, "after").await;

    if matches!(ending, Ending::RemovedFromOrganization) {
        // The connection stays; the channel goes, before the next task.
        let revoked = until(&mut ws, "ERROR").await;
        assert_eq!(revoked["code"], "ACCESS_REVOKED", "{revoked}");
        assert_eq!(until(&mut ws, "UNSUBSCRIBED").await["channel"], "tasks");
        live::send(&mut ws, json!({"type": "PONG"})).await;
        let (rest, _) = tokio::time::timeout(Duration::from_millis(500), until_closed(&mut ws))
            .await
            .unwrap_or_default();
        assert!(
            rest.iter().all(|m| m["type"] != "CREATE_TASK"),
            "nothing after removal: {rest:?}"
        );
    } else {
        let (messages, code) = until_closed(&mut ws).await;
        assert!(
            messages.iter().all(|m| m["type"] != "CREATE_TASK"),
            "{ending:?}: nothing after the credential ended: {messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m["type"] == "ERROR" && m["code"] == "ACCESS_REVOKED"),
            "{ending:?}: {messages:?}"
        );
        assert_eq!(code, Some(4401), "{ending:?}");
    }
    let titles = sse.titles_until_end().await;
    assert!(
        !titles.contains(&"after".to_owned()),
        "{ending:?}: SSE delivered after access ended: {titles:?}"
    );
}

#[tokio::test]
async fn streams_end_when_access_ends_on_the_local_bus() {
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned())]).await;
    for ending in [
        Ending::KeyRevoked,
        Ending::LoggedOut,
        Ending::SessionRevoked,
        Ending::RemovedFromOrganization,
        Ending::Erased,
    ] {
        access_ends(&app, &app, ending).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn streams_end_when_access_ends_on_two_nodes_over_nats() {
    let nats = support::nats::Namespace::shared();
    let mut vars = nats.vars();
    vars.push(("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned()));
    let a = support::spawn_app_with(&vars).await;
    // Node B: the same database and NATS namespace.
    let mut b_vars = vars.clone();
    b_vars.push(("DATABASE_URL", a.db.url()));
    // Either node may send the sign-in mail: one outbox folder for both.
    b_vars.push(("CAIRN_DATA_DIR", a.data_dir.display().to_string()));
    let b = support::start_with(eventstore::testing::TestDb::empty().await, &b_vars).await;
    b.wait_ready(Duration::from_secs(20)).await;
    for ending in [
        Ending::KeyRevoked,
        Ending::LoggedOut,
        Ending::RemovedFromOrganization,
        Ending::Erased,
    ] {
        access_ends(&b, &a, ending).await;
    }
    b.stop().await;
    a.stop().await;
    nats.delete().await;
}

#[tokio::test]
async fn an_administrator_who_loses_the_permission_loses_the_admin_channel() {
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned())]).await;
    let founder = person(&app, "founder@example.com").await;
    let manager = person(&app, "manager@example.com").await;
    let org = app.create_org_as(&founder.http, "Acme").await;
    let post = |path: String, body: Value| {
        let http = founder.http.clone();
        let url = app.url(&path);
        async move {
            let r = http.post(url).json(&body).send().await.expect("post");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<Value>().await.expect("json")
        }
    };
    post(
        format!("/api/v1/orgs/{org}/members"),
        json!({"user_id": manager.id}),
    )
    .await;
    let team = post(format!("/api/v1/orgs/{org}/teams"), json!({"name": "Ops"})).await;
    let team = team["id"].as_str().expect("id").to_owned();
    let permissions = app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions"));
    let set = |perms: Value| {
        let http = founder.http.clone();
        let url = permissions.clone();
        async move {
            let r = http
                .put(url)
                .json(&json!({"permissions": perms}))
                .send()
                .await
                .expect("set");
            assert_eq!(r.status(), 200);
        }
    };
    set(json!(["admin.manageMembers"])).await;
    post(
        format!("/api/v1/orgs/{org}/teams/{team}/members"),
        json!({"user_id": manager.id}),
    )
    .await;
    let mut ws = Cred::Cookie(manager.cookie.clone()).ws(&app.url("")).await;
    live::subscribe(&mut ws, &org, "admin").await;
    set(json!([])).await;
    let revoked = until(&mut ws, "ERROR").await;
    assert_eq!(revoked["code"], "ACCESS_REVOKED");
    assert_eq!(until(&mut ws, "UNSUBSCRIBED").await["channel"], "admin");
    // Later administration changes do not reach the manager.
    let renamed = founder
        .http
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .json(&json!({"name": "Acme Two"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(renamed.status(), 200);
    let (rest, _) = tokio::time::timeout(Duration::from_millis(500), until_closed(&mut ws))
        .await
        .unwrap_or_default();
    assert!(
        rest.iter().all(|m| m["type"] != "UPDATE_ORGANIZATION"),
        "{rest:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn api_keys_cannot_read_or_manage_their_owners_sessions_and_keys() {
    let app = support::spawn_app().await;
    let owner = person(&app, "owner@example.com").await;
    let (key, _) = key_of(&app, &owner, json!(["tasks:read"])).await;
    let (other, other_id) = key_of(&app, &owner, json!(["admin"])).await;
    let reader = support::with_key(&key);
    assert_eq!(
        reader
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .expect("me")
            .status(),
        200,
        "any valid key reads who it belongs to"
    );
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/me/sessions".to_owned()),
        (reqwest::Method::GET, "/api/v1/me/api-keys".to_owned()),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/me/api-keys/{other_id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/me/sessions/{}", uuid::Uuid::now_v7()),
        ),
    ] {
        let r = reader
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .expect("request");
        assert_eq!(
            support::error_code(r, 403).await,
            "insufficient_scope",
            "{method} {path}"
        );
    }
    // Nothing changed: the other key and the session still work.
    for client in [support::with_key(&other), owner.http.clone()] {
        let r = client.get(app.url("/api/v1/me")).send().await.expect("me");
        assert_eq!(r.status(), 200);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_wait_for_a_cursor_checks_access_first_and_rejects_cursors_past_the_head() {
    let app = support::spawn_app().await;
    let founder = person(&app, "founder@example.com").await;
    let stranger = person(&app, "stranger@example.com").await;
    let org = app.create_org_as(&founder.http, "Acme").await;
    let far = "ffffffffffffffff7fffffffffffffff";
    // A stranger learns nothing, whatever the cursor: 404 before any wait.
    let r = stranger
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/tasks?after={far}")))
        .send()
        .await
        .expect("read");
    assert_eq!(support::error_code(r, 404).await, "organization_not_found");
    // A member with a cursor no commit returned: 400 at once, not a wait ending in 503.
    let r = founder
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/tasks?after={far}")))
        .send()
        .await
        .expect("read");
    assert_eq!(support::error_code(r, 400).await, "invalid_cursor");
    let r = founder
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/tasks?after=nonsense")))
        .send()
        .await
        .expect("read");
    assert_eq!(support::error_code(r, 400).await, "invalid_cursor");
    // A real cursor still gives read-your-writes.
    let created = founder
        .http
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": "mine"}))
        .send()
        .await
        .expect("create");
    let cursor = created
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .expect("cursor")
        .to_owned();
    let page: Value = founder
        .http
        .get(app.url(&format!("/api/v1/orgs/{org}/tasks?after={cursor}")))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(page["tasks"][0]["title"], "mine");
    app.stop().await;
}

#[tokio::test]
async fn presence_on_the_public_channel_shows_no_user_ids() {
    let app = support::spawn_app_with(&[("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned())]).await;
    let founder = person(&app, "founder@example.com").await;
    let org = app.create_org_as(&founder.http, "Acme").await;
    let mut anonymous = Cred::Anonymous.ws(&app.url("")).await;
    live::subscribe(&mut anonymous, &org, "public").await;
    let mut signed_in = Cred::Cookie(founder.cookie.clone()).ws(&app.url("")).await;
    live::subscribe(&mut signed_in, &org, "public").await;
    let arrived = until(&mut anonymous, "USER_SUBSCRIBED").await;
    assert!(arrived["data"]["wsClientId"].is_string(), "{arrived}");
    assert!(arrived["data"]["userId"].is_null(), "{arrived}");
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_the_read_model_has_not_applied_answers_503_not_success() {
    let app = support::spawn_app().await;
    let owner = person(&app, "owner@example.com").await;
    let (key, key_id) = key_of(&app, &owner, json!(["tasks:read"])).await;
    // Hold the identity projection's checkpoint row: its next batch waits behind this lock.
    let pool = app.db.pool(1).await;
    let mut hold = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = 'identity' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .expect("lock the checkpoint");
    let revoked = owner
        .http
        .delete(app.url(&format!("/api/v1/me/api-keys/{key_id}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(
        support::error_code(revoked, 503).await,
        "unavailable",
        "not enforced yet, so not a success"
    );
    hold.rollback().await.expect("release");
    // The revocation was recorded: it takes effect once the read model catches up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = support::with_key(&key)
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .expect("me")
            .status();
        if status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    app.stop().await;
}
