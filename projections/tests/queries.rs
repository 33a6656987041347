//! The read models' typed queries against the real PostgreSQL: what the API lists and what the
//! command side looks up (a grant, live labels and categories, members), over tables built by
//! the `memberships` and `board` projections from real commands' events.

use std::collections::BTreeSet;

use commands::{Actor, Commands, Metadata};
use domain::label::{Category, Color, Label, TagCommand, TagRequest};
use domain::organization::{Organization, OrganizationCommand as C};
use domain::task::{NewTask, Priority, Status, Task, TaskCommand, TaskRequest};
use domain::{
    CategoryId, CommentId, Grant, LabelId, Name, OrgId, Permission, Request, TaskId, TeamId, Text,
    UserId,
};
use eventstore::testing::TestDb;
use eventstore::{Cursor, Store, StoreOptions};
use projections::read_models::board::{self, BoardProjection, TaskFilter};
use projections::read_models::memberships::{self, MembershipsProjection, Standing};
use projections::Projection;
use uuid::Uuid;

fn id() -> Uuid {
    Uuid::now_v7()
}

fn name(s: &str) -> Name {
    Name::parse("name", s).expect("name")
}

fn text(s: &str) -> Text {
    Text::parse("text", s, 200, true).expect("text")
}

/// Which kind of tag.
#[derive(Clone, Copy)]
enum Kind {
    Label,
    Category,
}

/// Commands by the system (which needs no grant), on one store.
struct World {
    commands: Commands,
}

impl World {
    async fn org(&self, org: OrgId, by: UserId, commands: Vec<C>) {
        for command in commands {
            self.commands
                .execute::<Organization>(
                    &org.to_string(),
                    Request::by_user(by, command),
                    &Metadata::new(Actor::User(by)),
                )
                .await
                .expect("organization command");
        }
    }

    async fn tag(&self, kind: Kind, org: OrgId, id: Uuid, command: TagCommand) {
        let request = TagRequest {
            grant: Grant::system(org),
            command,
        };
        let (id, meta) = (id.to_string(), Metadata::new(Actor::System));
        match kind {
            Kind::Label => self.commands.execute::<Label>(&id, request, &meta).await,
            Kind::Category => self.commands.execute::<Category>(&id, request, &meta).await,
        }
        .expect("tag command");
    }

    async fn task(&self, org: OrgId, task: TaskId, command: TaskCommand) {
        let request = TaskRequest {
            grant: Grant::system(org),
            known: command.references(),
            command,
        };
        self.commands
            .execute::<Task>(&task.to_string(), request, &Metadata::new(Actor::System))
            .await
            .expect("task command");
    }
}

fn new_task(org: OrgId, title: &str, status: Status) -> NewTask {
    NewTask {
        org_id: org,
        title: text(title),
        description: text(""),
        status,
        priority: Priority::None,
        category_id: None,
        labels: BTreeSet::new(),
        assignees: BTreeSet::new(),
    }
}

