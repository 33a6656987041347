//! Bounded cost for anyone, signed in or not (review findings 3, 7 and 13): metrics labels
//! from a fixed set, anonymous traffic limited per client address (`CAIRN_ANON_RATE`,
//! `CAIRN_TRUSTED_PROXIES`), a header read timeout and a cap on open connections.
//!
//! Loopback has a whole /8: a client bound to 127.0.0.2 is another address than the test
//! harness's own readiness polls from 127.0.0.1, so each test spends a budget of its own.

use crate::support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use eventstore::testing::TestDb;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{error_code, spawn_app_with, start_with, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("client")
}

/// How many of up to `tries` GETs of `path` passed before the first 429, and that 429.
async fn until_limited(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    forwarded_for: Option<&str>,
    tries: usize,
) -> (usize, Option<reqwest::Response>) {
    for passed in 0..tries {
        let mut request = client.get(app.url(path));
        if let Some(xff) = forwarded_for {
            request = request.header("x-forwarded-for", xff);
        }
        let response = request.send().await.expect("request");
        if response.status() == 429 {
            return (passed, Some(response));
        }
    }
    (tries, None)
}

const RATE: usize = 20;

fn anon_rate() -> (&'static str, String) {
    ("CAIRN_ANON_RATE", RATE.to_string())
}

#[tokio::test]
async fn finding_7_unknown_http_methods_are_counted_as_other() {
    let app = spawn_app_with(&[]).await;
    let client = client_from(2);
    for i in 0..200 {
        let method =
            reqwest::Method::from_bytes(format!("MADEUP{i}{}", "X".repeat(1000)).as_bytes())
                .expect("a method token");
        let status = client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .expect("request")
            .status();
        assert!(status.is_client_error(), "{status}");
    }
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.len() < 32 * 1024,
        "/metrics grew to {} bytes",
        metrics.len()
    );
    assert!(
        !metrics.contains("MADEUP"),
        "a made-up method became a label"
    );
    assert!(
        metrics.contains("cairn_http_requests_total{method=\"other\",status=\"405\"} 200"),
        "{metrics}"
    );
}

#[tokio::test]
async fn finding_3_metrics_shows_projection_positions_and_lag_from_checkpoints() {
    let app = spawn_app_with(&[]).await;
    let browser = app.sign_in("ada@example.com").await;
    app.create_org_as(&browser, "Acme").await;
    let client = client_from(2);
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for gauge in [
        "cairn_projection_position{projection=\"identity\"}",
        "cairn_projection_lag_events{projection=\"identity\"}",
    ] {
        assert!(metrics.contains(gauge), "{gauge} missing: {metrics}");
    }
}

#[tokio::test]
async fn finding_13_anonymous_metrics_beyond_the_limit_get_429() {
    let app = spawn_app_with(&[anon_rate()]).await;
    let client = client_from(2);
    let (passed, limited) = until_limited(&app, &client, "/metrics", None, 3 * RATE).await;
    assert!(passed >= RATE, "limited after {passed} requests");
    let limited = limited.expect("a 429 within three times the budget");
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(error_code(limited, 429).await, "rate_limited");
    // /readyz shares the address's budget; another address has its own.
    let again = client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(again.status(), 429);
    let other = client_from(3);
    let fresh = other
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn finding_13_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(&[
        anon_rate(),
        (
            "CAIRN_TRUSTED_PROXIES",
            "127.0.0.1/32, 10.0.0.0/8".to_owned(),
        ),
    ])
    .await;
    let proxy = client_from(1);
    // The right-most address that is not a trusted proxy names the client; what a client
    // wrote further left is not believed.
    let (passed, limited) = until_limited(
        &app,
        &proxy,
        "/metrics",
        Some("192.0.2.9, 198.51.100.1, 10.1.2.3"),
        3 * RATE,
    )
    .await;
    assert!(passed >= RATE, "limited after {passed}");
    assert!(limited.is_some(), "no 429 for 198.51.100.1");
    let same_client_other_claim = proxy
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.50, 198.51.100.1")
        .send()
        .await
        .expect("request");
    assert_eq!(same_client_other_claim.status(), 429);
    let other = proxy
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "198.51.100.2")
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 200, "another client behind the proxy");
}

#[tokio::test]
async fn finding_13_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app_with(&[anon_rate()]).await;
    let client = client_from(2);
    let (passed, limited) =
        until_limited(&app, &client, "/metrics", Some("198.51.100.1"), 3 * RATE).await;
    assert!(passed >= RATE, "limited after {passed}");
    assert!(limited.is_some(), "no 429");
    let other = client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "198.51.100.2")
        .send()
        .await
        .expect("request");
    assert_eq!(
        other.status(),
        429,
        "a made-up X-Forwarded-For got a fresh budget"
    );
}

