//! Every list is bounded: `?limit=` from 1 to 200, `?page=` the previous page's `next`
//! (security review, finding 14: unbounded lists).

use crate::support;

use serde_json::{json, Value};

/// Follows `next` from the first page of `url` with `limit`, returning every row of `field`
/// and how many pages it took.
async fn every_page(
    client: &reqwest::Client,
    url: &str,
    field: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut page: Option<String> = None;
    loop {
        let mut request = client.get(url).query(&[("limit", limit.to_string())]);
        if let Some(page) = &page {
            request = request.query(&[("page", page)]);
        }
        let body: Value = request
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let got = body[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field}: {body}"));
        assert!(got.len() <= limit, "{field}: a page holds at most `limit`");
        rows.extend(got.iter().cloned());
        pages += 1;
        match body["next"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => return (rows, pages),
        }
        assert!(pages < 50, "{field}: pages never end");
    }
}

async fn post_ok(client: &reqwest::Client, url: String, body: Value) -> Value {
    let r = client.post(&url).json(&body).send().await.expect("post");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test]
async fn lists_of_comments_members_teams_labels_sessions_and_keys_are_paginated() {
    let app = support::spawn_app().await;
    let ada = app.sign_in("ada@example.com").await;
    // Two more sessions for ada (three in all).
    app.sign_in("ada@example.com").await;
    app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&ada, "Acme").await;
    let api = |path: &str| app.url(&format!("/api/v1/orgs/{org}{path}"));
    for n in 0..3 {
        let other = app.sign_in(&format!("m{n}@example.com")).await;
        let me: Value = other
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("json");
        post_ok(&ada, api("/members"), json!({"user_id": me["user_id"]})).await;
        post_ok(&ada, api("/teams"), json!({"name": format!("Team {n}")})).await;
        post_ok(
            &ada,
            api("/labels"),
            json!({"name": format!("Label {n}"), "color": "#112233"}),
        )
        .await;
        post_ok(
            &ada,
            app.url("/api/v1/me/api-keys"),
            json!({"name": format!("key {n}"), "scopes": ["tasks:read"]}),
        )
        .await;
    }
    let task = post_ok(&ada, api("/tasks"), json!({"title": "talk"})).await;
    let task = task["id"].as_str().expect("id").to_owned();
    for n in 0..3 {
        post_ok(
            &ada,
            api(&format!("/tasks/{task}/comments")),
            json!({"body": format!("comment {n}")}),
        )
        .await;
    }

    for (url, field, expected) in [
        (api("/members"), "members", 4),
        // Administrators, Members (every new organization's default team) and three more.
        (api("/teams"), "teams", 5),
        (api("/labels"), "labels", 3),
        (api(&format!("/tasks/{task}/comments")), "comments", 3),
        (app.url("/api/v1/me/sessions"), "sessions", 3),
        (app.url("/api/v1/me/api-keys"), "api_keys", 3),
    ] {
        let (whole, one_page) = every_page(&ada, &url, field, 200).await;
        assert_eq!((whole.len(), one_page), (expected, 1), "{field}");
        let (paged, pages) = every_page(&ada, &url, field, 2).await;
        assert_eq!(
            paged, whole,
            "{field}: the pages, in order, are the whole list"
        );
        assert_eq!(pages, expected.div_ceil(2), "{field}");
        for bad in [("limit", "0"), ("limit", "201"), ("page", "not-a-page")] {
            let r = ada.get(&url).query(&[bad]).send().await.expect("list");
            assert_eq!(
                support::error_code(r, 400).await,
                "invalid_query",
                "{field} {bad:?}"
            );
        }
    }
    app.stop().await;
}
