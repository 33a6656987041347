//! `spawn_app`: the real server on port 0 with its own database, torn down gracefully.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use eventstore::testing::TestDb;
use gateway::config::Config;
use gateway::App;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
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

pub fn config(vars: &[(&str, String)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain([("CAIRN_BIND".to_owned(), "127.0.0.1:0".to_owned())])
        .collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

/// Starts the server without waiting for the database.
pub async fn start(db: TestDb, database_url: String) -> TestApp {
    init_logs();
    let app = App::build(config(&[("DATABASE_URL", database_url)]))
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    TestApp {
        addr,
        http: reqwest::Client::new(),
        db,
        shutdown,
        server: Some(server),
    }
}

/// Starts the server on a fresh database and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    let db = TestDb::empty().await;
    let url = db.url();
    let app = start(db, url).await;
    app.wait_ready(Duration::from_secs(20)).await;
    app
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

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
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

    /// Creates an organization and returns its id.
    pub async fn create_org(&self, name: &str) -> String {
        let r = self
            .post("/api/v1/orgs", serde_json::json!({"name": name}))
            .await;
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts the error shape and returns the code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().expect("code").to_owned()
}
