//! The projection runner.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, RecordedEvent, Store};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    store: Store,
    projection: Arc<P>,
    options: RunnerOptions,
    progress: watch::Sender<Cursor>,
}

impl<P: Projection> Runner<P> {
    /// A runner for `projection` on `store`.
    pub fn new(store: Store, projection: P, options: RunnerOptions) -> Self {
        Self {
            store,
            projection: Arc::new(projection),
            options,
            progress: watch::channel(Cursor::START).0,
        }
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Changes each time this runner commits a batch (a wake-up for [`wait_for`]).
    pub fn progress(&self) -> watch::Receiver<Cursor> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown` is cancelled. Failures are logged and retried; this never returns
    /// early otherwise.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.projection.name();
        supervise(
            &shutdown,
            || self.run_while_leader(&shutdown),
            |e| {
                tracing::warn!(projection = name, "projection stopped, retrying: {e}");
            },
        )
        .await;
    }

    /// Takes the projection's advisory lock (waiting while another node holds it), then
    /// applies batches until cancelled or the lock's connection fails.
    async fn run_while_leader(&self, shutdown: &CancellationToken) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let pool = self.store.pool();
        let key = lock_key(name);
        let Some(mut lock) = lead(pool, &key, self.options.poll, shutdown).await? else {
            return Ok(());
        };
        tracing::info!(projection = name, "running");
        let result = self.apply_batches(pool, &mut lock, shutdown).await;
        release(&mut lock, &key).await;
        result
    }

    async fn apply_batches(
        &self,
        pool: &PgPool,
        lock: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let mut cursor = checkpoint(pool, name).await?;
        let _ = self.progress.send(cursor);
        let mut commits = self.store.commits();
        let mut unseen = Unseen::default();
        let mut prefetched: Option<Vec<RecordedEvent>> = None;
        loop {
            let batch = match prefetched.take() {
                Some(batch) => batch,
                None => self.store.tail(cursor, self.options.batch).await?,
            };
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
                    () = tokio::time::sleep(self.options.poll) => {
                        // Still holding the lock? Its connection failing means another node may
                        // take over; stop here and compete for the lock again.
                        sqlx::query("SELECT 1").execute(&mut *lock).await?;
                        // A rebuild (`cairn replay`) may have reset the checkpoint meanwhile.
                        let stored = checkpoint(pool, name).await?;
                        if stored != cursor {
                            tracing::info!(projection = name, "checkpoint moved (a rebuild?); resuming from it");
                            cursor = stored;
                        }
                    }
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
            unseen = Unseen::default();
            // A full batch means the runner is behind (a rebuild, or a burst): read the next
            // batch on another connection while this one is applied.
            let end = batch.last().map_or(cursor, RecordedEvent::cursor);
            let full = batch.len() as i64 >= self.options.batch;
            // Its own task, so decoding the next batch runs in parallel with this one's fold.
            let next = full.then(|| {
                let store = self.store.clone();
                let size = self.options.batch;
                tokio::spawn(async move { store.tail(end, size).await })
            });
            let applied = self.apply_batch(pool, cursor, &batch).await;
            let next = match next {
                Some(task) => task.await.ok().and_then(Result::ok),
                None => None,
            };
            cursor = applied?;
            if cursor == end {
                prefetched = next;
            }
            let _ = self.progress.send(cursor);
            // A stopping server waits for this task: stop between batches, even when behind.
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if !full && !self.options.linger.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(self.options.linger) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }

    /// Applies a batch and moves the checkpoint in one transaction. The checkpoint row is
    /// locked first and compared with where this runner thinks it is, so two runners can never
    /// both apply the same events, even if one lost its advisory lock without noticing.
    #[tracing::instrument(skip_all, fields(projection = self.projection.name(), events = batch.len()))]
    async fn apply_batch(
        &self,
        pool: &PgPool,
        cursor: Cursor,
        batch: &[RecordedEvent],
    ) -> Result<Cursor, ProjectionError> {
        let name = self.projection.name();
        let mut tx = pool.begin().await?;
        // Asynchronous commit: a crash may lose the last few batches, but each batch commits
        // with its checkpoint, so they are lost together and simply applied again. Read models
        // are derived data; the events themselves are always committed synchronously.
        let (xid, position): (i64, i64) = sqlx::query_as(
            "SELECT last_xid::text::int8, last_position FROM projection_checkpoints,
                    set_config('synchronous_commit', 'off', true)
              WHERE name = $1 FOR UPDATE OF projection_checkpoints",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let stored = Cursor::new(xid as u64, position);
        if stored != cursor {
            tracing::warn!(
                projection = name,
                "checkpoint moved under this runner; resuming from it"
            );
            return Ok(stored);
        }
        self.projection.apply_batch(&mut tx, batch).await?;
        let last = batch.last().map_or(cursor, RecordedEvent::cursor);
        sqlx::query(
            "UPDATE projection_checkpoints
                SET last_xid = $2::text::xid8, last_position = $3, updated_at = now()
              WHERE name = $1",
        )
        .bind(name)
        .bind(last.xid().to_string())
        .bind(last.position())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(last)
    }
}

/// Empties `projection`'s tables and moves its checkpoint back to the start, in one
/// transaction, under the checkpoint's row lock. A runner already running (on any node) notices
/// at its next batch that the checkpoint moved and rebuilds from zero.
pub async fn reset<P: Projection>(pool: &PgPool, projection: &P) -> Result<(), sqlx::Error> {
    checkpoint(pool, projection.name()).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    if !projection.tables().is_empty() {
        sqlx::query(&format!("TRUNCATE {}", projection.tables().join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoints SET last_xid = '0', last_position = 0, updated_at = now()
          WHERE name = $1",
    )
    .bind(projection.name())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Runs `attempt` until it returns `Ok` or `shutdown` is cancelled; after each error, reports it
/// and waits, backing off from 100 ms to 5 s. Projection runners and the relay run under it.
pub(crate) async fn supervise<F, Fut>(
    shutdown: &CancellationToken,
    mut attempt: F,
    report: impl Fn(&ProjectionError),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ProjectionError>>,
{
    let mut pause = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match attempt().await {
            Ok(()) => return,
            Err(e) => {
                report(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What a caught-up tailer does about commits it knows of (from [`Store::commits`]) that the
/// gapless tail does not show yet: they wait behind an older transaction still open somewhere
/// in the cluster, and no further wake-up may come for them. Rather than sleep until the next
/// commit or the slow poll, read again soon, backing off from 1 ms to 100 ms.
#[derive(Debug)]
pub(crate) struct Unseen {
    pause: Duration,
}

impl Default for Unseen {
    fn default() -> Self {
        Self {
            pause: Duration::from_millis(1),
        }
    }
}

impl Unseen {
    /// After an empty read at `cursor`: how long to pause before reading again, or `None` if
    /// nothing known is missing (wait for the next commit).
    pub(crate) fn retry(
        &mut self,
        commits: &watch::Receiver<Cursor>,
        cursor: Cursor,
    ) -> Option<Duration> {
        if *commits.borrow() > cursor {
            let pause = self.pause;
            self.pause = (self.pause * 2).min(Duration::from_millis(100));
            Some(pause)
        } else {
            *self = Self::default();
            None
        }
    }
}

/// Takes advisory lock `key`, waiting (polling every `poll`) while another node holds it, on
/// a connection detached from the pool: if the holder dies, dropping the connection closes it
/// and PostgreSQL releases the lock, instead of the lock living on in a pooled connection.
/// `None` if `shutdown` comes first.
pub(crate) async fn lead(
    pool: &PgPool,
    key: &str,
    poll: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut lock = pool.acquire().await?.detach();
    loop {
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1)::int8)")
            .bind(key)
            .fetch_one(&mut lock)
            .await?;
        if held {
            return Ok(Some(lock));
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Releases a lock taken by [`lead`], so a successor need not wait for the connection to close.
pub(crate) async fn release(lock: &mut PgConnection, key: &str) {
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1)::int8)")
        .bind(key)
        .execute(lock)
        .await;
}

fn lock_key(name: &str) -> String {
    format!("cairn.projection.{name}")
}

/// The stored checkpoint of `name`, creating it at the start if missing.
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Cursor, sqlx::Error> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    let (xid, position): (i64, i64) = sqlx::query_as(
        "SELECT last_xid::text::int8, last_position FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(Cursor::new(xid as u64, position))
}

/// Waits until projection `name` has applied everything up to `target`, for read-your-writes.
/// Returns `false` if `within` passes first. Works whichever node runs the projection: `local`
/// (this node's runner progress) answers without a query and wakes the wait as soon as a batch
/// lands; the checkpoint is read at first and then with a backoff (10 ms doubling to 250 ms),
/// the path when another node runs the projection.
pub async fn wait_for(
    pool: &PgPool,
    name: &str,
    target: Cursor,
    within: Duration,
    mut local: Option<watch::Receiver<Cursor>>,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + within;
    let mut nap = Duration::from_millis(10);
    let mut query_at = tokio::time::Instant::now();
    loop {
        if local.as_ref().is_some_and(|rx| *rx.borrow() >= target) {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= query_at {
            let reached: Option<(i64, i64)> = sqlx::query_as(
                "SELECT last_xid::text::int8, last_position FROM projection_checkpoints WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?;
            if reached.is_some_and(|(xid, pos)| Cursor::new(xid as u64, pos) >= target) {
                return Ok(true);
            }
            query_at = now + nap;
            nap = (nap * 2).min(Duration::from_millis(250));
        }
        if now >= deadline {
            return Ok(false);
        }
        let wake = query_at.min(deadline);
        match local.as_mut() {
            Some(rx) => {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            local = None;
                        }
                    }
                    () = tokio::time::sleep_until(wake) => {}
                }
            }
            None => tokio::time::sleep_until(wake).await,
        }
    }
}
