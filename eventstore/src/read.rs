use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Cursor, Store, StoreError};

/// One stored event with everything the table knows about it.
///
/// `payload` and `metadata` stay raw JSON text: a reader decodes them straight into its own
/// types ([`RecordedEvent::decode`]) without building an intermediate `serde_json::Value`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedEvent {
    /// Unique id (CloudEvents `id`, NATS `Nats-Msg-Id`).
    pub event_id: Uuid,
    /// The aggregate type (stream category).
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// Position in its stream, from 1.
    pub sequence: i64,
    /// `noun.verb`.
    pub event_type: String,
    /// Payload schema version.
    pub event_version: String,
    /// The event's data (JSON).
    #[sqlx(json)]
    pub payload: Box<RawValue>,
    /// Who, why and from where (JSON): actor, org_id, correlation and causation ids, and so on.
    #[sqlx(json)]
    pub metadata: Box<RawValue>,
    /// Global position (a tie-break within one transaction).
    pub global_position: i64,
    /// The committing transaction's id.
    pub transaction_id: i64,
    /// When it was recorded.
    pub recorded_at: OffsetDateTime,
    /// The tenant, from metadata.
    pub org_id: Option<String>,
    /// The previous event's hash in this stream (`None` for the first).
    pub prev_hash: Option<Vec<u8>>,
    /// This event's chain hash.
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    /// The cursor just after this event.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.transaction_id as u64, self.global_position)
    }

    /// The payload decoded as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The metadata decoded as `T`.
    pub fn decode_metadata<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.metadata.get())
    }
}

const COLUMNS: &str =
    "event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
    payload, metadata, global_position, transaction_id::text::int8 AS transaction_id, recorded_at, \
    org_id, prev_hash, hash";

impl Store {
    /// Up to `limit` events committed after `after`, in commit order, never skipping one.
    ///
    /// Only events of transactions older than every transaction of this database still
    /// running are returned ([`Store::settled_below`]), so an event that commits late can
    /// never land behind a cursor a reader has already passed. The price: a long-running
    /// writer in Cairn's database holds the tail back (one in another database does not).
    ///
    /// Served from this process's window of recent events ([`Recent`]) when it holds events
    /// after `after`.
    pub async fn tail(&self, after: Cursor, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = self.read_where(self.pool(), after, limit, None, &|_| true);
        Ok(read.await?.events)
    }

    /// [`Store::tail`] for a reader that wants only some events (`keep`): up to `limit`
    /// events are read in the same gapless order, and only those `keep` accepts are returned
    /// (copied), with where the read ended. A read model that ignores most events (task events,
    /// for `identity`) then never copies them out of this process's window of recent events.
    pub async fn tail_where(
        &self,
        after: Cursor,
        limit: i64,
        keep: &(dyn Fn(&RecordedEvent) -> bool + Sync),
    ) -> Result<Kept, StoreError> {
        self.read_where(self.pool(), after, limit, None, keep).await
    }

    /// [`Store::tail_where`] on a connection the caller holds (a consumer's own, which it
    /// reads batch after batch on). The bound is still looked up through the pool, shared with
    /// every other tailer of this process.
    ///
    /// `wanted`: the newest commit the caller knows of (from [`Store::commits`]), if it is
    /// after `after` (see [`Store::settled_below_covering`]).
    pub async fn tail_on_where(
        &self,
        connection: &mut PgConnection,
        after: Cursor,
        limit: i64,
        wanted: Option<Cursor>,
        keep: &(dyn Fn(&RecordedEvent) -> bool + Sync),
    ) -> Result<Kept, StoreError> {
        self.read_where(connection, after, limit, wanted, keep)
            .await
    }

