//! Identity end to end: magic links over a real SMTP server and the file outbox, sessions, API
//! keys and their scopes, CSRF, rate limits, revocation, and erasure.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::Jar;
use serde_json::{json, Value};
use support::{
    browser, error_code, find_link, json_with, smtp_server, spawn_app, spawn_app_with, user_id_of,
    with_key, TestApp, ORIGIN,
};

async fn get_me(client: &reqwest::Client, app: &TestApp) -> reqwest::Response {
    client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("GET /me")
}

/// Signs `email` in with a page (a browser sending the page's `Origin`) and returns it with a
/// bare client sharing its cookie jar: the cookie riding a request that no page sent.
async fn page_and_bare(app: &TestApp, email: &str) -> (reqwest::Client, reqwest::Client) {
    let jar = Arc::new(Jar::default());
    let page = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .default_headers(
            [(
                reqwest::header::ORIGIN,
                reqwest::header::HeaderValue::from_static(ORIGIN),
            )]
            .into_iter()
            .collect(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    app.sign_in_with(&page, email).await;
    let bare = reqwest::Client::builder()
        .cookie_provider(jar)
        .build()
        .expect("client");
    (page, bare)
}

/// Runs the `cairn` CLI on `app`'s database; returns its exit code and standard output.
async fn cairn(app: &TestApp, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env_remove("RUST_LOG")
        .env("DATABASE_URL", app.db.url())
        .env("CAIRN_SECRET_KEY", support::SECRET_KEY)
        .args(args)
        .output()
        .await
        .expect("run cairn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_magic_link_sent_over_smtp_signs_the_person_in() {
    let (port, mut inbox) = smtp_server().await;
    let app = spawn_app_with(&[("SMTP_URL", format!("smtp://127.0.0.1:{port}"))]).await;
    let client = browser();
    let sent = app.send_link(&client, "  Grace@Example.COM ").await;
    assert_eq!(sent.status(), 202);

    let (to, raw) = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("the mail arrives")
        .expect("smtp server running");
    assert_eq!(to, ["grace@example.com"]);
    assert!(raw.contains("Subject: Your Cairn sign-in link"), "{raw}");
    assert!(raw.contains("text/html"), "the mail has an HTML part");
    let link = find_link(&raw).expect("a link built from CAIRN_PUBLIC_URL");

    // Following the link only shows a confirm page (mail scanners prefetch links)...
    let page = client
        .get(app.url(link.trim_start_matches(ORIGIN)))
        .send()
        .await
        .expect("GET link");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<form method=\"post\""));
    // ... and posting the form signs in.
    let done = app.confirm(&client, &link).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/");
    let cookie = done.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for part in ["cairn_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let me: Value = get_me(&client, &app).await.json().await.expect("json");
    assert_eq!(me["email"], "grace@example.com");
    assert_eq!(me["auth"]["type"], "session");
    let home = client
        .get(app.url("/"))
        .send()
        .await
        .expect("home")
        .text()
        .await
        .expect("html");
    assert!(home.contains("grace@example.com"), "{home}");
    app.stop().await;
}

#[tokio::test]
async fn a_magic_link_through_the_file_outbox_signs_the_person_in() {
    let app = spawn_app().await;
    let client = app.sign_in("ada@example.com").await;
    let me: Value = get_me(&client, &app).await.json().await.expect("json");
    assert_eq!(me["email"], "ada@example.com");
    // The same address signs in to the same account.
    let again = app.sign_in("ADA@example.com").await;
    let me_again: Value = get_me(&again, &app).await.json().await.expect("json");
    assert_eq!(me["user_id"], me_again["user_id"]);
    app.stop().await;
}

/// The sessions started so far.
async fn session_count(app: &TestApp) -> i64 {
    let pool = app.db.pool(1).await;
    let n = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

#[tokio::test]
async fn a_used_or_unknown_link_gives_one_error_and_no_session() {
    let app = spawn_app().await;
    let mut seen = app.outbox_files();

    let first = browser();
    assert_eq!(app.send_link(&first, "ada@example.com").await.status(), 202);
    let link = app.next_outbox_link(&mut seen).await;
    assert_eq!(app.confirm(&first, &link).await.status(), 303);
    let reuser = browser();
    let reused = app.confirm(&reuser, &link).await;
    assert_eq!(reused.status(), 400);
    let page = reused.text().await.expect("html");
    assert!(page.contains("invalid or has expired"), "{page}");
    assert_eq!(get_me(&reuser, &app).await.status(), 401);

    // Unknown, well-formed or not.
    let stranger = browser();
    for path in [
        format!(
            "/auth/verify/{}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            uuid::Uuid::new_v4().simple()
        ),
        "/auth/verify/not-a-token".to_owned(),
    ] {
        let r = stranger.post(app.url(&path)).send().await.expect("post");
        assert_eq!(r.status(), 400, "{path}");
    }
    assert_eq!(
        session_count(&app).await,
        1,
        "only the first, valid use started a session"
    );
    app.stop().await;
}

/// Its own app with a short link TTL; the mail goes to an SMTP server (which keeps it, where the
/// file outbox deletes it when the link expires), and the test waits until the link's recorded
/// expiry has passed by the database's clock, not for a fixed time.
#[tokio::test]
async fn an_expired_link_gives_the_same_error_and_no_session() {
    let (port, mut inbox) = smtp_server().await;
    let app = spawn_app_with(&[
        ("SMTP_URL", format!("smtp://127.0.0.1:{port}")),
        ("CAIRN_LINK_TTL_SECONDS", "3".to_owned()),
    ])
    .await;
    let late = browser();
    assert_eq!(app.send_link(&late, "bob@example.com").await.status(), 202);
    let (_, raw) = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("the mail arrives")
        .expect("smtp server running");
    let link = find_link(&raw).expect("a sign-in link");
    let pool = app.db.pool(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let expired: Option<bool> = sqlx::query_scalar(
            "SELECT bool_and((payload ->> 'expires_at')::timestamptz < now()) FROM events
              WHERE event_type = 'account.magic_link_requested'",
        )
        .fetch_one(&pool)
        .await
        .expect("expiry");
        if expired.expect("the link request is recorded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    let refused = app.confirm(&late, &link).await;
    assert_eq!(refused.status(), 400);
    let page = refused.text().await.expect("html");
    assert!(page.contains("invalid or has expired"), "{page}");
    assert_eq!(get_me(&late, &app).await.status(), 401);
    assert_eq!(session_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_answer_is_the_same_for_known_and_unknown_addresses() {
    let app = spawn_app().await;
    app.sign_in("known@example.com").await;
    let client = browser();
    let known = app.send_link(&client, "known@example.com").await;
    let unknown = app.send_link(&client, "nobody@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(
        known.text().await.expect("body"),
        unknown.text().await.expect("body")
    );
    let invalid = app.send_link(&client, "not-an-address").await;
    assert_eq!(error_code(invalid, 422).await, "validation_failed");
    app.stop().await;
}

/// Its own app with a budget of two links a minute per address: one comes back every 30 s, so
/// the refusal is by count however slow the machine (the requests take far less).
#[tokio::test]
async fn links_beyond_an_addresss_budget_are_refused_and_other_addresses_are_not() {
    let app = spawn_app_with(&[("CAIRN_LINKS_PER_EMAIL", "2".to_owned())]).await;
    let client = browser();
    for n in 1..=2 {
        let sent = app.send_link(&client, "known@example.com").await;
        assert_eq!(sent.status(), 202, "link {n} of 2");
    }
    let limited = app.send_link(&client, "Known@Example.com").await;
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(error_code(limited, 429).await, "rate_limited");
    assert_eq!(
        app.send_link(&client, "other@example.com").await.status(),
        202
    );
    app.stop().await;
}

#[tokio::test]
async fn cross_site_mutations_riding_the_cookie_are_refused() {
    let app = spawn_app().await;
    let (page, bare) = page_and_bare(&app, "ada@example.com").await;
    let before = app.event_count().await;
    let create = |client: &reqwest::Client| {
        client
            .post(app.url("/api/v1/orgs"))
            .json(&json!({"name": "Acme"}))
    };

    let evil = create(&bare)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(evil, 403).await, "csrf_rejected");
    let cross = create(&bare)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(cross, 403).await, "csrf_rejected");
    let unmarked = create(&bare).send().await.expect("send");
    assert_eq!(error_code(unmarked, 403).await, "csrf_rejected");
    assert_eq!(app.event_count().await, before, "nothing was appended");

    let same_site = create(&bare)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("send");
    assert_eq!(same_site.status(), 201);
    assert_eq!(create(&page).send().await.expect("send").status(), 201);
    // Reads are not mutations.
    assert_eq!(get_me(&bare, &app).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_shown_once_and_bounded_by_their_scopes() {
    let app = spawn_app().await;
    let session = app.sign_in("ada@example.com").await;
    let issue = |scopes: Value| {
        session
            .post(app.url("/api/v1/me/api-keys"))
            .json(&json!({"name": "ci", "scopes": scopes}))
            .send()
    };
    let issued: Value = issue(json!(["events:read"]))
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let key = issued["key"].as_str().expect("the key is shown").to_owned();
    assert!(key.starts_with(&format!(
        "cairn_{}_",
        issued["prefix"].as_str().expect("prefix")
    )));
    let listed: Value = session
        .get(app.url("/api/v1/me/api-keys"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["api_keys"][0]["prefix"], issued["prefix"]);
    assert!(
        listed["api_keys"][0].get("key").is_none(),
        "never shown again"
    );

    let reader = with_key(&key);
    let who: Value = get_me(&reader, &app).await.json().await.expect("json");
    assert_eq!(who["auth"]["type"], "api_key");
    assert_eq!(who["auth"]["scopes"], json!(["events:read"]));
    // Without the write scope (`admin` for organizations), a key cannot mutate.
    let refused = reader
        .post(app.url("/api/v1/orgs"))
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(refused, 403).await, "insufficient_scope");
    let minted = reader
        .post(app.url("/api/v1/me/api-keys"))
        .json(&json!({"name": "x", "scopes": ["admin"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(minted, 403).await, "session_required");

    let admin: Value = issue(json!(["admin", "events:read"]))
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let writer = with_key(admin["key"].as_str().expect("key"));
    let org = app.create_org_as(&writer, "Acme").await;
    let history: Value = writer
        .get(app.url(&format!("/api/v1/streams/organization/{org}/events")))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let actor = format!("apikey:{}", admin["prefix"].as_str().expect("prefix"));
    assert_eq!(history["events"][0]["metadata"]["actor"], actor.as_str());

    for bad in [
        "cairn_zzzzzzzz_".to_owned() + &"0".repeat(64),
        "nonsense".to_owned(),
        key[..key.len() - 1].to_owned() + "x",
    ] {
        assert_eq!(
            error_code(get_me(&with_key(&bad), &app).await, 401).await,
            "invalid_credentials",
            "{bad}"
        );
    }
    assert_eq!(
        error_code(issue(json!(["tasks:fly"])).await.expect("send"), 400).await,
        "unknown_scope"
    );
    assert_eq!(
        error_code(issue(json!([])).await.expect("send"), 422).await,
        "no_scopes"
    );

    // Only digests are stored.
    let pool = app.db.pool(1).await;
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events e WHERE e::text LIKE '%' || $1 || '%'")
            .bind(&key[16..])
            .fetch_one(&pool)
            .await
            .expect("scan");
    assert_eq!(leaked, 0);
    app.stop().await;
}

#[tokio::test]
async fn revoked_sessions_and_keys_stop_working_at_once() {
    let app = spawn_app().await;
    let first = app.sign_in("ada@example.com").await;
    let second = app.sign_in("ada@example.com").await;
    let issued: Value = first
        .post(app.url("/api/v1/me/api-keys"))
        .json(&json!({"name": "ci", "scopes": ["events:read"]}))
        .send()
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let key = with_key(issued["key"].as_str().expect("key"));
    assert_eq!(get_me(&key, &app).await.status(), 200);
    let revoked = first
        .delete(app.url(&format!(
            "/api/v1/me/api-keys/{}",
            issued["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    assert_eq!(get_me(&key, &app).await.status(), 401);

    let listed: Value = first
        .get(app.url("/api/v1/me/sessions"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let sessions = listed["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2);
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    let revoked = first
        .delete(app.url(&format!(
            "/api/v1/me/sessions/{}",
            other["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    assert_eq!(get_me(&second, &app).await.status(), 401);
    assert_eq!(get_me(&first, &app).await.status(), 200);

    let out = first
        .post(app.url("/auth/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    assert_eq!(get_me(&first, &app).await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn erasure_leaves_no_plaintext_email_anywhere() {
    let app = spawn_app().await;
    let email = "erin.erasable@example.com";
    let erin = app.sign_in(email).await;
    let user_id = user_id_of(&app, &erin).await;
    app.create_org_as(&erin, "Erin's org").await;
    let history = json_with(
        erin.get(app.url(&format!("/api/v1/streams/account/{user_id}/events")))
            .send()
            .await
            .expect("history"),
        200,
    )
    .await;
    let registered = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "account.registered")
        .expect("registered")
        .clone();
    assert_eq!(
        registered["data"]["email"], email,
        "sealed data opens for its owner"
    );

    let erased = erin
        .delete(app.url("/api/v1/me"))
        .send()
        .await
        .expect("erase");
    json_with(erased, 200).await;
    assert_eq!(get_me(&erin, &app).await.status(), 401);

    // Every table, every row, as text: no plaintext address, nor its hex.
    let pool = app.db.pool(1).await;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM mail_outbox")
        .fetch_one(&pool)
        .await
        .expect("outbox");
    assert_eq!(outbox, 0, "sent mail does not linger");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    ).fetch_all(&pool).await.expect("tables");
    assert!(tables.len() >= 8, "{tables:?}");
    for table in &tables {
        let found: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} t WHERE t::text ILIKE '%' || $1 || '%' OR t::text ILIKE '%' || encode(convert_to($1, 'UTF8'), 'hex') || '%'"
        ))
        .bind("erin.erasable")
        .fetch_one(&pool)
        .await
        .expect("scan");
        assert_eq!(found, 0, "plaintext email found in {table}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_erased_history_still_reads_and_verifies() {
    let app = spawn_app().await;
    let erin = app.sign_in("erin.erasable@example.com").await;
    let user_id = user_id_of(&app, &erin).await;
    let erased = erin
        .delete(app.url("/api/v1/me"))
        .send()
        .await
        .expect("erase");
    json_with(erased, 200).await;

    let (code, out) = cairn(&app, &["history", "account", &user_id]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"email\":\"[erased]\""), "{out}");
    assert!(!out.contains("erin.erasable"), "{out}");
    assert!(out.contains("account.erased"), "{out}");
    let (code, out) = cairn(&app, &["verify"]).await;
    assert_eq!(code, Some(0), "{out}");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_erases_with_the_cli() {
    let app = spawn_app().await;
    let bob = app.sign_in("bob@example.com").await;
    let bob_id = user_id_of(&app, &bob).await;
    let (code, out) = cairn(&app, &["erase", &bob_id]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("erased"), "{out}");
    assert_eq!(get_me(&bob, &app).await.status(), 401);
    let (code, out) = cairn(&app, &["erase", "not-a-uuid"]).await;
    assert_ne!(code, Some(0), "{out}");
    app.stop().await;
}

#[tokio::test]
async fn an_erased_address_signs_up_again_as_a_new_person() {
    let app = spawn_app().await;
    let email = "erin.erasable@example.com";
    let erin = app.sign_in(email).await;
    let first = user_id_of(&app, &erin).await;
    let erased = erin
        .delete(app.url("/api/v1/me"))
        .send()
        .await
        .expect("erase");
    json_with(erased, 200).await;
    let again = app.sign_in(email).await;
    let second = user_id_of(&app, &again).await;
    assert_ne!(first, second);
    let me = json_with(get_me(&again, &app).await, 200).await;
    assert_eq!(me["email"], email);
    app.stop().await;
}

/// The content security policy Cairn sends (its pages need only their inline styles and
/// same-origin forms).
const SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                               form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[tokio::test]
async fn security_headers_everywhere_and_cors_only_on_the_api() {
    let app = spawn_app().await;
    let home = app.http.get(app.url("/")).send().await.expect("home");
    let api_error = app
        .http
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me");
    assert_eq!(api_error.status(), 401);
    for (label, response) in [("page", &home), ("API error", &api_error)] {
        for (header, value) in [
            ("content-security-policy", SECURITY_POLICY),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("cross-origin-opener-policy", "same-origin"),
        ] {
            assert_eq!(
                response.headers().get(header).map(|v| v.as_bytes()),
                Some(value.as_bytes()),
                "{label}: {header}"
            );
        }
        // Served over plain http (CAIRN_PUBLIC_URL is http://): no HSTS.
        assert!(
            !response.headers().contains_key("strict-transport-security"),
            "{label}"
        );
    }
    let preflight = |path: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://integrator.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let api = preflight("/api/v1/orgs").await.expect("preflight");
    assert_eq!(api.headers()["access-control-allow-origin"], "*");
    assert!(api.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .contains("authorization"));
    let auth = preflight("/auth/send-link").await.expect("preflight");
    assert!(!auth.headers().contains_key("access-control-allow-origin"));
    app.stop().await;
}

#[tokio::test]
async fn hsts_is_sent_when_the_public_url_is_https() {
    let app = spawn_app_with(&[("CAIRN_PUBLIC_URL", "https://cairn.example".to_owned())]).await;
    for path in ["/", "/api/v1/me", "/healthz"] {
        let response = app.http.get(app.url(path)).send().await.expect(path);
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.as_bytes()),
            Some(&b"max-age=63072000; includeSubDomains"[..]),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn origin_null_falls_back_to_fetch_metadata() {
    let app = spawn_app().await;
    let (_page, bare) = page_and_bare(&app, "ada@example.com").await;
    let create = || {
        bare.post(app.url("/api/v1/orgs"))
            .json(&json!({"name": "Acme"}))
            .header("origin", "null")
    };
    let alone = create().send().await.expect("send");
    assert_eq!(error_code(alone, 403).await, "csrf_rejected");
    let same = create()
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("send");
    assert_eq!(same.status(), 201);
    let home = app.http.get(app.url("/")).send().await.expect("home");
    assert_eq!(home.headers()["referrer-policy"], "same-origin");
    app.stop().await;
}

#[tokio::test]
async fn a_session_in_its_second_half_is_renewed_and_its_cookie_sent_again() {
    let app = spawn_app().await;
    let client = app.sign_in("ada@example.com").await;
    let pool = app.db.pool(1).await;
    sqlx::query("UPDATE sessions SET expires_at = now() + interval '1 day'")
        .execute(&pool)
        .await
        .expect("age the session");
    let response = get_me(&client, &app).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let renewed: bool =
            sqlx::query_scalar("SELECT expires_at > now() + interval '29 days' FROM sessions")
                .fetch_one(&pool)
                .await
                .expect("session");
        if renewed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let renewals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'account.session_renewed'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(renewals, 1);
    app.stop().await;
}

#[tokio::test]
async fn text_that_looks_sealed_does_not_break_history() {
    let app = spawn_app().await;
    let client = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&client, "Acme").await;
    let team = client
        .post(app.url(&format!("/api/v1/orgs/{org}/teams")))
        .json(&json!({"name": "enc:v1:x"}))
        .send()
        .await
        .expect("team");
    assert_eq!(team.status(), 201);
    let history = client
        .get(app.url(&format!("/api/v1/streams/organization/{org}/events")))
        .send()
        .await
        .expect("history");
    assert_eq!(history.status(), 200);
    let body: Value = history.json().await.expect("json");
    assert!(body.to_string().contains("enc:v1:x"));
    app.stop().await;
}
