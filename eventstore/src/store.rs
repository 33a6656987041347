use std::sync::Arc;

use cqrs_es::Aggregate;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::append::{self, AppendRequest, Appender, Committed};
use crate::signal::{self, CommitTime, Commits};
use crate::{AggregateStore, BulkAppended, Cursor, Receipt, StoreError};

/// Tuning for a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Group-commit writer tasks; each holds at most one transaction open at a time.
    pub writers: usize,
    /// The most commands one transaction carries.
    pub max_batch: usize,
    /// Write a snapshot once this many events follow the last one (0 disables snapshots).
    pub snapshot_every: i64,
    /// Aggregates kept in memory per aggregate type (0 disables the cache).
    pub cache_capacity: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            writers: 2,
            max_batch: 256,
            snapshot_every: 100,
            cache_capacity: 10_000,
        }
    }
}

/// The shared handle to the event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    options: StoreOptions,
    appender: Appender,
    commits: Arc<Commits>,
    /// The shared computation of [`Store::settled_below`].
    horizon: crate::read::Horizon,
    /// The newest stretch of the log read here, shared by this process's tailers.
    recent: crate::read::Recent,
}

impl Store {
    /// Starts the group-commit writer on `pool`. Must be called inside a tokio runtime.
    pub fn new(pool: PgPool, options: StoreOptions) -> Self {
        let commits = Arc::new(Commits::default());
        let appender = Appender::start(
            pool.clone(),
            options.writers,
            options.max_batch,
            commits.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                options,
                appender,
                commits,
                horizon: crate::read::Horizon::default(),
                recent: crate::read::Recent::default(),
            }),
        }
    }

    /// The connection pool, for the tables *beside* the event log: read models, checkpoints,
    /// receipts, keys, the outbox.
    ///
    /// **Never for `events`.** This crate is the only writer of that table, and reads of it go
    /// through the methods here ([`Store::tail`], [`Store::read_stream`], [`Store::head`], ...),
    /// which keep the gapless order and the hash chain's rules in one place.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn horizon(&self) -> &crate::read::Horizon {
        &self.inner.horizon
    }

    pub(crate) fn recent(&self) -> &crate::read::Recent {
        &self.inner.recent
    }

    /// The options this store was built with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// A typed store for one aggregate, with its own cache.
    pub fn aggregate<A: Aggregate + Clone>(&self) -> AggregateStore<A> {
        AggregateStore::new(self.clone())
    }

    /// Appends one command's events through the group-commit writer.
    pub async fn append(&self, request: AppendRequest) -> Result<Committed, StoreError> {
        self.inner.appender.append(request).await
    }

    /// Writes many commands' events at once, for imports and generated data such as
    /// `cairn bench`'s: the only way besides [`Store::append`] into `events`.
    ///
    /// Requests are written in order, several thousand events per statement (one transaction
    /// each, so no transaction is held open long), bypassing the group-commit writer. Each
    /// request gets its receipt, any snapshot it carries is stored, and the hash chain is
    /// computed as for any append. Sequences are checked: within a request and across the
    /// requests of one call they must be contiguous, and a stream's first event here must
    /// follow what is stored. Requests without events are skipped.
    ///
    /// Not atomic as a whole: on an error, the statements before the failing one stay
    /// committed. Commit signals go out after each statement, so tailers keep up.
    pub async fn append_bulk(
        &self,
        requests: impl IntoIterator<Item = AppendRequest>,
    ) -> Result<BulkAppended, StoreError> {
        append::append_bulk(&self.inner.pool, &self.inner.commits, requests).await
    }

    /// The stored receipt of a command, if it ran.
    pub async fn find_receipt(&self, command_id: Uuid) -> Result<Option<Receipt>, StoreError> {
        append::find_receipt(&self.inner.pool, command_id).await
    }

    /// Changes whenever this process commits events, and, once
    /// [`share_commit_signals`](Self::share_commit_signals) runs, whenever another node does: a
    /// wake-up for tailers, never a source of events (a tailer must still read the table, which
    /// is the correctness path).
    pub fn commits(&self) -> watch::Receiver<Cursor> {
        self.inner.commits.any()
    }

    /// The newest commit this process made (not other nodes').
    pub fn committed_here(&self) -> Cursor {
        self.inner.commits.here()
    }

    /// Every commit this process makes from now on, with the wall-clock time it returned: for
    /// measuring latency from the commit (`cairn bench fanout`). A receiver that falls more
    /// than 1,024 commits behind misses the oldest.
    pub fn commit_times(&self) -> broadcast::Receiver<CommitTime> {
        self.inner.commits.times()
    }

    /// Shares commit signals with the other nodes on this database until `shutdown` (see
    /// [`crate::signal`]).
    pub fn share_commit_signals(&self, shutdown: CancellationToken) {
        tokio::spawn(signal::announce(
            self.inner.pool.clone(),
            self.inner.commits.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(signal::listen(
            self.inner.pool.clone(),
            self.inner.commits.clone(),
            shutdown,
        ));
    }
}
