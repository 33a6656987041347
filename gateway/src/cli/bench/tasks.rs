//! `bench write`'s task phases: the same task writes (create a task, then edit its title, in
//! turn) to one server in this process, through its `commands` directly, and through the real
//! HTTP path: an API key resolved by the authentication middleware, the grant looked up in the
//! memberships read model, the command, and the receipt serialized back, over keep-alive
//! connections. Both sides share the server's database, writer, projections and relay, so what
//! their rates differ by is the HTTP path.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use commands::identity::Identity;
use commands::{Actor, Commands, Metadata};
use domain::organization::{Organization, OrganizationCommand as C};
use domain::task::{
    NewTask, Priority, References, Status, Task, TaskCommand, TaskEdit, TaskRequest,
};
use domain::{Email, Grant, Name, OrgId, Permission, Request, Scope, TaskId, TeamId, Text, UserId};
use eventstore::vault::{MasterKey, Vault};
use eventstore::{Store, StoreOptions};
use gateway::config::Config;
use gateway::App;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{fresh_org, Op};

/// The last task each client created (an edit goes to it).
type LastTasks = Arc<Vec<Mutex<Option<String>>>>;

fn last_tasks(clients: usize) -> LastTasks {
    Arc::new((0..clients).map(|_| Mutex::new(None)).collect())
}

fn title(client: usize, i: u64) -> anyhow::Result<Text> {
    Ok(Text::parse(
        "title",
        &format!("Task {client} {i}"),
        200,
        false,
    )?)
}

/// Task writes through `commands`, with the grant made in process (no authentication, no
/// lookup, no HTTP).
async fn through_commands(commands: Commands, clients: usize) -> anyhow::Result<Op> {
    let org = fresh_org();
    commands
        .execute::<Organization>(
            &org.to_string(),
            Request::system(C::Create {
                org_id: org,
                admin_team: TeamId::from_uuid(Uuid::now_v7()),
                name: Name::parse("name", "Bench tasks")?,
            }),
            &Metadata::new(Actor::System).in_org(org),
        )
        .await?;
    let user = UserId::from_uuid(Uuid::now_v7());
    let grant = Grant {
        org_id: org,
        user: Some(user),
        member: true,
        permissions: [
            Permission::CreateTasks,
            Permission::EditTasks,
            Permission::AssignTasks,
        ]
        .into_iter()
        .collect(),
    };
    let last = last_tasks(clients);
    let op: Op = Arc::new(move |client, i| {
        let (commands, grant, last) = (commands.clone(), grant.clone(), last.clone());
        Box::pin(async move {
            let meta = Metadata::new(Actor::User(user)).in_org(org);
            let previous = last[client]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (task, command) = match previous.filter(|_| i % 2 == 1) {
                Some(task) => (
                    task,
                    TaskCommand::Edit(TaskEdit {
                        title: Some(title(client, i)?),
                        ..TaskEdit::default()
                    }),
                ),
                None => {
                    let task = TaskId::from_uuid(Uuid::now_v7()).to_string();
                    *last[client].lock().unwrap_or_else(|p| p.into_inner()) = Some(task.clone());
                    (
                        task,
                        TaskCommand::Create(Box::new(new_task(org, client, i)?)),
                    )
                }
            };
            // The commands name nothing (no labels, category or assignees) to look up.
            let request = TaskRequest {
                grant,
                known: References::default(),
                command,
            };
            commands.execute::<Task>(&task, request, &meta).await?;
            Ok(())
        })
    });
    Ok(op)
}

fn new_task(org: OrgId, client: usize, i: u64) -> anyhow::Result<NewTask> {
    Ok(NewTask {
        org_id: org,
        title: title(client, i)?,
        description: Text::parse("description", "", 10_000, true)?,
        status: Status::Todo,
        priority: Priority::None,
        category_id: None,
        labels: BTreeSet::new(),
        assignees: BTreeSet::new(),
    })
}

