use std::sync::Arc;

use commands::Commands;
use eventstore::Store;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// What exists once PostgreSQL is reachable and migrated.
#[derive(Debug, Clone)]
pub struct Ready {
    pub store: Store,
    pub commands: Commands,
}

/// Shared by every handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    ready: OnceCell<Ready>,
    metrics: Metrics,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                ready: OnceCell::new(),
                metrics: Metrics::default(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
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
