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
    // Damage the identity read model: the replay must rebuild it from the events.
    let pool = app.db.pool(1).await;
    let accounts = || async {
        sqlx::query_scalar::<_, String>("SELECT t::text FROM accounts t ORDER BY user_id")
            .fetch_all(&pool)
            .await
            .expect("accounts")
    };
    let before = accounts().await;
    assert_eq!(before.len(), 1, "ada's account: {before:?}");
    sqlx::query("DELETE FROM accounts")
        .execute(&pool)
        .await
        .expect("delete");
    let url = app.db.url();
    let (code, list, replay) = tokio::task::spawn_blocking(move || {
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
            String::from_utf8_lossy(&list.stdout).into_owned(),
            String::from_utf8_lossy(&replay.stdout).into_owned(),
        )
    })
    .await
    .expect("join");
    // The listing: a header, then one row per projection and consumer, by name, with its kind,
    // position and lag; the mailer has no cursor, and its lag is its queue.
    let mut rows = list.lines();
    let header: Vec<&str> = rows.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["name", "kind", "cursor", "position", "lag"],
        "{list}"
    );
    let mut names = Vec::new();
    for row in rows {
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns.len(), 5, "{row}");
        if columns[0] != "mailer" {
            assert!(columns[3].parse::<i64>().is_ok(), "position in {row}");
        }
        assert!(columns[4].parse::<i64>().is_ok(), "lag in {row}");
        let kind = if projections::registry::NAMES.contains(&columns[0]) {
            "projection"
        } else {
            "consumer"
        };
        assert_eq!(columns[1], kind, "{row}");
        names.push(columns[0]);
    }
    let expected: Vec<&str> = projections::registry::NAMES
        .iter()
        .chain(projections::registry::CONSUMERS)
        .copied()
        .chain(["mailer"])
        .collect();
    assert_eq!(names, expected, "{list}");
    // The replay: exit 0 and its one line.
    assert_eq!(code, Some(0), "{replay}");
    let line = replay.trim_end();
    assert!(
        line.starts_with("replayed identity in ")
            && line.ends_with(" s")
            && line.lines().count() == 1,
        "{replay}"
    );
    assert_eq!(accounts().await, before, "the replay rebuilt the accounts");
    pool.close().await;
    // The server keeps working on the rebuilt read model.
    let me = support::browser();
    app.sign_in_with(&me, "ada@example.com").await;
    app.stop().await;
}

/// Stands in for PostgreSQL on `listener`: while `up` is false it is "down" (it accepts each
/// connection and closes it at once, counting them in `attempts`); once `up`, it forwards
/// connections to the local PostgreSQL. The test holds the port from start to end, so nothing
/// else can take it.
async fn stand_in_for_postgres(
    listener: TcpListener,
    up: tokio::sync::watch::Receiver<bool>,
    attempts: tokio::sync::watch::Sender<usize>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        if !*up.borrow() {
            attempts.send_modify(|n| *n += 1);
            drop(inbound);
            continue;
        }
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
    // PostgreSQL's stand-in, "down" for now.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (up, up_rx) = tokio::sync::watch::channel(false);
    let (attempts_tx, mut attempts) = tokio::sync::watch::channel(0usize);
    tokio::spawn(stand_in_for_postgres(listener, up_rx, attempts_tx));
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
    // It tried, failed, backed off and tried again: still not ready.
    tokio::time::timeout(Duration::from_secs(20), attempts.wait_for(|n| *n >= 2))
        .await
        .expect("the server retries in time")
        .expect("the stand-in runs");
    assert_eq!(app.ready_status().await, 503);

    // PostgreSQL "comes up".
    up.send(true).expect("the stand-in runs");
    app.wait_ready(Duration::from_secs(20)).await;
    let c = app.sign_in("ada@example.com").await;
    app.create_org_as(&c, "Acme").await;
    app.stop().await;
}
