use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use lru::LruCache;
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::append::{AppendRequest, NewEvent, SnapshotWrite};
use crate::{metadata_keys, Receipt, Store, StoreError};

/// How many per-aggregate locks exist; aggregates hash onto them.
const LOCK_STRIPES: usize = 1024;

/// The version written into `snapshots.snapshot_version` unless set otherwise.
const DEFAULT_SNAPSHOT_VERSION: i32 = 1;

/// An aggregate as of some sequence: what the cache holds and a context starts from.
#[derive(Debug, Clone)]
struct Loaded<A> {
    aggregate: A,
    sequence: i64,
    last_hash: Option<Vec<u8>>,
    snapshot_sequence: i64,
}

/// An aggregate loaded for one command. It holds the aggregate's lock, so commands on one
/// aggregate run one at a time in this process until the context is committed or dropped.
#[derive(Debug)]
pub struct StoreContext<A> {
    aggregate_id: String,
    loaded: Loaded<A>,
    cached: bool,
    _lock: OwnedMutexGuard<()>,
}

impl<A> StoreContext<A> {
    /// The aggregate id.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// The sequence of the last event the aggregate reflects (0 for a new aggregate).
    pub fn sequence(&self) -> i64 {
        self.loaded.sequence
    }

    /// Whether the state came from this process's cache rather than the database. A cached
    /// state can be stale when another node wrote; appends detect that as a conflict, and a
    /// caller should re-check a refusal against fresh state.
    pub fn is_cached(&self) -> bool {
        self.cached
    }
}

impl<A: Aggregate> AggregateContext<A> for StoreContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.loaded.aggregate
    }
}

/// cqrs-es's event store for aggregate `A`, on Cairn's `events` table.
///
/// - **Snapshots** are written in the same transaction as the events once
///   [`crate::StoreOptions::snapshot_every`] events follow the previous one, and hold the state
///   *after* the last event. They are never re-applied: cqrs-es 0.5's `EventSink` applies each
///   event to the aggregate as the command writes it, so the context handed to
///   [`AggregateStore::append`] already reflects the new events (cqrs-es's own snapshot store
///   applies them a second time; a test here guards against that).
/// - **The cache** keeps recently used aggregates so a command usually needs no read at all.
///   A stale entry (another node appended) surfaces as [`StoreError::Conflict`] on append,
///   which evicts it.
/// - **Ordering**: loading takes a per-aggregate lock held by the context, so one process never
///   races itself on one aggregate; conflicts only come from other processes.
pub struct AggregateStore<A: Aggregate> {
    store: Store,
    cache: Option<Mutex<LruCache<String, Loaded<A>>>>,
    locks: Arc<[Arc<tokio::sync::Mutex<()>>]>,
    snapshot_version: i32,
}

