//! The HTTP API end to end: real server, real PostgreSQL, real HTTP client.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{cursor_of, error_code, json_with, key_with, spawn_app, TestApp};
use uuid::Uuid;

#[tokio::test]
async fn organization_commands_over_rest_are_recorded_with_metadata() {
    let app = spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let created = c
        .post(app.url("/api/v1/orgs"))
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let cursor = cursor_of(&created);
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = created.json().await.expect("json");
    let org = body["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/api/v1/orgs/{org}"));
    assert_eq!(body["receipt"]["cursor"], cursor.as_str());
    assert_eq!(body["receipt"]["events"][0]["sequence"], 1);
    // Created, the founder, the Administrators team (three), the Members team (three).
    assert_eq!(body["receipt"]["events"].as_array().map(Vec::len), Some(8));

    let user = Uuid::new_v4().to_string();
    let r = c
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .json(&json!({"name": "Acme Corp"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.post_as(
            &c,
            &format!("/api/v1/orgs/{org}/members"),
            json!({"user_id": user})
        )
        .await
        .status(),
        200
    );
    let team: Value = app
        .post_as(
            &c,
            &format!("/api/v1/orgs/{org}/teams"),
            json!({"name": "Core"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let team = team["id"].as_str().expect("team id").to_owned();
    let r = c
        .put(app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions")))
        .json(&json!({"permissions": ["tasks.create", "admin.administrator"]}))
        .send()
        .await
        .expect("perms");
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.post_as(
            &c,
            &format!("/api/v1/orgs/{org}/teams/{team}/members"),
            json!({"user_id": user})
        )
        .await
        .status(),
        200
    );
    let r = c
        .delete(app.url(&format!("/api/v1/orgs/{org}/teams/{team}/members/{user}")))
        .send()
        .await
        .expect("leave");
    assert_eq!(r.status(), 200);
    let r = c
        .patch(app.url(&format!("/api/v1/orgs/{org}/teams/{team}")))
        .json(&json!({"name": "Platform"}))
        .send()
        .await
        .expect("rename team");
    assert_eq!(r.status(), 200);
    let r = c
        .delete(app.url(&format!("/api/v1/orgs/{org}/teams/{team}")))
        .send()
        .await
        .expect("delete team");
    assert_eq!(r.status(), 200);
    let r = c
        .delete(app.url(&format!("/api/v1/orgs/{org}/members/{user}")))
        .header("user-agent", "cairn-test")
        .send()
        .await
        .expect("remove");
    assert_eq!(r.status(), 200);

    let history: Value = c
        .get(app.url(&format!("/api/v1/streams/organization/{org}/events")))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let events = history["events"].as_array().expect("events");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            // The founder becomes the first administrator.
            "organization.created",
            "organization.member_added",
            "organization.team_created",
            "organization.team_permissions_set",
            "organization.team_member_added",
            // And gets the default Members team.
            "organization.team_created",
            "organization.team_permissions_set",
            "organization.default_team_set",
            // Then the commands above, in order (a new member joins the default team).
            "organization.renamed",
            "organization.member_added",
            "organization.team_member_added",
            "organization.team_created",
            "organization.team_permissions_set",
            "organization.team_member_added",
            "organization.team_member_removed",
            "organization.team_renamed",
            "organization.team_deleted",
            "organization.member_removed",
        ]
    );
    assert_eq!(events.len(), 18);
    let last = &events[17];
    assert!(
        last["metadata"]["actor"]
            .as_str()
            .expect("actor")
            .starts_with("user:"),
        "{last}"
    );
    assert_eq!(last["metadata"]["org_id"], org.as_str());
    assert_eq!(last["metadata"]["ip"], "127.0.0.1");
    assert_eq!(last["metadata"]["user_agent"], "cairn-test");
    assert!(last["metadata"]["request_id"].is_string());
    assert_eq!(last["prev_hash"], events[16]["hash"]);
    assert_eq!(events[7]["cursor"], cursor.as_str());

    // Paging.
    let page: Value = c
        .get(app.url(&format!(
            "/api/v1/streams/organization/{org}/events?from=4&limit=3"
        )))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"][0]["sequence"], 4);
    assert_eq!(page["next_from"], 7);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("cairn_commands_total{aggregate=\"organization\",outcome=\"ok\"} 10"),
        "{metrics}"
    );
    assert!(metrics.contains("cairn_ready 1"));
    assert!(
        metrics.contains("cairn_projection_lag_events{projection=\"identity\"}"),
        "{metrics}"
    );
    app.stop().await;
}

/// A request that must be refused, named so a failure says which.
struct Refused {
    label: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    code: &'static str,
}

impl Refused {
    fn new(
        label: &'static str,
        request: reqwest::RequestBuilder,
        status: u16,
        code: &'static str,
    ) -> Self {
        Self {
            label,
            request,
            status,
            code,
        }
    }
}

/// Sends each case in turn: each gets its status and `{error:{code,message}}`, and appends no
/// event.
async fn assert_refused(app: &TestApp, cases: Vec<Refused>) {
    for case in cases {
        let label = case.label;
        let before = app.event_count().await;
        let response = case
            .request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{label}: the body is not JSON ({e}): {text}"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (case.status, Some(case.code)),
            "{label}: {text}"
        );
        assert!(body["error"]["message"].is_string(), "{label}: {text}");
        assert_eq!(app.event_count().await, before, "{label}: events appended");
    }
}

