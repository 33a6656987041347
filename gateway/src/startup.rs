use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::Request;
use commands::identity::Identity;
use commands::Commands;
use eventstore::vault::{MasterKey, Vault};
use eventstore::{Store, StoreOptions, MIGRATOR};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use projections::consumers::bus::{Bus, BusError, LocalBus, NatsBus, NatsOptions};
use projections::consumers::mailer::{Outbox, Transport, TransportError};
use projections::consumers::relay::Relay;
use projections::read_models::identity::ApiKeys;
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Config;
use crate::http::error::error_chain;
use crate::lookups::ReadModelLookups;
use crate::state::{AppState, Ready, CATCH_UP};

/// The longest wait between attempts to reach PostgreSQL at start.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a stopping server waits for its background tasks.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a server could not start, or a command could not set up what it needs. Each message
/// names the setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `CAIRN_BIND` could not be bound.
    #[error("CAIRN_BIND: cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The master key in the data dir could not be read or made.
    #[error("CAIRN_DATA_DIR: {what}")]
    DataDir {
        /// What failed, with the path.
        what: String,
        /// The I/O error, if that was the cause.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The mail transport could not be set up (`SMTP_URL`, `CAIRN_SMTP_CA_FILE`).
    #[error(transparent)]
    Mail(#[from] TransportError),
    /// The NATS server could not be used.
    #[error("NATS_URL: cannot use the NATS server")]
    Nats(#[source] BusError),
    /// PostgreSQL could not be reached, or the pool not opened.
    #[error("{0} (DATABASE_URL)")]
    Database(&'static str, #[source] sqlx::Error),
    /// The migrations did not apply.
    #[error("migrations failed")]
    Migrations(#[from] sqlx::migrate::MigrateError),
}

/// A bound, not yet serving, Cairn server.
///
/// The listener is bound before the database is reached: `/healthz` answers at once, `/readyz`
/// and the API answer 503 until a background task has connected, created the database if
/// missing and run migrations, retrying with backoff.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    connector: JoinHandle<()>,
    /// [`AppState::tasks`]: waited for at shutdown before the pool closes.
    tasks: TaskTracker,
}

impl App {
    /// Binds `config.bind` and starts connecting to the database in the background.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let secret_key = secret_key(&config)?;
        let transport = Transport::new(
            config.smtp_url_with_password().as_ref(),
            config.smtp_ca_file.as_deref(),
            config.data_dir.join("outbox"),
        )?;
        let shutdown = CancellationToken::new();
        let bus: Arc<dyn Bus> = match &config.nats_url {
            Some(url) => NatsBus::connect(
                NatsOptions {
                    url: url.to_string(),
                    stream: config.nats_stream.clone(),
                    prefix: config.nats_prefix.clone(),
                    max_age: Duration::from_secs(7 * 24 * 3600),
                },
                shutdown.clone(),
            )
            .await
            .map_err(StartError::Nats)?,
            None => Arc::new(LocalBus::default()),
        };
        let state = AppState::new(
            config,
            secret_key,
            transport.is_files(),
            bus,
            shutdown.clone(),
        );
        tokio::spawn(state.hub().clone().run(
            std::sync::Arc::new(state.clone()),
            state.bus().subscribe(),
            shutdown.clone(),
        ));
        tokio::spawn(sweep_limits(state.clone(), shutdown.clone()));
        let tasks = state.tasks().clone();
        let connector = tokio::spawn(connect_with_backoff(
            state.clone(),
            transport,
            shutdown.clone(),
            tasks.clone(),
        ));
        Ok(Self {
            listener,
            state,
            shutdown,
            connector,
            tasks,
        })
    }

    /// The shared state (for tools that drive a server in-process, such as `cairn bench`).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the server listens (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config().bind)
    }

    /// Cancelling this token stops the server gracefully: in-flight requests finish, then the
    /// background tasks and the database pool close.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled.
    pub async fn run(self) -> Result<(), StartError> {
        let router = crate::http::router::router(self.state.clone());
        tracing::info!(address = %self.local_addr(), "listening");
        let config = self.state.config();
        serve(
            self.listener,
            router,
            self.shutdown.clone(),
            config.max_connections,
            config.header_timeout,
        )
        .await;
        self.shutdown.cancel();
        let _ = self.connector.await;
        // Let the runners finish the batch they are applying, and the relay and the outbox
        // their current step, before the pool goes.
        self.tasks.close();
        if tokio::time::timeout(STOP_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "background tasks still running after {} s; closing anyway",
                STOP_GRACE.as_secs()
            );
        }
        if let Some(ready) = self.state.try_ready() {
            let closing = ready.store.pool().close();
            if tokio::time::timeout(STOP_GRACE, closing).await.is_err() {
                tracing::warn!("database connections still in use; stopping anyway");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, like `axum::serve` but with a
/// bound on what a client can hold: headers must arrive within `header_timeout`
/// (`CAIRN_HEADER_TIMEOUT_SECONDS`), and at most `max_connections`
/// (`CAIRN_MAX_CONNECTIONS`) are open at once, WebSockets included. At the cap, the server
/// stops accepting until a connection closes: the kernel's backlog holds the rest.
///
/// At shutdown it stops accepting, lets in-flight requests finish, closes idle keep-alive
/// connections, and returns once every HTTP connection has ended (upgraded WebSockets end on
/// the same token by themselves).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    max_connections: usize,
    header_timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &shutdown).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // No Nagle: a WebSocket frame (a live event, a peer's keystroke) written while an
        // earlier small write is unacknowledged would otherwise wait for the client's delayed
        // ACK, up to 40 ms on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
        let io = TokioIo::new(Counted {
            io: stream,
            _permit: permit,
        });
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = http.serve_connection(io, service).with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// What `axum::serve` does with an accept error: a client that went away already is nobody's
/// business; anything else (such as running out of file descriptors) is logged, and accepting
/// pauses for a second so the loop does not spin.
async fn accept_failed(e: std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}

/// A connection's socket together with its place under `CAIRN_MAX_CONNECTIONS`: the place is
/// given back when the socket closes, also after an upgrade to a WebSocket (which takes the
/// socket over from the HTTP connection).
struct Counted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Forgets idle rate-limit keys every [`crate::http::limits::SWEEP`], so the limiters' maps hold only
/// the clients of the last minute or so.
async fn sweep_limits(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(crate::http::limits::SWEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => state.limits().retain_recent(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// `CAIRN_SECRET_KEY`, or the key kept in `$CAIRN_DATA_DIR/secret.key`, created on first run.
pub fn secret_key(config: &Config) -> Result<MasterKey, StartError> {
    if let Some(key) = &config.secret_key {
        return Ok(key.clone());
    }
    let path = config.data_dir.join("secret.key");
    let failed =
        |what: String, source: Option<std::io::Error>| StartError::DataDir { what, source };
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::config::parse_key(text.trim())
            .map(MasterKey::from)
            .map_err(|e| failed(format!("{} is not a valid key: {e}", path.display()), None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                failed(
                    format!("cannot create {}", config.data_dir.display()),
                    Some(e),
                )
            })?;
            let key = MasterKey::generate();
            write_private(&path, &eventstore::encode::hex(key.expose_secret()))
                .map_err(|e| failed(format!("cannot write {}", path.display()), Some(e)))?;
            tracing::warn!(
                path = %path.display(),
                "CAIRN_SECRET_KEY is not set; generated a key into the data dir. Back it up: \
                 without it, sealed personal data cannot be read"
            );
            Ok(key)
        }
        Err(e) => Err(failed(format!("cannot read {}", path.display()), Some(e))),
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

async fn connect_with_backoff(
    state: AppState,
    transport: Transport,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = tokio::select! {
            result = connect(&state, &transport, &shutdown, &tasks) => result,
            () = shutdown.cancelled() => return,
        };
        match attempt {
            Ok(ready) => {
                tracing::info!(
                    database = state.config().database.get_database(),
                    "database ready"
                );
                state.set_ready(ready);
                return;
            }
            Err(e) => {
                tracing::warn!(
                    retry_in_ms = delay.as_millis() as u64,
                    "database unavailable, retrying: {}",
                    error_chain(&e)
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect(
    state: &AppState,
    transport: &Transport,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Ready, StartError> {
    let config = state.config();
    eventstore::ensure_database(&config.database)
        .await
        .map_err(|e| StartError::Database("cannot reach PostgreSQL", e))?;
    let pool = eventstore::connect(config.database.clone(), config.db_pool)
        .await
        .map_err(|e| StartError::Database("cannot open a connection pool", e))?;
    MIGRATOR.run(&pool).await?;
    let store = Store::new(pool.clone(), StoreOptions::default());
    // Other nodes' commits wake this node's projections, relay and feeds at once.
    store.share_commit_signals(shutdown.clone());
    let vault = Vault::new(pool.clone(), state.secret_key().clone());
    let running = projections::registry::spawn_all(&store, shutdown, tasks);
    let lookups = ReadModelLookups::new(
        pool.clone(),
        running.progress.clone(),
        running.changes_of(projections::read_models::memberships::NAME),
        CATCH_UP,
    );
    let api_keys = ApiKeys::new(
        pool.clone(),
        running.changes_of(projections::read_models::identity::NAME),
    );
    let commands = Commands::new(store.clone())
        .sealing_with(vault.clone())
        .with_lookups(Arc::new(lookups));
    let link_ttl =
        time::Duration::try_from(config.link_ttl).unwrap_or(commands::identity::LINK_TTL);
    let identity = Identity::new(commands.clone(), vault.clone()).with_link_ttl(link_ttl);
    tasks.spawn(Relay::new(store.clone(), state.bus().clone()).run(shutdown.clone()));
    // What this node's bus reader refills from when NATS lost messages.
    state.bus().refill_from(store.clone());
    let outbox = Outbox::new(pool, vault, transport.clone());
    tasks.spawn(
        outbox
            .clone()
            .run(config.mail_from.clone(), shutdown.clone()),
    );
    Ok(Ready {
        commands,
        identity,
        outbox,
        progress: running.progress,
        api_keys,
        store,
    })
}
