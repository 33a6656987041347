//! The relay on the shared consumer loop: one node at a time, and a successor that takes over
//! from the checkpoint when the leader dies.

use std::sync::Arc;
use std::time::Duration;

use commands::{Actor, Commands, Metadata};
use domain::label::{Color, Label, TagCommand, TagRequest};
use domain::{Grant, LabelId, Name, OrgId};
use eventstore::testing::TestDb;
use eventstore::{Cursor, Store, StoreOptions};
use projections::consumers::bus::{Bus, CloudEvent, LocalBus};
use projections::consumers::relay::Relay;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Creates `n` labels in `org`, one command each; returns the last receipt's cursor.
async fn labels(commands: &Commands, org: OrgId, n: usize) -> Cursor {
    let mut last = Cursor::START;
    for i in 0..n {
        let receipt = commands
            .execute::<Label>(
                &LabelId::from_uuid(uuid::Uuid::now_v7()).to_string(),
                TagRequest {
                    grant: Grant::system(org),
                    command: TagCommand::Create {
                        org_id: org,
                        name: Name::parse("name", &format!("label {i}")).expect("name"),
                        color: Color::parse("#00ff00").expect("color"),
                    },
                },
                &Metadata::new(Actor::System),
            )
            .await
            .expect("create a label");
        last = receipt.cursor.expect("cursor");
    }
    last
}

/// Waits until `progress` reaches `target`.
async fn reached(progress: &mut watch::Receiver<Cursor>, target: Cursor) {
    tokio::time::timeout(
        Duration::from_secs(20),
        progress.wait_for(|at| *at >= target),
    )
    .await
    .expect("the relay catches up in time")
    .expect("the relay is alive");
}

/// Every event received so far, as event ids.
fn drain(rx: &mut broadcast::Receiver<Arc<CloudEvent>>) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(event) = rx.try_recv() {
        ids.push(event.id.clone());
    }
    ids
}

#[tokio::test]
async fn a_second_node_takes_over_the_relay_from_its_checkpoint_when_the_leader_dies() {
    let db = TestDb::new().await;
    let pool = db.pool(8).await;
    // Two nodes: each its own store handle (its own commit signals) and its own bus.
    let store_a = Store::new(pool.clone(), StoreOptions::default());
    let store_b = Store::new(pool.clone(), StoreOptions::default());
    let (bus_a, bus_b) = (Arc::new(LocalBus::default()), Arc::new(LocalBus::default()));
    let (mut on_a, mut on_b) = (bus_a.subscribe(), bus_b.subscribe());
    let poll = Duration::from_millis(100);
    let relay_a = Relay::new(store_a.clone(), bus_a).with_poll(poll);
    let relay_b = Relay::new(store_b.clone(), bus_b).with_poll(poll);
    let (mut progress_a, mut progress_b) = (relay_a.progress(), relay_b.progress());
    let stop = CancellationToken::new();

    // A leads and relays everything so far; B, started next, waits for the lock.
    let commands = Commands::new(store_a.clone());
    let org = OrgId::from_uuid(uuid::Uuid::now_v7());
    let first = labels(&commands, org, 20).await;
    let a = tokio::spawn(relay_a.run(stop.clone()));
    reached(&mut progress_a, first).await;
    let b = tokio::spawn(relay_b.run(stop.clone()));
    let second = labels(&commands, org, 20).await;
    reached(&mut progress_a, second).await;
    assert_eq!(*progress_b.borrow(), Cursor::START, "B relayed while A led");

    // A dies between batches: its lock's connection drops, B takes over from A's checkpoint.
    a.abort();
    let _ = a.await;
    let third = labels(&commands, org, 20).await;
    reached(&mut progress_b, third).await;

    // Every event once, in commit order: A's up to its death, then B's.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT event_id::text FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    assert_eq!(stored.len(), 60);
    let (from_a, from_b) = (drain(&mut on_a), drain(&mut on_b));
    assert_eq!(from_a, stored[..40], "A relayed the first 40");
    assert_eq!(
        from_b,
        stored[40..],
        "B relayed the rest, and nothing again"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), b)
        .await
        .expect("B stops in time")
        .expect("B does not panic");
}
