//! The error catalogue: every code the API docs' error table lists is driven out of a real
//! server, each with its status and the one shape `{"error":{"code","message","details"}}`, and
//! the set of codes produced is compared with the table (parsed from docs/api.md at test time),
//! so the docs and the server cannot drift apart.
//! The table also lists exactly the server's closed set of codes (`gateway::error_codes()`),
//! each with its status.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{self, spawn_app, spawn_app_with, with_key, TestApp};

/// Codes docs/api.md lists that no HTTP request can produce on a consistent server, and why.
const NOT_PRODUCIBLE: &[(&str, &str)] = &[
    (
        "account_not_found",
        "a session or key only authenticates while its account row is live (the same \
         `accounts.erased_at IS NULL` join as GET /me), and issuing a key or erasing needs a \
         registered account, which every signed-in caller has",
    ),
    (
        "account_erased",
        "only a request racing its own account's erasure can see it: erasure ends every session \
         and key in the same projection step that marks the account erased",
    ),
    (
        "invalid_link",
        "an invalid, used or expired sign-in link is opened in a browser: it answers a 400 HTML \
         page (`an_invalid_sign_in_link_answers_a_400_page_not_a_json_error`), never this JSON",
    ),
    (
        "too_many_links",
        "a sign-in request always answers 202, the same for every address; past the limit it \
         simply sends nothing",
    ),
    (
        "internal",
        "a bug or an unexpected failure (500); nothing a client sends produces it on purpose",
    ),
];

/// One code as the docs' table documents it.
#[derive(Debug)]
struct Documented {
    status: u16,
}

/// The codes of docs/api.md's `### Errors` table, with the status of their row.
fn documented_codes() -> BTreeMap<String, Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
    let docs = std::fs::read_to_string(path).expect("docs/api.md is readable");
    let section = docs
        .split("\n### Errors\n")
        .nth(1)
        .expect("docs/api.md has an `### Errors` section");
    let mut codes = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(status) = cells.get(1).copied().unwrap_or("").parse::<u16>() else {
            continue; // the header and the `|---|` line
        };
        let listed = cells.get(3).copied().unwrap_or("");
        // Every code is in backticks; the notes in parentheses are not.
        for (i, piece) in listed.split('`').enumerate() {
            if i % 2 == 1 {
                let previous = codes.insert(piece.to_owned(), Documented { status });
                assert!(previous.is_none(), "docs/api.md lists `{piece}` twice");
            }
        }
    }
    assert!(
        codes.len() > 20,
        "docs/api.md's error table parsed to too few codes: {codes:?}"
    );
    codes
}

/// The codes seen so far, with their status.
#[derive(Default)]
struct Catalogue {
    seen: BTreeMap<String, (u16, String)>,
}

impl Catalogue {
    /// Requires `response` to be the error `code` with `status`, in the one error shape.
    async fn expect(&mut self, label: &str, response: reqwest::Response, status: u16, code: &str) {
        let got = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.expect("body");
        assert_eq!(got, status, "{label}: status (body {text})");
        assert!(
            content_type.starts_with("application/json"),
            "{label}: content type `{content_type}`"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{label}: the body is not JSON ({e}): {text}"));
        assert_eq!(
            body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            Some(vec![&"error".to_owned()]),
            "{label}: the body is `{{\"error\": ...}}` and nothing else: {body}"
        );
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{label}: `error` is an object: {body}"));
        let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["code", "details", "message"]),
            "{label}: the error's fields: {body}"
        );
        assert_eq!(
            error.get("code").and_then(Value::as_str),
            Some(code),
            "{label}: code ({body})"
        );
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{label}: `message` is a string: {body}"));
        assert!(
            !message.trim().is_empty(),
            "{label}: `message` is not empty"
        );
        // Today every error answers `details: null`; a code that starts carrying details
        // should say so here.
        assert_eq!(
            error.get("details"),
            Some(&Value::Null),
            "{label}: `details` is present and null ({body})"
        );
        if let Some((earlier, by)) = self
            .seen
            .insert(code.to_owned(), (status, label.to_owned()))
        {
            assert_eq!(
                earlier, status,
                "{label}: `{code}` answered {status}, but {earlier} for `{by}`"
            );
        }
    }
}