    /// The gapless read behind [`Store::tail`], [`Store::tail_where`] and
    /// [`Store::tail_on_where`]: from the window of recent events if it holds events after
    /// `after`, else from the table on `executor` (and then kept in the window).
    async fn read_where<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        after: Cursor,
        limit: i64,
        wanted: Option<Cursor>,
        keep: &(dyn Fn(&RecordedEvent) -> bool + Sync),
    ) -> Result<Kept, StoreError> {
        let recent = self.recent();
        if let Some(kept) = recent.serve_where(after, limit, keep) {
            return Ok(kept);
        }
        // Tailers woken by the same commit all stand at the window's end: one reads the table
        // at a time, and those that waited are served from what it kept (each would have read
        // the same rows; with seven consumers that was a third of the events' reads).
        let _turn = match recent.at_end(after) {
            true => Some(recent.turn.lock().await),
            false => None,
        };
        if let Some(kept) = recent.serve_where(after, limit, keep) {
            return Ok(kept);
        }
        let below = self.settled_below_covering(wanted.map(|c| c.xid())).await?;
        let mut events = tail_below(executor, after, limit, &below).await?;
        self.recent().record(after, &events);
        let (read, end) = (
            events.len(),
            events.last().map_or(after, RecordedEvent::cursor),
        );
        events.retain(|e| keep(e));
        Ok(Kept { events, read, end })
    }

    /// The transaction id below which every transaction of *this database* has finished: the
    /// bound of the gapless tail (DESIGN "Gapless tailing").
    ///
    /// `pg_snapshot_xmin` would do, but transaction ids are cluster-wide: a transaction left
    /// open in another database of the same cluster would hold every tail back. So the bound
    /// is the next transaction id (read first, from this statement's snapshot), lowered to the
    /// oldest transaction id still running in this database (`pg_stat_activity`, and prepared
    /// transactions), looked up after it. The events are then read by a *later* statement, so
    /// with a later snapshot: anything below the bound that has committed is visible to it.
    /// Where this role cannot see another client's transaction (no `pg_read_all_stats`), the
    /// cluster-wide `pg_snapshot_xmin` is used instead, which is always safe.
    ///
    /// `backend_xid` is 32 bits wide: it is placed before the next id by its distance from it
    /// modulo 2^32 (a running transaction is less than 2^31 ids old, or PostgreSQL would have
    /// stopped), and one that started after the snapshot is left out (the bound is below it
    /// anyway).
    ///
    /// Every tailer in this process (each projection, the relay, each feed) needs the bound
    /// after the same commits, and the lookup in `pg_stat_activity` is the dearest statement
    /// of the tail. So callers share it: a caller is answered by the first lookup that
    /// *started after it asked* (one that started before might predate the commit it was
    /// woken for), one at a time, so tailers woken together cost one lookup.
    ///
    /// The lookups run one at a time on a connection of their own, kept between them.
    pub async fn settled_below(&self) -> Result<String, StoreError> {
        self.settled_below_covering(None).await
    }

    /// [`Store::settled_below`] for a caller that wants to see a commit it knows of (with
    /// transaction id `wanted`): a bound found earlier that is already above it is answer
    /// enough. Any bound stays true once found (what was settled stays settled), so an older
    /// one never makes a reader skip anything; it is only used when it shows what the caller
    /// was told about.
    pub async fn settled_below_covering(&self, wanted: Option<u64>) -> Result<String, StoreError> {
        let horizon = self.horizon();
        if let (Some(wanted), Some(last)) = (wanted, horizon.last()) {
            if last.xid > wanted {
                return Ok(last.bound);
            }
        }
        let asked = horizon.started.load(Ordering::SeqCst);
        let mut turn = horizon.turn.lock().await;
        if let Some(last) = horizon.last() {
            if last.started > asked || wanted.is_some_and(|wanted| last.xid > wanted) {
                return Ok(last.bound);
            }
        }
        let started = horizon.started.fetch_add(1, Ordering::SeqCst) + 1;
        let connection = match turn.as_mut() {
            Some(connection) => connection,
            None => turn.insert(self.pool().acquire().await?.detach()),
        };
        let bound = match look_up_settled_below(connection, wanted).await {
            Ok(bound) => bound,
            Err(e) => {
                *turn = None;
                return Err(e);
            }
        };
        let mut found = Bound {
            started,
            xid: bound.parse().unwrap_or(0),
            bound,
        };
        let mut last = horizon.last.lock().unwrap_or_else(|p| p.into_inner());
        // A bound never goes back: a caller answered by this lookup must see everything an
        // earlier answer showed. (The cluster-wide branch is only taken above a `wanted` that
        // the last bound did not cover, so it cannot be lower; the check keeps that so.)
        if let Some(earlier) = last.as_ref().filter(|earlier| earlier.xid > found.xid) {
            found.xid = earlier.xid;
            found.bound = earlier.bound.clone();
        }
        *last = Some(found.clone());
        Ok(found.bound)
    }

    /// The cursor after the newest committed event ([`Cursor::START`] for an empty store): what
    /// a reader must reach to have seen everything committed so far.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let newest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::int8, global_position FROM events
              ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(newest.map_or(Cursor::START, |(xid, position)| {
            Cursor::new(xid as u64, position)
        }))
    }

    /// [`Store::tail`] restricted by `filter`: the same gapless order, only matching events.
    ///
    /// With `filter.orgs` set, the cost is in proportion to the events returned, not to the
    /// history stored: each organization (and, with `aggregate_types`, each organization and
    /// type) is read in commit order from its own index (`migrations/0005`), at most `limit`
    /// events each, and the pieces are merged. PostgreSQL cannot merge an `= ANY` list in
    /// index order, hence one ordered, limited subquery per key (`LATERAL`).
    pub async fn tail_filtered(
        &self,
        after: Cursor,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let query = FilteredTail::new(after, limit, filter, self.settled_below().await?);
        let sql = query.sql();
        Ok(query
            .bind_to(sqlx::query_as(&sql))
            .fetch_all(self.pool())
            .await?)
    }

    /// The plan PostgreSQL chooses for [`Store::tail_filtered`] with these arguments
    /// (`EXPLAIN (FORMAT JSON)` of the very same statement): for tests that check which
    /// indexes a filtered tail uses.
    pub async fn explain_tail_filtered(
        &self,
        after: Cursor,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<serde_json::Value, StoreError> {
        let query = FilteredTail::new(after, limit, filter, self.settled_below().await?);
        let sql = format!("EXPLAIN (FORMAT JSON) {}", query.sql());
        Ok(query
            .bind_to(sqlx::query_scalar(&sql))
            .fetch_one(self.pool())
            .await?)
    }

    /// The sequence of the newest event of type `event_type` in a stream, at or before
    /// sequence `at_most` and recorded at or before `recorded_by` when given (`None`: there is
    /// none). The type is written into the statement, so that a partial index on it
    /// (`migrations/0009`, for `document.compacted`) serves the lookup whatever the stream's
    /// length; it must be a `noun.verb` name.
    pub async fn last_of_type(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        at_most: Option<i64>,
        recorded_by: Option<OffsetDateTime>,
    ) -> Result<Option<i64>, StoreError> {
        let safe = !event_type.is_empty()
            && event_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
        if !safe {
            return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                "`{event_type}` is not an event type"
            ))));
        }
        Ok(sqlx::query_scalar(&format!(
            "SELECT sequence FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
                AND event_type = '{event_type}'
                AND ($3::int8 IS NULL OR sequence <= $3)
                AND ($4::timestamptz IS NULL OR recorded_at <= $4)
              ORDER BY sequence DESC LIMIT 1"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(at_most)
        .bind(recorded_by)
        .fetch_optional(self.pool())
        .await?)
    }

    /// One stream's events from `from_sequence` on (inclusive), at most `limit` of them.
    pub async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_sequence: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3
              ORDER BY sequence
              LIMIT $4"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(from_sequence)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

/// The statement behind [`Store::tail_filtered`] and its arguments, in one place so that
/// [`Store::explain_tail_filtered`] explains exactly what runs.
///
/// Every variant takes the same eight parameters: `$1`/`$2` the cursor, `$3` the limit, `$4`
/// the organizations, `$5` the aggregate types, `$6` the event types, `$7` the aggregate id,
/// `$8` the settled bound.
struct FilteredTail<'f> {
    after: Cursor,
    below: String,
    limit: i64,
    orgs: Option<Vec<&'f str>>,
    aggregate_types: Option<Vec<&'f str>>,
    filter: &'f EventFilter,
}