#[tokio::test]
async fn malformed_requests_get_a_clear_4xx_and_append_nothing() {
    let app = spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let orgs = app.url("/api/v1/orgs");
    /// A route that answers POST only.
    const POST_ONLY: &str = "/api/v1/orgs/00000000-0000-0000-0000-000000000000/tasks/00000000-0000-0000-0000-000000000000/assignees";
    let raw = |body: &'static str| {
        c.post(&orgs)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_refused(
        &app,
        vec![
            Refused::new(
                "anonymous create",
                app.http.post(&orgs).json(&json!({"name": "A"})),
                401,
                "unauthenticated",
            ),
            Refused::new("cut-off JSON", raw("{\"name\": "), 400, "malformed_json"),
            Refused::new(
                "an unknown field",
                raw("{\"name\": \"A\", \"evil\": 1}"),
                400,
                "invalid_body",
            ),
            Refused::new(
                "a number for a name",
                raw("{\"name\": 5}"),
                400,
                "invalid_body",
            ),
            Refused::new("an array for a body", raw("[]"), 400, "invalid_body"),
            Refused::new(
                "no content type",
                c.post(&orgs).body("{\"name\":\"A\"}"),
                400,
                "unsupported_content_type",
            ),
            Refused::new(
                "a blank name",
                c.post(&orgs).json(&json!({"name": "   "})),
                422,
                "validation_failed",
            ),
            Refused::new(
                "an empty idempotency key",
                c.post(&orgs)
                    .header("idempotency-key", "")
                    .json(&json!({"name": "A"})),
                400,
                "invalid_idempotency_key",
            ),
            Refused::new(
                "an unknown route",
                c.get(app.url("/api/v1/nope")),
                404,
                "route_not_found",
            ),
            Refused::new(
                "GET on a POST-only route",
                c.get(app.url(POST_ONLY)),
                405,
                "method_not_allowed",
            ),
            Refused::new(
                "a history page of 0",
                c.get(app.url("/api/v1/streams/organization/x/events?limit=0")),
                400,
                "invalid_query",
            ),
            Refused::new(
                "the history of no stream",
                c.get(app.url("/api/v1/streams/organization/x/events")),
                404,
                "stream_not_found",
            ),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn bad_ids_and_references_get_a_clear_4xx_and_append_nothing() {
    let app = spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&c, "Acme").await;
    let user = Uuid::new_v4();
    let team = Uuid::new_v4();
    let members = app.url(&format!("/api/v1/orgs/{org}/members"));
    let permissions = app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions"));
    assert_refused(
        &app,
        vec![
            Refused::new(
                "a user id that is no UUID",
                c.post(&members).json(&json!({"user_id": "nope"})),
                400,
                "invalid_id",
            ),
            Refused::new(
                "an org id that is no UUID",
                c.post(app.url("/api/v1/orgs/not-a-uuid/members"))
                    .json(&json!({"user_id": user})),
                400,
                "invalid_id",
            ),
            Refused::new(
                "an org that does not exist",
                c.post(app.url(&format!("/api/v1/orgs/{}/members", Uuid::new_v4())))
                    .json(&json!({"user_id": user})),
                404,
                "organization_not_found",
            ),
            Refused::new(
                "removing someone who is not a member",
                c.delete(format!("{members}/{user}")),
                422,
                "not_member",
            ),
            Refused::new(
                "an unknown permission",
                c.put(&permissions)
                    .json(&json!({"permissions": ["tasks.fly"]})),
                400,
                "unknown_permission",
            ),
            Refused::new(
                "a team that does not exist",
                c.put(&permissions).json(&json!({"permissions": []})),
                404,
                "team_not_found",
            ),
        ],
    )
    .await;
    app.stop().await;
}

/// A body over the limit is refused with 413 `payload_too_large`. The request is written by
/// hand, reading while writing: the server answers once it has read past the limit and closes,
/// and an HTTP client still sending the rest then reports a broken pipe instead of the answer.
#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let key = key_with(&app, &c, &["admin"]).await;
    let before = app.event_count().await;
    let stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let body = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let request = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    let writer = tokio::spawn(async move {
        // Fails with a broken pipe once the server has answered and closed: expected.
        let _ = write.write_all(request.as_bytes()).await;
        write
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        // Up to the end of the answer, or the reset that may follow it.
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the server answers");
    drop(writer.await.expect("writer"));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_repeated_returns_the_first_receipt() {
    let app = spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let before = app.event_count().await;
    let send = || {
        c.post(app.url("/api/v1/orgs"))
            .header("idempotency-key", "create-acme-1")
            .json(&json!({"name": "Acme"}))
            .send()
    };
    let first = send().await.expect("first");
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let again = send().await.expect("again");
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(first, again);
    assert_eq!(app.event_count().await, before + 8);

    // The same key on a different request is a conflict, not a silent replay.
    let org = first["id"].as_str().expect("id");
    let other = c
        .patch(app.url(&format!("/api/v1/orgs/{org}")))
        .header("idempotency-key", "create-acme-1")
        .json(&json!({"name": "B"}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(other, 409).await, "idempotency_key_reused");
    assert_eq!(app.event_count().await, before + 8);
    app.stop().await;
}

/// `path` with its `{parameters}` filled in: an aggregate type where one is wanted, a fresh
/// UUID elsewhere.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{aggregate_type}" => "organization".to_owned(),
            s if s.starts_with('{') => Uuid::new_v4().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The OpenAPI document and the router agree both ways: every operation the router serves is
/// documented, and every documented operation is served. `gateway::api_routes()` is the
/// router's list (kept beside each module's `router()`); it is itself probed against the
/// running server, so it cannot claim a route that is not served, nor miss a method that is.
#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_router_serves() {
    let app = spawn_app().await;
    let doc = json_with(
        app.http
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .expect("send"),
        200,
    )
    .await;
    assert_eq!(doc["openapi"], "3.1.0");
    for schema in ["Receipt", "Error"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "no {schema} schema"
        );
    }
    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                documented.insert((method, path.clone()));
            }
        }
    }
    let listed = gateway::api_routes();
    let served: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(method, path)| (method.to_string(), (*path).to_owned()))
        .collect();
    assert_eq!(served.len(), listed.len(), "a route is listed twice");
    assert!(!served.is_empty());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );

    // The list is the router's: on each listed path, a listed method reaches its handler
    // (which, anonymous, answers 401, or 200 for the public document), any other is 405.
    let paths: BTreeSet<&str> = served.iter().map(|(_, path)| path.as_str()).collect();
    for path in paths {
        let url = app.url(&format!("/api/v1{}", concrete(path)));
        for method in METHODS {
            let response = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    &url,
                )
                .send()
                .await
                .expect("probe");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            if served.contains(&(method.to_owned(), path.to_owned())) {
                let expected = if path == "/openapi.json" { 200 } else { 401 };
                assert_eq!(status, expected, "{method} {path} is listed: {body}");
            } else {
                assert_eq!(status, 405, "{method} {path} is not listed: {body}");
            }
        }
    }
    app.stop().await;
}