/// A `/ws` handshake from `127.0.0.<last>`: the HTTP status it was answered with.
async fn ws_handshake(app: &TestApp, last: u8) -> (u16, Option<support::ws::Ws>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))
        .expect("bind");
    let stream = socket.connect(app.addr).await.expect("connect");
    let request = app
        .url("/ws")
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .expect("request");
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((ws, response)) => (response.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn finding_13_anonymous_ws_handshakes_beyond_the_limit_get_429() {
    let app = spawn_app_with(&[anon_rate()]).await;
    let mut open = Vec::new();
    let mut refused = None;
    for attempt in 0..3 * RATE {
        match ws_handshake(&app, 2).await {
            (101, Some(ws)) => open.push(ws),
            (status, _) => {
                refused = Some((attempt, status));
                break;
            }
        }
    }
    let (attempt, status) = refused.expect("a handshake refused within three times the budget");
    assert_eq!(status, 429);
    assert!(attempt >= RATE, "refused after {attempt}");
    // Another address still connects.
    assert_eq!(ws_handshake(&app, 3).await.0, 101);
}

#[tokio::test]
async fn finding_13_anonymous_ws_subscribes_beyond_the_limit_are_refused() {
    let app = spawn_app_with(&[anon_rate()]).await;
    let (status, ws) = ws_handshake(&app, 2).await;
    assert_eq!(status, 101);
    let mut ws = ws.expect("socket");
    let org = uuid::Uuid::new_v4().to_string();
    let mut subscribed = 0;
    let mut limited = false;
    for _ in 0..3 * RATE {
        ws.send(Message::Text(
            json!({"type": "SUBSCRIBE", "orgId": org, "channel": "public", "since": "0".repeat(32)})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
        let answer = next_answer(&mut ws).await;
        match answer["type"].as_str() {
            Some("SUBSCRIBED") => subscribed += 1,
            Some("ERROR") if answer["code"] == "RATE_LIMITED" => {
                limited = true;
                break;
            }
            _ => panic!("unexpected answer {answer}"),
        }
        // Well above the minimum interval between messages (CAIRN_WS_MIN_INTERVAL_MS).
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(limited, "never limited after {subscribed} subscribes");
    // The handshake took one of the budget.
    assert!(subscribed + 1 >= RATE, "limited after {subscribed}");
}

/// The next `SUBSCRIBED` or `ERROR` (skipping replays, presence and pings).
async fn next_answer(ws: &mut support::ws::Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("json");
            if matches!(value["type"].as_str(), Some("SUBSCRIBED" | "ERROR")) {
                return value;
            }
        }
    }
}

/// Reads until the server closes the connection; `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn finding_13_a_client_that_sends_half_a_request_is_disconnected_after_the_header_timeout() {
    let app = start_with(
        TestDb::empty().await,
        &[("CAIRN_HEADER_TIMEOUT_SECONDS", "0.5".to_owned())],
    )
    .await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HT").await.expect("write");
    let answer = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the server closed the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    // A whole request in time is served as before.
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

/// Sends one keep-alive request on `stream`; whether its answer's head arrived in `within`.
async fn served(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        _ => false,
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn finding_13_connections_beyond_the_cap_wait_until_one_closes() {
    let app = start_with(
        TestDb::empty().await,
        &[
            ("CAIRN_MAX_CONNECTIONS", "2".to_owned()),
            ("CAIRN_HEADER_TIMEOUT_SECONDS", "30".to_owned()),
        ],
    )
    .await;
    let mut first = TcpStream::connect(app.addr).await.expect("connect");
    first.write_all(HEALTHZ).await.expect("write");
    assert!(served(&mut first, Duration::from_secs(10)).await);
    let mut second = TcpStream::connect(app.addr).await.expect("connect");
    second.write_all(HEALTHZ).await.expect("write");
    assert!(served(&mut second, Duration::from_secs(10)).await);
    // Both stay open and idle (keep-alive). A third waits.
    let mut third = TcpStream::connect(app.addr).await.expect("connect");
    third.write_all(HEALTHZ).await.expect("write");
    assert!(
        !served(&mut third, Duration::from_secs(1)).await,
        "a third connection was served while two were open"
    );
    drop(first);
    assert!(
        served(&mut third, Duration::from_secs(10)).await,
        "the third connection was not served after one closed"
    );
    drop(second);
    drop(third);
    app.stop().await;
}
