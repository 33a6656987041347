//! The projection runner: a read model on the shared consumer loop (`crate::consumer`).
//!
//! Each batch is applied *and its checkpoint moved* in one transaction, after locking the
//! checkpoint's row and comparing it with where this runner thinks it is. So a batch is
//! applied once, a crash loses nothing but work to redo, and two runners (on two nodes, one of
//! which lost its advisory lock without noticing) can never both apply the same events.

use std::future::Future;
use std::time::Duration;

use eventstore::{Cursor, RecordedEvent, Store};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::changes::{ChangeSignal, Changes};
use crate::checkpoint::{self, Locked};
use crate::consumer::{Handler, Pace, Tail, TailOptions};

/// Why a batch could not be applied. The runner logs it and retries the batch after a pause.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Reading the event store failed.
    #[error("event store: {0}")]
    Store(#[from] eventstore::StoreError),
    /// An event could not be decoded.
    #[error("event {event_id} ({event_type}) could not be decoded: {source}")]
    Decode {
        /// The event.
        event_id: uuid::Uuid,
        /// Its type.
        event_type: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// Decodes an event's payload as `T`, naming the event when it cannot.
pub fn decode<T: serde::de::DeserializeOwned>(event: &RecordedEvent) -> Result<T, ProjectionError> {
    event.decode().map_err(|source| ProjectionError::Decode {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        source,
    })
}

/// A read model built from events.
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the checkpoint's key. Changing it rebuilds from zero.
    fn name(&self) -> &'static str;

    /// The tables it owns, emptied by a rebuild ([`reset`]).
    fn tables(&self) -> &'static [&'static str];

    /// Applies one event inside the batch's transaction. Must be idempotent and must not have
    /// side effects outside its own tables.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Whether `event` may change this read model (default: every event may). Only these
    /// events reach [`apply`] and [`Projection::apply_batch`] (the others are not even copied
    /// out of the store's window); a batch with none is not applied: only its checkpoint
    /// moves, and the caches of the read model's queries stay valid ([`crate::changes`]). Must
    /// be `true` for every event [`apply`] would act on.
    ///
    /// [`apply`]: Projection::apply
    fn relevant(&self, _event: &RecordedEvent) -> bool {
        true
    }

    /// Applies a batch, in order, inside its transaction. The default applies event by event;
    /// a projection may fold the batch in memory and write each touched row once, as long as
    /// the result equals applying the events one by one.
    fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            for event in events {
                self.apply(conn, event).await?;
            }
            Ok(())
        }
    }
}

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events per batch (and per transaction).
    pub batch: i64,
    /// The slow poll, the correctness path when no wake-up arrives.
    pub poll: Duration,
    /// How long a caught-up runner lets new events gather before reading them. Without it, a
    /// runner under a steady write load wakes for every group commit and spends more on its
    /// per-batch overhead than on the events; with it, a burst becomes one batch. It adds at
    /// most this much to the commit → read model lag.
    pub linger: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            poll: Duration::from_secs(1),
            linger: Duration::from_millis(10),
        }
    }
}

/// Runs one projection until cancelled.
#[derive(Debug)]
pub struct Runner<P> {
    tail: Tail<Apply<P>>,
}

impl<P: Projection> Runner<P> {
    /// A runner for `projection` on `store`.
    pub fn new(store: Store, projection: P, options: RunnerOptions) -> Self {
        let options = TailOptions {
            lock_key: lock_key(projection.name()),
            batch: options.batch,
            pace: Pace {
                poll: options.poll,
                linger: options.linger,
            },
        };
        let apply = Apply {
            projection,
            changes: ChangeSignal::new(),
        };
        Self {
            tail: Tail::new(store, apply, options),
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.tail.handler().projection.name()
    }

    /// Moves each time this runner commits a batch that may have changed the read model (for
    /// caches of its queries: [`crate::changes`]).
    pub fn changes(&self) -> Changes {
        self.tail.handler().changes.subscribe()
    }

    /// Changes each time this runner commits a batch (a wake-up for
    /// [`crate::progress::wait_for`]).
    pub fn progress(&self) -> watch::Receiver<Cursor> {
        self.tail.progress()
    }

    /// Runs until `shutdown` is cancelled. Failures are logged and retried; this never returns
    /// early otherwise.
    pub async fn run(self, shutdown: CancellationToken) {
        self.tail.run(shutdown).await;
    }
}

/// A projection as the consumer loop's [`Handler`]: the batch and its checkpoint in one
/// transaction.
#[derive(Debug)]
struct Apply<P> {
    projection: P,
    changes: ChangeSignal,
}

impl<P: Projection> Handler for Apply<P> {
    type Error = ProjectionError;

    fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn leading(&self, now: bool) {
        self.changes.leading(now);
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        self.projection.relevant(event)
    }

    #[tracing::instrument(skip_all, fields(projection = self.projection.name(), events = batch.len()))]
    async fn handle(
        &self,
        connection: &mut PgConnection,
        _pool: &PgPool,
        from: Cursor,
        to: Cursor,
        batch: &[RecordedEvent],
    ) -> Result<Cursor, ProjectionError> {
        let name = self.projection.name();
        if batch.is_empty() {
            // Nothing to apply (a burst of task events, for `identity`): the checkpoint alone,
            // still compare-and-set, so a rebuild or another runner is noticed as below.
            if checkpoint::advance_alone(connection, name, from, to).await? {
                return Ok(to);
            }
            self.changes.changed();
            return Ok(checkpoint::load_on(connection, name).await?);
        }
        let mut tx = match checkpoint::lock(connection, name, from).await? {
            Locked::Held(tx) => tx,
            Locked::Moved(stored) => {
                // Someone else moved it (a rebuild): assume anything changed.
                self.changes.changed();
                tracing::warn!(
                    projection = name,
                    "checkpoint moved under this runner; resuming from it"
                );
                return Ok(stored);
            }
        };
        self.projection.apply_batch(&mut tx, batch).await?;
        if !checkpoint::advance(&mut *tx, name, from, to).await? {
            // Not while the row is locked; but never commit a batch without its checkpoint.
            tx.rollback().await?;
            self.changes.changed();
            return Ok(checkpoint::load_on(connection, name).await?);
        }
        // Around the commit: from the moment it can be seen (even through the checkpoint, by
        // a read-your-writes wait) until it is done, caches serve nothing they kept.
        self.changes.begin();
        let committed = tx.commit().await;
        self.changes.changed();
        committed?;
        Ok(to)
    }
}

/// Empties `projection`'s tables and moves its checkpoint back to the start, in one
/// transaction, under the checkpoint's row lock. A runner already running (on any node) notices
/// at its next batch that the checkpoint moved and rebuilds from zero.
pub async fn reset<P: Projection>(pool: &PgPool, projection: &P) -> Result<(), sqlx::Error> {
    checkpoint::load(pool, projection.name()).await?;
    let mut tx = pool.begin().await?;
    checkpoint::hold(&mut tx, projection.name()).await?;
    if !projection.tables().is_empty() {
        sqlx::query(&format!("TRUNCATE {}", projection.tables().join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    checkpoint::rewind(&mut tx, projection.name()).await?;
    tx.commit().await
}

fn lock_key(name: &str) -> String {
    format!("cairn.projection.{name}")
}
