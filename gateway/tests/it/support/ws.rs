//! Real WebSocket clients (tokio-tungstenite) for `/ws`, and the few HTTP calls the live tests
//! make around them.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The setting that keeps `/ws`'s minimum interval between client messages out of the way of
/// a test: 1 µs, less than any round trip can take, so a client that waits for each answer
/// before sending again is never rate limited, however fast the machine.
pub fn no_rate_limit() -> (&'static str, String) {
    ("CAIRN_WS_MIN_INTERVAL_MS", "0.001".to_owned())
}

/// The settings that keep `/ws`'s heartbeat out of the way of a test: a PING an hour, and a
/// day to answer it. The helpers here skip PINGs without answering, so with the defaults (a
/// minute to answer) a test slowed past a minute by a loaded machine would lose its clients.
pub fn no_heartbeat() -> [(&'static str, String); 2] {
    [
        ("CAIRN_WS_PING_SECONDS", "3600".to_owned()),
        ("CAIRN_WS_TIMEOUT_SECONDS", "86400".to_owned()),
    ]
}

/// The `wsClientId` of a `CONNECTION_STATUS` message, required to be a non-empty string.
pub fn client_id(status: &Value) -> String {
    assert_eq!(status["type"], "CONNECTION_STATUS", "{status}");
    let id = status["data"]["wsClientId"]
        .as_str()
        .unwrap_or_else(|| panic!("no wsClientId in {status}"));
    assert!(!id.is_empty(), "an empty wsClientId in {status}");
    id.to_owned()
}

/// Signs `email` in and returns an API key with `scopes`, and the browser.
pub async fn key_for(app: &TestApp, email: &str, scopes: Value) -> (String, reqwest::Client) {
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

pub async fn connect(app: &TestApp, key: Option<&str>) -> Ws {
    connect_to(&app.url(""), key).await
}

/// A client on the server at `base` (`http://host:port`), with an API key or anonymous.
pub async fn connect_to(base: &str, key: Option<&str>) -> Ws {
    let url = format!("{base}/ws").replacen("http://", "ws://", 1);
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

/// A client whose socket has a receive buffer of `bytes` (for slow-consumer tests).
pub async fn connect_with_receive_buffer(app: &TestApp, key: &str, bytes: u32) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    let stream = socket.connect(app.addr).await.expect("connect");
    let mut request = app
        .url("/ws")
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("handshake");
    ws
}

/// The next JSON message that is not a PING, within 10 s.
pub async fn next(ws: &mut Ws) -> Value {
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
pub async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] == kind {
            return m;
        }
    }
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

pub async fn create_task(app: &TestApp, c: &reqwest::Client, org: &str, title: &str) -> String {
    create_task_at(&app.url(""), c, org, title).await
}

/// Creates a task through the server at `base` and returns its id.
pub async fn create_task_at(base: &str, c: &reqwest::Client, org: &str, title: &str) -> String {
    let r = c
        .post(format!("{base}/api/v1/orgs/{org}/tasks"))
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{title}");
    let body: Value = r.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

/// Sends `SUBSCRIBE` for `org`'s `channel` and returns the reply (`SUBSCRIBED` or `ERROR`).
pub async fn join(ws: &mut Ws, org: &str, channel: &str) -> Value {
    send(
        ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": channel}),
    )
    .await;
    next(ws).await
}

/// Subscribes `ws` (already past `CONNECTION_STATUS`) to `org`'s `channel` and waits for
/// `SUBSCRIBED`.
pub async fn subscribe(ws: &mut Ws, org: &str, channel: &str) {
    let reply = join(ws, org, channel).await;
    assert_eq!(reply["type"], "SUBSCRIBED", "{reply}");
}

/// The ids of the next `n` `CREATE_TASK` messages, in order.
pub async fn created_ids(ws: &mut Ws, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let m = until(ws, "CREATE_TASK").await;
        ids.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// Reads until the server closes the connection, within `within`: the close frame's code and
/// reason, or `None` if the socket ended without one.
pub async fn closed(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the connection ends in time")
}