/// Only transactions older than every running one of this database (`$8`, from
/// [`Store::settled_below`]), after the cursor.
const GAPLESS_AFTER: &str = "events.transaction_id < $8::text::xid8
    AND (events.transaction_id, events.global_position) > ($1::text::xid8, $2)";

/// The filters that are checked row by row (never what selects the index).
const REST: &str = "($6::text[] IS NULL OR events.event_type = ANY($6))
    AND ($7::text IS NULL OR events.aggregate_id = $7)";

impl<'f> FilteredTail<'f> {
    fn new(after: Cursor, limit: i64, filter: &'f EventFilter, below: String) -> Self {
        // Each key is read once: a repeated organization or type would return its events twice.
        let distinct = |list: &'f Option<Vec<String>>| {
            list.as_ref().map(|list| {
                let mut list: Vec<&str> = list.iter().map(String::as_str).collect();
                list.sort_unstable();
                list.dedup();
                list
            })
        };
        Self {
            after,
            below,
            limit,
            orgs: distinct(&filter.orgs),
            aggregate_types: distinct(&filter.aggregate_types),
            filter,
        }
    }

    fn sql(&self) -> String {
        match (&self.orgs, &self.aggregate_types) {
            // Internal callers: the whole log, in the tail index's order.
            (None, _) => format!(
                "SELECT {COLUMNS} FROM events
                  WHERE {GAPLESS_AFTER}
                    AND ($4::text[] IS NULL OR events.org_id = ANY($4))
                    AND ($5::text[] IS NULL OR events.aggregate_type = ANY($5))
                    AND {REST}
                  ORDER BY events.transaction_id, events.global_position
                  LIMIT $3"
            ),
            // Per organization: `events_org_tail_idx`.
            (Some(_), None) => format!(
                "SELECT {COLUMNS} FROM unnest($4::text[]) AS orgs(org_key)
                  CROSS JOIN LATERAL (
                    SELECT * FROM events
                     WHERE events.org_id = orgs.org_key
                       AND {GAPLESS_AFTER}
                       AND $5::text[] IS NULL
                       AND {REST}
                     ORDER BY events.transaction_id, events.global_position
                     LIMIT $3) AS events
                  ORDER BY events.transaction_id, events.global_position
                  LIMIT $3"
            ),
            // Per organization and aggregate type: `events_org_type_tail_idx`.
            (Some(_), Some(_)) => format!(
                "SELECT {COLUMNS} FROM unnest($4::text[]) AS orgs(org_key)
                  CROSS JOIN unnest($5::text[]) AS types(type_key)
                  CROSS JOIN LATERAL (
                    SELECT * FROM events
                     WHERE events.org_id = orgs.org_key
                       AND events.aggregate_type = types.type_key
                       AND {GAPLESS_AFTER}
                       AND {REST}
                     ORDER BY events.transaction_id, events.global_position
                     LIMIT $3) AS events
                  ORDER BY events.transaction_id, events.global_position
                  LIMIT $3"
            ),
        }
    }

    /// Binds the eight parameters, in order, to `query` (a `query_as` or a `query_scalar`).
    fn bind_to<Q: BindAll<'f>>(&self, query: Q) -> Q {
        query
            .bind_str(self.after.xid().to_string())
            .bind_i64(self.after.position())
            .bind_i64(self.limit)
            .bind_list(self.orgs.clone())
            .bind_list(self.aggregate_types.clone())
            .bind_list(
                self.filter
                    .event_types
                    .as_ref()
                    .map(|l| l.iter().map(String::as_str).collect()),
            )
            .bind_opt(self.filter.aggregate_id.as_deref())
            .bind_str(self.below.clone())
    }
}

