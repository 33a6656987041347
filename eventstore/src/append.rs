//! The group-commit writer.
//!
//! Every append becomes a request on a channel. A few worker tasks each take whatever requests
//! are waiting (up to a batch limit) and write them in one statement: a multi-row INSERT of the
//! events, with the receipts and any due snapshots inserted by CTEs of the same statement. Under
//! load this turns N commits of several round trips each into one commit of one round trip,
//! which is how command throughput can approach the single-row INSERT rate (DESIGN
//! "Performance").
//!
//! A batch is all-or-nothing. When it fails (a concurrency conflict, a repeated command id, or
//! anything else the database rejects), each request is retried alone in its own transaction,
//! so one bad request never fails its neighbours and each gets its own precise answer.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::signal::Commits;
use crate::{Appended, BulkAppended, Cursor, Receipt, StoreError};

/// One event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its sequence in the stream.
    pub sequence: i64,
    /// `noun.verb`.
    pub event_type: String,
    /// The payload schema version.
    pub event_version: String,
    /// The payload.
    pub payload: Value,
}

/// A snapshot to write with the events: the state after the last of them.
#[derive(Debug, Clone)]
pub struct SnapshotWrite {
    /// The schema version of `payload`.
    pub version: i32,
    /// The serialized aggregate.
    pub payload: Value,
}

/// One command's worth of events for one stream.
#[derive(Debug)]
pub struct AppendRequest {
    /// The command id, for idempotency.
    pub command_id: Uuid,
    /// The command's digest, stored in its receipt (see [`Receipt::fingerprint`]).
    pub fingerprint: Option<Uuid>,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The hash of the event just before the first new one (`None` for a new stream).
    pub prev_hash: Option<Vec<u8>>,
    /// The events, with contiguous sequences.
    pub events: Vec<NewEvent>,
    /// Metadata shared by the events.
    pub metadata: Value,
    /// A snapshot to store alongside, if due.
    pub snapshot: Option<SnapshotWrite>,
}

/// A successful append: the receipt and the hash of the last event (the new chain tip).
#[derive(Debug, Clone)]
pub struct Committed {
    /// The receipt, as stored.
    pub receipt: Receipt,
    /// The last event's hash.
    pub last_hash: Vec<u8>,
}

/// An event's key: aggregate type, aggregate id and sequence.
type EventKey = (String, String, i64);

type Reply = oneshot::Sender<Result<Committed, StoreError>>;

/// The sending side used by [`crate::Store`].
#[derive(Debug, Clone)]
pub(crate) struct Appender {
    tx: mpsc::Sender<(AppendRequest, Reply)>,
}

impl Appender {
    /// Starts `workers` writer tasks. They stop once every `Appender` clone is dropped and the
    /// queue is drained, so nothing accepted is abandoned.
    pub(crate) fn start(
        pool: PgPool,
        workers: usize,
        max_batch: usize,
        committed: Arc<Commits>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch * workers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(worker(
                pool.clone(),
                rx.clone(),
                max_batch,
                committed.clone(),
            ));
        }
        Self { tx }
    }

    pub(crate) async fn append(&self, request: AppendRequest) -> Result<Committed, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// How long a writer keeps its connection with nothing to write. Under load it writes batch
/// after batch on one connection; a connection given back to the pool costs a round trip
/// (sqlx checks each one on release), one per batch.
const HOLD_IDLE: std::time::Duration = std::time::Duration::from_millis(50);

async fn worker(
    pool: PgPool,
    rx: Arc<Mutex<mpsc::Receiver<(AppendRequest, Reply)>>>,
    max_batch: usize,
    committed: Arc<Commits>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut held: Option<PoolConnection<Postgres>> = None;
    loop {
        {
            let mut rx = rx.lock().await;
            let received = if held.is_some() {
                match tokio::time::timeout(HOLD_IDLE, rx.recv_many(&mut batch, max_batch)).await {
                    Ok(received) => received,
                    Err(_idle) => {
                        held = None;
                        continue;
                    }
                }
            } else {
                rx.recv_many(&mut batch, max_batch).await
            };
            if received == 0 {
                return;
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let results = match &mut held {
            Some(connection) => write(&pool, connection, &requests).await,
            None => match pool.acquire().await {
                Ok(connection) => write(&pool, held.insert(connection), &requests).await,
                Err(e) => {
                    let message = e.to_string();
                    requests
                        .iter()
                        .map(|_| Err(StoreError::Unavailable(message.clone())))
                        .collect()
                }
            },
        };
        if results
            .iter()
            .any(|r| r.as_ref().is_err_and(spoils_connection))
        {
            // The connection may be what failed: the next batch takes a fresh one.
            held = None;
        }
        let cursors: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|c| c.receipt.cursor))
            .collect();
        committed.committed(&cursors);
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone away (request cancelled); the events are committed anyway.
            let _ = reply.send(result);
        }
    }
}

