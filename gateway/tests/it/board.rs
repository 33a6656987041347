//! Task boards over HTTP: the permission matrix, validation, filters, pages, comments and
//! read-your-writes.

use crate::support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::{
    cursor_of, error_code, error_code_of, json_with, member_with, spawn_app, str_of, user_id_of,
    TestApp,
};

/// An organization founded by Alice, with a label and a category, and Bob in a team that may
/// create and edit tasks but not delete or assign them.
struct Board {
    app: TestApp,
    alice: reqwest::Client,
    bob: reqwest::Client,
    bob_id: String,
    org: String,
    /// `/api/v1/orgs/{org}`.
    base: String,
    label: String,
    category: String,
}

impl Board {
    async fn new() -> Self {
        let app = spawn_app().await;
        let alice = app.sign_in("alice@example.com").await;
        let org = app.create_org_as(&alice, "Acme").await;
        let (bob, bob_id) = member_with(&app, &org, &alice, &["tasks.create", "tasks.edit"]).await;
        let base = format!("/api/v1/orgs/{org}");
        let label = app
            .post_as(
                &alice,
                &format!("{base}/labels"),
                json!({"name": "bug", "color": "#FF0000"}),
            )
            .await;
        let label = str_of(&json_with(label, 201).await, "id");
        let category = app
            .post_as(
                &alice,
                &format!("{base}/categories"),
                json!({"name": "Backend", "color": "#00ff00"}),
            )
            .await;
        let category = str_of(&json_with(category, 201).await, "id");
        Self {
            app,
            alice,
            bob,
            bob_id,
            org,
            base,
            label,
            category,
        }
    }

    fn url(&self, path: &str) -> String {
        self.app.url(&format!("{}{path}", self.base))
    }

    async fn post(&self, client: &reqwest::Client, path: &str, body: Value) -> reqwest::Response {
        self.app
            .post_as(client, &format!("{}{path}", self.base), body)
            .await
    }

    /// Creates a task as `client` and returns its id and the write's cursor.
    async fn task(&self, client: &reqwest::Client, body: Value) -> (String, String) {
        let created = self.post(client, "/tasks", body).await;
        let cursor = cursor_of(&created);
        (str_of(&json_with(created, 201).await, "id"), cursor)
    }

    /// `GET {base}{path}` as `client`, which must answer 200.
    async fn get(&self, client: &reqwest::Client, path: &str) -> Value {
        json_with(client.get(self.url(path)).send().await.expect("get"), 200).await
    }

    /// The ids of the tasks a board query returns.
    async fn ids(&self, query: &str) -> BTreeSet<String> {
        let board = self.get(&self.bob, &format!("/tasks?{query}")).await;
        board["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: no tasks in {board}"))
            .iter()
            .map(|t| str_of(t, "id"))
            .collect()
    }
}

#[tokio::test]
async fn labels_and_categories_need_their_content_permissions() {
    let b = Board::new().await;
    for (label, path, body) in [
        (
            "a label",
            "/labels",
            json!({"name": "x", "color": "#000000"}),
        ),
        (
            "a category",
            "/categories",
            json!({"name": "x", "color": "#000000"}),
        ),
    ] {
        let refused = b.post(&b.bob, path, body).await;
        assert_eq!(
            error_code_of(label, refused, 403).await,
            "forbidden",
            "{label}"
        );
    }
    b.app.stop().await;
}

#[tokio::test]
async fn a_new_task_names_known_tags_and_member_assignees_and_a_valid_title_and_status() {
    let b = Board::new().await;
    let carol = b.app.sign_in("carol@example.com").await;
    let carol_id = user_id_of(&b.app, &carol).await;
    let bogus = uuid::Uuid::new_v4();
    let before = b.app.event_count().await;
    for (label, client, body, status, code) in [
        (
            "an unknown label",
            &b.bob,
            json!({"title": "x", "labels": [bogus]}),
            422,
            "unknown_label",
        ),
        (
            "an unknown category",
            &b.bob,
            json!({"title": "x", "category_id": bogus}),
            422,
            "unknown_category",
        ),
        (
            "an assignee who is not a member",
            &b.alice,
            json!({"title": "x", "assignees": [carol_id]}),
            422,
            "assignee_not_member",
        ),
        (
            "a blank title",
            &b.bob,
            json!({"title": "  "}),
            422,
            "validation_failed",
        ),
        (
            "an unknown status",
            &b.bob,
            json!({"title": "x", "status": "flying"}),
            400,
            "invalid_body",
        ),
    ] {
        let refused = b.post(client, "/tasks", body).await;
        assert_eq!(error_code_of(label, refused, status).await, code, "{label}");
    }
    assert_eq!(b.app.event_count().await, before, "nothing was appended");
    b.app.stop().await;
}