/// `bind` for the two query kinds a filtered tail runs as.
trait BindAll<'q>: Sized {
    fn bind_str(self, v: String) -> Self;
    fn bind_i64(self, v: i64) -> Self;
    fn bind_list(self, v: Option<Vec<&'q str>>) -> Self;
    fn bind_opt(self, v: Option<&'q str>) -> Self;
}

macro_rules! bind_all {
    ($ty:ty) => {
        impl<'q, O> BindAll<'q> for $ty
        where
            O: Send + Unpin,
        {
            fn bind_str(self, v: String) -> Self {
                self.bind(v)
            }
            fn bind_i64(self, v: i64) -> Self {
                self.bind(v)
            }
            fn bind_list(self, v: Option<Vec<&'q str>>) -> Self {
                self.bind(v)
            }
            fn bind_opt(self, v: Option<&'q str>) -> Self {
                self.bind(v)
            }
        }
    };
}

bind_all!(sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>);
bind_all!(sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>);

/// Which events a filtered tail returns; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these organizations' events.
    pub orgs: Option<Vec<String>>,
    /// Only these aggregate types.
    pub aggregate_types: Option<Vec<String>>,
    /// Only these event types (`noun.verb`).
    pub event_types: Option<Vec<String>>,
    /// Only this aggregate.
    pub aggregate_id: Option<String>,
}

