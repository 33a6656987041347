//! The projection runner against the real PostgreSQL, with the identity projection.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use commands::identity::Identity;
use commands::{Actor, Commands, Metadata};
use domain::{Email, Name, Scope};
use eventstore::testing::TestDb;
use eventstore::vault::Vault;
use eventstore::{Cursor, RecordedEvent, Store, StoreOptions};
use projections::progress::wait_for;
use projections::read_models::identity::{IdentityProjection, NAME};
use projections::runner::{ProjectionError, Runner, RunnerOptions};
use projections::Projection;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every identity table, as sorted text rows.
async fn tables(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["accounts", "sessions", "api_keys"] {
        let mut these: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .expect("read table");
        these.sort();
        rows.push(format!("{table}: {}", these.join("\n")));
    }
    rows
}

fn runner<P: Projection>(store: &Store, projection: P) -> Runner<P> {
    Runner::new(
        store.clone(),
        projection,
        RunnerOptions {
            batch: 3, // small batches, so the run spans many transactions
            poll: Duration::from_millis(100),
            ..RunnerOptions::default()
        },
    )
}

/// Stops runners (cancels `stop`) and waits until each has returned.
async fn stop_all(stop: &CancellationToken, runners: Vec<JoinHandle<()>>) {
    stop.cancel();
    for runner in runners {
        tokio::time::timeout(Duration::from_secs(20), runner)
            .await
            .expect("the runner stops in time")
            .expect("the runner does not panic");
    }
}

