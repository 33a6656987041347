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

/// A `nats-server -js` of the test's own, on a port of its own with its own store directory.
pub struct PrivateNats {
    pub port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    /// Starts it on a port it picks itself (`-p -1`; the test reads the port back from its
    /// log, so no probe-then-bind race) and waits until it is ready.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("cairn-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let (child, port) = Self::spawn(&dir, None)
            .await
            .expect("nats-server starts on a port of its choosing");
        Self {
            port,
            dir,
            child: Some(child),
        }
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

    /// Deletes its store, as a lost volume would; only while it is stopped.
    pub fn lose_store(&self) {
        assert!(self.child.is_none(), "nats-server is still running");
        std::fs::remove_dir_all(&self.dir).expect("delete the nats store");
        std::fs::create_dir_all(&self.dir).expect("an empty nats store dir");
    }

    /// Starts it again on the same port and store, and waits until it is ready.
    ///
    /// It must be the same port: the server under test reconnects to the URL it was given.
    /// While NATS was down the port was free, so another process may hold it for a moment;
    /// rather than probe the port (free when asked, maybe not when bound), this starts
    /// nats-server and, if it exits because the port is taken, tries again until it binds,
    /// within a deadline.
    pub async fn resume(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((child, _)) = Self::spawn(&self.dir, Some(self.port)).await {
                self.child = Some(child);
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server could not bind port {} again",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs nats-server on `port` (`None`: one it picks) and waits for its "Server is ready":
    /// the process and the port it listens on, or `None` if it exited first (the port was
    /// taken).
    async fn spawn(
        dir: &std::path::Path,
        port: Option<u16>,
    ) -> Option<(tokio::process::Child, u16)> {
        use tokio::io::AsyncBufReadExt;

        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = tokio::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        let stderr = child.stderr.take().expect("nats-server's log");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            let mut bound = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((_, address)) = line.split_once("Listening for client connections on ")
                {
                    bound = address
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok());
                }
                if line.contains("Server is ready") {
                    return Some(bound.expect("nats-server logs its client port"));
                }
            }
            None
        })
        .await
        .expect("nats-server starts or exits in time");
        match listening {
            Some(port) => {
                // Keep reading, so it never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Some((child, port))
            }
            None => {
                let _ = child.kill().await;
                None
            }
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