impl EventFilter {
    /// Whether an event with these attributes passes the filter (what [`Store::tail_filtered`]
    /// would return), for consumers that see events from elsewhere first, such as a bus.
    pub fn matches(
        &self,
        org: Option<&str>,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
    ) -> bool {
        fn within(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
            match list {
                None => true,
                Some(list) => value.is_some_and(|v| list.iter().any(|l| l == v)),
            }
        }
        within(&self.orgs, org)
            && within(&self.aggregate_types, Some(aggregate_type))
            && within(&self.event_types, Some(event_type))
            && self
                .aggregate_id
                .as_deref()
                .is_none_or(|id| id == aggregate_id)
    }
}

/// The newest stretch of the log this process has read, kept so that the other tailers of
/// this process (every projection, the relay, the mailer) need not read it again.
///
/// Every tailer wakes after the same commits and reads the same events; each of those reads
/// was a statement, plus a bound lookup, with every row decoded again. Now the first tailer
/// to read a stretch from the table records it here, and the others are served from memory.
///
/// What is kept is always one contiguous stretch of the gapless tail, `(after, end]`: every
/// event with a cursor in it, in cursor order, nothing missing. It comes only from gapless
/// reads ([`Store::tail`], [`Store::tail_where`], [`Store::tail_on_where`]): a read after `a` that returned events up to
/// `e` proves that nothing else lies in `(a, e]`, now or later (a transaction committing later
/// has a transaction id above the read's bound, hence above `e`). A read that continues the
/// stretch extends it; one that starts past its end, with newer events, replaces it; older
/// reads (a rebuild from the start) leave it alone. The oldest events give way beyond
/// [`Recent::CAPACITY`] events or [`Recent::CAPACITY_BYTES`] of payload and metadata.
///
/// The window must outlast the slowest of the lingering tailers: `document_text` gathers
/// edits for a quarter second, which under live typing (10,000 edits a second in
/// `cairn bench collab`) is 2,500 events and more. With a window of 4,096 it read most of its
/// batches from the table, thousands of rows at once, and each of those reads showed as a
/// stall of every room's appends (p99 update → peer 46–52 ms against 34–43 ms with the
/// larger window, in alternating runs).
///
/// A reader whose cursor lies inside the stretch is served from it, up to its end: possibly
/// fewer events than the table holds by now, which costs nothing, since a tailer reads again
/// until a read comes back empty (and a reader at the stretch's end reads the table, which
/// extends the stretch for the others).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    window: std::sync::Mutex<Window>,
    /// Held by the one reader reading the table from the window's end.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Window {
    /// The cursor just before the first event kept.
    after: Cursor,
    events: std::collections::VecDeque<RecordedEvent>,
    /// The payload and metadata bytes of `events`.
    bytes: usize,
}

/// What an event weighs in the window: its payload and metadata (the rest is small and fixed).
fn weight(event: &RecordedEvent) -> usize {
    event.payload.get().len() + event.metadata.get().len()
}

impl Window {
    fn end(&self) -> Cursor {
        self.events.back().map_or(self.after, RecordedEvent::cursor)
    }
}

