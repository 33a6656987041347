//! `spawn_app`: the real server on port 0 with its own database and data dir, torn down
//! gracefully; plus a browser, a real SMTP server, and the magic-link sign-in flow.
#![allow(dead_code)]

pub mod nats;
pub mod smtp;
pub mod ws;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use eventstore::testing::TestDb;
use gateway::config::Config;
use gateway::App;
use tokio_util::sync::CancellationToken;

/// The origin in `CAIRN_PUBLIC_URL` (the default): browsers' same-origin requests carry it.
pub const ORIGIN: &str = "http://localhost:3000";

/// A fixed master key, so tests need no data-dir key file.
pub const SECRET_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    /// The server's own thread and multi-thread runtime (see [`start_with`]).
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

/// Logs stay silent unless `TEST_LOG` is set.
fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            gateway::telemetry::init(gateway::config::LogFormat::Pretty);
        }
    });
}

/// Test settings: port 0, a private data dir, a fixed key, cookies over plain http, a pool of
/// five connections; `vars`
/// override or add.
pub fn config(data_dir: &Path, vars: &[(&str, String)]) -> Config {
    let mut map: HashMap<String, String> = [
        ("CAIRN_BIND", "127.0.0.1:0".to_owned()),
        ("CAIRN_DATA_DIR", data_dir.display().to_string()),
        ("CAIRN_SECRET_KEY", SECRET_KEY.to_owned()),
        ("CAIRN_DEV_INSECURE_COOKIES", "true".to_owned()),
        // Tests run side by side on one PostgreSQL (100 connections): a small pool each
        // (see `.cargo/config.toml`).
        ("CAIRN_DB_POOL", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

fn temp_data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create data dir");
    dir
}

/// Starts the server without waiting for the database.
pub async fn start(db: TestDb, database_url: String) -> TestApp {
    start_with(db, &[("DATABASE_URL", database_url)]).await
}

/// Starts the server with extra settings (`DATABASE_URL` defaults to `db`'s).
///
/// The server runs as in production, on a multi-thread runtime of its own (on a thread of its
/// own), not on the test's current-thread runtime: a test's clients and the server never take
/// turns on one thread, so a test cannot pass only because of that scheduling.
pub async fn start_with(db: TestDb, vars: &[(&str, String)]) -> TestApp {
    init_logs();
    // Another node's data dir when given (either node's mailer may write the outbox file).
    let data_dir = vars
        .iter()
        .find(|(k, _)| *k == "CAIRN_DATA_DIR")
        .map_or_else(temp_data_dir, |(_, dir)| PathBuf::from(dir));
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(k, _)| *k == "DATABASE_URL") {
        vars.push(("DATABASE_URL", db.url()));
    }
    let config = config(&data_dir, &vars);
    let (started, running) = tokio::sync::oneshot::channel();
    let server = std::thread::Builder::new()
        .name("cairn-test-server".to_owned())
        .spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let app = match App::build(config).await {
                    Ok(app) => app,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return Ok(());
                    }
                };
                let _ = started.send(Ok((app.local_addr(), app.shutdown_token())));
                Ok(app.run().await?)
            })
        })
        .expect("spawn the server thread");
    let (addr, shutdown) = match running.await {
        Ok(Ok(started)) => started,
        Ok(Err(error)) => panic!("app builds: {error:?}"),
        // The thread ended without a word: it could not build its runtime, or panicked.
        Err(_) => panic!("server thread: {:?}", server.join()),
    };
    TestApp {
        addr,
        http: reqwest::Client::new(),
        db,
        data_dir,
        shutdown,
        server: Some(server),
    }
}

/// Starts the server on a fresh database and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// [`spawn_app`] with extra settings.
pub async fn spawn_app_with(vars: &[(&str, String)]) -> TestApp {
    let app = start_with(TestDb::new().await, vars).await;
    app.wait_ready(Duration::from_secs(20)).await;
    app
}

