//! `Idempotency-Key` at its edges: scoped to the caller, ignored where a secret is minted,
//! refused when reused for another request or too long, applied once under concurrent
//! repeats; and a write that changes nothing records nothing.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{self, error_code, spawn_app, TestApp};

async fn json_of(label: &str, r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "{label}: status (body {text})");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {text}"))
}

fn str_at<'v>(label: &str, body: &'v Value, pointer: &str) -> &'v str {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{label}: `{pointer}` is a string in {body}"))
}

/// Events recorded in stream `aggregate_type`/`aggregate_id`.
async fn events_in(app: &TestApp, aggregate_type: &str, aggregate_id: &str) -> i64 {
    let pool = app.db.pool(1).await;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    n
}

fn create_org(
    app: &TestApp,
    c: &reqwest::Client,
    key: &str,
    name: &str,
) -> reqwest::RequestBuilder {
    c.post(app.url("/api/v1/orgs"))
        .header("idempotency-key", key)
        .json(&json!({ "name": name }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_from_two_callers_creates_two_organizations() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let a = json_of(
        "ada",
        create_org(&app, &ada, "shared", "Acme")
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let b = json_of(
        "bob",
        create_org(&app, &bob, "shared", "Acme")
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let (a_id, b_id) = (str_at("ada", &a, "/id"), str_at("bob", &b, "/id"));
    assert_ne!(a_id, b_id, "each caller's key makes its own organization");
    assert_ne!(
        str_at("ada", &a, "/receipt/command_id"),
        str_at("bob", &b, "/receipt/command_id"),
        "the key is scoped to the caller"
    );
    assert_eq!(events_in(&app, "organization", a_id).await, 8, "ada's");
    assert_eq!(events_in(&app, "organization", b_id).await, 8, "bob's");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_ignored_where_a_secret_is_minted() {
    let app = spawn_app().await;
    // API keys: two requests with one key mint two keys.
    let ada = app.sign_in("ada@example.com").await;
    let issue = || {
        ada.post(app.url("/api/v1/me/api-keys"))
            .header("idempotency-key", "mint")
            .json(&json!({"name": "ci", "scopes": ["tasks:read"]}))
            .send()
    };
    let first = json_of("first key", issue().await.expect("send"), 201).await;
    let second = json_of("second key", issue().await.expect("send"), 201).await;
    assert_ne!(
        str_at("first key", &first, "/key"),
        str_at("second key", &second, "/key"),
        "a second secret, not a replay"
    );
    assert_ne!(
        str_at("first key", &first, "/id"),
        str_at("second key", &second, "/id")
    );
    for (label, issued) in [("first key", &first), ("second key", &second)] {
        let key = str_at(label, issued, "/key");
        let me = support::with_key(key)
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .expect("me");
        assert_eq!(me.status(), 200, "{label} works");
    }

    // Sign-in: two link requests with one key send two links, and confirming each with one
    // key starts two sessions.
    let mut seen = app.outbox_files();
    let mut links = Vec::new();
    for i in 0..2 {
        let sent = support::browser()
            .post(app.url("/auth/send-link"))
            .header("idempotency-key", "sign-in")
            .json(&json!({"email": "bob@example.com"}))
            .send()
            .await
            .expect("send-link");
        assert_eq!(sent.status(), 202, "link request {i}");
        links.push(app.next_outbox_link(&mut seen).await);
    }
    assert_ne!(links[0], links[1], "two links, not a replay of one");
    let mut cookies = BTreeSet::new();
    for (i, link) in links.iter().enumerate() {
        let path = link.trim_start_matches(support::ORIGIN);
        let done = support::browser()
            .post(app.url(path))
            .header("idempotency-key", "confirm")
            .send()
            .await
            .expect("confirm");
        assert_eq!(done.status(), 303, "confirm {i}");
        let cookie = done
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("confirm {i} sets the session cookie"))
            .to_owned();
        cookies.insert(cookie);
    }
    assert_eq!(cookies.len(), 2, "two sessions: {cookies:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_body_on_the_same_route_is_refused() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Acme").await;
    let rename = |name: &str| {
        ada.patch(app.url(&format!("/api/v1/orgs/{org}")))
            .header("idempotency-key", "rename")
            .json(&json!({ "name": name }))
            .send()
    };
    let first = rename("Acme Corp").await.expect("send");
    assert_eq!(first.status(), 200, "first rename");
    let before = app.event_count().await;
    let other = rename("Acme Inc").await.expect("send");
    assert_eq!(error_code(other, 409).await, "idempotency_key_reused");
    assert_eq!(app.event_count().await, before, "nothing appended");
    // The original request is still answered from its receipt.
    let again = rename("Acme Corp").await.expect("send");
    assert_eq!(again.status(), 200, "the first request repeated");
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(app.event_count().await, before, "nothing appended");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_1_to_255_characters_are_accepted_and_longer_ones_refused() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let before = app.event_count().await;
    let long = create_org(&app, &ada, &"k".repeat(256), "Acme")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(long, 400).await, "invalid_idempotency_key");
    assert_eq!(
        app.event_count().await,
        before,
        "256 characters: nothing appended"
    );
    for (label, key) in [
        ("1 character", "k".to_owned()),
        ("255 characters", "k".repeat(255)),
    ] {
        let r = create_org(&app, &ada, &key, "Acme")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 201, "{label}");
    }
    app.stop().await;
}

/// Sends `make()` eight times at once and returns the bodies, each required to answer
/// `status`, and all required to carry one receipt.
async fn eight_at_once<F, Fut>(label: &str, status: u16, make: F) -> Vec<Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let responses = futures::future::join_all((0..8).map(|_| make())).await;
    let mut bodies = Vec::new();
    for (i, r) in responses.into_iter().enumerate() {
        let label = format!("{label}, request {i}");
        bodies.push(json_of(&label, r.expect("send"), status).await);
    }
    for (i, body) in bodies.iter().enumerate() {
        assert!(
            body["receipt"]["command_id"].is_string(),
            "{label}, request {i}: a receipt: {body}"
        );
        assert_eq!(
            body["receipt"], bodies[0]["receipt"],
            "{label}, request {i}: the same receipt"
        );
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_key_append_once_and_share_one_receipt() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;

    // A create: the repeats that wait for the first would be refused (it exists by then).
    let bodies = eight_at_once("create", 201, || {
        create_org(&app, &ada, "once", "Acme").send()
    })
    .await;
    let id = str_at("create", &bodies[0], "/id").to_owned();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            body["id"],
            id.as_str(),
            "create, request {i}: the same organization"
        );
    }
    assert_eq!(
        bodies[0]["receipt"]["events"].as_array().map(Vec::len),
        Some(8),
        "create: the receipt lists the eight events of a creation"
    );
    assert_eq!(
        events_in(&app, "organization", &id).await,
        8,
        "create: appended exactly once"
    );

    // A rename: the repeats that wait for the first would change nothing.
    let bodies = eight_at_once("rename", 200, || {
        ada.patch(app.url(&format!("/api/v1/orgs/{id}")))
            .header("idempotency-key", "rename once")
            .json(&json!({"name": "Acme Corp"}))
            .send()
    })
    .await;
    assert_eq!(
        bodies[0]["receipt"]["events"].as_array().map(Vec::len),
        Some(1),
        "rename: the receipt lists the rename"
    );
    assert_eq!(
        events_in(&app, "organization", &id).await,
        9,
        "rename: appended exactly once"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_changes_nothing_answers_an_empty_receipt_without_a_cursor() {
    let app = spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Acme").await;
    let before = app.event_count().await;
    let same = ada
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("send");
    assert_eq!(same.status(), 200);
    assert!(
        same.headers().get("cairn-cursor").is_none(),
        "no Cairn-Cursor for a write that wrote nothing"
    );
    let body: Value = same.json().await.expect("json");
    assert_eq!(body["receipt"]["events"], json!([]), "no events: {body}");
    assert_eq!(
        body["receipt"].get("cursor"),
        Some(&Value::Null),
        "the receipt's cursor is null: {body}"
    );
    assert_eq!(body["receipt"]["aggregate_id"], org.as_str());
    assert_eq!(app.event_count().await, before, "nothing appended");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_callers_permissions_changed_gets_the_first_receipt() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice@example.com").await;
    let org = app.create_org_as(&alice, "Acme").await;
    let bob = app.sign_in("bob@example.com").await;
    let bob_id = support::user_id_of(&app, &bob).await;
    let base = format!("/api/v1/orgs/{org}");
    app.post_as(
        &alice,
        &format!("{base}/members"),
        json!({ "user_id": bob_id }),
    )
    .await;
    let team = app
        .post_as(&alice, &format!("{base}/teams"), json!({"name": "Writers"}))
        .await;
    let team = str_at("team", &json_of("team", team, 201).await, "/id").to_owned();
    let permissions = |names: &[&str]| {
        alice
            .put(app.url(&format!("{base}/teams/{team}/permissions")))
            .json(&json!({ "permissions": names }))
            .send()
    };
    json_of(
        "permissions",
        permissions(&["tasks.create", "tasks.edit"])
            .await
            .expect("send"),
        200,
    )
    .await;
    app.post_as(
        &alice,
        &format!("{base}/teams/{team}/members"),
        json!({ "user_id": bob_id }),
    )
    .await;
    let create = |title: &str| {
        bob.post(app.url(&format!("{base}/tasks")))
            .header("idempotency-key", "task")
            .json(&json!({ "title": title }))
            .send()
    };
    let first = json_of("create", create("Ship it").await.expect("send"), 201).await;
    let task = str_at("create", &first, "/id").to_owned();
    let edit = |title: &str| {
        bob.patch(app.url(&format!("{base}/tasks/{task}")))
            .header("idempotency-key", "edit")
            .json(&json!({ "title": title }))
            .send()
    };
    let edited = json_of("edit", edit("Ship it now").await.expect("send"), 200).await;

    // Bob's grant changes (he may now delete too), and the read models have it.
    let changed = permissions(&["tasks.create", "tasks.edit", "tasks.delete"])
        .await
        .expect("send");
    let cursor = support::cursor_of(&changed);
    json_of("more permissions", changed, 200).await;
    let teams = alice
        .get(app.url(&format!("{base}/teams?after={cursor}")))
        .send()
        .await
        .expect("teams");
    json_of("teams", teams, 200).await;

    let before = app.event_count().await;
    for (label, again, status, first) in [
        ("create", create("Ship it").await, 201, &first),
        ("edit", edit("Ship it now").await, 200, &edited),
    ] {
        let again = again.expect("send");
        assert_eq!(
            again
                .headers()
                .get("idempotent-replayed")
                .and_then(|v| v.to_str().ok()),
            Some("true"),
            "{label}: a replay"
        );
        let again = json_of(label, again, status).await;
        assert_eq!(
            again["receipt"], first["receipt"],
            "{label}: the first receipt"
        );
    }
    // The same key with another body is still another request.
    let other = create("Ship something else").await.expect("send");
    assert_eq!(error_code(other, 409).await, "idempotency_key_reused");
    let other = edit("Another title").await.expect("send");
    assert_eq!(error_code(other, 409).await, "idempotency_key_reused");
    assert_eq!(app.event_count().await, before, "nothing appended");
    app.stop().await;
}