impl<A: Aggregate> std::fmt::Debug for AggregateStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore")
            .field("aggregate_type", &A::TYPE)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate + Clone> AggregateStore<A> {
    pub(crate) fn new(store: Store) -> Self {
        let cache = NonZeroUsize::new(store.options().cache_capacity)
            .map(|capacity| Mutex::new(LruCache::new(capacity)));
        Self {
            store,
            cache,
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            snapshot_version: DEFAULT_SNAPSHOT_VERSION,
        }
    }

    /// Sets the snapshot schema version. Snapshots with another version are ignored (the
    /// aggregate is folded from its events instead), so bump this when `A`'s shape changes.
    pub fn with_snapshot_version(mut self, version: i32) -> Self {
        self.snapshot_version = version;
        self
    }

    /// The shared store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn lock(&self, aggregate_id: &str) -> OwnedMutexGuard<()> {
        let mut h = DefaultHasher::new();
        aggregate_id.hash(&mut h);
        let stripe = (h.finish() % LOCK_STRIPES as u64) as usize;
        self.locks[stripe].clone().lock_owned().await
    }

    /// Loads an aggregate for a command: from the cache when possible, else from its latest
    /// snapshot plus the events after it.
    pub async fn load(&self, aggregate_id: &str) -> Result<StoreContext<A>, StoreError> {
        let lock = self.lock(aggregate_id).await;
        if let Some(cache) = &self.cache {
            let hit = cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(aggregate_id)
                .cloned();
            if let Some(loaded) = hit {
                return Ok(StoreContext {
                    aggregate_id: aggregate_id.to_owned(),
                    loaded,
                    cached: true,
                    _lock: lock,
                });
            }
        }
        let loaded = self.read(aggregate_id).await?;
        Ok(StoreContext {
            aggregate_id: aggregate_id.to_owned(),
            loaded,
            cached: false,
            _lock: lock,
        })
    }

    /// Loads an aggregate from the database, bypassing (and refreshing) the cache.
    pub async fn load_fresh(&self, aggregate_id: &str) -> Result<StoreContext<A>, StoreError> {
        self.evict(aggregate_id);
        self.load(aggregate_id).await
    }

    /// Forgets a cached aggregate.
    pub fn evict(&self, aggregate_id: &str) {
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop(aggregate_id);
        }
    }

    async fn read(&self, aggregate_id: &str) -> Result<Loaded<A>, StoreError> {
        // Both reads on one connection: each checkout costs a round trip when it is returned.
        let mut connection = self.store.pool().acquire().await?;
        let snapshot: Option<(i64, Option<Vec<u8>>, i32, Value)> = sqlx::query_as(
            // A correlated lookup on the full primary key, not a join: a prepared statement's
            // generic plan for the join can scan the whole stream, so its cost grew with length.
            "SELECT s.last_sequence,
                    (SELECT e.hash FROM events e
                      WHERE e.aggregate_type = $1 AND e.aggregate_id = $2
                        AND e.sequence = s.last_sequence),
                    s.snapshot_version, s.payload
               FROM snapshots s
              WHERE s.aggregate_type = $1 AND s.aggregate_id = $2",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&mut *connection)
        .await?;
        let mut loaded = Loaded {
            aggregate: A::default(),
            sequence: 0,
            last_hash: None,
            snapshot_sequence: 0,
        };
        if let Some((sequence, Some(hash), version, payload)) = snapshot {
            if version == self.snapshot_version {
                match serde_json::from_value(payload) {
                    Ok(aggregate) => {
                        loaded = Loaded {
                            aggregate,
                            sequence,
                            last_hash: Some(hash),
                            snapshot_sequence: sequence,
                        };
                    }
                    Err(e) => tracing::warn!(
                        aggregate_type = A::TYPE, aggregate_id, error = %e,
                        "snapshot unreadable; folding the stream from its first event"
                    ),
                }
            }
        }
        let rows: Vec<(i64, Value, Vec<u8>)> = sqlx::query_as(
            "SELECT sequence, payload, hash FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(loaded.sequence)
        .fetch_all(&mut *connection)
        .await?;
        for (sequence, payload, hash) in rows {
            let event: A::Event = serde_json::from_value(payload)?;
            loaded.aggregate.apply(event);
            loaded.sequence = sequence;
            loaded.last_hash = Some(hash);
        }
        Ok(loaded)
    }

    /// Appends the events a command produced against `context`, and returns the receipt.
    ///
    /// `context`'s aggregate must already reflect `events` (as cqrs-es 0.5's `EventSink`
    /// leaves it). An empty `events` appends nothing and returns an empty receipt.
    pub async fn append(
        &self,
        events: Vec<A::Event>,
        context: StoreContext<A>,
        command_id: Uuid,
        fingerprint: Option<Uuid>,
        metadata: &HashMap<String, String>,
    ) -> Result<Receipt, StoreError> {
        let StoreContext {
            aggregate_id,
            loaded,
            _lock,
            ..
        } = context;
        if events.is_empty() {
            let mut receipt = Receipt::empty(command_id, A::TYPE, &aggregate_id);
            receipt.fingerprint = fingerprint;
            return Ok(receipt);
        }
        let first = loaded.sequence + 1;
        let new_events = events
            .iter()
            .zip(first..)
            .map(|(e, sequence)| {
                Ok(NewEvent {
                    sequence,
                    event_type: e.event_type(),
                    event_version: e.event_version(),
                    payload: serde_json::to_value(e)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let last = first + new_events.len() as i64 - 1;
        let every = self.store.options().snapshot_every;
        let snapshot = if every > 0 && last - loaded.snapshot_sequence >= every {
            Some(SnapshotWrite {
                version: self.snapshot_version,
                payload: serde_json::to_value(&loaded.aggregate)?,
            })
        } else {
            None
        };
        let snapshot_sequence = if snapshot.is_some() {
            last
        } else {
            loaded.snapshot_sequence
        };
        let request = AppendRequest {
            command_id,
            fingerprint,
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.clone(),
            prev_hash: loaded.last_hash.clone(),
            events: new_events,
            metadata: serde_json::to_value(metadata)?,
            snapshot,
        };
        match self.store.append(request).await {
            Ok(committed) => {
                if let Some(cache) = &self.cache {
                    cache.lock().unwrap_or_else(|p| p.into_inner()).put(
                        aggregate_id,
                        Loaded {
                            aggregate: loaded.aggregate,
                            sequence: last,
                            last_hash: Some(committed.last_hash),
                            snapshot_sequence,
                        },
                    );
                }
                Ok(committed.receipt)
            }
            Err(e) => {
                // Whatever happened, the state we computed is not known to be stored.
                self.evict(&aggregate_id);
                Err(e)
            }
        }
    }

    /// Every event of one aggregate, in order, as cqrs-es envelopes.
    pub async fn envelopes(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, StoreError> {
        let rows: Vec<(i64, Value, Value)> = sqlx::query_as(
            "SELECT sequence, payload, metadata FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(|(sequence, payload, metadata)| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: sequence as usize,
                    payload: serde_json::from_value(payload)?,
                    metadata: serde_json::from_value(metadata).unwrap_or_default(),
                })
            })
            .collect()
    }
}

fn to_aggregate_error<E: std::error::Error>(e: StoreError) -> AggregateError<E> {
    match e {
        StoreError::Conflict => AggregateError::AggregateConflict,
        StoreError::Serde(e) => AggregateError::DeserializationError(Box::new(e)),
        StoreError::Database(e) => AggregateError::DatabaseConnectionError(Box::new(e)),
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

impl<A: Aggregate + Clone> EventStore<A> for AggregateStore<A> {
    type AC = StoreContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.envelopes(aggregate_id)
            .await
            .map_err(to_aggregate_error)
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        self.load(aggregate_id).await.map_err(to_aggregate_error)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let command_id = metadata
            .get(metadata_keys::COMMAND_ID)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(Uuid::new_v4);
        let aggregate_id = context.aggregate_id.clone();
        let first = context.sequence() + 1;
        let receipt = match self
            .append(events.clone(), context, command_id, None, &metadata)
            .await
        {
            Ok(receipt) => receipt,
            Err(StoreError::Duplicate(_)) => return Ok(Vec::new()),
            Err(e) => return Err(to_aggregate_error(e)),
        };
        debug_assert_eq!(receipt.events.len(), events.len());
        Ok(events
            .into_iter()
            .zip(first..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence: sequence as usize,
                payload,
                metadata: metadata.clone(),
            })
            .collect())
    }
}