async fn json_of(label: &str, r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "{label}: status (body {text})");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {text}"))
}

fn id_of(label: &str, body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{label}: `id` in {body}"))
        .to_owned()
}

/// The signed-in caller's user id.
async fn user_id(app: &TestApp, c: &reqwest::Client) -> String {
    let me = json_of(
        "GET /me",
        c.get(app.url("/api/v1/me")).send().await.expect("me"),
        200,
    )
    .await;
    me["user_id"].as_str().expect("user_id").to_owned()
}

/// Deletes the stored receipt of `body`'s command, so that repeating the request with the
/// same `Idempotency-Key` runs the command again instead of answering the first receipt:
/// the only way a client-derived id can meet an aggregate that already exists (ids of
/// created things are derived from the command id, and a repeat of the command id is
/// otherwise answered from its receipt).
async fn forget_receipt(app: &TestApp, label: &str, body: &Value) {
    let command_id: Uuid = body["receipt"]["command_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{label}: a receipt with a command id: {body}"));
    let pool = app.db.pool(1).await;
    let deleted = sqlx::query("DELETE FROM command_receipts WHERE command_id = $1")
        .bind(command_id)
        .execute(&pool)
        .await
        .expect("delete receipt")
        .rows_affected();
    pool.close().await;
    assert_eq!(deleted, 1, "{label}: the receipt was stored");
}

/// Makes every append to stream `aggregate_id` fail as if another writer had taken the
/// sequence (PostgreSQL's own `unique_violation` on `events_pkey`), until [`heal`].
async fn always_conflict(app: &TestApp, aggregate_id: &str) {
    let pool = app.db.pool(1).await;
    sqlx::query(&format!(
        "CREATE FUNCTION cairn_test_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.aggregate_id = '{aggregate_id}' THEN
             RAISE unique_violation USING CONSTRAINT = 'events_pkey',
                                          MESSAGE = 'injected by the error catalogue test';
           END IF;
           RETURN NEW;
         END $$"
    ))
    .execute(&pool)
    .await
    .expect("create function");
    sqlx::query(
        "CREATE TRIGGER cairn_test_conflict BEFORE INSERT ON events
           FOR EACH ROW EXECUTE FUNCTION cairn_test_conflict()",
    )
    .execute(&pool)
    .await
    .expect("create trigger");
    pool.close().await;
}

