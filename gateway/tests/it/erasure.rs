//! Review finding 8: erasure left personal data behind. After `DELETE /me` the person's
//! address, IP and user agent are found nowhere: not in any table, not under the data dir
//! (the `.eml` files of the file outbox), not in the log at INFO.
//!
//! Each test connects from its own loopback address (`127.77.x.y`, bound with
//! `local_address`), so the IP it looks for appears nowhere else (the server itself listens on
//! 127.0.0.1).

use crate::support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use support::{find_link, spawn_app_with, TestApp, ORIGIN};

/// Everything the server logs at the production default level, for the whole test binary.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let installed = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,sqlx=warn,tower_http=info",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        assert!(installed.is_ok(), "the log capture is the only subscriber");
        buffer
    })
    .clone()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A browser that connects from `ip` and announces itself as `user_agent`.
fn browser_from(ip: Ipv4Addr, user_agent: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", reqwest::header::HeaderValue::from_static(ORIGIN));
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .user_agent(user_agent)
        .local_address(IpAddr::V4(ip))
        .build()
        .expect("client")
}

/// Where each needle was found: tables, files under the data dir, the log.
async fn traces_of(app: &TestApp, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let pool = app.db.pool(1).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    assert!(tables.len() >= 8, "{tables:?}");
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&pool)
            .await
            .expect("rows");
        for row in rows {
            for needle in needles {
                let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
                if row.contains(needle.as_str()) || row.contains(&hex) {
                    found.push(format!("table {table}: {needle} in {row}"));
                }
            }
        }
    }
    pool.close().await;
    for path in files_under(&app.data_dir) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for needle in needles {
            if text.contains(needle.as_str()) || path.display().to_string().contains(needle) {
                found.push(format!("file {}: {needle}", path.display()));
            }
        }
    }
    let log = captured_log();
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    for line in log.lines() {
        for needle in needles {
            if line.contains(needle.as_str()) {
                found.push(format!("log: {needle} in {line}"));
            }
        }
    }
    found
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Signs in, creates an org and a task, so that sessions and events carry the request details.
async fn leave_traces(app: &TestApp, client: &reqwest::Client) {
    let org = app.create_org_as(client, "Erasure org").await;
    let task = client
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": "Something to do"}))
        .send()
        .await
        .expect("task");
    assert_eq!(task.status(), 201);
}

async fn erase(app: &TestApp, client: &reqwest::Client) {
    let erased = client
        .delete(app.url("/api/v1/me"))
        .send()
        .await
        .expect("erase");
    assert_eq!(erased.status(), 200);
    let me = client.get(app.url("/api/v1/me")).send().await.expect("me");
    assert_eq!(me.status(), 401);
}

/// The file outbox (the development default): the `.eml` files of the person's sign-in mail
/// are gone after erasure, and so is every other trace of them.
#[tokio::test]
async fn erasure_leaves_nothing() {
    let _ = captured_log();
    let app = spawn_app_with(&[]).await;
    let email = "erin.erasure.files@example.com";
    let ip = Ipv4Addr::new(127, 77, 12, 34);
    let agent = "ErasureProbe/7.1 (files; 5d1c9e)";
    let client = browser_from(ip, agent);
    app.sign_in_with(&client, email).await;

    // Her sessions show her own IP and user agent.
    let sessions: Value = client
        .get(app.url("/api/v1/me/sessions"))
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    assert_eq!(sessions["sessions"][0]["ip"], ip.to_string(), "{sessions}");
    assert_eq!(sessions["sessions"][0]["user_agent"], agent, "{sessions}");

    leave_traces(&app, &client).await;
    // A second link, still in the outbox folder at erasure.
    let mut seen = app.outbox_files();
    assert_eq!(app.send_link(&client, email).await.status(), 202);
    app.next_outbox_link(&mut seen).await;
    let needles = [email.to_owned(), ip.to_string(), agent.to_owned()];
    assert!(
        !traces_of(&app, &needles).await.is_empty(),
        "the test finds the traces before erasure"
    );

    erase(&app, &client).await;
    let found = traces_of(&app, &needles).await;
    assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
    app.stop().await;
}

/// An SMTP server that accepts mail until told to refuse; it then answers every recipient with
/// a temporary error that names the address, as real servers do.
async fn refusing_smtp() -> (
    u16,
    Arc<AtomicBool>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind smtp");
    let port = listener.local_addr().expect("addr").port();
    let refuse = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let refusing = refuse.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, refuse) = (tx.clone(), refusing.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(b"220 erasure-test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: Vec<u8> = if upper.starts_with("EHLO") {
                        b"250-erasure-test\r\n250 8BITMIME\r\n".to_vec()
                    } else if upper.starts_with("RCPT TO:") && refuse.load(Ordering::SeqCst) {
                        let addr = line[8..].trim().trim_matches(|c| c == '<' || c == '>');
                        format!("450 4.2.0 <{addr}>: Recipient address rejected: mailbox busy\r\n")
                            .into_bytes()
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
                        let _ = tx.send(message);
                        b"250 queued\r\n".to_vec()
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n".to_vec()
                    };
                    if write.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, refuse, rx)
}

/// SMTP: a sign-in mail still waiting (the server refused it, naming the address in its error)
/// is neither left in `mail_outbox` nor in its error text nor in the log.
#[tokio::test]
async fn erasure_leaves_nothing_with_mail_pending() {
    let _ = captured_log();
    let (port, refuse, mut inbox) = refusing_smtp().await;
    let app = spawn_app_with(&[("SMTP_URL", format!("smtp://127.0.0.1:{port}"))]).await;
    let email = "erin.erasure.smtp@example.com";
    let ip = Ipv4Addr::new(127, 77, 56, 78);
    let agent = "ErasureProbe/7.1 (smtp; 9a0b3f)";
    let client = browser_from(ip, agent);

    assert_eq!(app.send_link(&client, email).await.status(), 202);
    let raw = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("the sign-in mail arrives")
        .expect("smtp server runs");
    let link = find_link(&raw).expect("a link in the mail");
    assert_eq!(app.confirm(&client, &link).await.status(), 303);
    leave_traces(&app, &client).await;

    // The server now refuses her mail; the next link stays queued, with an error.
    refuse.store(true, Ordering::SeqCst);
    assert_eq!(app.send_link(&client, email).await.status(), 202);
    let pool = app.db.pool(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let failed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM mail_outbox WHERE last_error IS NOT NULL")
                .fetch_one(&pool)
                .await
                .expect("count");
        if failed > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused mail was never tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Waiting, it is sealed: recipient, bodies and the server's reply that named her.
    let (recipient, text, error): (String, String, String) = sqlx::query_as(
        "SELECT recipient, text_body, last_error FROM mail_outbox WHERE last_error IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("queued mail");
    for sealed in [&recipient, &text, &error] {
        assert!(sealed.starts_with("enc:v2:"), "{sealed}");
    }
    pool.close().await;

    erase(&app, &client).await;
    let needles = [email.to_owned(), ip.to_string(), agent.to_owned()];
    let found = traces_of(&app, &needles).await;
    assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
    app.stop().await;
}
