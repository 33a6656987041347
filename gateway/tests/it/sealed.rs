//! Review finding 4: the server decrypted sealed values found anywhere in user text. A sealed
//! value opens only in the field that sealed it, for the subject it was sealed for.

use crate::support;

use serde_json::{json, Value};
use support::spawn_app;

/// User D's sealed email, copied from the database (as anyone holding a backup or read access to
/// NATS could), pasted by user C into her own task's description, comes back in stream history as
/// the literal sealed text, never as D's address.
#[tokio::test]
async fn sealed_data_opens_only_where_it_was_sealed() {
    let app = spawn_app().await;
    let dave_email = "dave.sealed@example.com";
    let dave = app.sign_in(dave_email).await;
    let carol = app.sign_in("carol.sealed@example.com").await;
    let dave_id = dave
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json::<Value>()
        .await
        .expect("json")["user_id"]
        .as_str()
        .expect("user id")
        .to_owned();

    let pool = app.db.pool(1).await;
    let stolen: String = sqlx::query_scalar(
        "SELECT payload->>'email' FROM events
          WHERE aggregate_type = 'account' AND aggregate_id = $1 AND event_type = 'account.registered'",
    )
    .bind(&dave_id)
    .fetch_one(&pool)
    .await
    .expect("dave's sealed email");
    assert!(stolen.starts_with("enc:"), "{stolen}");
    assert!(!stolen.contains(dave_email));

    let org = app.create_org_as(&carol, "Carol's org").await;
    let created = carol
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": "Look", "description": stolen}))
        .send()
        .await
        .expect("create task");
    assert_eq!(created.status(), 201);
    let task = created.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("task id")
        .to_owned();

    let history = carol
        .get(app.url(&format!("/api/v1/streams/task/{task}/events")))
        .send()
        .await
        .expect("history");
    assert_eq!(history.status(), 200);
    let body: Value = history.json().await.expect("json");
    let text = body.to_string();
    assert!(!text.contains(dave_email), "D's address leaked: {text}");
    let created_event = &body["events"][0];
    assert_eq!(
        created_event["data"]["description"],
        stolen.as_str(),
        "the pasted value comes back as the literal text: {created_event}"
    );

    // The owner still reads his own address in his own history.
    let own: Value = dave
        .get(app.url(&format!("/api/v1/streams/account/{dave_id}/events")))
        .send()
        .await
        .expect("own history")
        .json()
        .await
        .expect("json");
    let registered = own["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "account.registered")
        .expect("registered")
        .clone();
    assert_eq!(registered["data"]["email"], dave_email);
    pool.close().await;
    app.stop().await;
}
