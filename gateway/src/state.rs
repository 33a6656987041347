use std::sync::Arc;

use commands::identity::Identity;
use commands::Commands;
use eventstore::{Cursor, Store};
use projections::mailer::Outbox;
use tokio::sync::{watch, OnceCell};

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::live::Hub;
use crate::metrics::Metrics;
use projections::bus::Bus;

/// What exists once PostgreSQL is reachable and migrated.
#[derive(Debug, Clone)]
pub struct Ready {
    pub store: Store,
    pub commands: Commands,
    pub identity: Identity,
    pub outbox: Outbox,
    /// This node's `identity` projection progress (a wake-up for read-your-writes waits).
    pub identity_progress: watch::Receiver<Cursor>,
}

/// Shared by every handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    secret_key: [u8; 32],
    mail_to_files: bool,
    ready: OnceCell<Ready>,
    metrics: Metrics,
    limits: Limits,
    link_workers: Arc<tokio::sync::Semaphore>,
    bus: Arc<dyn Bus>,
    hub: Hub,
    renewing: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl AppState {
    /// The state of a server that has not reached PostgreSQL yet.
    pub fn new(
        config: Config,
        secret_key: [u8; 32],
        mail_to_files: bool,
        bus: Arc<dyn Bus>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let limits = Limits::new(&config);
        Self {
            inner: Arc::new(Inner {
                config,
                secret_key,
                mail_to_files,
                ready: OnceCell::new(),
                metrics: Metrics::default(),
                limits,
                link_workers: Arc::new(tokio::sync::Semaphore::new(64)),
                bus,
                hub: Hub::default(),
                renewing: std::sync::Mutex::default(),
                shutdown,
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        }
    }

    /// The configuration it started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The key that seals tokens and personal data.
    pub fn secret_key(&self) -> &[u8; 32] {
        &self.inner.secret_key
    }

    /// Whether mail lands in `.eml` files (development), so links may be logged.
    pub fn mail_to_files(&self) -> bool {
        self.inner.mail_to_files
    }

    /// Where committed events go (the relay) and come back from (the hub).
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    /// Cancelled when the server stops: long-lived responses (SSE, `/ws`) end on it.
    pub fn shutdown(&self) -> &tokio_util::sync::CancellationToken {
        &self.inner.shutdown
    }

    /// Background work that uses the database (projection runners, the relay, the outbox,
    /// sign-in links answered before they are written, session renewals): a stopping server
    /// waits for it before the pool closes.
    pub fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.inner.tasks
    }

    /// This node's live rooms.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Marks a session as being renewed; false if a renewal is already under way.
    pub fn start_renewal(&self, session: uuid::Uuid) -> bool {
        self.inner
            .renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session)
    }

    /// Clears the mark set by [`Self::start_renewal`].
    pub fn end_renewal(&self, session: uuid::Uuid) {
        self.inner
            .renewing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
    }

    /// Permits for background sign-in work (bounded, so a flood cannot pile up tasks).
    pub fn link_workers(&self) -> Arc<tokio::sync::Semaphore> {
        self.inner.link_workers.clone()
    }

    /// The database-backed services, or 503 while the database has not come up yet.
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.inner.ready.get().ok_or(ApiError::Unavailable(None))
    }

    pub fn try_ready(&self) -> Option<&Ready> {
        self.inner.ready.get()
    }

    pub fn set_ready(&self, ready: Ready) {
        let _ = self.inner.ready.set(ready);
    }
}

impl Ready {
    /// Waits (up to 5 s) until the identity read models include `cursor`, so the caller's next
    /// request sees its own write (a new session, a revoked key). The write has committed
    /// whatever happens here, so a lagging projection is logged, never turned into an error
    /// that would throw away the answer (a cookie, a key shown once).
    pub async fn identity_caught_up(&self, cursor: Option<Cursor>) {
        let Some(cursor) = cursor else {
            return;
        };
        let reached = projections::runner::wait_for(
            self.store.pool(),
            projections::identity::NAME,
            cursor,
            std::time::Duration::from_secs(5),
            Some(self.identity_progress.clone()),
        )
        .await;
        if !matches!(reached, Ok(true)) {
            tracing::warn!(
                "the identity projection has not caught up within 5 s; the change applies when it does"
            );
        }
    }
}