/// Writes the requests in one transaction, or each alone if that fails.
async fn write(
    pool: &PgPool,
    connection: &mut PgConnection,
    requests: &[AppendRequest],
) -> Vec<Result<Committed, StoreError>> {
    if requests.len() > 1 {
        match write_batch(connection, requests).await {
            Ok(done) => return done.into_iter().map(Ok).collect(),
            Err(StoreError::Database(sqlx::Error::Database(e))) => {
                tracing::debug!(error = %e, size = requests.len(), "batch rejected; writing its commands one by one");
            }
            Err(e) => {
                // Not a rejection but an outage: retrying each request alone would only make
                // every caller wait for it N times over.
                tracing::warn!(error = %e, "batch append failed");
                let message = e.to_string();
                return requests
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(message.clone())))
                    .collect();
            }
        }
    }
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let result = match write_batch(connection, std::slice::from_ref(request)).await {
            Ok(mut done) => Ok(done.remove(0)),
            Err(e) => Err(classify(pool, request, e).await),
        };
        out.push(result);
    }
    out
}

/// Whether `error` may have left the connection unusable (anything but the database refusing
/// a statement).
fn spoils_connection(error: &StoreError) -> bool {
    match error {
        StoreError::Unavailable(_) => true,
        StoreError::Database(sqlx::Error::Database(_)) => false,
        StoreError::Database(_) => true,
        _ => false,
    }
}

/// Turns a failed single-request write into the precise error.
async fn classify(pool: &PgPool, request: &AppendRequest, error: StoreError) -> StoreError {
    let StoreError::Database(sqlx::Error::Database(db)) = &error else {
        return error;
    };
    match db.constraint() {
        Some("events_pkey") => StoreError::Conflict,
        Some("command_receipts_pkey") => match find_receipt(pool, request.command_id).await {
            Ok(Some(receipt))
                if receipt.aggregate_type == request.aggregate_type
                    && receipt.aggregate_id == request.aggregate_id =>
            {
                StoreError::Duplicate(Box::new(receipt))
            }
            Ok(Some(_)) => StoreError::CommandIdReused(request.command_id),
            Ok(None) => StoreError::Conflict,
            Err(e) => e,
        },
        _ => error,
    }
}

/// Looks up a stored receipt by command id, with its events' positions read from `events`.
pub(crate) async fn find_receipt(
    pool: &PgPool,
    command_id: Uuid,
) -> Result<Option<Receipt>, StoreError> {
    let rows: Vec<(String, String, Option<Uuid>, i64, i64, i64)> = sqlx::query_as(
        "SELECT r.aggregate_type, r.aggregate_id, r.fingerprint, e.sequence, e.global_position,
                e.transaction_id::text::int8
           FROM command_receipts r
           JOIN events e ON e.aggregate_type = r.aggregate_type AND e.aggregate_id = r.aggregate_id
                        AND e.sequence BETWEEN r.first_sequence AND r.last_sequence
          WHERE r.command_id = $1
          ORDER BY e.sequence",
    )
    .bind(command_id)
    .fetch_all(pool)
    .await?;
    let Some((aggregate_type, aggregate_id, fingerprint, ..)) = rows.first().cloned() else {
        return Ok(None);
    };
    let cursor = rows
        .last()
        .map(|&(.., position, xid)| Cursor::new(xid as u64, position));
    Ok(Some(Receipt {
        command_id,
        aggregate_type,
        aggregate_id,
        events: rows
            .iter()
            .map(|&(_, _, _, sequence, position, _)| Appended { sequence, position })
            .collect(),
        cursor,
        fingerprint,
        replayed: true,
    }))
}

