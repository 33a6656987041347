//! The event store against the real PostgreSQL: appends, idempotency, snapshots, the gapless
//! tail, chain verification and the append-only guarantees.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use eventstore::append::{AppendRequest, NewEvent};
use eventstore::testing::TestDb;
use eventstore::{Cursor, Store, StoreError, StoreOptions};
use rand::Rng;
use support::{add, Counter, CounterCommand};
use uuid::Uuid;

async fn store(db: &TestDb, options: StoreOptions) -> Store {
    Store::new(db.pool(8).await, options)
}

fn no_cache() -> StoreOptions {
    StoreOptions {
        cache_capacity: 0,
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn appends_return_receipts_with_contiguous_sequences_and_cursors() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    let counters = store.aggregate::<Counter>();
    let first = add(&counters, "c1", vec![1, 2, 3], Uuid::new_v4())
        .await
        .expect("append");
    let second = add(&counters, "c1", vec![4], Uuid::new_v4())
        .await
        .expect("append");
    assert_eq!(
        first.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(second.events[0].sequence, 4);
    assert!(first.cursor < second.cursor);
    assert_eq!(*store.commits().borrow(), second.cursor.expect("cursor"));
    // The tail shows a commit once every older transaction in the *cluster* has finished
    // (xids are cluster-wide, and other tests write in other databases), so wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let tail = loop {
        let tail = store.tail(Cursor::START, 100).await.expect("tail");
        if tail.len() == 4 || tokio::time::Instant::now() > deadline {
            break tail;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(tail.len(), 4);
    assert_eq!(tail[3].cursor(), second.cursor.expect("cursor"));
    assert_eq!(tail[0].org_id.as_deref(), Some("org-1"));
    assert!(store.verify(|_| {}).await.expect("verify").is_intact());
}

#[tokio::test]
async fn a_stale_writer_gets_a_conflict_and_appends_nothing() {
    let db = TestDb::new().await;
    // Two stores on one database behave like two nodes: separate caches and locks.
    let node_a = store(&db, StoreOptions::default())
        .await
        .aggregate::<Counter>();
    let node_b = store(&db, StoreOptions::default())
        .await
        .aggregate::<Counter>();
    add(&node_a, "c", vec![1], Uuid::new_v4())
        .await
        .expect("first");
    add(&node_b, "c", vec![1], Uuid::new_v4())
        .await
        .expect("b loads fresh state");
    let stale = add(&node_a, "c", vec![1], Uuid::new_v4()).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    // The conflict evicted the stale entry, so the retry sees node B's event.
    let retry = add(&node_a, "c", vec![1], Uuid::new_v4())
        .await
        .expect("retry");
    assert_eq!(retry.events[0].sequence, 3);
    let ctx = node_a.load_fresh("c").await.expect("load");
    assert_eq!(ctx.sequence(), 3);
}

#[tokio::test]
async fn the_same_command_id_twice_appends_once() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    let counters = store.aggregate::<Counter>();
    let id = Uuid::new_v4();
    let first = add(&counters, "c", vec![5], id).await.expect("first");
    let again = add(&counters, "c", vec![5], id).await;
    match again {
        Err(StoreError::Duplicate(receipt)) => {
            assert_eq!(receipt.events, first.events);
            assert_eq!(receipt.cursor, first.cursor);
            assert!(receipt.replayed);
        }
        other => panic!("expected the first receipt back, got {other:?}"),
    }
    let found = store
        .find_receipt(id)
        .await
        .expect("lookup")
        .expect("stored");
    assert_eq!(found.events, first.events);
    let appended: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(appended, 1);
    // The same id for another aggregate is refused outright.
    let reused = add(&counters, "other", vec![1], id).await;
    assert!(
        matches!(reused, Err(StoreError::CommandIdReused(_))),
        "{reused:?}"
    );
}

#[tokio::test]
async fn snapshots_apply_each_event_once_and_equal_a_full_fold() {
    let db = TestDb::new().await;
    let options = StoreOptions {
        snapshot_every: 3,
        cache_capacity: 0,
        ..StoreOptions::default()
    };
    let store = store(&db, options).await;
    let counters = store.aggregate::<Counter>();

    // The cqrs-es 0.5.0 regression: one event, a snapshot, a reload: applied must be 1.
    let single = StoreOptions {
        snapshot_every: 1,
        cache_capacity: 0,
        ..StoreOptions::default()
    };
    let single = Store::new(db.pool(2).await, single).aggregate::<Counter>();
    add(&single, "one", vec![7], Uuid::new_v4())
        .await
        .expect("append");
    let mut ctx = single.load("one").await.expect("load");
    assert_eq!(
        *ctx.aggregate(),
        Counter {
            total: 7,
            applied: 1
        }
    );

    let mut rng = rand::rng();
    let mut expected = Counter::default();
    for _ in 0..20 {
        let values: Vec<i64> = (0..rng.random_range(1..4))
            .map(|_| rng.random_range(-50..50))
            .collect();
        for v in &values {
            expected.total += v;
            expected.applied += 1;
        }
        add(&counters, "c", values, Uuid::new_v4())
            .await
            .expect("append");
    }
    let snapshot_at: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM snapshots WHERE aggregate_type = 'counter' AND aggregate_id = 'c'",
    )
    .fetch_one(store.pool())
    .await
    .expect("a snapshot was written");
    assert!(snapshot_at > 3 && snapshot_at <= expected.applied as i64);

    // Snapshot + tail ...
    let mut from_snapshot = counters.load("c").await.expect("load");
    // ... equals folding every event from the first.
    let mut folded = Counter::default();
    for envelope in counters.load_events("c").await.expect("events") {
        cqrs_es::Aggregate::apply(&mut folded, envelope.payload);
    }
    assert_eq!(*from_snapshot.aggregate(), expected);
    assert_eq!(folded, expected);
}

#[tokio::test]
async fn cqrs_framework_runs_on_the_store() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    let cqrs = CqrsFramework::new(store.aggregate::<Counter>(), vec![], ());
    cqrs.execute("c", CounterCommand::Add(vec![2, 3]))
        .await
        .expect("execute");
    cqrs.execute("c", CounterCommand::Add(vec![4]))
        .await
        .expect("execute");
    let fresh = store.aggregate::<Counter>();
    let mut ctx = fresh.load("c").await.expect("load");
    assert_eq!(
        *ctx.aggregate(),
        Counter {
            total: 9,
            applied: 3
        }
    );
}

