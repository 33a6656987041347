//! The relay: publishes every committed event to the [`Bus`], in commit order, at least once.
//!
//! It is a consumer with a side effect, so it is not a projection. It runs on the shared consumer
//! loop (`crate::consumer`): it tails the store with the gapless cursor, publishes a batch and
//! waits for every acknowledgement, and only then moves its checkpoint (`projection_checkpoints`,
//! name `relay`) by compare-and-set, in a statement of its own, committed asynchronously. A crash
//! between the two publishes the batch again; JetStream drops the repeats by `Nats-Msg-Id`, and
//! live consumers drop anything at or behind the cursor they have already seen. While the bus is
//! down the relay retries the same batch with backoff; commands never wait for it. One node
//! relays at a time (advisory lock), and another takes over when it dies.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, RecordedEvent, Store, StoreError};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint;
use crate::consumer::{Handler, Pace, Tail, TailOptions};
use crate::consumers::bus::{Bus, BusError, CloudEvent};

/// The relay's checkpoint name.
pub const NAME: &str = "relay";

/// The relay's advisory lock: one node publishes at a time.
const LOCK_KEY: &str = "cairn.relay";

/// Events per publish batch (JetStream acknowledgements in flight).
const BATCH: i64 = 512;

/// Publishes committed events to the bus.
#[derive(Debug)]
pub struct Relay {
    tail: Tail<Publish>,
}

impl Relay {
    /// A relay from `store` to `bus`.
    pub fn new(store: Store, bus: Arc<dyn Bus>) -> Self {
        let options = TailOptions {
            lock_key: LOCK_KEY.to_owned(),
            batch: BATCH,
            pace: Pace {
                poll: Duration::from_secs(1),
                linger: Duration::ZERO,
            },
        };
        Self {
            tail: Tail::new(store, Publish { bus }, options),
        }
    }

    /// The slow poll (the correctness path for commits made on other nodes).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.tail = self.tail.with_poll(poll);
        self
    }

    /// Changes each time a batch is published and checkpointed.
    pub fn progress(&self) -> watch::Receiver<Cursor> {
        self.tail.progress()
    }

    /// Runs until `shutdown`. While the bus is down the batch is retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(bus = self.tail.handler().bus.kind(), "relay starting");
        self.tail.run(shutdown).await;
    }
}

/// Why a batch was not relayed. The loop retries it.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    /// The database failed (the checkpoint).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Reading the event store failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The bus did not acknowledge the batch.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The relay as the consumer loop's [`Handler`]: publish, then checkpoint.
#[derive(Debug)]
struct Publish {
    bus: Arc<dyn Bus>,
}

impl Handler for Publish {
    type Error = RelayError;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(
        &self,
        connection: &mut PgConnection,
        _pool: &PgPool,
        from: Cursor,
        to: Cursor,
        batch: &[RecordedEvent],
    ) -> Result<Cursor, RelayError> {
        // Chained (each names the one before it), so a reader can tell it missed some. The
        // relay wants every event, so `batch` runs from `from` to `to`.
        let events = CloudEvent::chain(from, batch);
        self.bus.publish(&events).await?;
        if checkpoint::advance_alone(connection, NAME, from, to).await? {
            Ok(to)
        } else {
            tracing::warn!("relay checkpoint moved under this node; resuming from it");
            Ok(checkpoint::load_on(connection, NAME).await?)
        }
    }
}