/// A Cairn server in this process, on its own database and a free port, with an API key, an
/// organization, and the operation that writes tasks to it over HTTP.
pub(super) struct HttpServer {
    /// Creates a task or edits the client's last one, through the server's HTTP API.
    pub(super) op: Op,
    /// The same writes through the server's own `commands::Commands`, in this process: the
    /// same database, group-commit writer, projections and relay as `op`, without the HTTP
    /// path (authentication, grant lookup, JSON, receipt).
    pub(super) commands_op: Op,
    config: Config,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<()>,
    data_dir: std::path::PathBuf,
}

impl HttpServer {
    /// Starts a server on `database` (created and migrated if missing) for `clients` clients.
    pub(super) async fn start(
        config: &Config,
        database: sqlx::postgres::PgConnectOptions,
        clients: usize,
    ) -> anyhow::Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("cairn-bench-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&data_dir).context("create the bench server's data dir")?;
        let mut config = config.clone();
        config.database = database;
        config.bind = "127.0.0.1:0".parse()?;
        config.data_dir = data_dir.clone();
        config.nats_url = None;
        config.smtp_url = None;
        config.api_rate = u32::MAX / 2;
        config.db_pool = config.db_pool.max(clients as u32 + 4);
        let key = gateway::secret_key(&config)?;
        config.secret_key = Some(key.clone());
        let app = App::build(config.clone()).await?;
        let state = app.state().clone();
        let address = app.local_addr();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(async move {
            if let Err(e) = app.run().await {
                eprintln!("  the bench server stopped: {e}");
            }
        });
        let nothing: Op = Arc::new(|_, _| Box::pin(async { Ok(()) }));
        let mut this = Self {
            op: nothing.clone(),
            commands_op: nothing,
            config,
            shutdown,
            server,
            data_dir,
        };
        let ops = async {
            let http = task_writes(&this.config, key, address, clients).await?;
            // Ready by now: task_writes waited for /readyz.
            let ready = state.try_ready().context("the bench server is not ready")?;
            let commands = through_commands(ready.commands.clone(), clients).await?;
            anyhow::Ok((http, commands))
        };
        match ops.await {
            Ok((http, commands)) => {
                this.op = http;
                this.commands_op = commands;
                Ok(this)
            }
            Err(e) => {
                this.stop().await;
                Err(e)
            }
        }
    }

    /// Waits until the server's projections and consumers have applied everything written.
    pub(super) async fn settle(&self) -> anyhow::Result<()> {
        caught_up(&self.config).await
    }