#[tokio::test]
async fn postgres_es_can_still_read_and_write_the_table() {
    use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
    use postgres_es::PostgresEventRepository;

    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    add(
        &store.aggregate::<Counter>(),
        "c",
        vec![1, 2],
        Uuid::new_v4(),
    )
    .await
    .expect("cairn append");
    let repo = PostgresEventRepository::new(store.pool().clone());
    let events = repo
        .get_events::<Counter>("c")
        .await
        .expect("postgres-es reads");
    assert_eq!(events.len(), 2);
    // postgres-es appends without a prev_hash; the trigger looks the predecessor up.
    let pg_store = PersistedEventStore::<_, Counter>::new_event_store(repo);
    let cqrs = CqrsFramework::new(pg_store, vec![], ());
    cqrs.execute("c", CounterCommand::Add(vec![3, 4]))
        .await
        .expect("postgres-es writes");
    let report = store.verify(|_| {}).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, 4);
}

#[tokio::test]
async fn many_concurrent_appends_share_transactions_and_keep_every_chain() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    let counters = std::sync::Arc::new(store.aggregate::<Counter>());
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                add(&counters, &format!("c{writer}"), vec![1, 1], Uuid::new_v4())
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT transaction_id) FROM events")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert!(
        transactions < 400,
        "16 writers x 25 commands used {transactions} transactions"
    );
    let report = store.verify(|_| {}).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.streams, report.events), (16, 800));
}