#[tokio::test]
async fn the_board_and_memberships_queries_answer_from_their_tables() {
    let db = TestDb::new().await;
    let pool = db.pool(4).await;
    let store = Store::new(pool.clone(), StoreOptions::default());
    let world = World {
        commands: Commands::new(store.clone()),
    };

    let (founder, alice, bob, stranger) = (
        UserId::from_uuid(id()),
        UserId::from_uuid(id()),
        UserId::from_uuid(id()),
        UserId::from_uuid(id()),
    );
    let (acme, other) = (OrgId::from_uuid(id()), OrgId::from_uuid(id()));
    let (admins, writers) = (TeamId::from_uuid(id()), TeamId::from_uuid(id()));
    world
        .org(
            acme,
            founder,
            vec![
                C::Create {
                    org_id: acme,
                    name: name("Acme"),
                    admin_team: admins,
                },
                // Members hold only what their teams here give them.
                C::SetDefaultTeam { team_id: None },
                C::AddMember { user_id: alice },
                C::CreateTeam {
                    team_id: writers,
                    name: name("Writers"),
                },
                C::SetTeamPermissions {
                    team_id: writers,
                    permissions: [Permission::EditTasks, Permission::CreateTasks].into(),
                },
                C::AddTeamMember {
                    team_id: writers,
                    user_id: alice,
                },
                C::AddMember { user_id: bob },
            ],
        )
        .await;
    world
        .org(
            other,
            founder,
            vec![C::Create {
                org_id: other,
                name: name("Other"),
                admin_team: TeamId::from_uuid(id()),
            }],
        )
        .await;

    let color = Color::parse("#123456").expect("color");
    let create = |org, tag: &str| TagCommand::Create {
        org_id: org,
        name: name(tag),
        color: color.clone(),
    };
    let (bug, feature, gone, foreign) = (id(), id(), id(), id());
    world
        .tag(Kind::Label, acme, feature, create(acme, "feature"))
        .await;
    world.tag(Kind::Label, acme, bug, create(acme, "bug")).await;
    world
        .tag(Kind::Label, acme, gone, create(acme, "gone"))
        .await;
    world.tag(Kind::Label, acme, gone, TagCommand::Delete).await;
    world
        .tag(Kind::Label, other, foreign, create(other, "bug"))
        .await;
    let (backend, old) = (id(), id());
    world
        .tag(Kind::Category, acme, backend, create(acme, "Backend"))
        .await;
    world
        .tag(Kind::Category, acme, old, create(acme, "Old"))
        .await;
    world
        .tag(Kind::Category, acme, old, TagCommand::Delete)
        .await;

    let (t1, t2, t3, t4) = (
        TaskId::from_uuid(id()),
        TaskId::from_uuid(id()),
        TaskId::from_uuid(id()),
        TaskId::from_uuid(id()),
    );
    let mut first = new_task(acme, "First", Status::Todo);
    first.labels = [LabelId::from_uuid(bug)].into();
    first.assignees = [alice].into();
    first.category_id = Some(CategoryId::from_uuid(backend));
    world
        .task(acme, t1, TaskCommand::Create(Box::new(first)))
        .await;
    let second = new_task(acme, "Second", Status::Done);
    world
        .task(acme, t2, TaskCommand::Create(Box::new(second)))
        .await;
    let third = new_task(acme, "Third", Status::Todo);
    world
        .task(acme, t3, TaskCommand::Create(Box::new(third)))
        .await;
    world.task(acme, t3, TaskCommand::Delete).await;
    let elsewhere = new_task(other, "Elsewhere", Status::Todo);
    world
        .task(other, t4, TaskCommand::Create(Box::new(elsewhere)))
        .await;
    let (c1, c2, c3) = (
        CommentId::from_uuid(id()),
        CommentId::from_uuid(id()),
        CommentId::from_uuid(id()),
    );
    for (comment, body) in [(c1, "one"), (c2, "two"), (c3, "three")] {
        let add = TaskCommand::AddComment {
            comment_id: comment,
            body: text(body),
        };
        world.task(acme, t1, add).await;
    }
    world
        .task(acme, t1, TaskCommand::DeleteComment { comment_id: c2 })
        .await;

    // Both read models, built from every event.
    let events = store.tail(Cursor::START, 10_000).await.expect("tail");
    let mut tx = pool.begin().await.expect("begin");
    MembershipsProjection
        .apply_batch(&mut tx, &events)
        .await
        .expect("memberships");
    BoardProjection
        .apply_batch(&mut tx, &events)
        .await
        .expect("board");
    tx.commit().await.expect("commit");

    // A grant's makings.
    let standing = |org, user| memberships::standing(&pool, org, user);
    assert_eq!(
        standing(acme, founder).await.expect("standing"),
        Standing {
            member: true,
            permissions: [Permission::Administrator].into()
        }
    );
    assert_eq!(
        standing(acme, alice).await.expect("standing"),
        Standing {
            member: true,
            permissions: [Permission::CreateTasks, Permission::EditTasks].into()
        }
    );
    assert_eq!(
        standing(acme, bob).await.expect("standing"),
        Standing {
            member: true,
            permissions: BTreeSet::new()
        }
    );
    assert_eq!(
        standing(acme, stranger).await.expect("standing"),
        Standing::default()
    );
    assert_eq!(
        standing(other, alice).await.expect("standing"),
        Standing::default()
    );
    let among = memberships::members_among(
        &pool,
        acme.as_uuid(),
        &[alice.as_uuid(), stranger.as_uuid()],
    )
    .await
    .expect("members among");
    assert_eq!(among, [alice.as_uuid()].into());

    // Members and teams, in order, by page.
    let members = memberships::members(&pool, acme, None, 10)
        .await
        .expect("members");
    let who: Vec<(Uuid, Vec<String>)> = members
        .iter()
        .map(|m| (m.user_id, m.permissions.clone()))
        .collect();
    assert_eq!(
        who,
        [
            (founder.as_uuid(), vec!["admin.administrator".to_owned()]),
            (
                alice.as_uuid(),
                vec!["tasks.create".to_owned(), "tasks.edit".to_owned()]
            ),
            (bob.as_uuid(), vec![]),
        ]
    );
    let after_first = Some((members[0].added_at, members[0].user_id));
    let rest = memberships::members(&pool, acme, after_first, 1)
        .await
        .expect("members page");
    assert_eq!(rest, members[1..2]);
    let teams = memberships::teams(&pool, acme, None, 10)
        .await
        .expect("teams");
    let shape: Vec<(Uuid, &str, Vec<Uuid>)> = teams
        .iter()
        .map(|t| (t.team_id, t.name.as_str(), t.members.clone()))
        .collect();
    assert_eq!(
        shape,
        [
            (admins.as_uuid(), "Administrators", vec![founder.as_uuid()]),
            // Every organization a person founds has one (not the default here).
            (
                domain::organization::members_team_of(acme).as_uuid(),
                "Members",
                vec![]
            ),
            (writers.as_uuid(), "Writers", vec![alice.as_uuid()]),
        ]
    );
    assert_eq!(teams[2].permissions, ["tasks.create", "tasks.edit"]);
    let later = memberships::teams(
        &pool,
        acme,
        Some((teams[0].created_at, teams[0].team_id)),
        10,
    )
    .await
    .expect("teams page");
    assert_eq!(later, teams[1..]);

    // Labels and categories: live ones of this organization, by name, by page.
    let labels = board::labels(&pool, acme, None, 10).await.expect("labels");
    let names: Vec<(Uuid, &str)> = labels.iter().map(|t| (t.id, t.name.as_str())).collect();
    assert_eq!(names, [(bug, "bug"), (feature, "feature")]);
    assert_eq!(labels[0].color, "#123456");
    let next = board::labels(&pool, acme, Some(("bug", bug)), 10)
        .await
        .expect("labels page");
    assert_eq!(next, labels[1..]);
    let categories = board::categories(&pool, acme, None, 10)
        .await
        .expect("categories");
    assert_eq!(
        categories.iter().map(|t| t.id).collect::<Vec<_>>(),
        [backend]
    );
    let asked: BTreeSet<LabelId> = [bug, gone, foreign, id()]
        .into_iter()
        .map(LabelId::from_uuid)
        .collect();
    assert_eq!(
        board::live_labels(&pool, acme, &asked)
            .await
            .expect("live labels"),
        [LabelId::from_uuid(bug)].into()
    );
    let asked: BTreeSet<CategoryId> = [backend, old]
        .into_iter()
        .map(CategoryId::from_uuid)
        .collect();
    assert_eq!(
        board::live_categories(&pool, acme, &asked)
            .await
            .expect("live categories"),
        [CategoryId::from_uuid(backend)].into()
    );

    // Tasks: live ones of this organization, in creation order, filtered, by page.
    let list = |filter: TaskFilter, after: i64| {
        let pool = pool.clone();
        async move {
            board::tasks(&pool, acme, &filter, after, 10)
                .await
                .expect("tasks")
                .into_iter()
                .map(|t| t.task_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(TaskFilter::default(), 0).await,
        [t1.as_uuid(), t2.as_uuid()]
    );
    for (label, filter) in [
        (
            "status",
            TaskFilter {
                status: Some(Status::Todo),
                ..TaskFilter::default()
            },
        ),
        (
            "label",
            TaskFilter {
                label: Some(LabelId::from_uuid(bug)),
                ..TaskFilter::default()
            },
        ),
        (
            "assignee",
            TaskFilter {
                assignee: Some(alice),
                ..TaskFilter::default()
            },
        ),
        (
            "category",
            TaskFilter {
                category: Some(CategoryId::from_uuid(backend)),
                ..TaskFilter::default()
            },
        ),
    ] {
        assert_eq!(list(filter, 0).await, [t1.as_uuid()], "{label}");
    }
    let one = board::task(&pool, acme, t1)
        .await
        .expect("task")
        .expect("t1 is live");
    assert_eq!(
        (
            one.org_id,
            one.title.as_str(),
            one.status.as_str(),
            one.priority.as_str()
        ),
        (acme.as_uuid(), "First", "todo", "none")
    );
    assert_eq!(one.labels, [bug]);
    assert_eq!(one.assignees, [alice.as_uuid()]);
    assert_eq!(one.category_id, Some(backend));
    assert_eq!(one.comment_count, 2);
    assert_eq!(
        list(TaskFilter::default(), one.created_position).await,
        [t2.as_uuid()]
    );
    assert_eq!(board::task(&pool, acme, t3).await.expect("task"), None);
    assert_eq!(board::task(&pool, other, t1).await.expect("task"), None);

    // Comments: live ones, oldest first, by page.
    let comments = board::comments(&pool, acme, t1, None, 10)
        .await
        .expect("comments");
    let said: Vec<(Uuid, &str)> = comments
        .iter()
        .map(|c| (c.comment_id, c.body.as_str()))
        .collect();
    assert_eq!(said, [(c1.as_uuid(), "one"), (c3.as_uuid(), "three")]);
    assert_eq!(comments[0].author, None, "by the system");
    let after = Some((comments[0].created_at, comments[0].comment_id));
    let later = board::comments(&pool, acme, t1, after, 10)
        .await
        .expect("comments page");
    assert_eq!(later, comments[1..]);
    assert!(board::comments(&pool, other, t1, None, 10)
        .await
        .expect("comments")
        .is_empty());
}