impl Recent {
    /// The most events kept.
    pub(crate) const CAPACITY: usize = 32_768;

    /// The most payload and metadata bytes kept (document compactions carry a whole state).
    pub(crate) const CAPACITY_BYTES: usize = 32 << 20;

    /// Up to `limit` events after `after` from memory; `None` if none is kept there (read
    /// the table).
    #[cfg(test)]
    pub(crate) fn serve(&self, after: Cursor, limit: i64) -> Option<Vec<RecordedEvent>> {
        self.serve_where(after, limit, &|_| true)
            .map(|kept| kept.events)
    }

    /// Up to `limit` events after `after` from memory, copying only those `keep` accepts, with
    /// how many were read and where the read ended; `None` if none is kept there (read the
    /// table).
    pub(crate) fn serve_where(
        &self,
        after: Cursor,
        limit: i64,
        keep: &(dyn Fn(&RecordedEvent) -> bool + Sync),
    ) -> Option<Kept> {
        let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if after < window.after || after >= window.end() {
            return None;
        }
        let first = window.events.partition_point(|e| e.cursor() <= after);
        let limit = usize::try_from(limit).unwrap_or(0).max(1);
        let read = window.events.range(first..).take(limit);
        let mut kept = Kept {
            read: read.len(),
            end: after,
            events: Vec::new(),
        };
        for event in read {
            kept.end = event.cursor();
            if keep(event) {
                kept.events.push(event.clone());
            }
        }
        Some(kept)
    }

    /// Whether a read after `after` would extend the window: it holds events and `after` is
    /// at or past their end.
    fn at_end(&self, after: Cursor) -> bool {
        let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        !window.events.is_empty() && after >= window.end()
    }

    /// Keeps what a gapless read after `after` returned.
    pub(crate) fn record(&self, after: Cursor, events: &[RecordedEvent]) {
        let Some(last) = events.last() else {
            return;
        };
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let end = window.end();
        if last.cursor() <= end {
            return;
        }
        if after >= window.after && after <= end {
            // Continues the stretch (possibly overlapping it): keep what is new.
            let new = events.partition_point(|e| e.cursor() <= end);
            window.bytes += events[new..].iter().map(weight).sum::<usize>();
            window.events.extend(events[new..].iter().cloned());
        } else {
            // A gap before it, or the stretch is older than it: start again from here.
            window.after = after;
            window.bytes = events.iter().map(weight).sum();
            window.events = events.iter().cloned().collect();
        }
        while window.events.len() > Self::CAPACITY || window.bytes > Self::CAPACITY_BYTES {
            let Some(oldest) = window.events.pop_front() else {
                break;
            };
            window.after = oldest.cursor();
            window.bytes -= weight(&oldest);
        }
    }
}

/// What [`Store::tail_on_where`] read.
#[derive(Debug, Default)]
pub struct Kept {
    /// The events kept, in order.
    pub events: Vec<RecordedEvent>,
    /// How many events were read (kept or not): fewer than the limit means the reader has
    /// caught up, for now.
    pub read: usize,
    /// The cursor after the last event read (the `after` of the read if none was).
    pub end: Cursor,
}

/// The state behind [`Store::settled_below`]'s sharing.
#[derive(Debug, Default)]
pub(crate) struct Horizon {
    /// How many lookups have started.
    started: AtomicU64,
    /// One lookup at a time, on this connection (opened at the first).
    turn: tokio::sync::Mutex<Option<PgConnection>>,
    /// The newest lookup's bound.
    last: std::sync::Mutex<Option<Bound>>,
}