#[tokio::test]
async fn the_tail_never_skips_or_repeats_while_writers_commit_out_of_order() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    const WRITERS: usize = 8;
    const PER_WRITER: i64 = 30;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = store.pool().clone();
        writers.push(tokio::spawn(async move {
            for seq in 1..=PER_WRITER {
                let hold_ms = rand::rng().random_range(0..20);
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                     VALUES ('counter', $1, $2, 'counter.added', '1', '{\"type\":\"counter.added\",\"by\":1}', '{}')",
                )
                .bind(format!("w{w}"))
                .bind(seq)
                .execute(&mut *tx)
                .await
                .expect("insert");
                // Hold the transaction open for a random time, so later transactions commit first.
                sqlx::query("SELECT pg_sleep($1)")
                    .bind(hold_ms as f64 / 1000.0)
                    .execute(&mut *tx)
                    .await
                    .expect("sleep");
                tx.commit().await.expect("commit");
            }
        }));
    }
    let total = WRITERS * PER_WRITER as usize;
    let mut seen = HashSet::new();
    let mut per_stream: HashMap<String, i64> = HashMap::new();
    let mut cursor = Cursor::START;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail stalled at {}",
            seen.len()
        );
        let batch = store.tail(cursor, 7).await.expect("tail");
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for e in batch {
            assert!(e.cursor() > cursor, "the tail went backwards");
            cursor = e.cursor();
            assert!(seen.insert(e.event_id), "event delivered twice");
            let last = per_stream.entry(e.aggregate_id.clone()).or_default();
            assert_eq!(
                e.sequence,
                *last + 1,
                "a stream's events arrived out of order"
            );
            *last = e.sequence;
        }
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert!(store.tail(cursor, 10).await.expect("tail").is_empty());
    assert_eq!(seen.len(), total);
}

#[tokio::test]
async fn verify_names_the_first_altered_event() {
    let db = TestDb::new().await;
    let store = store(&db, no_cache()).await;
    let counters = store.aggregate::<Counter>();
    for id in ["a", "b"] {
        for _ in 0..3 {
            add(&counters, id, vec![1, 2], Uuid::new_v4())
                .await
                .expect("append");
        }
    }
    let report = store.verify(|_| {}).await.expect("verify");
    assert!(report.is_intact());
    assert_eq!((report.streams, report.events), (2, 12));

    let position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_id = 'b' AND sequence = 4",
    )
    .fetch_one(store.pool())
    .await
    .expect("position");
    let mut conn = store.pool().acquire().await.expect("conn");
    for sql in [
        "ALTER TABLE events DISABLE TRIGGER USER",
        "UPDATE events SET payload = '{\"type\":\"counter.added\",\"by\":1000}' WHERE aggregate_id = 'b' AND sequence = 4",
        "ALTER TABLE events ENABLE TRIGGER USER",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.expect(sql);
    }
    drop(conn);
    let report = store.verify(|_| {}).await.expect("verify");
    let broken = report.first_break.expect("a break is reported");
    assert_eq!(
        (
            broken.aggregate_id.as_str(),
            broken.sequence,
            broken.global_position
        ),
        ("b", 4, position)
    );
    assert_eq!(report.broken_streams, 1);
}

#[tokio::test]
async fn events_are_append_only() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    add(&store.aggregate::<Counter>(), "c", vec![1], Uuid::new_v4())
        .await
        .expect("append");
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_commit_on_one_node_wakes_tailers_on_another() {
    let db = TestDb::new().await;
    let a = store(&db, StoreOptions::default()).await;
    let b = store(&db, StoreOptions::default()).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    a.share_commit_signals(shutdown.clone());
    b.share_commit_signals(shutdown.clone());
    let mut woken = b.commits();
    let counters = a.aggregate::<Counter>();
    // B's LISTEN starts in the background; until it is in place a signal may pass unseen
    // (that costs a poll, never an event), so commit until one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let receipt = add(&counters, "c1", vec![1], Uuid::new_v4())
            .await
            .expect("append");
        let cursor = receipt.cursor.expect("cursor");
        let seen = woken.wait_for(|c| *c >= cursor);
        if tokio::time::timeout(Duration::from_millis(500), seen)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never heard of A's commits"
        );
    }
    assert_eq!(
        b.committed_here(),
        Cursor::START,
        "B itself committed nothing"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn each_commit_is_stamped_with_the_time_it_was_acknowledged() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    let mut times = store.commit_times();
    let counters = store.aggregate::<Counter>();
    let before = std::time::SystemTime::now();
    let receipt = add(&counters, "c1", vec![1, 2], Uuid::new_v4())
        .await
        .expect("append");
    let after = std::time::SystemTime::now();
    let stamp = times.try_recv().expect("a commit time");
    assert_eq!(
        Some(stamp.cursor),
        receipt.cursor,
        "the commit's last event"
    );
    assert!(before <= stamp.at && stamp.at <= after, "{stamp:?}");
    assert!(times.try_recv().is_err(), "one commit, one stamp");
}

