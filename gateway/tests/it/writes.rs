//! Writes never wait on a read model they do not need (issue 13, item 4). A write reads the
//! caller's grant and what it names as the read models have them now; only a refusal that a
//! lagging read model may explain waits, for that read model, and is decided once more.
//!
//! The read models are held back the way a long transaction holds them: a transaction that
//! locks a projection's checkpoint row gets a transaction id, and every projection's tail
//! stops behind the oldest one in progress.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, Transaction};

use crate::support::{self, cursor_of, json_with, member_with, spawn_app, str_of, TestApp};

/// Starts holding every projection back (see the module's doc); roll the transaction back to
/// let them go.
async fn hold_back(app: &TestApp) -> (PgPool, Transaction<'static, Postgres>) {
    let pool = app.db.pool(1).await;
    let mut hold = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = 'identity' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .expect("lock the checkpoint");
    (pool, hold)
}

/// Makes `user` a member of `org`, in a new team holding `permissions`, as `founder`.
async fn join(
    app: &TestApp,
    org: &str,
    founder: &reqwest::Client,
    user: &str,
    permissions: &[&str],
) {
    let base = format!("/api/v1/orgs/{org}");
    let added = app
        .post_as(
            founder,
            &format!("{base}/members"),
            json!({ "user_id": user }),
        )
        .await;
    json_with(added, 200).await;
    let team = app
        .post_as(
            founder,
            &format!("{base}/teams"),
            json!({ "name": "Writers" }),
        )
        .await;
    let team = str_of(&json_with(team, 201).await, "id");
    let set = founder
        .put(app.url(&format!("{base}/teams/{team}/permissions")))
        .json(&json!({ "permissions": permissions }))
        .send()
        .await
        .expect("set permissions");
    json_with(set, 200).await;
    let joined = app
        .post_as(
            founder,
            &format!("{base}/teams/{team}/members"),
            json!({ "user_id": user }),
        )
        .await;
    json_with(joined, 200).await;
}

#[tokio::test]
async fn writes_go_through_while_every_read_model_is_held_back() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice@example.com").await;
    let org = app.create_org_as(&alice, "Acme").await;
    let base = format!("/api/v1/orgs/{org}");
    let (labels, categories) = (format!("{base}/labels"), format!("{base}/categories"));
    let tag = json!({"name": "bug", "color": "#ff0000"});
    let label = app.post_as(&alice, &labels, tag.clone()).await;
    let label = str_of(&json_with(label, 201).await, "id");
    let category = app.post_as(&alice, &categories, tag.clone()).await;
    let category = str_of(&json_with(category, 201).await, "id");
    let (bob, _) = member_with(
        &app,
        &org,
        &alice,
        &["tasks.create", "tasks.edit", "tasks.assign"],
    )
    .await;
    let (_, carol) = member_with(&app, &org, &alice, &[]).await;
    let task =
        json!({"title": "T", "labels": [label], "category_id": category, "assignees": [carol]});
    // The read models have all of the above once they have the first task.
    let first = app
        .post_as(&bob, &format!("{base}/tasks"), task.clone())
        .await;
    let cursor = cursor_of(&first);
    let first = str_of(&json_with(first, 201).await, "id");
    let seen = bob
        .get(app.url(&format!("{base}/tasks/{first}?after={cursor}")))
        .send()
        .await
        .expect("read");
    json_with(seen, 200).await;

    let (pool, hold) = hold_back(&app).await;
    // Each of these commits puts the read models further behind this node's commits, which
    // writes used to wait for (503 after 5 s).
    for i in 0..3 {
        let created = app
            .post_as(&bob, &format!("{base}/tasks"), task.clone())
            .await;
        json_with(created, 201).await;
        let edited = bob
            .patch(app.url(&format!("{base}/tasks/{first}")))
            .json(&json!({"title": format!("T{i}"), "category_id": category}))
            .send()
            .await
            .expect("edit");
        json_with(edited, 200).await;
    }
    let bare = app
        .post_as(&bob, &format!("{base}/tasks"), json!({"title": "bare"}))
        .await;
    let bare = str_of(&json_with(bare, 201).await, "id");
    let labeled = app
        .post_as(
            &bob,
            &format!("{base}/tasks/{bare}/labels"),
            json!({ "label_id": label }),
        )
        .await;
    json_with(labeled, 200).await;
    let assigned = app
        .post_as(
            &bob,
            &format!("{base}/tasks/{bare}/assignees"),
            json!({ "user_id": carol }),
        )
        .await;
    json_with(assigned, 200).await;
    // Labels look up a grant too; organization commands look up nothing.
    json_with(app.post_as(&alice, &labels, tag).await, 201).await;
    let renamed = alice
        .patch(app.url(&base))
        .json(&json!({"name": "Acme Two"}))
        .send()
        .await
        .expect("rename");
    json_with(renamed, 200).await;
    let team = app
        .post_as(&alice, &format!("{base}/teams"), json!({"name": "Later"}))
        .await;
    json_with(team, 201).await;
    hold.rollback().await.expect("release");
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_on_a_lagging_grant_waits_for_memberships_and_is_decided_again() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice@example.com").await;
    let org = app.create_org_as(&alice, "Acme").await;
    let bob = app.sign_in("bob@example.com").await;
    let bob_id = support::user_id_of(&app, &bob).await;

    let (pool, hold) = hold_back(&app).await;
    // Bob becomes a member who may create tasks, which memberships cannot apply yet.
    join(&app, &org, &alice, &bob_id, &["tasks.create"]).await;
    let url = app.url(&format!("/api/v1/orgs/{org}/tasks"));
    let mut created = Box::pin(bob.post(&url).json(&json!({"title": "mine"})).send());
    // Refused on the grant memberships has (none), it waits for memberships to include this
    // node's commits instead of answering 404.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut created)
            .await
            .is_err(),
        "the write waits for the read model its refusal rests on"
    );
    hold.rollback().await.expect("release");
    let created = created.await.expect("create");
    let body: Value = json_with(created, 201).await;
    assert!(body["id"].is_string(), "{body}");
    pool.close().await;
    app.stop().await;
}
