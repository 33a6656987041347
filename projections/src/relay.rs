//! The relay: publishes every committed event to the [`Bus`], in commit order, at least once.
//!
//! It is a consumer with a side effect, so it is not a projection: it tails the store with the
//! gapless cursor, publishes a batch and waits for every acknowledgement, and only then moves its
//! checkpoint (`projection_checkpoints`, name `relay`) in a short transaction of its own. A crash
//! between the two publishes the batch again; JetStream drops the repeats by `Nats-Msg-Id`, and
//! live consumers drop anything at or behind the cursor they have already seen. While the bus is
//! down the relay retries the same batch with backoff; commands never wait for it. One node
//! relays at a time (advisory lock), and another takes over when it dies.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, CloudEvent};
use crate::runner::{checkpoint, lead, release, supervise, Unseen};
use crate::ProjectionError;

/// The relay's checkpoint name.
pub const NAME: &str = "relay";

/// The relay's advisory lock: one node publishes at a time.
const LOCK_KEY: &str = "cairn.relay";

/// Events per publish batch (JetStream acknowledgements in flight).
const BATCH: i64 = 512;

/// Publishes committed events to the bus.
#[derive(Debug)]
pub struct Relay {
    store: Store,
    bus: Arc<dyn Bus>,
    poll: Duration,
    progress: watch::Sender<Cursor>,
}

impl Relay {
    /// A relay from `store` to `bus`.
    pub fn new(store: Store, bus: Arc<dyn Bus>) -> Self {
        Self {
            store,
            bus,
            poll: Duration::from_secs(1),
            progress: watch::channel(Cursor::START).0,
        }
    }

    /// The slow poll (the correctness path for commits made on other nodes).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Changes each time a batch is published and checkpointed.
    pub fn progress(&self) -> watch::Receiver<Cursor> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        supervise(
            &shutdown,
            || self.run_while_leader(&shutdown),
            |e| {
                tracing::warn!("relay stopped, retrying: {e}");
            },
        )
        .await;
    }

    async fn run_while_leader(&self, shutdown: &CancellationToken) -> Result<(), ProjectionError> {
        let pool = self.store.pool();
        let Some(mut lock) = lead(pool, LOCK_KEY, self.poll, shutdown).await? else {
            return Ok(());
        };
        tracing::info!(bus = self.bus.kind(), "relay running");
        let result = self.publish_batches(&mut lock, shutdown).await;
        release(&mut lock, LOCK_KEY).await;
        result
    }

    /// Publishes batch after batch while this node holds the relay's lock.
    async fn publish_batches(
        &self,
        lock: &mut sqlx::PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let pool = self.store.pool();
        let mut cursor = checkpoint(pool, NAME).await?;
        let _ = self.progress.send(cursor);
        let mut commits = self.store.commits();
        let mut unseen = Unseen::default();
        let mut backoff = Duration::from_millis(50);
        loop {
            let batch = self.store.tail(cursor, BATCH).await?;
            if batch.is_empty() {
                if let Some(pause) = unseen.retry(&commits, cursor) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    continue;
                }
                tokio::select! {
                    _ = commits.changed() => {}
                    () = tokio::time::sleep(self.poll) => {
                        sqlx::query("SELECT 1").execute(&mut *lock).await?;
                    }
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            unseen = Unseen::default();
            let events: Vec<Arc<CloudEvent>> = batch
                .iter()
                .map(|e| Arc::new(CloudEvent::from_recorded(e)))
                .collect();
            if let Err(e) = self.bus.publish(&events).await {
                tracing::warn!("publish failed, retrying the batch: {e}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            backoff = Duration::from_millis(50);
            let last = batch.last().map_or(cursor, |e| e.cursor());
            let moved = sqlx::query(
                "UPDATE projection_checkpoints
                    SET last_xid = $2::text::xid8, last_position = $3, updated_at = now()
                  WHERE name = $1 AND last_xid = $4::text::xid8 AND last_position = $5",
            )
            .bind(NAME)
            .bind(last.xid().to_string())
            .bind(last.position())
            .bind(cursor.xid().to_string())
            .bind(cursor.position())
            .execute(pool)
            .await?;
            cursor = if moved.rows_affected() == 1 {
                last
            } else {
                tracing::warn!("relay checkpoint moved under this node; resuming from it");
                checkpoint(pool, NAME).await?
            };
            let _ = self.progress.send(cursor);
            // A stopping server waits for this task: stop between batches, even when behind.
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }
}