/// Inserts one event of stream `counter/<id>` as `executor` would (tests only: the one place
/// besides the store that writes `events`).
async fn insert_raw<'e>(executor: impl sqlx::PgExecutor<'e>, id: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('counter', $1, 1, 'counter.added', '1', '{\"type\":\"counter.added\",\"by\":1}', '{}')",
    )
    .bind(id)
    .execute(executor)
    .await
    .expect("insert");
}

/// The transaction id of stream `counter/<id>`'s event (read straight from the table).
async fn transaction_of(store: &Store, id: &str) -> i64 {
    sqlx::query_scalar("SELECT transaction_id::text::int8 FROM events WHERE aggregate_id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("the event's transaction")
}

/// The tail's bound as a tailer that knows of transaction `wanted` gets it.
async fn bound_covering(store: &Store, wanted: i64) -> i64 {
    store
        .settled_below_covering(Some(wanted as u64))
        .await
        .expect("bound")
        .parse()
        .expect("a transaction id")
}

#[tokio::test]
async fn a_long_transaction_in_another_database_does_not_stall_the_tail() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    // Another database of the same cluster holds a transaction id, and keeps it.
    let other = TestDb::empty().await;
    let other_pool = other.pool(1).await;
    let mut elsewhere = other_pool.begin().await.expect("begin");
    let held: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *elsewhere)
        .await
        .expect("xid");
    insert_raw(store.pool(), "after-the-other").await;
    // A tailer that knows of that commit (a consumer woken for it) asks with its id, before
    // any bound is kept: the cluster-wide one, held back by the other database, is not taken
    // for an answer.
    let wanted = transaction_of(&store, "after-the-other").await;
    let bound = bound_covering(&store, wanted).await;
    assert!(bound > wanted, "{bound} does not cover {wanted}");
    let tail = store.tail(Cursor::START, 10).await.expect("tail");
    assert_eq!(
        tail.iter()
            .map(|e| e.aggregate_id.as_str())
            .collect::<Vec<_>>(),
        ["after-the-other"],
        "a transaction ({held}) in another database held the tail back"
    );
    assert!(tail[0].transaction_id > held.parse::<i64>().expect("xid"));
    elsewhere.rollback().await.expect("rollback");
    other_pool.close().await;
}

#[tokio::test]
async fn a_slow_transaction_in_this_database_is_never_skipped() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    // Also a long transaction elsewhere, which must change nothing here.
    let other = TestDb::empty().await;
    let other_pool = other.pool(1).await;
    let mut elsewhere = other_pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *elsewhere)
        .await
        .expect("xid");
    // The slow writer takes its transaction id first, then a fast one commits.
    let mut slow = store.pool().begin().await.expect("begin");
    insert_raw(&mut *slow, "slow").await;
    insert_raw(store.pool(), "fast").await;
    assert!(
        store
            .tail(Cursor::START, 10)
            .await
            .expect("tail")
            .is_empty(),
        "the fast event was returned while an older transaction was still open"
    );
    let filtered = store
        .tail_filtered(Cursor::START, 10, &eventstore::EventFilter::default())
        .await
        .expect("tail");
    assert!(
        filtered.is_empty(),
        "the filtered tail keeps the same bound"
    );
    // Nor for a tailer that knows of the fast commit: its bound stays below the slow one.
    let fast = transaction_of(&store, "fast").await;
    let bound = bound_covering(&store, fast).await;
    assert!(
        bound < fast,
        "bound {bound} lets the fast event ({fast}) pass the slow one"
    );
    slow.commit().await.expect("commit");
    let tail = store.tail(Cursor::START, 10).await.expect("tail");
    assert_eq!(
        tail.iter()
            .map(|e| e.aggregate_id.as_str())
            .collect::<Vec<_>>(),
        ["slow", "fast"],
        "both, in commit order"
    );
    elsewhere.rollback().await.expect("rollback");
    other_pool.close().await;
}

