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