/// Writes every request in one autocommit statement: the events, their receipts and any due
/// snapshots, through data-modifying CTEs. One round trip and one commit for the whole batch;
/// all or nothing.
async fn write_batch(
    connection: &mut PgConnection,
    requests: &[AppendRequest],
) -> Result<Vec<Committed>, StoreError> {
    let n: usize = requests.iter().map(|r| r.events.len()).sum();
    let mut types = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut sequences = Vec::with_capacity(n);
    let mut event_types = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut prev_hashes: Vec<Option<&[u8]>> = Vec::with_capacity(n);
    for r in requests {
        for (i, e) in r.events.iter().enumerate() {
            types.push(r.aggregate_type.as_str());
            ids.push(r.aggregate_id.as_str());
            sequences.push(e.sequence);
            event_types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(&e.payload);
            metadata.push(&r.metadata);
            // Only the first event of a command carries its predecessor's hash; the trigger
            // chains the rest from the row it has just hashed.
            prev_hashes.push(if i == 0 { r.prev_hash.as_deref() } else { None });
        }
    }

    // Receipts: one per request.
    let first_sequences: Vec<i64> = requests
        .iter()
        .map(|r| r.events.first().map_or(0, |e| e.sequence))
        .collect();
    let last_sequences: Vec<i64> = requests
        .iter()
        .map(|r| r.events.last().map_or(0, |e| e.sequence))
        .collect();

    // Snapshots: at most one per stream (ON CONFLICT cannot touch a row twice in a statement).
    let mut snapshots: HashMap<(&str, &str), (i64, &SnapshotWrite)> = HashMap::new();
    for (r, last) in requests.iter().zip(&last_sequences) {
        if let Some(s) = &r.snapshot {
            let key = (r.aggregate_type.as_str(), r.aggregate_id.as_str());
            if snapshots.get(&key).is_none_or(|(old, _)| old < last) {
                snapshots.insert(key, (*last, s));
            }
        }
    }
    let (snap_keys, snap_values): (Vec<_>, Vec<_>) = snapshots.into_iter().unzip();

    let rows: Vec<(String, String, i64, i64, i64, Vec<u8>)> = sqlx::query_as(
        "WITH receipts AS (
             INSERT INTO command_receipts (command_id, aggregate_type, aggregate_id, first_sequence, last_sequence, fingerprint)
             SELECT * FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::int8[], $13::int8[], $14::uuid[])
         ), snaps AS (
             INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, snapshot_version, payload)
             SELECT * FROM UNNEST($15::text[], $16::text[], $17::int8[], $18::int4[], $19::jsonb[])
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET last_sequence = EXCLUDED.last_sequence, snapshot_version = EXCLUDED.snapshot_version,
                    payload = EXCLUDED.payload, taken_at = now()
              WHERE snapshots.last_sequence < EXCLUDED.last_sequence
         )
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, prev_hash)
         SELECT t, i, s, et, ev, p, m, h
           FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::bytea[])
                WITH ORDINALITY AS u(t, i, s, et, ev, p, m, h, n)
          ORDER BY n
         RETURNING aggregate_type, aggregate_id, sequence, global_position, transaction_id::text::int8, hash",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .bind(&prev_hashes)
    .bind(requests.iter().map(|r| r.command_id).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.aggregate_type.as_str()).collect::<Vec<_>>())
    .bind(requests.iter().map(|r| r.aggregate_id.as_str()).collect::<Vec<_>>())
    .bind(&first_sequences)
    .bind(&last_sequences)
    .bind(requests.iter().map(|r| r.fingerprint).collect::<Vec<_>>())
    .bind(snap_keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(snap_keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind(snap_values.iter().map(|v| v.0).collect::<Vec<_>>())
    .bind(snap_values.iter().map(|v| v.1.version).collect::<Vec<_>>())
    .bind(snap_values.iter().map(|v| &v.1.payload).collect::<Vec<_>>())
    .fetch_all(&mut *connection)
    .await?;
    if rows.len() != n {
        return Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "inserted {} events, expected {n}",
            rows.len()
        ))));
    }

    // RETURNING promises no order, so each event finds its row by key.
    let mut inserted: HashMap<EventKey, (i64, i64, Vec<u8>)> = rows
        .into_iter()
        .map(|(t, i, s, position, xid, hash)| ((t, i, s), (position, xid, hash)))
        .collect();

    let mut done = Vec::with_capacity(requests.len());
    for r in requests {
        let mut events = Vec::with_capacity(r.events.len());
        let mut last = None;
        let mut key = (r.aggregate_type.clone(), r.aggregate_id.clone(), 0);
        for e in &r.events {
            key.2 = e.sequence;
            let (position, xid, hash) = inserted.remove(&key).ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "no inserted row for {}/{} sequence {}",
                    r.aggregate_type, r.aggregate_id, e.sequence
                )))
            })?;
            events.push(Appended {
                sequence: e.sequence,
                position,
            });
            last = Some((Cursor::new(xid as u64, position), hash));
        }
        let (cursor, last_hash) = last.map_or((None, Vec::new()), |(c, h)| (Some(c), h));
        done.push(Committed {
            receipt: Receipt {
                command_id: r.command_id,
                aggregate_type: r.aggregate_type.clone(),
                aggregate_id: r.aggregate_id.clone(),
                events,
                cursor,
                fingerprint: r.fingerprint,
                replayed: false,
            },
            last_hash,
        });
    }
    Ok(done)
}