/// A browser: a cookie jar, and the `Origin` a same-origin page sends.
pub fn browser() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", reqwest::header::HeaderValue::from_static(ORIGIN));
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client holding an API key.
pub fn with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The sign-in link in a raw message (7bit or quoted-printable text part).
pub fn find_link(raw: &str) -> Option<String> {
    let unfolded = raw
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = unfolded.find("http://localhost:3000/auth/verify/")?;
    let rest = &unfolded[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A real SMTP server (the protocol subset lettre uses, over TCP) on a free port; every message
/// it accepts arrives on the receiver as (recipients, raw message).
pub async fn smtp_server() -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(Vec<String>, String)>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind smtp");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let mut to = Vec::new();
                let _ = write.write_all(b"220 cairn-test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-cairn-test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        let addr = line[8..].trim().trim_matches(|c| c == '<' || c == '>');
                        to.push(addr.to_owned());
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut message = String::new();
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" || line == ".\n" {
                                break;
                            }
                            message.push_str(line.strip_prefix('.').unwrap_or(&line));
                        }
                        let _ = tx.send((std::mem::take(&mut to), message));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        // HELO, MAIL FROM, RSET, NOOP
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn ready_status(&self) -> u16 {
        match self.http.get(self.url("/readyz")).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.ready_status().await != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn event_count(&self) -> i64 {
        let pool = self.db.pool(1).await;
        let n = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    }

    /// Posts JSON to `path` as `client`.
    pub async fn post_as(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Asks for a sign-in link for `email` from `client`.
    pub async fn send_link(&self, client: &reqwest::Client, email: &str) -> reqwest::Response {
        client
            .post(self.url("/auth/send-link"))
            .json(&serde_json::json!({ "email": email }))
            .send()
            .await
            .expect("send-link")
    }

    /// The `.eml` files in the outbox now.
    pub fn outbox_files(&self) -> HashSet<PathBuf> {
        std::fs::read_dir(self.data_dir.join("outbox"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Waits for a new `.eml` in the file outbox and returns its sign-in link.
    pub async fn next_outbox_link(&self, seen: &mut HashSet<PathBuf>) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for path in self.outbox_files() {
                if path.extension().is_some_and(|e| e == "eml") && seen.insert(path.clone()) {
                    let raw = std::fs::read_to_string(&path).expect("read eml");
                    return find_link(&raw).expect("the mail holds a sign-in link");
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no mail arrived in the outbox"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts the confirm form of a sign-in link (the path of `link`, on this server).
    pub async fn confirm(&self, client: &reqwest::Client, link: &str) -> reqwest::Response {
        let path = link.trim_start_matches(ORIGIN);
        client.post(self.url(path)).send().await.expect("confirm")
    }

    /// Signs `email` in through the whole magic-link flow (file outbox) and returns the
    /// browser holding the session cookie.
    pub async fn sign_in(&self, email: &str) -> reqwest::Client {
        let client = browser();
        self.sign_in_with(&client, email).await;
        client
    }

    /// Signs `email` in with `client` (which must keep cookies and send the page's `Origin`).
    pub async fn sign_in_with(&self, client: &reqwest::Client, email: &str) {
        let mut seen = self.outbox_files();
        assert_eq!(self.send_link(client, email).await.status(), 202);
        let link = self.next_outbox_link(&mut seen).await;
        let done = self.confirm(client, &link).await;
        assert_eq!(done.status(), 303, "sign-in did not redirect");
    }

    /// Creates an organization as `client` and returns its id.
    pub async fn create_org_as(&self, client: &reqwest::Client, name: &str) -> String {
        let r = client
            .post(self.url("/api/v1/orgs"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("create org");
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Stops the server gracefully and waits for it: panics if it panicked or returned an
    /// error.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.join())
                .await
                .expect("join the server thread")
                .expect("the server thread does not panic")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    /// Cancels the server (which then stops on its own thread) without waiting for it: a test
    /// that ends without [`TestApp::stop`] (a panic, say) must not block on the shutdown.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Asserts the error shape and returns the code. A failure names the request (its URL), and
/// shows the body when the status is not `status`.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    error_code_of("", response, status).await
}

/// [`error_code`] for one case of a table: failures start with `label`.
pub async fn error_code_of(label: &str, response: reqwest::Response, status: u16) -> String {
    let at = format!("{label} ({})", response.url());
    let actual = response.status().as_u16();
    let text = response.text().await.expect("error body");
    assert_eq!(actual, status, "{at}: status {actual}, body {text}");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{at}: the error body is not JSON ({e}): {text}"));
    assert!(
        body["error"]["message"].is_string(),
        "{at}: no error message in {body}"
    );
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{at}: no error code in {body}"))
        .to_owned()
}

/// The `Cairn-Cursor` header of a write's response (which must have it).
pub fn cursor_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("cairn-cursor")
        .unwrap_or_else(|| {
            panic!(
                "{} {}: no Cairn-Cursor header",
                response.status(),
                response.url()
            )
        })
        .to_str()
        .expect("the cursor is ASCII")
        .to_owned()
}

/// The JSON body of a response whose status must be `status` (the body is shown otherwise).
pub async fn json_with(response: reqwest::Response, status: u16) -> serde_json::Value {
    let url = response.url().clone();
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{url}: status {actual}, body {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// The string field `field` of `body`, which must be there.
pub fn str_of(body: &serde_json::Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {body}"))
        .to_owned()
}

/// The signed-in person's user id (from `GET /api/v1/me`).
pub async fn user_id_of(app: &TestApp, client: &reqwest::Client) -> String {
    let me = client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("GET /me");
    str_of(&json_with(me, 200).await, "user_id")
}

/// A new person (signed in by a browser) who is a member of `org` and of a new team there
/// holding `permissions`, all done by `founder` (an administrator of `org`). Returns their
/// browser and user id.
/// `PUT /api/v1/orgs/{org}/default-team` with `{"team_id": team}` (`null` for none), as
/// `client`.
pub async fn set_default_team(
    app: &TestApp,
    client: &reqwest::Client,
    org: &str,
    team: serde_json::Value,
) -> reqwest::Response {
    client
        .put(app.url(&format!("/api/v1/orgs/{org}/default-team")))
        .json(&serde_json::json!({ "team_id": team }))
        .send()
        .await
        .expect("set the default team")
}

pub async fn member_with(
    app: &TestApp,
    org: &str,
    founder: &reqwest::Client,
    permissions: &[&str],
) -> (reqwest::Client, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let client = app.sign_in(&format!("member-{tag}@example.com")).await;
    let user = user_id_of(app, &client).await;
    let base = format!("/api/v1/orgs/{org}");
    // Exactly these permissions: no default team to join on the way in.
    json_with(
        set_default_team(app, founder, org, serde_json::Value::Null).await,
        200,
    )
    .await;
    let added = app
        .post_as(
            founder,
            &format!("{base}/members"),
            serde_json::json!({ "user_id": user }),
        )
        .await;
    json_with(added, 200).await;
    let team = app
        .post_as(
            founder,
            &format!("{base}/teams"),
            serde_json::json!({ "name": format!("team-{tag}") }),
        )
        .await;
    let team = str_of(&json_with(team, 201).await, "id");
    let set = founder
        .put(app.url(&format!("{base}/teams/{team}/permissions")))
        .json(&serde_json::json!({ "permissions": permissions }))
        .send()
        .await
        .expect("set permissions");
    json_with(set, 200).await;
    let joined = app
        .post_as(
            founder,
            &format!("{base}/teams/{team}/members"),
            serde_json::json!({ "user_id": user }),
        )
        .await;
    json_with(joined, 200).await;
    (client, user)
}

/// A new API key of `client`'s (a signed-in browser) with `scopes`.
pub async fn key_with(app: &TestApp, client: &reqwest::Client, scopes: &[&str]) -> String {
    let issued = app
        .post_as(
            client,
            "/api/v1/me/api-keys",
            serde_json::json!({ "name": "test", "scopes": scopes }),
        )
        .await;
    str_of(&json_with(issued, 201).await, "key")
}
