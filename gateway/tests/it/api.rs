//! The HTTP API end to end: real server, real PostgreSQL, real HTTP client.

use crate::support;

use serde_json::{json, Value};
use support::{error_code, spawn_app};
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
    let cursor = created.headers()["cairn-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = created.json().await.expect("json");
    let org = body["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/api/v1/orgs/{org}"));
    assert_eq!(body["receipt"]["cursor"], cursor.as_str());
    assert_eq!(body["receipt"]["events"][0]["sequence"], 1);
    assert_eq!(body["receipt"]["events"].as_array().map(Vec::len), Some(5));

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
            // Then the commands above, in order.
            "organization.renamed",
            "organization.member_added",
            "organization.team_created",
            "organization.team_permissions_set",
            "organization.team_member_added",
            "organization.team_member_removed",
            "organization.team_renamed",
            "organization.team_deleted",
            "organization.member_removed",
        ]
    );
    assert_eq!(events.len(), 14);
    let last = &events[13];
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
    assert_eq!(last["prev_hash"], events[12]["hash"]);
    assert_eq!(events[4]["cursor"], cursor.as_str());

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

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_appends_nothing() {
    let app = spawn_app().await;
    let anonymous = app
        .http
        .post(app.url("/api/v1/orgs"))
        .json(&json!({"name": "A"}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(anonymous, 401).await, "unauthenticated");
    let c = app.sign_in("ada@example.com").await;
    let before = app.event_count().await;
    let raw = |body: &'static str| {
        c.post(app.url("/api/v1/orgs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        error_code(raw("{\"name\": ").await.expect("send"), 400).await,
        "malformed_json"
    );
    assert_eq!(
        error_code(
            raw("{\"name\": \"A\", \"evil\": 1}").await.expect("send"),
            400
        )
        .await,
        "invalid_body"
    );
    assert_eq!(
        error_code(raw("{\"name\": 5}").await.expect("send"), 400).await,
        "invalid_body"
    );
    assert_eq!(
        error_code(raw("[]").await.expect("send"), 400).await,
        "invalid_body"
    );
    let no_type = c
        .post(app.url("/api/v1/orgs"))
        .body("{\"name\":\"A\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(no_type, 400).await, "unsupported_content_type");
    assert_eq!(
        error_code(
            app.post_as(&c, "/api/v1/orgs", json!({"name": "   "}))
                .await,
            422
        )
        .await,
        "validation_failed"
    );
    let huge = "x".repeat(2 * 1024 * 1024);
    assert_eq!(
        error_code(
            app.post_as(&c, "/api/v1/orgs", json!({"name": huge})).await,
            413
        )
        .await,
        "payload_too_large"
    );
    let bad_key = c
        .post(app.url("/api/v1/orgs"))
        .header("idempotency-key", "")
        .json(&json!({"name": "A"}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(bad_key, 400).await, "invalid_idempotency_key");
    assert_eq!(app.event_count().await, before);

    let org = app.create_org_as(&c, "Acme").await;
    let before = app.event_count().await;
    let user = Uuid::new_v4();
    let members = format!("/api/v1/orgs/{org}/members");
    assert_eq!(
        error_code(
            app.post_as(&c, &members, json!({"user_id": "nope"})).await,
            400
        )
        .await,
        "invalid_id"
    );
    assert_eq!(
        error_code(
            app.post_as(
                &c,
                "/api/v1/orgs/not-a-uuid/members",
                json!({"user_id": user})
            )
            .await,
            400
        )
        .await,
        "invalid_id"
    );
    let missing = format!("/api/v1/orgs/{}/members", Uuid::new_v4());
    assert_eq!(
        error_code(
            app.post_as(&c, &missing, json!({"user_id": user})).await,
            404
        )
        .await,
        "organization_not_found"
    );
    let not_member = c
        .delete(app.url(&format!("{members}/{user}")))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(not_member, 422).await, "not_member");
    let team = Uuid::new_v4();
    let perms = c
        .put(app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions")))
        .json(&json!({"permissions": ["tasks.fly"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(perms, 400).await, "unknown_permission");
    let perms = c
        .put(app.url(&format!("/api/v1/orgs/{org}/teams/{team}/permissions")))
        .json(&json!({"permissions": []}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(perms, 404).await, "team_not_found");
    assert_eq!(
        error_code(
            c.get(app.url("/api/v1/nope")).send().await.expect("send"),
            404
        )
        .await,
        "route_not_found"
    );
    assert_eq!(
        error_code(
            c.get(app.url("/api/v1/orgs")).send().await.expect("send"),
            405
        )
        .await,
        "method_not_allowed"
    );
    let history = c
        .get(app.url("/api/v1/streams/organization/x/events?limit=0"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(history, 400).await, "invalid_query");
    let history = c
        .get(app.url("/api/v1/streams/organization/x/events"))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(history, 404).await, "stream_not_found");
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
    assert_eq!(app.event_count().await, before + 5);

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
    assert_eq!(app.event_count().await, before + 5);
    app.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/orgs", "post"),
        ("/orgs/{org}", "patch"),
        ("/orgs/{org}/members", "post"),
        ("/orgs/{org}/members/{user}", "delete"),
        ("/orgs/{org}/teams", "post"),
        ("/orgs/{org}/teams/{team}", "patch"),
        ("/orgs/{org}/teams/{team}", "delete"),
        ("/orgs/{org}/teams/{team}/permissions", "put"),
        ("/orgs/{org}/teams/{team}/members", "post"),
        ("/orgs/{org}/teams/{team}/members/{user}", "delete"),
        ("/streams/{aggregate_type}/{aggregate_id}/events", "get"),
        ("/events", "get"),
        ("/events/stream", "get"),
        ("/orgs/{org}/labels", "post"),
        ("/orgs/{org}/categories/{id}", "patch"),
        ("/orgs/{org}/tasks", "get"),
        ("/orgs/{org}/tasks", "post"),
        ("/orgs/{org}/tasks/{task}", "patch"),
        ("/orgs/{org}/tasks/{task}/assignees/{user}", "delete"),
        ("/orgs/{org}/tasks/{task}/comments", "post"),
        ("/orgs/{org}/members", "get"),
        ("/me", "get"),
        ("/me", "delete"),
        ("/me/sessions", "get"),
        ("/me/sessions/{id}", "delete"),
        ("/me/api-keys", "get"),
        ("/me/api-keys", "post"),
        ("/me/api-keys/{id}", "delete"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    app.stop().await;
}
