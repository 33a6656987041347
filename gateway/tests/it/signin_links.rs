//! Finding 12 of the 2026-12-03 security review: sign-in requests for someone else's address
//! voided that person's pending link, and one address could be sent about 7,200 mails a day.
//!
//! Sign-in requests are answered (202) before they are handled, so these tests stop the server
//! gracefully, which waits for every request in hand, before they look at what was recorded;
//! the first then starts a second server on the same database to use the link.

use crate::support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventstore::testing::TestDb;
use support::{browser, find_link, ORIGIN};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server on `db` and `data_dir` that outlives neither: stopping it keeps both.
struct Node {
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), gateway::StartError>>,
}

impl Node {
    /// Starts a server whose per-minute limits on sign-in requests are out of the way.
    async fn start(db: &TestDb, data_dir: &Path) -> Self {
        let vars = [
            ("DATABASE_URL", db.url()),
            ("CAIRN_LINKS_PER_EMAIL", "1000".to_owned()),
            ("CAIRN_LINKS_PER_IP", "1000".to_owned()),
        ];
        let app = gateway::App::build(support::config(data_dir, &vars))
            .await
            .expect("app builds");
        let node = Self {
            addr: app.local_addr(),
            shutdown: app.shutdown_token(),
            server: tokio::spawn(app.run()),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(node.url("/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return node;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send_link(&self, client: &reqwest::Client, email: &str) {
        let r = client
            .post(self.url("/auth/send-link"))
            .json(&serde_json::json!({ "email": email }))
            .send()
            .await
            .expect("send-link");
        assert_eq!(r.status(), 202, "every request gets the same answer");
    }

    async fn confirm(&self, client: &reqwest::Client, link: &str) -> u16 {
        let path = link.trim_start_matches(ORIGIN);
        let r = client.post(self.url(path)).send().await.expect("confirm");
        r.status().as_u16()
    }

    /// Stops gracefully: in-flight requests and the sign-in work they started finish first.
    async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create data dir");
    dir
}

fn mails(data_dir: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(data_dir.join("outbox"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a mail not in `seen` and returns its sign-in link.
async fn next_link(data_dir: &Path, seen: &mut HashSet<PathBuf>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for path in mails(data_dir) {
            if seen.contains(&path) {
                continue;
            }
            // A mail being written may not hold its link yet: look again on the next round.
            let raw = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(link) = find_link(&raw) {
                seen.insert(path);
                return link;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn links_recorded(db: &TestDb) -> i64 {
    let pool = db.pool(1).await;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'account.magic_link_requested'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    n
}

#[tokio::test]
async fn signin_links_a_new_request_does_not_void_a_link_already_sent() {
    let db = TestDb::empty().await;
    let dir = data_dir();
    let node = Node::start(&db, &dir).await;
    let victim = browser();
    let mut seen = HashSet::new();
    node.send_link(&victim, "victim@example.com").await;
    let first = next_link(&dir, &mut seen).await;
    // The victim asks again before using the first link ...
    node.send_link(&victim, "victim@example.com").await;
    let second = next_link(&dir, &mut seen).await;
    // ... and an attacker asks for the same address, again and again.
    let attacker = browser();
    for _ in 0..10 {
        node.send_link(&attacker, "victim@example.com").await;
    }
    node.stop().await;

    let node = Node::start(&db, &dir).await;
    assert_eq!(
        node.confirm(&victim, &first).await,
        303,
        "the first link still signs in"
    );
    assert_eq!(
        node.confirm(&browser(), &second).await,
        303,
        "and so does the second"
    );
    node.stop().await;
    assert_eq!(
        links_recorded(&db).await,
        5,
        "no more than five links are live at once; the other requests sent nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn signin_links_one_address_gets_at_most_fifty_mails_a_day() {
    let db = TestDb::empty().await;
    let dir = data_dir();
    let node = Node::start(&db, &dir).await;
    let client = browser();
    let mut seen = HashSet::new();
    // Each link is used at once, so the limit of live links never applies; only the daily one.
    for _ in 0..50 {
        node.send_link(&client, "busy@example.com").await;
        let link = next_link(&dir, &mut seen).await;
        assert_eq!(node.confirm(&client, &link).await, 303);
    }
    // The 51st request is answered like every other, and sends nothing.
    node.send_link(&client, "busy@example.com").await;
    node.stop().await;
    assert_eq!(links_recorded(&db).await, 50);
    assert!(mails(&dir).len() <= 50);
    let _ = std::fs::remove_dir_all(&dir);
}