impl Horizon {
    fn last(&self) -> Option<Bound> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A bound from [`Store::settled_below`]'s lookup.
#[derive(Debug, Clone)]
struct Bound {
    /// The lookup's number.
    started: u64,
    /// The bound, as PostgreSQL wrote it.
    bound: String,
    /// The bound as a number.
    xid: u64,
}

/// The lookup behind [`Store::settled_below`].
///
/// With `wanted` (a commit the caller knows of), the cluster-wide `pg_snapshot_xmin` comes
/// first: it is always a safe bound, costs nothing to compute, and under a steady write load
/// it is usually above that commit already (the oldest transaction still running anywhere is
/// younger than it). Only when it is not (something older is still open, perhaps in another
/// database) is `pg_stat_activity` read, in the same statement: PostgreSQL evaluates a `CASE`
/// branch's subqueries only when it takes that branch.
async fn look_up_settled_below(
    connection: &mut PgConnection,
    wanted: Option<u64>,
) -> Result<String, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT CASE
                      WHEN pg_snapshot_xmin(snap.s)::text::int8 > $1
                      THEN pg_snapshot_xmin(snap.s)::text
                      WHEN EXISTS (SELECT 1 FROM pg_stat_activity
                                    WHERE datname = current_database()
                                      AND backend_type = 'client backend' AND state IS NULL)
                      THEN pg_snapshot_xmin(snap.s)::text
                      ELSE (next.n - coalesce((
                             SELECT max(d) FROM (
                               SELECT ((next.n & 4294967295) - r.x + 4294967296) % 4294967296 AS d
                                 FROM (SELECT backend_xid::text::int8 AS x FROM pg_stat_activity
                                        WHERE datname = current_database()
                                          AND backend_xid IS NOT NULL
                                       UNION ALL
                                       SELECT transaction::text::int8 FROM pg_prepared_xacts
                                        WHERE database = current_database()) AS r) AS ages
                              WHERE d BETWEEN 1 AND 2147483647), 0))::text
                    END
               FROM (SELECT pg_current_snapshot() AS s) AS snap,
                    LATERAL (SELECT pg_snapshot_xmax(snap.s)::text::int8 AS n) AS next",
    )
    .bind(wanted.and_then(|xid| i64::try_from(xid).ok()))
    .fetch_one(connection)
    .await?)
}

