use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use commands::identity::Identity;
use commands::Commands;
use eventstore::vault::MasterKey;
use eventstore::{Cursor, Store};
use projections::consumers::mailer::Outbox;
use tokio::sync::{watch, OnceCell};

use crate::config::Config;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::limits::Limits;
use crate::http::metrics::Metrics;
use crate::ws::Hub;
use projections::consumers::bus::Bus;
use projections::read_models::access::Access;
use uuid::Uuid;

use crate::http::principal::Principal;

/// How long a read waits for `?after=`, a write for this node's own last commit, or a
/// revocation for the read model that enforces it.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// What exists once PostgreSQL is reachable and migrated.
#[derive(Debug, Clone)]
pub struct Ready {
    pub store: Store,
    pub commands: Commands,
    pub identity: Identity,
    pub outbox: Outbox,
    /// This node's projection progress by name (a wake-up for read-your-writes waits).
    pub progress: HashMap<&'static str, watch::Receiver<Cursor>>,
    /// API keys as authentication reads them, kept until the identity read model changes.
    pub api_keys: projections::read_models::identity::ApiKeys,
}

/// Shared by every handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    secret_key: MasterKey,
    mail_to_files: bool,
    ready: OnceCell<Ready>,
    metrics: Metrics,
    limits: Limits,
    link_workers: Arc<tokio::sync::Semaphore>,
    bus: Arc<dyn Bus>,
    hub: Hub,
    rooms: crate::collab::Rooms,
    renewing: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl AppState {
    /// The state of a server that has not reached PostgreSQL yet.
    pub fn new(
        config: Config,
        secret_key: MasterKey,
        mail_to_files: bool,
        bus: Arc<dyn Bus>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let limits = Limits::new(&config);
        let rooms = crate::collab::Rooms::new(
            config.collab_compact_every,
            config.collab_awareness_timeout,
            bus.clone(),
        );
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
                rooms,
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
    pub fn secret_key(&self) -> &MasterKey {
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

    /// This node's open document rooms (`/collab`).
    pub fn rooms(&self) -> &crate::collab::Rooms {
        &self.inner.rooms
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
    /// Waits until projection `name` includes `cursor`, woken by its progress; 503
    /// `unavailable` if it does not within [`CATCH_UP`] (the request log records it at WARN).
    pub async fn caught_up(&self, name: &str, cursor: Cursor) -> Result<(), ApiError> {
        let reached = projections::progress::wait_for(
            self.store.pool(),
            name,
            cursor,
            CATCH_UP,
            self.progress.get(name).cloned(),
        )
        .await?;
        if reached {
            Ok(())
        } else {
            // The request log says so at WARN, with this cause.
            Err(ApiError::Unavailable(Some(
                format!("the {name} read model has not caught up yet; retry").into(),
            )))
        }
    }

    /// Waits until `name` includes everything this node has committed (so a client that just
    /// created an organization or a label can use it at once).
    pub async fn caught_up_locally(&self, name: &str) -> Result<(), ApiError> {
        self.caught_up(name, self.store.committed_here()).await
    }

    /// Parses `?after=`: 400 `invalid_cursor` for text that is not a Cairn cursor.
    pub fn parse_after(after: Option<&str>) -> Result<Option<Cursor>, ApiError> {
        after
            .map(|text| {
                text.parse().map_err(|_| {
                    ApiError::new(ErrorCode::InvalidCursor, "`after` is not a Cairn cursor")
                })
            })
            .transpose()
    }

    /// Fails with 400 `invalid_cursor` if `cursor` lies beyond the newest commit: no commit
    /// ever returned it, so waiting for it would be in vain.
    pub async fn committed(&self, cursor: Cursor) -> Result<(), ApiError> {
        if cursor <= self.store.committed_here() || cursor <= self.store.head().await? {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidCursor,
                "`after` is past the newest event; use a cursor Cairn returned",
            ))
        }
    }

    /// For `?after=<cursor>` on a read of projection `name` (and `also`, when the read
    /// joins another): 400 `invalid_cursor` at once for text that is no cursor or a cursor
    /// past the newest commit, else a wait until the read model includes it. Call it after
    /// access is decided, so strangers cost no wait.
    pub async fn read_after(
        &self,
        after: Option<Cursor>,
        name: &str,
        also: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(cursor) = after else {
            return Ok(());
        };
        self.committed(cursor).await?;
        self.caught_up(name, cursor).await?;
        match also {
            Some(other) => self.caught_up(other, cursor).await,
            None => Ok(()),
        }
    }

    /// What `caller` may read (in `org` only, when given), by the one access policy, after
    /// the memberships read model has seen this node's own commits.
    pub async fn access(
        &self,
        caller: Option<&Principal>,
        org: Option<Uuid>,
    ) -> Result<Access, ApiError> {
        let Some(caller) = caller else {
            return Ok(Access::anonymous());
        };
        self.caught_up_locally(projections::read_models::memberships::NAME)
            .await?;
        let pool = self.store.pool();
        Ok(match org {
            Some(org) => Access::load_org(pool, caller.reader(), org).await?,
            None => Access::load(pool, caller.reader()).await?,
        })
    }

    /// Waits until the identity read models include `cursor`, so the caller's next request
    /// sees its own write (a new session, a revoked key). A revocation that is not enforced
    /// in time answers 503 (it is committed and takes effect when the read model catches up).
    pub async fn identity_applied(&self, cursor: Option<Cursor>) -> Result<(), ApiError> {
        match cursor {
            Some(cursor) => {
                self.caught_up(projections::read_models::identity::NAME, cursor)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Waits (up to 5 s) until the identity read models include `cursor`, so the caller's next
    /// request sees its own write (a new session, a revoked key). The write has committed
    /// whatever happens here, so a lagging projection is logged, never turned into an error
    /// that would throw away the answer (a cookie, a key shown once).
    pub async fn identity_caught_up(&self, cursor: Option<Cursor>) {
        let Some(cursor) = cursor else {
            return;
        };
        if self.identity_applied(Some(cursor)).await.is_err() {
            tracing::warn!("the change applies when the identity projection catches up");
        }
    }
}
