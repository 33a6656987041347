//! `GET /api/v1/orgs` (my organizations) and `GET /api/v1/orgs/{org}` (issue 14 item 6).

use serde_json::Value;

use crate::support;

#[tokio::test]
async fn a_person_lists_their_organizations_and_reads_one() {
    let app = support::spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let zeta = app.create_org_as(&ada, "Zeta").await;
    let created = ada
        .post(app.url("/api/v1/orgs"))
        .json(&serde_json::json!({"name": "Acme"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let cursor = support::cursor_of(&created);
    let acme = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bobs = app.create_org_as(&bob, "Bob's").await;

    let get = |client: &reqwest::Client, path: &str| {
        let request = client.get(app.url(path));
        async move { request.send().await.expect("get") }
    };
    // `?after=` the write's cursor: the list includes it.
    let mine: Value = get(&ada, &format!("/api/v1/orgs?after={cursor}"))
        .await
        .json()
        .await
        .expect("json");
    let listed: Vec<(&str, &str)> = mine["organizations"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            (
                o["id"].as_str().expect("id"),
                o["name"].as_str().expect("name"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(acme.as_str(), "Acme"), (zeta.as_str(), "Zeta")],
        "by name, and not Bob's: {mine}"
    );
    assert!(mine["organizations"][0]["created_at"].is_string(), "{mine}");

    let one: Value = get(&ada, &format!("/api/v1/orgs/{acme}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["id"], acme.as_str());
    assert_eq!(one["name"], "Acme");
    let permissions: Vec<&str> = one["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        permissions.contains(&"admin.administrator"),
        "the founder administers it: {one}"
    );

    // Another person's organization is not found; a malformed id is a 400.
    let theirs = get(&ada, &format!("/api/v1/orgs/{bobs}")).await;
    assert_eq!(
        support::error_code(theirs, 404).await,
        "organization_not_found"
    );
    let malformed = get(&ada, "/api/v1/orgs/not-an-id").await;
    assert_eq!(malformed.status(), 400);

    // A key lists no more than its scopes allow.
    let admin_only = support::key_with(&app, &ada, &["admin"]).await;
    let refused = get(&support::with_key(&admin_only), "/api/v1/orgs").await;
    assert_eq!(
        support::error_code(refused, 403).await,
        "insufficient_scope"
    );
    let reader = support::key_with(&app, &ada, &["tasks:read"]).await;
    let listed: Value = get(&support::with_key(&reader), "/api/v1/orgs")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["organizations"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}

/// A new organization's default team: an added member can work at once (tasks and documents,
/// nothing administrative or destructive), until an administrator chooses no default team.
#[tokio::test]
async fn an_added_member_joins_the_default_team_and_works_at_once() {
    let app = support::spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let cy = app.sign_in("cy@example.com").await;
    let org = app.create_org_as(&ada, "Acme").await;
    let base = format!("/api/v1/orgs/{org}");
    let add = |user: String| {
        let request = ada
            .post(app.url(&format!("{base}/members")))
            .json(&serde_json::json!({ "user_id": user }));
        async move { request.send().await.expect("add") }
    };
    let bob_id = support::user_id_of(&app, &bob).await;
    let added = add(bob_id).await;
    let cursor = support::cursor_of(&added);
    support::json_with(added, 200).await;

    let shown: Value = support::json_with(
        bob.get(app.url(&format!("{base}?after={cursor}")))
            .send()
            .await
            .expect("get"),
        200,
    )
    .await;
    let mut permissions: Vec<&str> = shown["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    permissions.sort_unstable();
    assert_eq!(
        permissions,
        ["docs.edit", "tasks.assign", "tasks.create", "tasks.edit"],
        "{shown}"
    );
    let members_team = shown["default_team_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a default team: {shown}"))
        .to_owned();
    let task = app
        .post_as(
            &bob,
            &format!("{base}/tasks"),
            serde_json::json!({"title": "First"}),
        )
        .await;
    support::json_with(task, 201).await;

    // Bad input changes nothing.
    for (body, status, code) in [
        (serde_json::json!({}), 400, "invalid_body"),
        (serde_json::json!({"team_id": "nope"}), 400, "invalid_id"),
        (
            serde_json::json!({"team_id": uuid::Uuid::now_v7()}),
            404,
            "team_not_found",
        ),
    ] {
        let r = ada
            .put(app.url(&format!("{base}/default-team")))
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(support::error_code(r, status).await, code, "{body}");
    }
    // A plain member may not choose it.
    let r = support::set_default_team(&app, &bob, &org, Value::Null).await;
    assert_eq!(support::error_code(r, 403).await, "forbidden");

    // No default team: the next member joins nothing and may only read.
    let cleared = support::set_default_team(&app, &ada, &org, Value::Null).await;
    support::json_with(cleared, 200).await;
    let cy_id = support::user_id_of(&app, &cy).await;
    let added = add(cy_id).await;
    let cursor = support::cursor_of(&added);
    support::json_with(added, 200).await;
    let shown: Value = support::json_with(
        cy.get(app.url(&format!("{base}?after={cursor}")))
            .send()
            .await
            .expect("get"),
        200,
    )
    .await;
    assert_eq!(shown["permissions"], serde_json::json!([]), "{shown}");
    assert!(shown["default_team_id"].is_null(), "{shown}");
    let task = app
        .post_as(
            &cy,
            &format!("{base}/tasks"),
            serde_json::json!({"title": "Mine"}),
        )
        .await;
    assert_eq!(support::error_code(task, 403).await, "forbidden");
    // Bob keeps what he had; the team is still there to choose again.
    let chosen = support::set_default_team(&app, &ada, &org, Value::from(members_team)).await;
    support::json_with(chosen, 200).await;
    app.stop().await;
}