/// The most events one statement of a bulk append carries (a request is never split, so a
/// larger one goes alone).
const BULK_EVENTS: usize = 10_000;

/// Writes `requests` in statements of about [`BULK_EVENTS`] events each, in order, and tells
/// `commits` after each. See [`crate::Store::append_bulk`].
pub(crate) async fn append_bulk(
    pool: &PgPool,
    commits: &Commits,
    requests: impl IntoIterator<Item = AppendRequest>,
) -> Result<BulkAppended, StoreError> {
    let mut done = BulkAppended::default();
    // The sequence each stream seen so far must continue with.
    let mut next: HashMap<(String, String), i64> = HashMap::new();
    let mut chunk = Vec::new();
    let mut events = 0;
    for request in requests {
        if request.events.is_empty() {
            continue;
        }
        check_sequences(&request, &mut next)?;
        events += request.events.len();
        chunk.push(request);
        if events >= BULK_EVENTS {
            write_bulk_chunk(pool, commits, &chunk, &mut done).await?;
            chunk.clear();
            events = 0;
        }
    }
    if !chunk.is_empty() {
        write_bulk_chunk(pool, commits, &chunk, &mut done).await?;
    }
    Ok(done)
}

/// Refuses a request whose events are not contiguous from 1 on, or that does not continue
/// where an earlier request of the same bulk left its stream. (Whether a stream's first event
/// in the bulk follows what is already stored, PostgreSQL checks: the chain trigger needs the
/// predecessor, and the primary key refuses a repeat.)
fn check_sequences(
    request: &AppendRequest,
    next: &mut HashMap<(String, String), i64>,
) -> Result<(), StoreError> {
    let key = (request.aggregate_type.clone(), request.aggregate_id.clone());
    let mut expected = next.get(&key).copied();
    for event in &request.events {
        let fits = match expected {
            Some(n) => event.sequence == n,
            None => event.sequence >= 1,
        };
        if !fits {
            return Err(StoreError::OutOfSequence(format!(
                "{}/{}: event {} where {} was expected",
                request.aggregate_type,
                request.aggregate_id,
                event.sequence,
                expected.map_or_else(|| "1 or more".to_owned(), |n| n.to_string()),
            )));
        }
        expected = Some(event.sequence + 1);
    }
    if let Some(n) = expected {
        next.insert(key, n);
    }
    Ok(())
}

async fn write_bulk_chunk(
    pool: &PgPool,
    commits: &Commits,
    chunk: &[AppendRequest],
    done: &mut BulkAppended,
) -> Result<(), StoreError> {
    let mut connection = pool.acquire().await?;
    let committed = write_batch(&mut connection, chunk)
        .await
        .map_err(|e| match &e {
            StoreError::Database(sqlx::Error::Database(db)) => match db.constraint() {
                Some("events_pkey") => StoreError::Conflict,
                // The chain trigger: an event whose predecessor is not stored.
                _ if db.code().as_deref() == Some("23503") => {
                    StoreError::OutOfSequence(db.message().to_owned())
                }
                _ => e,
            },
            _ => e,
        })?;
    let cursor = committed.iter().filter_map(|c| c.receipt.cursor).max();
    if let Some(cursor) = cursor {
        commits.committed(&[cursor]);
        done.cursor = Some(cursor);
    }
    done.commands += committed.len() as u64;
    done.events += chunk.iter().map(|r| r.events.len() as u64).sum::<u64>();
    Ok(())
}
