//! Finding 1 of the 2026-12-03 security review, live: a member holding only
//! `admin.manageTeams` must not be able to make himself administrator and take the
//! organization from its founder.

use crate::support;

use serde_json::{json, Value};
use support::{error_code, spawn_app, TestApp};

async fn user_id(app: &TestApp, client: &reqwest::Client) -> String {
    let me: Value = client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("GET /me")
        .json()
        .await
        .expect("json");
    me["user_id"].as_str().expect("user_id").to_owned()
}

/// Sends `request`, expects 200 and returns the `Cairn-Cursor` of the write.
async fn ok(request: reqwest::RequestBuilder) -> String {
    let r = request.send().await.expect("request");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    r.headers()["cairn-cursor"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Expects a 403 with the stable `forbidden` code naming `admin.administrator`.
async fn forbidden(request: reqwest::RequestBuilder) {
    let r = request.send().await.expect("request");
    assert_eq!(r.status(), 403, "expected 403");
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("admin.administrator"),
        "{body}"
    );
}

#[tokio::test]
async fn escalation_a_team_manager_cannot_make_himself_administrator() {
    let app = spawn_app().await;
    let founder = app.sign_in("founder@example.com").await;
    let founder_id = user_id(&app, &founder).await;
    let org = app.create_org_as(&founder, "Acme").await;
    let mallory = app.sign_in("mallory@example.com").await;
    let mallory_id = user_id(&app, &mallory).await;
    let api = |path: &str| app.url(&format!("/api/v1/orgs/{org}{path}"));

    // The founder makes Mallory a member who may manage teams, and nothing more.
    ok(founder
        .post(api("/members"))
        .json(&json!({ "user_id": mallory_id })))
    .await;
    let ops: Value = app
        .post_as(
            &founder,
            &format!("/api/v1/orgs/{org}/teams"),
            json!({"name": "Ops"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let ops = ops["id"].as_str().expect("team id").to_owned();
    ok(founder
        .put(api(&format!("/teams/{ops}/permissions")))
        .json(&json!({ "permissions": ["admin.manageTeams"] })))
    .await;
    let cursor = ok(founder
        .post(api(&format!("/teams/{ops}/members")))
        .json(&json!({ "user_id": mallory_id })))
    .await;
    let teams: Value = founder
        .get(api(&format!("/teams?after={cursor}")))
        .send()
        .await
        .expect("teams")
        .json()
        .await
        .expect("json");
    let admins = teams["teams"]
        .as_array()
        .expect("teams")
        .iter()
        .find(|t| t["name"] == "Administrators")
        .and_then(|t| t["id"].as_str())
        .expect("the founder's Administrators team")
        .to_owned();

    // Mallory tries to give his own team administrator, and a team of his own making.
    forbidden(
        mallory
            .put(api(&format!("/teams/{ops}/permissions")))
            .json(&json!({ "permissions": ["admin.administrator"] })),
    )
    .await;
    let mine: Value = app
        .post_as(
            &mallory,
            &format!("/api/v1/orgs/{org}/teams"),
            json!({"name": "Mine"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let mine = mine["id"].as_str().expect("team id").to_owned();
    forbidden(
        mallory
            .put(api(&format!("/teams/{mine}/permissions")))
            .json(&json!({ "permissions": ["admin.administrator"] })),
    )
    .await;
    // ... to join the Administrators team ...
    forbidden(
        mallory
            .post(api(&format!("/teams/{admins}/members")))
            .json(&json!({ "user_id": mallory_id })),
    )
    .await;
    // ... and so still cannot rename the organization or remove its founder.
    let rename = mallory
        .patch(api(""))
        .json(&json!({ "name": "Mallory Inc" }));
    assert_eq!(
        error_code(rename.send().await.expect("rename"), 403).await,
        "forbidden"
    );
    let remove = mallory.delete(api(&format!("/members/{founder_id}")));
    assert_eq!(
        error_code(remove.send().await.expect("remove"), 403).await,
        "forbidden"
    );

    // The founder still holds the organization.
    let members = founder.get(api("/members")).send().await.expect("members");
    assert_eq!(members.status(), 200);
    let members: Value = members.json().await.expect("json");
    assert!(
        members["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["user_id"] == founder_id.as_str()),
        "{members}"
    );
    app.stop().await;
}
