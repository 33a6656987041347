//! Task boards over HTTP: the permission matrix, validation, filters, pages, comments and
//! read-your-writes.

use crate::support;

use serde_json::{json, Value};
use support::{error_code, spawn_app, TestApp};

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("json")
}

/// The `id` of a creation response (the whole body in the panic message otherwise).
fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

async fn post(app: &TestApp, c: &reqwest::Client, path: &str, body: Value) -> reqwest::Response {
    c.post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("post")
}

async fn me(app: &TestApp, c: &reqwest::Client) -> String {
    let me = json_of(c.get(app.url("/api/v1/me")).send().await.expect("me")).await;
    me["user_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn the_board_follows_team_permissions() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let carol = app.sign_in("carol@example.com").await;
    let bob_id = me(&app, &bob).await;
    let carol_id = me(&app, &carol).await;
    let org = app.create_org_as(&alice, "Acme").await;
    let base = format!("/api/v1/orgs/{org}");

    // Bob joins a team that may create and edit tasks, but not delete or assign them.
    assert_eq!(
        post(
            &app,
            &alice,
            &format!("{base}/members"),
            json!({"user_id": bob_id})
        )
        .await
        .status(),
        200
    );
    let team = json_of(
        post(
            &app,
            &alice,
            &format!("{base}/teams"),
            json!({"name": "Writers"}),
        )
        .await,
    )
    .await;
    let team = id_of(&team);
    let r = alice
        .put(app.url(&format!("{base}/teams/{team}/permissions")))
        .json(&json!({"permissions": ["tasks.create", "tasks.edit"]}))
        .send()
        .await
        .expect("perms");
    assert_eq!(r.status(), 200);
    assert_eq!(
        post(
            &app,
            &alice,
            &format!("{base}/teams/{team}/members"),
            json!({"user_id": bob_id})
        )
        .await
        .status(),
        200
    );

    // Labels and categories need their content permissions.
    let label = json_of(
        post(
            &app,
            &alice,
            &format!("{base}/labels"),
            json!({"name": "bug", "color": "#FF0000"}),
        )
        .await,
    )
    .await;
    let label = id_of(&label);
    let category = json_of(
        post(
            &app,
            &alice,
            &format!("{base}/categories"),
            json!({"name": "Backend", "color": "#00ff00"}),
        )
        .await,
    )
    .await;
    let category = id_of(&category);
    assert_eq!(
        error_code(
            post(
                &app,
                &bob,
                &format!("{base}/labels"),
                json!({"name": "x", "color": "#000000"})
            )
            .await,
            403
        )
        .await,
        "forbidden"
    );

    // Bob creates tasks; the references are checked.
    let created = post(
        &app,
        &bob,
        &format!("{base}/tasks"),
        json!({"title": "Fix login", "labels": [label], "category_id": category}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let cursor = created.headers()["cairn-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let task = json_of(created).await["id"]
        .as_str()
        .expect("task")
        .to_owned();
    let second = json_of(
        post(
            &app,
            &bob,
            &format!("{base}/tasks"),
            json!({"title": "Write docs", "status": "backlog"}),
        )
        .await,
    )
    .await;
    let second = id_of(&second);
    let bogus = uuid::Uuid::new_v4();
    assert_eq!(
        error_code(
            post(
                &app,
                &bob,
                &format!("{base}/tasks"),
                json!({"title": "x", "labels": [bogus]})
            )
            .await,
            422
        )
        .await,
        "unknown_label"
    );
    assert_eq!(
        error_code(
            post(
                &app,
                &bob,
                &format!("{base}/tasks"),
                json!({"title": "x", "category_id": bogus})
            )
            .await,
            422
        )
        .await,
        "unknown_category"
    );
    assert_eq!(
        error_code(
            post(
                &app,
                &alice,
                &format!("{base}/tasks"),
                json!({"title": "x", "assignees": [carol_id]})
            )
            .await,
            422
        )
        .await,
        "assignee_not_member"
    );
    assert_eq!(
        error_code(
            post(&app, &bob, &format!("{base}/tasks"), json!({"title": "  "})).await,
            422
        )
        .await,
        "validation_failed"
    );
    assert_eq!(
        error_code(
            post(
                &app,
                &bob,
                &format!("{base}/tasks"),
                json!({"title": "x", "status": "flying"})
            )
            .await,
            400
        )
        .await,
        "invalid_body"
    );

    // Read your writes: after the cursor, the board shows the task.
    let board = json_of(
        bob.get(app.url(&format!("{base}/tasks?after={cursor}")))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(board["tasks"][0]["title"], "Fix login");
    assert_eq!(board["tasks"][0]["labels"], json!([label]));
    assert_eq!(board["tasks"][0]["category_id"], category.as_str());

    // Edit (allowed), assign and delete (not Bob's).
    let r = bob
        .patch(app.url(&format!("{base}/tasks/{task}")))
        .json(&json!({"status": "in_progress", "category_id": null}))
        .send()
        .await
        .expect("edit");
    assert_eq!(r.status(), 200);
    assert_eq!(
        error_code(
            post(
                &app,
                &bob,
                &format!("{base}/tasks/{task}/assignees"),
                json!({"user_id": bob_id})
            )
            .await,
            403
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        error_code(
            bob.delete(app.url(&format!("{base}/tasks/{second}")))
                .send()
                .await
                .expect("delete"),
            403
        )
        .await,
        "forbidden"
    );
    let assigned = post(
        &app,
        &alice,
        &format!("{base}/tasks/{task}/assignees"),
        json!({"user_id": bob_id}),
    )
    .await;
    assert_eq!(assigned.status(), 200);
    let deleted = alice
        .delete(app.url(&format!("{base}/tasks/{second}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    let cursor = deleted.headers()["cairn-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned();

    // Filters.
    let list = |query: String| {
        let bob = bob.clone();
        let url = app.url(&format!("{base}/tasks?after={cursor}&{query}"));
        async move { json_of(bob.get(url).send().await.expect("list")).await }
    };
    assert_eq!(
        list("status=in_progress".into()).await["tasks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        list("status=backlog".into()).await["tasks"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "deleted tasks are gone"
    );
    assert_eq!(
        list(format!("assignee={bob_id}")).await["tasks"][0]["id"],
        task.as_str()
    );
    assert_eq!(
        list(format!("label={label}")).await["tasks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        list(format!("category={category}")).await["tasks"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // Comments: any member; only the author (or an administrator) changes one.
    let comment = post(
        &app,
        &bob,
        &format!("{base}/tasks/{task}/comments"),
        json!({"body": "on it"}),
    )
    .await;
    assert_eq!(comment.status(), 201);
    let cursor = comment.headers()["cairn-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let comment = json_of(comment).await["id"]
        .as_str()
        .expect("comment")
        .to_owned();
    let one = json_of(
        bob.get(app.url(&format!("{base}/tasks/{task}?after={cursor}")))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(one["comment_count"], 1);
    let comments = json_of(
        bob.get(app.url(&format!("{base}/tasks/{task}/comments")))
            .send()
            .await
            .expect("comments"),
    )
    .await;
    assert_eq!(comments["comments"][0]["body"], "on it");
    let r = alice
        .patch(app.url(&format!("{base}/tasks/{task}/comments/{comment}")))
        .json(&json!({"body": "edited by an admin"}))
        .send()
        .await
        .expect("edit");
    assert_eq!(r.status(), 200);

    // A non-member sees nothing of the organization.
    assert_eq!(
        error_code(
            carol
                .get(app.url(&format!("{base}/tasks")))
                .send()
                .await
                .expect("list"),
            404
        )
        .await,
        "organization_not_found"
    );
    assert_eq!(
        error_code(
            post(
                &app,
                &carol,
                &format!("{base}/tasks"),
                json!({"title": "x"})
            )
            .await,
            404
        )
        .await,
        "organization_not_found"
    );
    assert_eq!(
        error_code(
            carol
                .get(app.url(&format!("{base}/members")))
                .send()
                .await
                .expect("members"),
            404
        )
        .await,
        "organization_not_found"
    );

    // Members and teams read models.
    let members = json_of(
        alice
            .get(app.url(&format!("{base}/members")))
            .send()
            .await
            .expect("members"),
    )
    .await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2));
    let teams = json_of(
        alice
            .get(app.url(&format!("{base}/teams")))
            .send()
            .await
            .expect("teams"),
    )
    .await;
    assert_eq!(teams["teams"].as_array().map(Vec::len), Some(2));

    // An auditor's read of the task's stream: members see who did what; others see nothing.
    let stream = format!("/api/v1/streams/task/{task}/events");
    let history = json_of(bob.get(app.url(&stream)).send().await.expect("history")).await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"task.created"), "{history}");
    assert!(types.contains(&"task.comment_edited"), "{types:?}");
    let r = carol.get(app.url(&stream)).send().await.expect("history");
    assert_eq!(r.status(), 404);
    // The organization's own stream is for its administrators.
    let org_stream = format!("/api/v1/streams/organization/{org}/events");
    let r = bob.get(app.url(&org_stream)).send().await.expect("history");
    assert_eq!(r.status(), 404);
    let r = alice
        .get(app.url(&org_stream))
        .send()
        .await
        .expect("history");
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn pages_follow_the_next_cursor_and_other_orgs_tags_are_unknown() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice@example.com").await;
    let org = app.create_org_as(&alice, "Acme").await;
    let other = app.create_org_as(&alice, "Other").await;
    let foreign = json_of(
        post(
            &app,
            &alice,
            &format!("/api/v1/orgs/{other}/labels"),
            json!({"name": "x", "color": "#123456"}),
        )
        .await,
    )
    .await;
    let foreign = id_of(&foreign);
    let base = format!("/api/v1/orgs/{org}");
    assert_eq!(
        error_code(
            post(
                &app,
                &alice,
                &format!("{base}/tasks"),
                json!({"title": "x", "labels": [foreign]})
            )
            .await,
            422
        )
        .await,
        "unknown_label"
    );
    let r = alice
        .patch(app.url(&format!("{base}/labels/{foreign}")))
        .json(&json!({"name": "y"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        error_code(r, 404).await,
        "not_found",
        "a label of another organization is not reachable"
    );

    let mut cursor = String::new();
    for n in 0..5 {
        let r = post(
            &app,
            &alice,
            &format!("{base}/tasks"),
            json!({"title": format!("t{n}")}),
        )
        .await;
        cursor = r.headers()["cairn-cursor"]
            .to_str()
            .expect("ascii")
            .to_owned();
    }
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut url = format!("{base}/tasks?limit=2&after={cursor}");
        if let Some(p) = &page {
            url.push_str(&format!("&page={p}"));
        }
        let body = json_of(alice.get(app.url(&url)).send().await.expect("list")).await;
        for t in body["tasks"].as_array().expect("tasks") {
            seen.push(t["title"].as_str().expect("title").to_owned());
        }
        match body["next"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
    let bad = alice
        .get(app.url(&format!("{base}/tasks?limit=500")))
        .send()
        .await
        .expect("list");
    assert_eq!(error_code(bad, 400).await, "invalid_query");
    let bad = alice
        .get(app.url(&format!("{base}/tasks?after=nope")))
        .send()
        .await
        .expect("list");
    assert_eq!(error_code(bad, 400).await, "invalid_cursor");
    app.stop().await;
}
