//! Read-your-writes on every read that takes `?after=`: members, teams, labels, categories, a
//! task and its comments (the task list is in `access.rs`). Access is checked before the
//! cursor, and a cursor no commit returned is refused at once (test review 2026-12-03, missing
//! test 9; issue 12, "?after= on every read").

use crate::support;

use serde_json::{json, Value};
use support::ws::create_task;

/// A cursor past any head this test reaches.
const FAR: &str = "ffffffffffffffff7fffffffffffffff";

/// Posts `body` to `url` and returns the new resource's id (if any) and the write's cursor.
async fn write(client: &reqwest::Client, url: &str, body: Value) -> (Option<String>, String) {
    let r = client.post(url).json(&body).send().await.expect("write");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let cursor = r
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{url}: a write has a cursor"))
        .to_owned();
    let body: Value = r.json().await.expect("json");
    (body["id"].as_str().map(str::to_owned), cursor)
}

/// What a read must hold to include the write.
type Holds = Box<dyn Fn(&Value) -> bool>;

#[tokio::test]
async fn every_read_with_after_includes_the_write_and_checks_access_first() {
    let app = support::spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let stranger = app.sign_in("eve@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let bob_id: Value = bob
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let bob_id = bob_id["user_id"].as_str().expect("user id").to_owned();
    let org = app.create_org_as(&ada, "Acme").await;
    let base = app.url(&format!("/api/v1/orgs/{org}"));
    let task = create_task(&app, &ada, &org, "one").await;

    // (case, the read, the write's cursor, what the read must hold)
    let mut cases: Vec<(&str, String, String, Holds)> = Vec::new();
    let (_, cursor) = write(&ada, &format!("{base}/members"), json!({"user_id": bob_id})).await;
    let who = bob_id.clone();
    cases.push((
        "members",
        format!("{base}/members"),
        cursor,
        Box::new(move |b: &Value| {
            b["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["user_id"] == who.as_str()))
        }),
    ));
    let (team, cursor) = write(&ada, &format!("{base}/teams"), json!({"name": "Ops"})).await;
    let team = team.expect("team id");
    cases.push((
        "teams",
        format!("{base}/teams"),
        cursor,
        Box::new(move |b: &Value| {
            b["teams"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["id"] == team.as_str()))
        }),
    ));
    for (path, field) in [("labels", "labels"), ("categories", "categories")] {
        let (id, cursor) = write(
            &ada,
            &format!("{base}/{path}"),
            json!({"name": "fresh", "color": "#123456"}),
        )
        .await;
        let id = id.expect("id");
        cases.push((
            path,
            format!("{base}/{path}"),
            cursor,
            Box::new(move |b: &Value| {
                b[field]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l["id"] == id.as_str()))
            }),
        ));
    }
    let r = ada
        .patch(format!("{base}/tasks/{task}"))
        .json(&json!({"title": "renamed"}))
        .send()
        .await
        .expect("edit");
    assert_eq!(r.status(), 200);
    let cursor = r
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .expect("cursor")
        .to_owned();
    cases.push((
        "task",
        format!("{base}/tasks/{task}"),
        cursor,
        Box::new(|b: &Value| b["title"] == "renamed"),
    ));
    let (comment, cursor) = write(
        &ada,
        &format!("{base}/tasks/{task}/comments"),
        json!({"body": "hello"}),
    )
    .await;
    let comment = comment.expect("comment id");
    cases.push((
        "comments",
        format!("{base}/tasks/{task}/comments"),
        cursor,
        Box::new(move |b: &Value| {
            b["comments"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == comment.as_str()))
        }),
    ));

    for (case, url, cursor, holds) in &cases {
        // The member reads the write.
        let r = ada
            .get(format!("{url}?after={cursor}"))
            .send()
            .await
            .expect("read");
        assert_eq!(r.status(), 200, "{case}");
        let body: Value = r.json().await.expect("json");
        assert!(holds(&body), "{case}: the write is not in {body}");
        // A non-member learns nothing, with a real cursor or one past the head: access is
        // decided before the cursor is looked at.
        for after in [cursor.as_str(), FAR] {
            let r = stranger
                .get(format!("{url}?after={after}"))
                .send()
                .await
                .expect("read");
            assert_eq!(
                support::error_code(r, 404).await,
                "organization_not_found",
                "{case}: a non-member with after={after}"
            );
        }
        // A member with a cursor no commit returned: 400 at once.
        let r = ada
            .get(format!("{url}?after={FAR}"))
            .send()
            .await
            .expect("read");
        assert_eq!(
            support::error_code(r, 400).await,
            "invalid_cursor",
            "{case}: a cursor past the head"
        );
    }
    assert_eq!(cases.len(), 6);
    app.stop().await;
}