async fn heal(app: &TestApp) {
    let pool = app.db.pool(1).await;
    sqlx::query("DROP TRIGGER cairn_test_conflict ON events")
        .execute(&pool)
        .await
        .expect("drop trigger");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_error_code_is_produced_with_its_status_and_shape() {
    let mut cat = Catalogue::default();
    let app = spawn_app().await;
    let anon = &app.http;
    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    // A client of its own for the 413: the server closes the connection after a body it did
    // not read, and a pooled connection shared with the next case would fail that case.
    let dan = app.sign_in("dan@example.com").await;
    let bob_id = user_id(&app, &bob).await;
    let ada_id = user_id(&app, &ada).await;

    // ---- authentication ----
    cat.expect(
        "anonymous create organization",
        anon.post(app.url("/api/v1/orgs"))
            .json(&json!({"name": "A"}))
            .send()
            .await
            .expect("send"),
        401,
        "unauthenticated",
    )
    .await;
    cat.expect(
        "a bearer token that is no Cairn key",
        with_key("nonsense")
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .expect("send"),
        401,
        "invalid_credentials",
    )
    .await;

    // ---- malformed input (400) ----
    let before = app.event_count().await;
    let raw = |body: &'static str| {
        ada.post(app.url("/api/v1/orgs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    cat.expect(
        "truncated JSON",
        raw("{\"name\": ").await.expect("send"),
        400,
        "malformed_json",
    )
    .await;
    cat.expect(
        "an unknown field",
        raw("{\"name\": \"A\", \"evil\": 1}").await.expect("send"),
        400,
        "invalid_body",
    )
    .await;
    cat.expect(
        "JSON without a content type",
        ada.post(app.url("/api/v1/orgs"))
            .body("{\"name\":\"A\"}")
            .send()
            .await
            .expect("send"),
        400,
        "unsupported_content_type",
    )
    .await;
    cat.expect(
        "an empty Idempotency-Key",
        ada.post(app.url("/api/v1/orgs"))
            .header("idempotency-key", "")
            .json(&json!({"name": "A"}))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_idempotency_key",
    )
    .await;
    cat.expect(
        "a path segment that is not UTF-8",
        ada.patch(app.url("/api/v1/orgs/%FF"))
            .json(&json!({"name": "A"}))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_path",
    )
    .await;
    cat.expect(
        "an organization id that is no UUID",
        ada.patch(app.url("/api/v1/orgs/not-a-uuid"))
            .json(&json!({"name": "A"}))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_id",
    )
    .await;
    cat.expect(
        "limit=0 on a stream's history",
        ada.get(app.url("/api/v1/streams/organization/x/events?limit=0"))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_query",
    )
    .await;
    cat.expect(
        "a key with an unknown scope",
        ada.post(app.url("/api/v1/me/api-keys"))
            .json(&json!({"name": "k", "scopes": ["tasks:fly"]}))
            .send()
            .await
            .expect("send"),
        400,
        "unknown_scope",
    )
    .await;
    cat.expect(
        "a name of spaces",
        ada.post(app.url("/api/v1/orgs"))
            .json(&json!({"name": "   "}))
            .send()
            .await
            .expect("send"),
        422,
        "validation_failed",
    )
    .await;
    cat.expect(
        "a key with no scopes",
        ada.post(app.url("/api/v1/me/api-keys"))
            .json(&json!({"name": "k", "scopes": []}))
            .send()
            .await
            .expect("send"),
        422,
        "no_scopes",
    )
    .await;
    let huge = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let mut attempts = 0;
    let too_large = loop {
        attempts += 1;
        match dan.post(app.url("/api/v1/orgs")).json(&huge).send().await {
            Ok(r) => break r,
            // The server answers 413 without reading the rest of the body and may close the
            // connection while the client is still writing it: then the client sees a reset,
            // not the answer. Try again; a server that never answers still fails.
            Err(e) if attempts < 5 => eprintln!("a body over 1 MiB, attempt {attempts}: {e}"),
            Err(e) => panic!("a body over 1 MiB: no answer in {attempts} attempts: {e}"),
        }
    };
    cat.expect("a body over 1 MiB", too_large, 413, "payload_too_large")
        .await;
    cat.expect(
        "no such route",
        ada.get(app.url("/api/v1/nope")).send().await.expect("send"),
        404,
        "route_not_found",
    )
    .await;
    cat.expect(
        "GET on a POST-only route",
        ada.get(app.url(
            "/api/v1/orgs/00000000-0000-0000-0000-000000000000/tasks/00000000-0000-0000-0000-000000000000/assignees",
        ))
        .send()
        .await
        .expect("send"),
        405,
        "method_not_allowed",
    )
    .await;
    cat.expect(
        "a stream with no events",
        ada.get(app.url("/api/v1/streams/organization/x/events"))
            .send()
            .await
            .expect("send"),
        404,
        "stream_not_found",
    )
    .await;
    cat.expect(
        "a cookie mutation from a foreign origin",
        ada.post(app.url("/api/v1/orgs"))
            .header("origin", "https://evil.example")
            .json(&json!({"name": "A"}))
            .send()
            .await
            .expect("send"),
        403,
        "csrf_rejected",
    )
    .await;
    assert_eq!(
        app.event_count().await,
        before,
        "bad input appended nothing"
    );

    // ---- an organization with a member and a team ----
    let created = json_of(
        "create Acme",
        ada.post(app.url("/api/v1/orgs"))
            .header("idempotency-key", "acme")
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let org = id_of("create Acme", &created);
    let orgs = format!("/api/v1/orgs/{org}");
    // Bob is to be a plain member: no default team to join.
    json_of(
        "no default team",
        support::set_default_team(&app, &ada, &org, Value::Null).await,
        200,
    )
    .await;
    json_of(
        "add bob",
        app.post_as(&ada, &format!("{orgs}/members"), json!({"user_id": bob_id}))
            .await,
        200,
    )
    .await;
    let team_body = json_of(
        "create team Core",
        ada.post(app.url(&format!("{orgs}/teams")))
            .header("idempotency-key", "core")
            .json(&json!({"name": "Core"}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let team = id_of("create team Core", &team_body);

    cat.expect(
        "creating the same organization again after its receipt is gone",
        {
            forget_receipt(&app, "create Acme", &created).await;
            ada.post(app.url("/api/v1/orgs"))
                .header("idempotency-key", "acme")
                .json(&json!({"name": "Acme"}))
                .send()
                .await
                .expect("send")
        },
        409,
        "organization_exists",
    )
    .await;
    cat.expect(
        "creating the same team again after its receipt is gone",
        {
            forget_receipt(&app, "create team Core", &team_body).await;
            ada.post(app.url(&format!("{orgs}/teams")))
                .header("idempotency-key", "core")
                .json(&json!({"name": "Core"}))
                .send()
                .await
                .expect("send")
        },
        409,
        "team_exists",
    )
    .await;
    json_of(
        "create Beta with key `beta`",
        ada.post(app.url("/api/v1/orgs"))
            .header("idempotency-key", "beta")
            .json(&json!({"name": "Beta"}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    cat.expect(
        "key `beta` again with another name",
        ada.post(app.url("/api/v1/orgs"))
            .header("idempotency-key", "beta")
            .json(&json!({"name": "Gamma"}))
            .send()
            .await
            .expect("send"),
        409,
        "idempotency_key_reused",
    )
    .await;
    cat.expect(
        "a member of another organization's id",
        app.post_as(
            &ada,
            &format!("/api/v1/orgs/{}/members", Uuid::new_v4()),
            json!({"user_id": bob_id}),
        )
        .await,
        404,
        "organization_not_found",
    )
    .await;
    cat.expect(
        "a plain member renames the organization",
        bob.patch(app.url(&orgs))
            .json(&json!({"name": "Mine"}))
            .send()
            .await
            .expect("send"),
        403,
        "forbidden",
    )
    .await;
    cat.expect(
        "adding a member twice",
        app.post_as(&ada, &format!("{orgs}/members"), json!({"user_id": bob_id}))
            .await,
        422,
        "already_member",
    )
    .await;
    cat.expect(
        "removing someone who is not a member",
        ada.delete(app.url(&format!("{orgs}/members/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        422,
        "not_member",
    )
    .await;
    cat.expect(
        "the only administrator leaves",
        ada.delete(app.url(&format!("{orgs}/members/{ada_id}")))
            .send()
            .await
            .expect("send"),
        422,
        "last_administrator",
    )
    .await;
    cat.expect(
        "a second team named like the first, in other case",
        app.post_as(&ada, &format!("{orgs}/teams"), json!({"name": "core"}))
            .await,
        422,
        "team_name_taken",
    )
    .await;
    json_of(
        "bob joins Core",
        app.post_as(
            &ada,
            &format!("{orgs}/teams/{team}/members"),
            json!({"user_id": bob_id}),
        )
        .await,
        200,
    )
    .await;
    cat.expect(
        "joining a team twice",
        app.post_as(
            &ada,
            &format!("{orgs}/teams/{team}/members"),
            json!({"user_id": bob_id}),
        )
        .await,
        422,
        "already_team_member",
    )
    .await;
    cat.expect(
        "leaving a team one is not in",
        ada.delete(app.url(&format!("{orgs}/teams/{team}/members/{ada_id}")))
            .send()
            .await
            .expect("send"),
        422,
        "not_team_member",
    )
    .await;
    cat.expect(
        "permissions for no such team",
        ada.put(app.url(&format!("{orgs}/teams/{}/permissions", Uuid::new_v4())))
            .json(&json!({"permissions": []}))
            .send()
            .await
            .expect("send"),
        404,
        "team_not_found",
    )
    .await;
    cat.expect(
        "an unknown permission",
        ada.put(app.url(&format!("{orgs}/teams/{team}/permissions")))
            .json(&json!({"permissions": ["tasks.fly"]}))
            .send()
            .await
            .expect("send"),
        400,
        "unknown_permission",
    )
    .await;

    // ---- the board ----
    let label_body = json_of(
        "create label bug",
        ada.post(app.url(&format!("{orgs}/labels")))
            .header("idempotency-key", "bug")
            .json(&json!({"name": "bug", "color": "#ff0000"}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let label = id_of("create label bug", &label_body);
    cat.expect(
        "creating the same label again after its receipt is gone",
        {
            forget_receipt(&app, "create label bug", &label_body).await;
            ada.post(app.url(&format!("{orgs}/labels")))
                .header("idempotency-key", "bug")
                .json(&json!({"name": "bug", "color": "#ff0000"}))
                .send()
                .await
                .expect("send")
        },
        409,
        "already_exists",
    )
    .await;
    cat.expect(
        "updating no such category",
        ada.patch(app.url(&format!("{orgs}/categories/{}", Uuid::new_v4())))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .expect("send"),
        404,
        "not_found",
    )
    .await;
    let task_body = json_of(
        "create task",
        ada.post(app.url(&format!("{orgs}/tasks")))
            .header("idempotency-key", "task")
            .json(&json!({"title": "Ship it", "labels": [label]}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let task = id_of("create task", &task_body);
    let tasks = format!("{orgs}/tasks");
    cat.expect(
        "creating the same task again after its receipt is gone",
        {
            forget_receipt(&app, "create task", &task_body).await;
            ada.post(app.url(&tasks))
                .header("idempotency-key", "task")
                .json(&json!({"title": "Ship it", "labels": [label]}))
                .send()
                .await
                .expect("send")
        },
        409,
        "task_exists",
    )
    .await;
    cat.expect(
        "a plain member creates a task",
        app.post_as(&bob, &tasks, json!({"title": "Mine"})).await,
        403,
        "forbidden",
    )
    .await;
    cat.expect(
        "a task with a label of no organization",
        app.post_as(
            &ada,
            &tasks,
            json!({"title": "T", "labels": [Uuid::new_v4()]}),
        )
        .await,
        422,
        "unknown_label",
    )
    .await;
    cat.expect(
        "a task with a category of no organization",
        app.post_as(
            &ada,
            &tasks,
            json!({"title": "T", "category_id": Uuid::new_v4()}),
        )
        .await,
        422,
        "unknown_category",
    )
    .await;
    cat.expect(
        "a task assigned to a stranger",
        app.post_as(
            &ada,
            &tasks,
            json!({"title": "T", "assignees": [Uuid::new_v4()]}),
        )
        .await,
        422,
        "assignee_not_member",
    )
    .await;
    cat.expect(
        "reading no such task",
        ada.get(app.url(&format!("{tasks}/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        404,
        "task_not_found",
    )
    .await;
    cat.expect(
        "a read after text that is no cursor",
        ada.get(app.url(&format!("{tasks}?after=zzz")))
            .send()
            .await
            .expect("send"),
        400,
        "invalid_cursor",
    )
    .await;
    let task_url = format!("{tasks}/{task}");
    json_of(
        "assign bob",
        app.post_as(
            &ada,
            &format!("{task_url}/assignees"),
            json!({"user_id": bob_id}),
        )
        .await,
        200,
    )
    .await;
    cat.expect(
        "assigning bob twice",
        app.post_as(
            &ada,
            &format!("{task_url}/assignees"),
            json!({"user_id": bob_id}),
        )
        .await,
        422,
        "already_assigned",
    )
    .await;
    cat.expect(
        "unassigning someone not assigned",
        ada.delete(app.url(&format!("{task_url}/assignees/{ada_id}")))
            .send()
            .await
            .expect("send"),
        422,
        "not_assigned",
    )
    .await;
    cat.expect(
        "labeling twice",
        app.post_as(
            &ada,
            &format!("{task_url}/labels"),
            json!({"label_id": label}),
        )
        .await,
        422,
        "already_labeled",
    )
    .await;
    cat.expect(
        "removing a label the task lacks",
        ada.delete(app.url(&format!("{task_url}/labels/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        422,
        "not_labeled",
    )
    .await;
    let comment_body = json_of(
        "ada comments",
        app.post_as(&ada, &format!("{task_url}/comments"), json!({"body": "hi"}))
            .await,
        201,
    )
    .await;
    let comment = id_of("ada comments", &comment_body);
    cat.expect(
        "bob edits ada's comment",
        bob.patch(app.url(&format!("{task_url}/comments/{comment}")))
            .json(&json!({"body": "mine now"}))
            .send()
            .await
            .expect("send"),
        403,
        "not_comment_author",
    )
    .await;
    cat.expect(
        "editing no such comment",
        ada.patch(app.url(&format!("{task_url}/comments/{}", Uuid::new_v4())))
            .json(&json!({"body": "x"}))
            .send()
            .await
            .expect("send"),
        404,
        "comment_not_found",
    )
    .await;

    // ---- documents ----
    let docs = format!("{orgs}/docs");
    let doc_body = json_of(
        "create a document",
        ada.post(app.url(&docs))
            .header("idempotency-key", "doc")
            .json(&json!({"title": "Handbook"}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let doc = id_of("create a document", &doc_body);
    let child = id_of(
        "create a child document",
        &json_of(
            "create a child document",
            app.post_as(&ada, &docs, json!({"title": "Child", "parent": doc}))
                .await,
            201,
        )
        .await,
    );
    cat.expect(
        "creating the same document again after its receipt is gone",
        {
            forget_receipt(&app, "create a document", &doc_body).await;
            ada.post(app.url(&docs))
                .header("idempotency-key", "doc")
                .json(&json!({"title": "Handbook"}))
                .send()
                .await
                .expect("send")
        },
        409,
        "document_exists",
    )
    .await;
    cat.expect(
        "reading no such document",
        ada.get(app.url(&format!("{docs}/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        404,
        "document_not_found",
    )
    .await;
    cat.expect(
        "a document under a parent that is no document",
        app.post_as(&ada, &docs, json!({"title": "T", "parent": Uuid::new_v4()}))
            .await,
        422,
        "unknown_parent",
    )
    .await;
    cat.expect(
        "a document moved under its own child",
        app.post_as(
            &ada,
            &format!("{docs}/{doc}/move"),
            json!({"parent": child}),
        )
        .await,
        422,
        "would_cycle",
    )
    .await;
    cat.expect(
        "unpublishing a document never published",
        ada.delete(app.url(&format!("{docs}/{doc}/publication")))
            .send()
            .await
            .expect("send"),
        422,
        "not_published",
    )
    .await;
    cat.expect(
        "restoring a document that is not deleted",
        app.post_as(&ada, &format!("{docs}/{doc}/restore"), json!({}))
            .await,
        422,
        "document_not_deleted",
    )
    .await;
    json_of(
        "publish a document",
        ada.put(app.url(&format!("{docs}/{doc}/publication")))
            .json(&json!({"slug": "handbook"}))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await;
    cat.expect(
        "publishing another document under a slug taken",
        ada.put(app.url(&format!("{docs}/{child}/publication")))
            .json(&json!({"slug": "handbook"}))
            .send()
            .await
            .expect("send"),
        409,
        "slug_taken",
    )
    .await;
    json_of(
        "delete a document",
        ada.delete(app.url(&format!("{docs}/{child}")))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await;
    cat.expect(
        "renaming a deleted document",
        ada.patch(app.url(&format!("{docs}/{child}")))
            .json(&json!({"title": "Again"}))
            .send()
            .await
            .expect("send"),
        422,
        "document_deleted",
    )
    .await;

    // ---- keys and the account ----
    let reader = json_of(
        "issue a tasks:read key",
        ada.post(app.url("/api/v1/me/api-keys"))
            .json(&json!({"name": "reader", "scopes": ["tasks:read"]}))
            .send()
            .await
            .expect("send"),
        201,
    )
    .await;
    let reader = with_key(reader["key"].as_str().expect("key"));
    cat.expect(
        "a tasks:read key creates a task",
        app.post_as(&reader, &tasks, json!({"title": "T"})).await,
        403,
        "insufficient_scope",
    )
    .await;
    cat.expect(
        "a key issues a key",
        app.post_as(
            &reader,
            "/api/v1/me/api-keys",
            json!({"name": "x", "scopes": ["tasks:read"]}),
        )
        .await,
        403,
        "session_required",
    )
    .await;
    cat.expect(
        "revoking no such session",
        ada.delete(app.url(&format!("/api/v1/me/sessions/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        404,
        "session_not_found",
    )
    .await;
    cat.expect(
        "revoking no such key",
        ada.delete(app.url(&format!("/api/v1/me/api-keys/{}", Uuid::new_v4())))
            .send()
            .await
            .expect("send"),
        404,
        "api_key_not_found",
    )
    .await;

    // ---- conflict: every retry loses ----
    always_conflict(&app, &task).await;
    let before = app.event_count().await;
    cat.expect(
        "an edit that loses every concurrency retry",
        ada.patch(app.url(&task_url))
            .json(&json!({"title": "Renamed"}))
            .send()
            .await
            .expect("send"),
        409,
        "conflict",
    )
    .await;
    heal(&app).await;
    assert_eq!(
        app.event_count().await,
        before,
        "the lost edit appended nothing"
    );
    json_of(
        "the same edit once the stream is writable",
        ada.patch(app.url(&task_url))
            .json(&json!({"title": "Renamed"}))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await;
    app.stop().await;

    // ---- rate limited: an app of its own, one request a minute ----
    let limited = spawn_app_with(&[("CAIRN_API_RATE", "1".to_owned())]).await;
    let carol = limited.sign_in("carol@example.com").await;
    json_of(
        "the first request of the minute",
        carol
            .get(limited.url("/api/v1/me"))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await;
    let second = carol
        .get(limited.url("/api/v1/me"))
        .send()
        .await
        .expect("send");
    let retry_after: u64 = second
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a 429 says when to retry");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    cat.expect(
        "a second request within the minute",
        second,
        429,
        "rate_limited",
    )
    .await;
    limited.stop().await;

    // ---- unavailable: the database is not reachable (nothing listens on port 1) ----
    let db = eventstore::testing::TestDb::empty().await;
    let url = format!("postgres://postgres@127.0.0.1:1/{}", db.name());
    let down = support::start(db, url).await;
    let key = format!("cairn_{}_{}", "abcdefgh2345", "0".repeat(64));
    cat.expect(
        "a key checked while the database is down",
        with_key(&key)
            .get(down.url("/api/v1/me"))
            .send()
            .await
            .expect("send"),
        503,
        "unavailable",
    )
    .await;
    drop(down);

    // ---- the catalogue equals the docs' table, and the table equals the closed set ----
    let documented = documented_codes();
    let table: BTreeMap<&str, u16> = documented
        .iter()
        .map(|(code, doc)| (code.as_str(), doc.status))
        .collect();
    let closed: BTreeMap<&str, u16> = gateway::error_codes().into_iter().collect();
    assert_eq!(
        table, closed,
        "docs/api.md's error table must list exactly the server's error codes, with their statuses"
    );
    for (code, (status, label)) in &cat.seen {
        let Some(doc) = documented.get(code) else {
            panic!("`{code}` ({label}) is produced but missing from docs/api.md's error table");
        };
        assert_eq!(
            doc.status, *status,
            "`{code}` ({label}) answers {status}, docs/api.md's table says {}",
            doc.status
        );
    }
    let produced: BTreeSet<&str> = cat.seen.keys().map(String::as_str).collect();
    let not_producible: BTreeSet<&str> = NOT_PRODUCIBLE.iter().map(|(c, _)| *c).collect();
    for code in &not_producible {
        assert!(
            documented.contains_key(*code),
            "`{code}` is excused as not producible but docs/api.md does not list it"
        );
        assert!(
            !produced.contains(code),
            "`{code}` is excused as not producible, yet a case produced it"
        );
    }
    let missing: Vec<&str> = documented
        .keys()
        .map(String::as_str)
        .filter(|c| !produced.contains(c) && !not_producible.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/api.md lists codes no case produced: {missing:?}"
    );
}

/// The confirm step of an invalid sign-in link answers a 400 page (it is opened in a
/// browser), not a JSON error; the docs' table says so instead of listing a code for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_sign_in_link_answers_a_400_page_not_a_json_error() {
    let app = spawn_app().await;
    let r = support::browser()
        .post(app.url(&format!("/auth/verify/{}", "a".repeat(43))))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = r.text().await.expect("body");
    assert!(body.contains("Link not valid"), "{body}");
    app.stop().await;
}
