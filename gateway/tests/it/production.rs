//! Production mode: secure cookies and the HTTPS security headers, as a deployment behind
//! `https://cairn.example` sends them (test review 2026-12-03, missing test 10).

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use support::TestApp;

const PUBLIC: &str = "https://cairn.example";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const HSTS: &str = "max-age=63072000; includeSubDomains";

async fn production_app() -> TestApp {
    support::spawn_app_with(&[
        ("CAIRN_DEV_INSECURE_COOKIES", "false".to_owned()),
        ("CAIRN_PUBLIC_URL", PUBLIC.to_owned()),
    ])
    .await
}

/// A client that does not follow redirects and sends no cookies of its own.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The sign-in link (on the public URL) in a new mail of the file outbox.
async fn next_link(app: &TestApp, seen: &mut HashSet<std::path::PathBuf>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for path in app.outbox_files() {
            if path.extension().is_some_and(|e| e == "eml") && seen.insert(path.clone()) {
                let raw = std::fs::read_to_string(&path).expect("read eml");
                let unfolded = raw
                    .replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=");
                let start = unfolded
                    .find(&format!("{PUBLIC}/auth/verify/"))
                    .expect("the mail links to the public URL");
                let rest = &unfolded[start..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
                    .unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail arrived in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the security headers of production mode on `r`, naming `case`.
fn assert_security_headers(r: &reqwest::Response, case: &str) {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    for (name, value) in [
        ("strict-transport-security", HSTS),
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        assert_eq!(header(name).as_deref(), Some(value), "{case}: {name}");
    }
}

#[tokio::test]
async fn production_mode_sets_a_secure_host_cookie_and_the_security_headers_everywhere() {
    let app = production_app().await;
    let mut seen = app.outbox_files();
    let r = plain()
        .post(app.url("/auth/send-link"))
        .header("origin", PUBLIC)
        .json(&serde_json::json!({"email": "ada@example.com"}))
        .send()
        .await
        .expect("send-link");
    assert_eq!(r.status(), 202);
    let link = next_link(&app, &mut seen).await;
    let path = link.trim_start_matches(PUBLIC);
    assert!(path.starts_with("/auth/verify/"), "{link}");

    // Confirming: a `__Host-` cookie with exactly these attributes.
    let done = plain()
        .post(app.url(path))
        .header("origin", PUBLIC)
        .send()
        .await
        .expect("confirm");
    assert_eq!(done.status(), 303);
    assert_security_headers(&done, "sign-in redirect");
    let set_cookie: Vec<&str> = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    let mut parts = set_cookie[0].split("; ");
    let pair = parts.next().expect("name=value");
    let (name, token) = pair.split_once('=').expect("name=value");
    assert_eq!(name, "__Host-cairn_session");
    assert!(!token.is_empty());
    let attributes: Vec<&str> = parts.collect();
    let max_age = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .and_then(|v| v.parse::<i64>().ok())
        .expect("a Max-Age");
    assert!(max_age > 0, "{max_age}");
    let max_age = format!("Max-Age={max_age}");
    assert_eq!(
        attributes,
        [
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            max_age.as_str(),
            "Secure"
        ],
        "{}",
        set_cookie[0]
    );

    // The cookie signs in (sent by hand: the test talks plain http to the server).
    let me = plain()
        .get(app.url("/api/v1/me"))
        .header("cookie", pair)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    assert_security_headers(&me, "API response");
    let denied = plain().get(app.url("/api/v1/me")).send().await.expect("me");
    assert_security_headers(&denied, "error response");
    assert_eq!(support::error_code(denied, 401).await, "unauthenticated");
    let page = plain().get(app.url("/")).send().await.expect("home");
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert_security_headers(&page, "HTML page");
    app.stop().await;
}
