//! Start-up behaviour: bad configuration, PostgreSQL down at start, the CLI.

use crate::support;

use std::process::Command;
use std::time::Duration;

use eventstore::testing::TestDb;
use support::start;
use tokio::net::{TcpListener, TcpStream};

fn cairn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_remove("RUST_LOG")
        .env("CAIRN_BIND", "127.0.0.1:0")
        .env("CAIRN_SECRET_KEY", support::SECRET_KEY);
    c
}

#[test]
fn an_unparseable_database_url_exits_with_one_line_naming_it() {
    let out = cairn()
        .env("DATABASE_URL", "postgres://[::1")
        .arg("migrate")
        .output()
        .expect("run cairn");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn verify_reports_intact_chains_and_names_a_tampered_event() {
    let app = support::spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&c, "Acme").await;
    app.create_org_as(&c, "Other").await;
    let url = app.db.url();
    let run = |url: String| {
        let out = cairn()
            .env("DATABASE_URL", url)
            .arg("verify")
            .output()
            .expect("run cairn");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(url)
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("every hash chain intact"),
        "{stdout}"
    );

    let pool = app.db.pool(1).await;
    let mut tx = pool.begin().await.expect("begin");
    for sql in [
        "ALTER TABLE events DISABLE TRIGGER USER".to_owned(),
        format!("UPDATE events SET metadata = metadata || '{{\"actor\":\"user:mallory\"}}' WHERE aggregate_id = '{org}'"),
        "ALTER TABLE events ENABLE TRIGGER USER".to_owned(),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.expect("tamper");
    }
    tx.commit().await.expect("commit");
    let (code, stdout) = tokio::task::spawn_blocking(move || run(url))
        .await
        .expect("join");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("organization/{org} sequence 1")),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test]
async fn projections_are_listed_and_replayed_from_the_cli() {
    let app = support::spawn_app().await;
    app.sign_in("ada@example.com").await;
    let url = app.db.url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        let list = cairn()
            .env("DATABASE_URL", &url)
            .arg("projections")
            .output()
            .expect("run");
        let replay = cairn()
            .env("DATABASE_URL", &url)
            .args(["replay", "identity"])
            .output()
            .expect("run");
        let unknown = cairn()
            .env("DATABASE_URL", &url)
            .args(["replay", "nope"])
            .output()
            .expect("run");
        assert_ne!(unknown.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("no projection named `nope`"));
        (
            replay.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&list.stdout),
                String::from_utf8_lossy(&replay.stdout)
            ),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("identity") && out.contains("memberships"),
        "{out}"
    );
    assert!(out.contains("replayed identity"), "{out}");
    // The server keeps working on the rebuilt read model.
    let me = support::browser();
    app.sign_in_with(&me, "ada@example.com").await;
    app.stop().await;
}

/// Forwards connections from `listener` to the local PostgreSQL: "PostgreSQL coming up".
async fn forward_to_postgres(listener: TcpListener) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn postgres_down_at_start_fails_readyz_then_recovers() {
    let db = TestDb::empty().await;
    // A port with nothing listening: PostgreSQL is "down".
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/{}", db.name());
    let app = start(db, url).await;
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(app.ready_status().await, 503);
    let api = app.send_link(&support::browser(), "ada@example.com").await;
    assert_eq!(support::error_code(api, 503).await, "unavailable");
    tokio::time::sleep(Duration::from_millis(600)).await; // let it fail and back off at least once
    assert_eq!(app.ready_status().await, 503);

    // PostgreSQL "comes up" on that port.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the port");
    tokio::spawn(forward_to_postgres(listener));
    app.wait_ready(Duration::from_secs(20)).await;
    let c = app.sign_in("ada@example.com").await;
    app.create_org_as(&c, "Acme").await;
    app.stop().await;
}