/// A request to append `counter.added` events `sequences` to counter `id`.
fn bulk_request(id: &str, sequences: std::ops::RangeInclusive<i64>) -> AppendRequest {
    AppendRequest {
        command_id: Uuid::new_v4(),
        fingerprint: None,
        aggregate_type: "counter".into(),
        aggregate_id: id.into(),
        prev_hash: None,
        events: sequences
            .map(|sequence| NewEvent {
                sequence,
                event_type: "counter.added".into(),
                event_version: "1".into(),
                payload: serde_json::json!({"type": "counter.added", "by": sequence}),
            })
            .collect(),
        metadata: serde_json::json!({"actor": "system", "org_id": "org-bulk"}),
        snapshot: None,
    }
}

#[tokio::test]
async fn a_bulk_append_writes_many_streams_with_receipts_and_intact_chains() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    // 120 streams of 100 events, each in two requests: every stream's first 60 events, then
    // every stream's last 40. 12,000 events take two statements, and the second halves
    // continue streams written rows or statements earlier.
    let streams: Vec<String> = (0..120).map(|i| format!("bulk-{i}")).collect();
    let mut requests: Vec<AppendRequest> =
        streams.iter().map(|id| bulk_request(id, 1..=60)).collect();
    requests.extend(streams.iter().map(|id| bulk_request(id, 61..=100)));
    let ids: Vec<(Uuid, String, i64)> = requests
        .iter()
        .map(|r| (r.command_id, r.aggregate_id.clone(), r.events[0].sequence))
        .collect();
    let done = store.append_bulk(requests).await.expect("bulk append");
    assert_eq!((done.commands, done.events), (240, 12_000));
    assert_eq!(Some(*store.commits().borrow()), done.cursor);

    let report = store.verify(|_| {}).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, 12_000);
    let stream = store
        .read_stream("counter", "bulk-7", 1, 1000)
        .await
        .expect("read");
    assert_eq!(
        stream.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(stream[99].org_id.as_deref(), Some("org-bulk"));
    for (command_id, aggregate_id, first) in [&ids[0], &ids[119], &ids[120], &ids[239]] {
        let receipt = store
            .find_receipt(*command_id)
            .await
            .expect("find")
            .expect("every request has its receipt");
        assert_eq!(&receipt.aggregate_id, aggregate_id);
        let sequences: Vec<i64> = receipt.events.iter().map(|e| e.sequence).collect();
        let last = if *first == 1 { 60 } else { 100 };
        assert_eq!(sequences, (*first..=last).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_bulk_append_checks_sequences() {
    let db = TestDb::new().await;
    let store = store(&db, StoreOptions::default()).await;
    store
        .append_bulk([bulk_request("c", 1..=3)])
        .await
        .expect("first three");

    let mut gap = bulk_request("d", 1..=3);
    gap.events[2].sequence = 4;
    let cases = [
        ("a gap inside a request", vec![gap]),
        (
            "a request that does not continue the one before",
            vec![bulk_request("e", 1..=3), bulk_request("e", 5..=6)],
        ),
        (
            "a stream continued without its predecessor",
            vec![bulk_request("f", 5..=6)],
        ),
        ("a sequence below 1", vec![bulk_request("g", 0..=1)]),
    ];
    for (case, requests) in cases {
        let refused = store.append_bulk(requests).await;
        assert!(
            matches!(refused, Err(StoreError::OutOfSequence(_))),
            "{case}: {refused:?}"
        );
    }
    let repeat = store.append_bulk([bulk_request("c", 3..=4)]).await;
    assert!(matches!(repeat, Err(StoreError::Conflict)), "{repeat:?}");

    // A stream stored earlier continues, chained to what is there.
    let done = store
        .append_bulk([bulk_request("c", 4..=6)])
        .await
        .expect("continue");
    assert_eq!(done.events, 3);
    let report = store.verify(|_| {}).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        (report.streams, report.events),
        (1, 6),
        "nothing refused was written"
    );
}