/// The identity projection, counting what it applies: in a table, how many times each event
/// was applied and committed (a second application, by either runner, shows as 2); in memory,
/// the most batches ever being applied at the same moment (two runners at once show as 2).
#[derive(Clone, Default)]
struct Counted {
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Counted {
    async fn create_table(pool: &PgPool) {
        sqlx::query("CREATE TABLE test_applied (event_id uuid PRIMARY KEY, times int NOT NULL)")
            .execute(pool)
            .await
            .expect("create test_applied");
    }
}

impl Projection for Counted {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        IdentityProjection.tables()
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let result = async {
            IdentityProjection.apply_batch(&mut *conn, events).await?;
            for event in events {
                sqlx::query(
                    "INSERT INTO test_applied (event_id, times) VALUES ($1, 1)
                     ON CONFLICT (event_id) DO UPDATE SET times = test_applied.times + 1",
                )
                .bind(event.event_id)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }
        .await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Signs people in, issues and revokes keys and sessions, erases one: a bit of everything.
async fn activity(identity: &Identity) -> Cursor {
    let meta = || Metadata::new(Actor::System);
    let mut last = Cursor::START;
    for n in 0..3 {
        let email = Email::parse(&format!("p{n}@example.com")).expect("email");
        let link = identity
            .request_magic_link(&email, &meta())
            .await
            .expect("link");
        let (user, secret) = link.token.split_once('.').expect("token");
        let signed = identity
            .consume_magic_link(&format!("{user}.{secret}"), &meta())
            .await
            .expect("sign in");
        let key = identity
            .issue_api_key(
                signed.user_id,
                Name::parse("name", "ci").expect("name"),
                BTreeSet::from([Scope::EventsRead]),
                &meta(),
            )
            .await
            .expect("key");
        last = key.receipt.cursor.expect("cursor");
        if n == 1 {
            identity
                .revoke_session(signed.user_id, signed.session_id, &meta())
                .await
                .expect("revoke");
        }
        if n == 2 {
            last = identity
                .erase(signed.user_id, &meta())
                .await
                .expect("erase")
                .cursor
                .expect("cursor");
        }
    }
    last
}

#[tokio::test]
async fn a_rebuild_from_zero_equals_the_incremental_run_and_replays_change_nothing() {
    let db = TestDb::new().await;
    let pool = db.pool(8).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let identity = Identity::new(
        Commands::new(store.clone()),
        Vault::new(pool.clone(), [7; 32]),
    );

    // Incremental: two runners compete; only one applies at a time, and each event is
    // applied (and committed) once.
    Counted::create_table(&pool).await;
    let counted = Counted::default();
    let stop = CancellationToken::new();
    let runners = (0..2)
        .map(|_| tokio::spawn(runner(&store, counted.clone()).run(stop.clone())))
        .collect();
    let last = activity(&identity).await;
    assert!(wait_for(&pool, NAME, last, Duration::from_secs(20), None)
        .await
        .expect("wait"));
    let incremental = tables(&pool).await;
    assert!(incremental[0].lines().count() >= 3, "{incremental:?}");
    stop_all(&stop, runners).await;
    let stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM events ORDER BY event_id")
            .fetch_all(&pool)
            .await
            .expect("events");
    let applied: Vec<(uuid::Uuid, i32)> =
        sqlx::query_as("SELECT event_id, times FROM test_applied ORDER BY event_id")
            .fetch_all(&pool)
            .await
            .expect("test_applied");
    assert!(!stored.is_empty(), "the activity stored events");
    assert_eq!(
        applied.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        stored,
        "every stored event was applied"
    );
    let twice: Vec<_> = applied.iter().filter(|(_, times)| *times != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    assert_eq!(
        counted.peak.load(Ordering::SeqCst),
        1,
        "two batches were applied at the same time"
    );

    // Applying every event again, on top, changes nothing.
    let events = store.tail(Cursor::START, 10_000).await.expect("tail");
    let mut tx = pool.begin().await.expect("begin");
    for event in &events {
        IdentityProjection
            .apply(&mut tx, event)
            .await
            .expect("apply");
    }
    tx.commit().await.expect("commit");
    assert_eq!(tables(&pool).await, incremental);

    // Rebuild: empty tables, checkpoint at zero, one fresh runner.
    sqlx::query("TRUNCATE accounts, sessions, api_keys")
        .execute(&pool)
        .await
        .expect("truncate");
    sqlx::query(
        "UPDATE projection_checkpoints SET last_xid = '0', last_position = 0 WHERE name = $1",
    )
    .bind(NAME)
    .execute(&pool)
    .await
    .expect("reset");
    let stop = CancellationToken::new();
    let rebuild = tokio::spawn(runner(&store, IdentityProjection).run(stop.clone()));
    assert!(wait_for(&pool, NAME, last, Duration::from_secs(20), None)
        .await
        .expect("wait"));
    assert_eq!(tables(&pool).await, incremental);
    stop_all(&stop, vec![rebuild]).await;
}

#[tokio::test]
async fn memberships_replay_equals_the_incremental_read_model() {
    use domain::organization::{Organization, OrganizationCommand as C};
    use domain::{OrgId, Request, TeamId, UserId};

    let db = TestDb::new().await;
    let pool = db.pool(8).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let commands = Commands::new(store.clone());
    let stop = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let progress = projections::registry::spawn_all(&store, &stop, &tasks).progress;
    assert!(progress.contains_key(projections::read_models::memberships::NAME));

    let founder = UserId::from_uuid(uuid::Uuid::now_v7());
    let member = UserId::from_uuid(uuid::Uuid::now_v7());
    let org = OrgId::from_uuid(uuid::Uuid::now_v7());
    let team = TeamId::from_uuid(uuid::Uuid::now_v7());
    let other = UserId::from_uuid(uuid::Uuid::now_v7());
    let doomed = TeamId::from_uuid(uuid::Uuid::now_v7());
    let id = org.to_string();
    let mut last = Cursor::START;
    for command in [
        C::Create {
            org_id: org,
            name: Name::parse("name", "Acme").expect("name"),
            admin_team: TeamId::from_uuid(uuid::Uuid::now_v7()),
        },
        C::AddMember { user_id: member },
        C::CreateTeam {
            team_id: team,
            name: Name::parse("name", "Core").expect("name"),
        },
        C::SetTeamPermissions {
            team_id: team,
            permissions: [domain::Permission::EditTasks].into(),
        },
        C::AddTeamMember {
            team_id: team,
            user_id: member,
        },
        // Then the churn that a batch fold must get right: a member leaves (and so every
        // team), rejoins, a team is renamed and deleted with members in it, the org renamed.
        C::AddMember { user_id: other },
        C::CreateTeam {
            team_id: doomed,
            name: Name::parse("name", "Doomed").expect("name"),
        },
        C::AddTeamMember {
            team_id: doomed,
            user_id: other,
        },
        C::AddTeamMember {
            team_id: team,
            user_id: other,
        },
        C::RemoveMember { user_id: other },
        C::AddMember { user_id: other },
        C::AddTeamMember {
            team_id: doomed,
            user_id: other,
        },
        C::RenameTeam {
            team_id: doomed,
            name: Name::parse("name", "Still doomed").expect("name"),
        },
        C::DeleteTeam { team_id: doomed },
        C::RemoveTeamMember {
            team_id: team,
            user_id: member,
        },
        C::AddTeamMember {
            team_id: team,
            user_id: member,
        },
        C::Rename {
            name: Name::parse("name", "Acme Two").expect("name"),
        },
    ] {
        let receipt = commands
            .execute::<Organization>(
                &id,
                Request::by_user(founder, command),
                &Metadata::new(Actor::User(founder)),
            )
            .await
            .expect("command");
        last = receipt.cursor.unwrap_or(last);
    }
    let name = projections::read_models::memberships::NAME;
    assert!(wait_for(&pool, name, last, Duration::from_secs(20), None)
        .await
        .expect("wait"));
    let read = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let mut rows: Vec<String> = sqlx::query_scalar(sql)
                .fetch_all(&pool)
                .await
                .expect("read");
            rows.sort();
            rows
        }
    };
    let snapshot = || async {
        (
            read("SELECT t::text FROM organizations t").await,
            read("SELECT t::text FROM org_members t").await,
            read("SELECT t::text FROM org_teams t").await,
            read("SELECT t::text FROM org_team_members t").await,
            read("SELECT t::text FROM effective_permissions t").await,
        )
    };
    let incremental = snapshot().await;
    assert_eq!(incremental.1.len(), 3, "founder, member, other");
    assert_eq!(
        incremental.2.len(),
        3,
        "administrators, members and core; doomed is gone"
    );
    assert!(incremental.0[0].contains("Acme Two"));
    assert!(projections::read_models::memberships::allows(
        &pool,
        org.as_uuid(),
        member.as_uuid(),
        domain::Permission::EditTasks
    )
    .await
    .expect("allows"));
    assert!(!projections::read_models::memberships::allows(
        &pool,
        org.as_uuid(),
        member.as_uuid(),
        domain::Permission::DeleteTasks
    )
    .await
    .expect("allows"));
    assert!(projections::read_models::memberships::allows(
        &pool,
        org.as_uuid(),
        founder.as_uuid(),
        domain::Permission::DeleteTasks
    )
    .await
    .expect("admin implies all"));

    let mut reports = 0;
    projections::registry::replay(&store, name, |_, _, _| reports += 1)
        .await
        .expect("replay");
    assert!(reports >= 1, "progress was shown");
    assert_eq!(snapshot().await, incremental);
    let unknown = projections::registry::replay(&store, "nope", |_, _, _| {}).await;

    // Event by event, all in one folded batch, and that batch applied twice: the same tables.
    stop.cancel();
    let projection = projections::read_models::memberships::MembershipsProjection;
    let events = store.tail(Cursor::START, 1000).await.expect("tail");
    projections::runner::reset(&pool, &projection)
        .await
        .expect("reset");
    let mut tx = pool.begin().await.expect("begin");
    for event in &events {
        projection.apply(&mut tx, event).await.expect("apply");
    }
    tx.commit().await.expect("commit");
    assert_eq!(snapshot().await, incremental, "event by event");
    projections::runner::reset(&pool, &projection)
        .await
        .expect("reset");
    for _ in 0..2 {
        let mut tx = pool.begin().await.expect("begin");
        projection
            .apply_batch(&mut tx, &events)
            .await
            .expect("fold");
        tx.commit().await.expect("commit");
        assert_eq!(snapshot().await, incremental, "folded batch");
    }
    assert!(unknown.is_err());
    stop.cancel();
}

#[tokio::test]
async fn the_board_survives_a_killed_runner_and_rebuilds_to_the_same_tables() {
    use domain::label::{Color, Label, TagCommand, TagRequest};
    use domain::task::{NewTask, Priority, Status, Task, TaskCommand, TaskEdit, TaskRequest};
    use domain::{CommentId, Grant, LabelId, OrgId, TaskId, Text};
    use projections::read_models::board::BoardProjection;

    let db = TestDb::new().await;
    let pool = db.pool(8).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let commands = Commands::new(store.clone());
    let org = OrgId::from_uuid(uuid::Uuid::now_v7());
    let grant = Grant::system(org);
    let meta = || Metadata::new(Actor::System);
    let label = LabelId::from_uuid(uuid::Uuid::now_v7());
    commands
        .execute::<Label>(
            &label.to_string(),
            TagRequest {
                grant: grant.clone(),
                command: TagCommand::Create {
                    org_id: org,
                    name: Name::parse("name", "bug").expect("name"),
                    color: Color::parse("#ff0000").expect("color"),
                },
            },
            &meta(),
        )
        .await
        .expect("label");
    let text = |s: &str| Text::parse("t", s, 100, true).expect("text");
    let mut last = Cursor::START;
    for n in 0..30 {
        let task = TaskId::from_uuid(uuid::Uuid::now_v7());
        let id = task.to_string();
        let run = |command: TaskCommand| {
            let commands = commands.clone();
            let id = id.clone();
            // Everything the commands name exists (the label was created above).
            let request = TaskRequest {
                grant: grant.clone(),
                known: command.references(),
                command,
            };
            async move {
                commands
                    .execute::<Task>(&id, request, &Metadata::new(Actor::System))
                    .await
            }
        };
        run(TaskCommand::Create(Box::new(NewTask {
            org_id: org,
            title: text(&format!("task {n}")),
            description: text(""),
            status: Status::Todo,
            priority: Priority::None,
            category_id: None,
            labels: BTreeSet::new(),
            assignees: BTreeSet::new(),
        })))
        .await
        .expect("create");
        run(TaskCommand::Edit(TaskEdit {
            status: Some(Status::Done),
            ..TaskEdit::default()
        }))
        .await
        .expect("edit");
        run(TaskCommand::AddLabel { label_id: label })
            .await
            .expect("label");
        for c in 0..2 {
            run(TaskCommand::AddComment {
                comment_id: CommentId::from_uuid(uuid::Uuid::now_v7()),
                body: text(&format!("comment {c}")),
            })
            .await
            .expect("comment");
        }
        let receipt = if n % 5 == 0 {
            run(TaskCommand::Delete).await.expect("delete")
        } else {
            run(TaskCommand::RemoveLabel { label_id: label })
                .await
                .expect("unlabel")
        };
        last = receipt.cursor.expect("cursor");
    }

    let tables = || async {
        let mut out = Vec::new();
        for table in ["labels", "board_tasks", "task_comments"] {
            let mut rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                    .fetch_all(&pool)
                    .await
                    .expect("read");
            rows.sort();
            out.push(rows);
        }
        out
    };
    let name = projections::read_models::board::NAME;
    let board_runner = |batch| {
        Runner::new(
            store.clone(),
            BoardProjection,
            RunnerOptions {
                batch,
                poll: Duration::from_millis(50),
                ..RunnerOptions::default()
            },
        )
    };

    // Incremental.
    let stop = CancellationToken::new();
    let incremental_runner = tokio::spawn(board_runner(500).run(stop.clone()));
    assert!(wait_for(&pool, name, last, Duration::from_secs(30), None)
        .await
        .expect("wait"));
    stop_all(&stop, vec![incremental_runner]).await;
    let incremental = tables().await;
    assert_eq!(incremental[1].len(), 30);
    let comment_counts: Vec<i32> = sqlx::query_scalar("SELECT comment_count FROM board_tasks")
        .fetch_all(&pool)
        .await
        .expect("comment counts");
    assert_eq!(comment_counts, [2; 30], "two comments each");

    // Rebuild, killing the runner part-way: in its third batch, after applying it and before
    // its commit, with two batches committed. Then resume.
    projections::runner::reset(&pool, &BoardProjection)
        .await
        .expect("reset");
    let stalled = Arc::new(tokio::sync::Notify::new());
    let stalling = Stalling {
        batches: AtomicUsize::new(0),
        stall_at: 3,
        stalled: stalled.clone(),
    };
    let killed = tokio::spawn(
        Runner::new(
            store.clone(),
            stalling,
            RunnerOptions {
                batch: 7,
                poll: Duration::from_millis(50),
                ..RunnerOptions::default()
            },
        )
        .run(CancellationToken::new()),
    );
    tokio::time::timeout(Duration::from_secs(30), stalled.notified())
        .await
        .expect("the runner reached its third batch");
    killed.abort();
    let _ = killed.await;
    let part = projections::checkpoint::load(&pool, name)
        .await
        .expect("checkpoint");
    assert!(part > Cursor::START, "two batches were committed");
    assert!(part < last, "killed before the end");
    let stop = CancellationToken::new();
    let resumed = tokio::spawn(board_runner(7).run(stop.clone()));
    assert!(wait_for(&pool, name, last, Duration::from_secs(30), None)
        .await
        .expect("wait"));
    stop_all(&stop, vec![resumed]).await;
    assert_eq!(tables().await, incremental, "nothing lost, nothing doubled");

    // Built strictly event by event, the tables equal the batch-folded ones.
    projections::runner::reset(&pool, &BoardProjection)
        .await
        .expect("reset");
    let events = store.tail(Cursor::START, 100_000).await.expect("tail");
    let mut tx = pool.begin().await.expect("begin");
    for event in &events {
        BoardProjection.apply(&mut tx, event).await.expect("apply");
    }
    tx.commit().await.expect("commit");
    assert_eq!(tables().await, incremental, "event by event equals folded");

    // Applying every event once more, folded, changes nothing.
    let mut tx = pool.begin().await.expect("begin");
    BoardProjection
        .apply_batch(&mut tx, &events)
        .await
        .expect("fold");
    tx.commit().await.expect("commit");
    assert_eq!(tables().await, incremental);
    let mut tx = pool.begin().await.expect("begin");
    for event in &events {
        BoardProjection.apply(&mut tx, event).await.expect("apply");
    }
    tx.commit().await.expect("commit");
    assert_eq!(tables().await, incremental);
}

/// The board projection, stopping for good in the middle of its `stall_at`-th batch (applied,
/// not committed) and saying so on `stalled`: a runner aborted then dies mid-transaction, at a
/// known point, whatever the machine's speed.
struct Stalling {
    batches: AtomicUsize,
    stall_at: usize,
    stalled: Arc<tokio::sync::Notify>,
}

impl Projection for Stalling {
    fn name(&self) -> &'static str {
        projections::read_models::board::BoardProjection.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        projections::read_models::board::BoardProjection.tables()
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        projections::read_models::board::BoardProjection
            .apply_batch(&mut *conn, events)
            .await?;
        if self.batches.fetch_add(1, Ordering::SeqCst) + 1 == self.stall_at {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}
