use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use commands::Commands;
use eventstore::{Store, StoreOptions, MIGRATOR};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::{AppState, Ready};

/// The longest wait between attempts to reach PostgreSQL at start.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
}

impl App {
    /// Binds `config.bind` and starts connecting to the database in the background.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("CAIRN_BIND: cannot listen on {}", config.bind))?;
        let shutdown = CancellationToken::new();
        let state = AppState::new(config);
        let connector = tokio::spawn(connect_with_backoff(state.clone(), shutdown.clone()));
        Ok(Self {
            listener,
            state,
            shutdown,
            connector,
        })
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
    pub async fn run(self) -> anyhow::Result<()> {
        let router = crate::routes::router(self.state.clone());
        tracing::info!(address = %self.local_addr(), "listening");
        axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(self.shutdown.clone().cancelled_owned())
        .await
        .context("HTTP server failed")?;
        self.shutdown.cancel();
        let _ = self.connector.await;
        if let Some(ready) = self.state.try_ready() {
            ready.store.pool().close().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn connect_with_backoff(state: AppState, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = tokio::select! {
            result = connect(state.config()) => result,
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
                    "database unavailable, retrying: {e:#}"
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

async fn connect(config: &Config) -> anyhow::Result<Ready> {
    eventstore::ensure_database(&config.database)
        .await
        .context("cannot reach PostgreSQL (DATABASE_URL)")?;
    let pool = eventstore::connect(config.database.clone(), config.db_pool)
        .await
        .context("cannot open a connection pool (DATABASE_URL)")?;
    MIGRATOR.run(&pool).await.context("migrations failed")?;
    let store = Store::new(pool, StoreOptions::default());
    Ok(Ready {
        commands: Commands::new(store.clone()),
        store,
    })
}