#[tokio::test]
async fn after_its_cursor_the_board_shows_a_new_task_with_its_tags() {
    let b = Board::new().await;
    let (task, cursor) = b
        .task(
            &b.bob,
            json!({"title": "Fix login", "labels": [b.label], "category_id": b.category}),
        )
        .await;
    let board = b.get(&b.bob, &format!("/tasks?after={cursor}")).await;
    let tasks = board["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{board}");
    assert_eq!(tasks[0]["id"], task.as_str());
    assert_eq!(tasks[0]["title"], "Fix login");
    assert_eq!(tasks[0]["labels"], json!([b.label]));
    assert_eq!(tasks[0]["category_id"], b.category.as_str());
    b.app.stop().await;
}

#[tokio::test]
async fn a_member_edits_as_permitted_but_only_permitted_people_assign_and_delete() {
    let b = Board::new().await;
    let (task, _) = b
        .task(
            &b.bob,
            json!({"title": "Fix login", "category_id": b.category}),
        )
        .await;
    let edited = b
        .bob
        .patch(b.url(&format!("/tasks/{task}")))
        .json(&json!({"status": "in_progress", "category_id": null}))
        .send()
        .await
        .expect("edit");
    let cursor = cursor_of(&edited);
    json_with(edited, 200).await;
    let shown = b
        .get(&b.bob, &format!("/tasks/{task}?after={cursor}"))
        .await;
    assert_eq!(shown["status"], "in_progress", "{shown}");
    assert!(shown["category_id"].is_null(), "{shown}");

    let assign = b
        .post(
            &b.bob,
            &format!("/tasks/{task}/assignees"),
            json!({"user_id": b.bob_id}),
        )
        .await;
    assert_eq!(error_code_of("Bob assigns", assign, 403).await, "forbidden");
    let delete = b
        .bob
        .delete(b.url(&format!("/tasks/{task}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(error_code_of("Bob deletes", delete, 403).await, "forbidden");

    let assigned = b
        .post(
            &b.alice,
            &format!("/tasks/{task}/assignees"),
            json!({"user_id": b.bob_id}),
        )
        .await;
    let cursor = cursor_of(&assigned);
    json_with(assigned, 200).await;
    let shown = b
        .get(&b.bob, &format!("/tasks/{task}?after={cursor}"))
        .await;
    assert_eq!(shown["assignees"], json!([b.bob_id]), "{shown}");
    let deleted = b
        .alice
        .delete(b.url(&format!("/tasks/{task}")))
        .send()
        .await
        .expect("delete");
    let cursor = cursor_of(&deleted);
    json_with(deleted, 200).await;
    let gone = b
        .bob
        .get(b.url(&format!("/tasks/{task}?after={cursor}")))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(gone, 404).await, "task_not_found");
    b.app.stop().await;
}

#[tokio::test]
async fn filters_narrow_the_board_and_deleted_tasks_are_gone() {
    let b = Board::new().await;
    let (labelled, _) = b
        .task(
            &b.alice,
            json!({"title": "a", "status": "in_progress", "labels": [b.label], "assignees": [b.bob_id]}),
        )
        .await;
    let (categorised, _) = b
        .task(
            &b.alice,
            json!({"title": "b", "status": "backlog", "category_id": b.category}),
        )
        .await;
    let (doomed, _) = b
        .task(&b.alice, json!({"title": "c", "status": "backlog"}))
        .await;
    let deleted = b
        .alice
        .delete(b.url(&format!("/tasks/{doomed}")))
        .send()
        .await
        .expect("delete");
    let cursor = cursor_of(&deleted);
    json_with(deleted, 200).await;
    let only = |id: &String| BTreeSet::from([id.clone()]);
    for (query, expected) in [
        ("status=in_progress".to_owned(), only(&labelled)),
        ("status=backlog".to_owned(), only(&categorised)),
        (format!("assignee={}", b.bob_id), only(&labelled)),
        (format!("label={}", b.label), only(&labelled)),
        (format!("category={}", b.category), only(&categorised)),
        (
            String::new(),
            BTreeSet::from([labelled.clone(), categorised.clone()]),
        ),
    ] {
        assert_eq!(
            b.ids(&format!("after={cursor}&{query}")).await,
            expected,
            "?{query}"
        );
    }
    b.app.stop().await;
}

#[tokio::test]
async fn any_member_comments_and_only_the_author_or_an_administrator_edits() {
    let b = Board::new().await;
    let (task, _) = b.task(&b.alice, json!({"title": "Fix login"})).await;
    let comment = b
        .post(
            &b.bob,
            &format!("/tasks/{task}/comments"),
            json!({"body": "on it"}),
        )
        .await;
    let cursor = cursor_of(&comment);
    let comment = str_of(&json_with(comment, 201).await, "id");
    let one = b
        .get(&b.bob, &format!("/tasks/{task}?after={cursor}"))
        .await;
    assert_eq!(one["comment_count"], 1, "{one}");
    let comments = b
        .get(&b.bob, &format!("/tasks/{task}/comments?after={cursor}"))
        .await;
    assert_eq!(
        comments["comments"][0]["id"],
        comment.as_str(),
        "{comments}"
    );
    assert_eq!(comments["comments"][0]["body"], "on it", "{comments}");

    // Another member (no permissions at all) may not change Bob's comment.
    let (dave, _) = member_with(&b.app, &b.org, &b.alice, &[]).await;
    let path = format!("/tasks/{task}/comments/{comment}");
    let refused = dave
        .patch(b.url(&path))
        .json(&json!({"body": "not mine"}))
        .send()
        .await
        .expect("edit");
    assert_eq!(error_code(refused, 403).await, "not_comment_author");
    // An administrator may.
    let edited = b
        .alice
        .patch(b.url(&path))
        .json(&json!({"body": "edited by an admin"}))
        .send()
        .await
        .expect("edit");
    let cursor = cursor_of(&edited);
    json_with(edited, 200).await;
    let comments = b
        .get(&b.bob, &format!("/tasks/{task}/comments?after={cursor}"))
        .await;
    let bodies: Vec<&Value> = comments["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .map(|c| &c["body"])
        .collect();
    assert_eq!(bodies, [&json!("edited by an admin")], "{comments}");
    b.app.stop().await;
}

#[tokio::test]
async fn a_non_member_sees_nothing_of_the_organization() {
    let b = Board::new().await;
    let (task, _) = b.task(&b.bob, json!({"title": "Fix login"})).await;
    let carol = b.app.sign_in("carol@example.com").await;
    for (label, request, code) in [
        (
            "list tasks",
            carol.get(b.url("/tasks")),
            "organization_not_found",
        ),
        (
            "create a task",
            carol.post(b.url("/tasks")).json(&json!({"title": "x"})),
            "organization_not_found",
        ),
        (
            "list members",
            carol.get(b.url("/members")),
            "organization_not_found",
        ),
        (
            "read a task's history",
            carol.get(b.app.url(&format!("/api/v1/streams/task/{task}/events"))),
            "stream_not_found",
        ),
    ] {
        let refused = request.send().await.expect(label);
        assert_eq!(error_code_of(label, refused, 404).await, code, "{label}");
    }
    b.app.stop().await;
}

#[tokio::test]
async fn the_members_and_teams_read_models_list_who_is_in() {
    let b = Board::new().await;
    let alice_id = user_id_of(&b.app, &b.alice).await;
    // A write after the fixture's: after its cursor, both lists include Bob and his team.
    let last = b
        .post(
            &b.alice,
            "/labels",
            json!({"name": "later", "color": "#123456"}),
        )
        .await;
    let cursor = cursor_of(&last);
    json_with(last, 201).await;
    let members = b.get(&b.alice, &format!("/members?after={cursor}")).await;
    let ids: BTreeSet<String> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| str_of(m, "user_id"))
        .collect();
    assert_eq!(ids, BTreeSet::from([alice_id.clone(), b.bob_id.clone()]));
    let teams = b.get(&b.alice, &format!("/teams?after={cursor}")).await;
    let teams = teams["teams"].as_array().expect("teams");
    assert_eq!(
        teams.len(),
        3,
        "the founders' team, the default Members team and Bob's: {teams:?}"
    );
    let bobs = teams
        .iter()
        .find(|t| t["members"] == json!([b.bob_id]))
        .unwrap_or_else(|| panic!("no team of Bob's alone in {teams:?}"));
    let mut permissions: Vec<&str> = bobs["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    permissions.sort_unstable();
    assert_eq!(permissions, ["tasks.create", "tasks.edit"]);
    b.app.stop().await;
}

#[tokio::test]
async fn a_tasks_history_is_for_members_and_the_organizations_for_administrators() {
    let b = Board::new().await;
    let (task, _) = b.task(&b.bob, json!({"title": "Fix login"})).await;
    let edited = b
        .bob
        .patch(b.url(&format!("/tasks/{task}")))
        .json(&json!({"title": "Fix the login"}))
        .send()
        .await
        .expect("edit");
    json_with(edited, 200).await;
    let history = json_with(
        b.bob
            .get(b.app.url(&format!("/api/v1/streams/task/{task}/events")))
            .send()
            .await
            .expect("history"),
        200,
    )
    .await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["task.created", "task.title_changed"], "{history}");

    let org_stream = b
        .app
        .url(&format!("/api/v1/streams/organization/{}/events", b.org));
    let refused = b.bob.get(&org_stream).send().await.expect("history");
    assert_eq!(error_code(refused, 404).await, "stream_not_found");
    let history = json_with(b.alice.get(&org_stream).send().await.expect("history"), 200).await;
    assert_eq!(
        history["events"][0]["type"], "organization.created",
        "{history}"
    );
    b.app.stop().await;
}

#[tokio::test]
async fn another_organizations_label_is_unknown_here() {
    let b = Board::new().await;
    let other = b.app.create_org_as(&b.alice, "Other").await;
    let foreign = b
        .app
        .post_as(
            &b.alice,
            &format!("/api/v1/orgs/{other}/labels"),
            json!({"name": "x", "color": "#123456"}),
        )
        .await;
    let foreign = str_of(&json_with(foreign, 201).await, "id");
    let tagged = b
        .post(
            &b.alice,
            "/tasks",
            json!({"title": "x", "labels": [foreign]}),
        )
        .await;
    assert_eq!(error_code(tagged, 422).await, "unknown_label");
    let renamed = b
        .alice
        .patch(b.url(&format!("/labels/{foreign}")))
        .json(&json!({"name": "y"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        error_code(renamed, 404).await,
        "not_found",
        "a label of another organization is not reachable"
    );
    b.app.stop().await;
}

#[tokio::test]
async fn pages_follow_the_next_cursor_to_the_end() {
    let b = Board::new().await;
    let mut cursor = None;
    for n in 0..5 {
        let (_, written) = b.task(&b.alice, json!({"title": format!("t{n}")})).await;
        cursor = Some(written);
    }
    let cursor = cursor.expect("a cursor");
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    for _ in 0..10 {
        let mut query = format!("/tasks?limit=2&after={cursor}");
        if let Some(p) = &page {
            query.push_str(&format!("&page={p}"));
        }
        let body = b.get(&b.alice, &query).await;
        for t in body["tasks"].as_array().expect("tasks") {
            seen.push(str_of(t, "title"));
        }
        match body["next"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
    for (label, query, code) in [
        ("a limit over 200", "limit=500", "invalid_query"),
        ("a malformed cursor", "after=nope", "invalid_cursor"),
    ] {
        let bad = b
            .alice
            .get(b.url(&format!("/tasks?{query}")))
            .send()
            .await
            .expect("list");
        assert_eq!(error_code_of(label, bad, 400).await, code, "{label}");
    }
    b.app.stop().await;
}
