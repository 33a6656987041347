//! NATS for tests: a private stream and subject prefix on the shared server (so tests never see
//! each other), or a private `nats-server` process a test can stop and start.

use std::path::PathBuf;
use std::time::Duration;

/// The machine's NATS (JetStream enabled).
pub const SHARED_URL: &str = "nats://127.0.0.1:4222";

/// One test's corner of a NATS server: its own JetStream stream and subject prefix.
pub struct Namespace {
    pub url: String,
    pub stream: String,
    pub prefix: String,
}

impl Namespace {
    /// A fresh stream name and prefix on the server at `url`.
    pub fn on(url: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            url: url.to_owned(),
            stream: format!("TEST_{id}"),
            prefix: format!("t{id}"),
        }
    }

    /// A fresh namespace on the shared server.
    pub fn shared() -> Self {
        Self::on(SHARED_URL)
    }

    /// The server settings that put a node in this namespace.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NATS_URL", self.url.clone()),
            ("CAIRN_NATS_STREAM", self.stream.clone()),
            ("CAIRN_NATS_PREFIX", self.prefix.clone()),
        ]
    }

    async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(&self.url)
            .await
            .expect("connect to NATS");
        async_nats::jetstream::new(client)
    }

    /// Every message in the stream, in stream order.
    pub async fn messages(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let js = self.jetstream().await;
        let mut stream = js
            .get_stream(&self.stream)
            .await
            .expect("the stream exists");
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let mut out = Vec::new();
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                out.push(message);
            }
        }
        out
    }

    /// Deletes the stream (the end of a test).
    pub async fn delete(&self) {
        let _ = self.jetstream().await.delete_stream(&self.stream).await;
    }
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `nats-server -js` of the test's own, on a free port with its own store directory.
pub struct PrivateNats {
    pub port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("cairn-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let mut nats = Self {
            port: free_port(),
            dir,
            child: None,
        };
        nats.resume().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to clients).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill nats-server");
            child.wait().await.expect("nats-server exits");
        }
    }

    /// Starts it again on the same port and store.
    pub async fn resume(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = tokio::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
