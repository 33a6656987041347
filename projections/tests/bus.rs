//! The NATS bus against the real NATS (a stream and subject prefix of the test's own) and the
//! real PostgreSQL: a reader that sees a gap in the relay's chain refills from the store.

use std::sync::Arc;
use std::time::Duration;

use commands::identity::Identity;
use commands::{Actor, Commands, Metadata};
use domain::Email;
use eventstore::testing::TestDb;
use eventstore::vault::Vault;
use eventstore::{Cursor, Store, StoreOptions};
use projections::consumers::bus::{Bus, CloudEvent, NatsBus, NatsOptions};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Appends `n` events (magic-link requests) to the store.
async fn activity(identity: &Identity, n: usize) {
    for i in 0..n {
        let email = Email::parse(&format!("p{i}@example.com")).expect("email");
        identity
            .request_magic_link(&email, &Metadata::new(Actor::System))
            .await
            .expect("link");
    }
}

/// Waits until the bus's reader has its consumer on `stream`: from then on, it gets every
/// message published.
async fn reader_ready(stream: &str) {
    let client = async_nats::connect(NATS_URL)
        .await
        .expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = jetstream.get_stream(stream).await {
            if stream
                .info()
                .await
                .is_ok_and(|info| info.state.consumer_count > 0)
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus reader has no consumer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cursors of the next `n` events the node delivers.
async fn delivered(live: &mut broadcast::Receiver<Arc<CloudEvent>>, n: usize) -> Vec<Cursor> {
    let mut cursors = Vec::with_capacity(n);
    while cursors.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), live.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} events delivered in time", cursors.len()))
            .expect("the bus is open");
        cursors.push(event.cursor().expect("a cursor"));
    }
    cursors
}

#[tokio::test]
async fn a_reader_refills_what_the_bus_lost_from_the_store_once_and_in_order() {
    let db = TestDb::new().await;
    let pool = db.pool(4).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let identity = Identity::new(
        Commands::new(store.clone()),
        Vault::new(pool.clone(), [7; 32]),
    );
    activity(&identity, 6).await;
    let events = store.tail(Cursor::START, 100).await.expect("tail");
    assert!(events.len() >= 6, "{} events", events.len());
    let chain = CloudEvent::chain(Cursor::START, &events);
    let cursors: Vec<Cursor> = events.iter().map(|e| e.cursor()).collect();

    let id = uuid::Uuid::new_v4().simple().to_string();
    let options = NatsOptions {
        url: NATS_URL.to_owned(),
        stream: format!("TEST_{id}"),
        prefix: format!("t{id}"),
        max_age: Duration::from_secs(3600),
    };
    let shutdown = CancellationToken::new();
    let bus = NatsBus::connect(options.clone(), shutdown.clone())
        .await
        .expect("connect");
    bus.refill_from(store.clone());
    let mut live = bus.subscribe();
    reader_ready(&options.stream).await;

    // The bus loses the third and fourth messages: the fifth names the fourth as the one
    // before it, so the reader refills the third and fourth from the store before it.
    bus.publish(&chain[..2]).await.expect("publish");
    bus.publish(&chain[4..]).await.expect("publish");
    assert_eq!(delivered(&mut live, cursors.len()).await, cursors);

    // The lost ones turn up late (a republish): dropped, and what comes next is delivered.
    activity(&identity, 1).await;
    let last = cursors.last().copied().expect("events");
    let newer = store.tail(last, 100).await.expect("tail");
    bus.publish(&chain[2..4]).await.expect("publish");
    bus.publish(&CloudEvent::chain(last, &newer))
        .await
        .expect("publish");
    let newer: Vec<Cursor> = newer.iter().map(|e| e.cursor()).collect();
    assert_eq!(delivered(&mut live, newer.len()).await, newer);
    assert!(live.try_recv().is_err(), "nothing delivered twice");

    shutdown.cancel();
    let client = async_nats::connect(NATS_URL)
        .await
        .expect("connect to NATS");
    let _ = async_nats::jetstream::new(client)
        .delete_stream(&options.stream)
        .await;
}