/// The events after `after` of transactions below `below`, at most `limit`, in commit order.
async fn tail_below<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    after: Cursor,
    limit: i64,
    below: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events
              WHERE events.transaction_id < $4::text::xid8
                AND (events.transaction_id, events.global_position) > ($1::text::xid8, $2)
              ORDER BY events.transaction_id, events.global_position
              LIMIT $3"
    ))
    .bind(after.xid().to_string())
    .bind(after.position())
    .bind(limit)
    .bind(below)
    .fetch_all(executor)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::{weight, EventFilter, Recent, RecordedEvent};
    use crate::Cursor;

    fn event(xid: u64, position: i64) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::nil(),
            aggregate_type: "task".into(),
            aggregate_id: "t1".into(),
            sequence: position,
            event_type: "task.created".into(),
            event_version: "1".into(),
            payload: serde_json::value::RawValue::from_string("{}".into()).expect("json"),
            metadata: serde_json::value::RawValue::from_string("{}".into()).expect("json"),
            global_position: position,
            transaction_id: xid as i64,
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
            org_id: None,
            prev_hash: None,
            hash: vec![],
        }
    }

    fn cursors(events: &[RecordedEvent]) -> Vec<i64> {
        events.iter().map(|e| e.global_position).collect()
    }

    #[test]
    fn the_recent_window_serves_only_what_a_read_of_the_table_returned() {
        let recent = Recent::default();
        let at = |p: i64| Cursor::new(10 + p as u64, p);
        // Nothing kept yet: read the table.
        assert!(recent.serve(Cursor::START, 10).is_none());
        recent.record(at(0), &[event(11, 1), event(12, 2), event(13, 3)]);
        // From the reader's cursor on, at most the limit.
        assert_eq!(cursors(&recent.serve(at(1), 10).expect("served")), [2, 3]);
        assert_eq!(cursors(&recent.serve(at(0), 2).expect("served")), [1, 2]);
        // At or past the end, or before the start: read the table.
        assert!(recent.serve(at(3), 10).is_none());
        assert!(recent.serve(Cursor::START, 10).is_none());
        // A read continuing the stretch (overlapping it) extends it without repeats.
        recent.record(at(2), &[event(13, 3), event(14, 4)]);
        assert_eq!(
            cursors(&recent.serve(at(0), 10).expect("served")),
            [1, 2, 3, 4]
        );
        // An older read (a rebuild) changes nothing.
        recent.record(Cursor::START, &[event(11, 1)]);
        assert_eq!(
            cursors(&recent.serve(at(0), 10).expect("served")),
            [1, 2, 3, 4]
        );
        // A newer read after a gap starts the stretch again: nothing before it is served.
        recent.record(at(6), &[event(17, 7)]);
        assert!(recent.serve(at(4), 10).is_none());
        assert_eq!(cursors(&recent.serve(at(6), 10).expect("served")), [7]);
    }

    #[test]
    fn the_recent_window_serves_a_filtered_read_with_where_it_ended() {
        let recent = Recent::default();
        let events: Vec<RecordedEvent> = (1..=6).map(|p| event(10, p)).collect();
        recent.record(Cursor::START, &events);
        let even = |e: &RecordedEvent| e.global_position % 2 == 0;
        let kept = recent
            .serve_where(events[0].cursor(), 3, &even)
            .expect("in the window");
        assert_eq!(cursors(&kept.events), [2, 4]);
        assert_eq!((kept.read, kept.end), (3, events[3].cursor()));
        let none = recent
            .serve_where(events[3].cursor(), 10, &|_| false)
            .expect("in the window");
        assert!(none.events.is_empty());
        assert_eq!((none.read, none.end), (2, events[5].cursor()));
        assert!(recent.serve_where(events[5].cursor(), 10, &even).is_none());
    }

    #[test]
    fn the_recent_window_forgets_its_oldest_events_beyond_its_capacity() {
        let recent = Recent::default();
        let n = Recent::CAPACITY as i64 + 10;
        let events: Vec<_> = (1..=n).map(|p| event(p as u64, p)).collect();
        recent.record(Cursor::START, &events);
        assert!(recent.serve(Cursor::new(5, 5), 1_000_000).is_none());
        let served = recent
            .serve(Cursor::new(10, 10), 1_000_000)
            .expect("served");
        assert_eq!(served.len(), Recent::CAPACITY);
    }

    #[test]
    fn the_recent_window_forgets_its_oldest_events_beyond_its_bytes() {
        let recent = Recent::default();
        let big = format!("\"{}\"", "x".repeat(1 << 20));
        let events: Vec<_> = (1..=40)
            .map(|p| RecordedEvent {
                payload: serde_json::value::RawValue::from_string(big.clone()).expect("json"),
                ..event(p as u64, p)
            })
            .collect();
        recent.record(Cursor::START, &events);
        let kept = recent.window.lock().expect("window");
        assert!(kept.bytes <= Recent::CAPACITY_BYTES);
        assert_eq!(kept.bytes, kept.events.iter().map(weight).sum::<usize>());
        // The newest events stay, as many as fit.
        assert_eq!(
            kept.events.len(),
            Recent::CAPACITY_BYTES / weight(&events[0])
        );
        assert_eq!(kept.events.back().map(|e| e.global_position), Some(40));
        assert_eq!(kept.after, events[39 - kept.events.len()].cursor());
    }

    #[test]
    fn a_filter_matches_what_its_tail_would_return() {
        let any = EventFilter::default();
        assert!(any.matches(None, "task", "t1", "task.created"));
        let filter = EventFilter {
            orgs: Some(vec!["o1".into()]),
            aggregate_types: Some(vec!["task".into()]),
            event_types: Some(vec!["task.created".into(), "task.deleted".into()]),
            aggregate_id: Some("t1".into()),
        };
        assert!(filter.matches(Some("o1"), "task", "t1", "task.deleted"));
        assert!(
            !filter.matches(None, "task", "t1", "task.created"),
            "no org"
        );
        assert!(!filter.matches(Some("o2"), "task", "t1", "task.created"));
        assert!(!filter.matches(Some("o1"), "label", "t1", "task.created"));
        assert!(!filter.matches(Some("o1"), "task", "t1", "task.renamed"));
        assert!(!filter.matches(Some("o1"), "task", "t2", "task.created"));
    }
}
