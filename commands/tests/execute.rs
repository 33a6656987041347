//! The command facade against the real PostgreSQL.

use std::sync::Arc;

use commands::{Actor, CommandError, CommandId, Commands, Metadata};
use domain::organization::{Organization, OrganizationCommand as C, OrganizationError};
use domain::{Name, OrgId, Request, TeamId, UserId};
use eventstore::testing::TestDb;
use eventstore::{Store, StoreOptions};
use uuid::Uuid;

async fn node(db: &TestDb) -> Commands {
    Commands::new(Store::new(db.pool(8).await, StoreOptions::default()))
}

async fn create_org(commands: &Commands) -> String {
    let org = OrgId::from_uuid(Uuid::now_v7());
    commands
        .execute::<Organization>(
            &org.to_string(),
            Request::system(C::Create {
                org_id: org,
                admin_team: TeamId::from_uuid(Uuid::now_v7()),
                name: Name::parse("name", "Acme").expect("name"),
            }),
            &Metadata::new(Actor::System).in_org(org),
        )
        .await
        .expect("create");
    org.to_string()
}

async fn sequences(db: &TestDb, org: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(org)
        .fetch_all(&db.pool(1).await)
        .await
        .expect("sequences")
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_all_land_with_contiguous_sequences() {
    let db = TestDb::new().await;
    // Two nodes (separate caches and locks) and several writers on each.
    let nodes = [node(&db).await, node(&db).await];
    let org = Arc::new(create_org(&nodes[0]).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let commands = nodes[i % 2].clone();
        let org = org.clone();
        tasks.push(tokio::spawn(async move {
            commands
                .execute::<Organization>(
                    &org,
                    Request::system(C::AddMember {
                        user_id: UserId::from_uuid(Uuid::new_v4()),
                    }),
                    &Metadata::new(Actor::System),
                )
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("every command lands");
    }
    assert_eq!(sequences(&db, &org).await, (1..=21).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_idempotency_key_repeated_appends_once_and_returns_the_first_receipt() {
    let db = TestDb::new().await;
    let commands = node(&db).await;
    let org = create_org(&commands).await;
    let mut meta = Metadata::new(Actor::System);
    meta.command_id = CommandId::from_idempotency_key(&Actor::System, "add-alice");
    let add = C::AddMember {
        user_id: UserId::from_uuid(Uuid::from_u128(7)),
    };
    let first = commands
        .execute::<Organization>(&org, Request::system(add.clone()), &meta)
        .await
        .expect("first");
    // The repeat would be refused by the domain (already a member) if it were handled again.
    let again = commands
        .execute::<Organization>(&org, Request::system(add), &meta)
        .await
        .expect("repeat answers with the first receipt");
    assert_eq!(again.events, first.events);
    assert!(again.replayed && !first.replayed);
    assert_eq!(sequences(&db, &org).await, vec![1, 2]);

    // The same key on another aggregate is refused and appends nothing.
    let other = create_org(&commands).await;
    let reused = commands
        .execute::<Organization>(
            &other,
            Request::system(C::Rename {
                name: Name::parse("name", "B").expect("name"),
            }),
            &meta,
        )
        .await;
    assert!(
        matches!(reused, Err(CommandError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    assert_eq!(sequences(&db, &other).await, vec![1]);
}

#[tokio::test]
async fn a_refusal_on_stale_cached_state_is_rechecked() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let org = create_org(&a).await; // node A now caches the organization
    let user = UserId::from_uuid(Uuid::new_v4());
    b.execute::<Organization>(
        &org,
        Request::system(C::AddMember { user_id: user }),
        &Metadata::new(Actor::System),
    )
    .await
    .expect("added on node B");
    // Node A's cache says the user is not a member; the fresh state says they are.
    a.execute::<Organization>(
        &org,
        Request::system(C::RemoveMember { user_id: user }),
        &Metadata::new(Actor::System),
    )
    .await
    .expect("removed on node A");
    let refused = a
        .execute::<Organization>(
            &org,
            Request::system(C::RemoveMember { user_id: user }),
            &Metadata::new(Actor::System),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(OrganizationError::NotMember(_)))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn metadata_is_stored_on_every_event() {
    let db = TestDb::new().await;
    let commands = node(&db).await;
    let org = create_org(&commands).await;
    let mut meta = Metadata::new(Actor::System).in_org(&org);
    meta.request_id = Some("req-1".into());
    meta.user_agent = Some("test".into());
    commands
        .execute::<Organization>(
            &org,
            Request::system(C::AddMember {
                user_id: UserId::from_uuid(Uuid::new_v4()),
            }),
            &meta,
        )
        .await
        .expect("add");
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1 AND sequence = 2")
            .bind(&org)
            .fetch_one(&db.pool(1).await)
            .await
            .expect("row");
    assert_eq!(stored["actor"], "system");
    assert_eq!(stored["org_id"], org.as_str());
    assert_eq!(stored["request_id"], "req-1");
    assert_eq!(stored["command_id"], meta.command_id.id().to_string());
}

#[tokio::test]
async fn a_command_id_reused_for_a_different_command_is_refused() {
    let db = TestDb::new().await;
    let commands = node(&db).await;
    let org = create_org(&commands).await;
    let meta = Metadata::new(Actor::System);
    let add = |n: u128| {
        Request::system(C::AddMember {
            user_id: UserId::from_uuid(Uuid::from_u128(n)),
        })
    };
    commands
        .execute::<Organization>(&org, add(1), &meta)
        .await
        .expect("first");
    let reused = commands.execute::<Organization>(&org, add(2), &meta).await;
    assert!(
        matches!(reused, Err(CommandError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    assert_eq!(sequences(&db, &org).await, vec![1, 2]);
}