    /// The server's configuration (its database among it).
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the server and removes its data directory (its database stays for the caller).
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn task_writes(
    config: &Config,
    key: MasterKey,
    address: std::net::SocketAddr,
    clients: usize,
) -> anyhow::Result<Op> {
    let base = format!("http://{address}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    wait_ready(&http, &base).await?;
    let api_key = api_key(config, key).await?;
    let auth = format!("Bearer {api_key}");
    // The key works once the identity read model has it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/api/v1/me"))
        .header("authorization", &auth)
        .send()
        .await?
        .status()
        != 200
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the bench key never worked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created: Value = http
        .post(format!("{base}/api/v1/orgs"))
        .header("authorization", &auth)
        .json(&json!({"name": "Bench HTTP"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let org = created["id"]
        .as_str()
        .context("organization id in the answer")?
        .to_owned();
    // One keep-alive connection per client, spoken to with hyper's bare HTTP/1.1 client and
    // requests built from prepared parts: the load generator shares the machine's cores with
    // the server it measures, so it should cost as little as it can.
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(tokio::sync::Mutex::new(Connection::open(address).await?));
    }
    let connections = Arc::new(connections);
    let auth = axum::http::HeaderValue::from_str(&auth)?;
    let tasks_path: Arc<str> = format!("/api/v1/orgs/{org}/tasks").into();
    let last = last_tasks(clients);
    Ok(Arc::new(move |client, i| {
        let (connections, auth, tasks_path, last) = (
            connections.clone(),
            auth.clone(),
            tasks_path.clone(),
            last.clone(),
        );
        Box::pin(async move {
            let previous = last[client]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let body = format!(r#"{{"title":"Task {client} {i}"}}"#);
            let mut connection = connections[client].lock().await;
            match previous.filter(|_| i % 2 == 1) {
                Some(task) => {
                    let path = format!("{tasks_path}/{task}");
                    connection
                        .send(axum::http::Method::PATCH, &path, &auth, body)
                        .await?;
                }
                None => {
                    let answer = connection
                        .send(axum::http::Method::POST, &tasks_path, &auth, body)
                        .await?;
                    let created: Created = serde_json::from_slice(&answer)?;
                    *last[client].lock().unwrap_or_else(|p| p.into_inner()) = Some(created.id);
                }
            }
            Ok(())
        })
    }))
}

/// Waits until every projection and consumer on `config`'s database has applied every
/// committed event, showing how far behind they are.
pub(super) async fn caught_up(config: &Config) -> anyhow::Result<()> {
    let pool = eventstore::connect(config.database.clone(), 1).await?;
    let store = Store::new(pool, StoreOptions::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut shown = tokio::time::Instant::now();
    loop {
        let statuses = projections::registry::all_statuses(&store).await?;
        let behind = statuses.iter().map(|s| s.lag).max().unwrap_or(0);
        if behind == 0 {
            return Ok(());
        }
        if shown.elapsed() >= Duration::from_secs(1) {
            eprintln!("  the server's projections are catching up: {behind} events behind");
            shown = tokio::time::Instant::now();
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the bench server's projections never caught up ({behind} events behind)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The part of a created task's answer the load generator reads.
#[derive(serde::Deserialize)]
struct Created {
    id: String,
}

/// A bench client's HTTP/1.1 connection to the server.
struct Connection {
    address: std::net::SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<axum::body::Bytes>>,
}

impl Connection {
    async fn open(address: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { address, sender })
    }

    /// Sends a JSON `body` and returns the answer's body; an answer other than 2xx is an error.
    async fn send(
        &mut self,
        method: axum::http::Method,
        path: &str,
        auth: &axum::http::HeaderValue,
        body: String,
    ) -> anyhow::Result<axum::body::Bytes> {
        use http_body_util::BodyExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(axum::http::header::HOST, self.address.to_string())
            .header(axum::http::header::AUTHORIZATION, auth)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(axum::body::Bytes::from(body)))?;
        if self.sender.ready().await.is_err() {
            // The server closed an idle connection (between slices): open another.
            *self = Self::open(self.address).await?;
            self.sender.ready().await?;
        }
        let answer = self.sender.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

pub(super) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the bench server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers a bench user (through a sign-in link, as anyone registers) and issues an API key
/// with the scopes the phase needs, recorded as events like any other.
async fn api_key(config: &Config, key: MasterKey) -> anyhow::Result<String> {
    api_key_with(
        config,
        key,
        &[Scope::Admin, Scope::TasksRead, Scope::TasksWrite],
    )
    .await
}

/// A bench user's API key with `scopes`.
pub(super) async fn api_key_with(
    config: &Config,
    key: MasterKey,
    scopes: &[Scope],
) -> anyhow::Result<String> {
    let pool = eventstore::connect(config.database.clone(), 2).await?;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let identity = Identity::new(Commands::new(store), Vault::new(pool, key));
    let email = Email::parse(&format!("bench-{}@example.com", Uuid::now_v7().simple()))?;
    let scopes: BTreeSet<Scope> = scopes.iter().copied().collect();
    let (_, issued) =
        crate::cli::keys::issue(&identity, &email, Name::parse("name", "bench")?, scopes).await?;
    Ok(issued.key)
}
