//! The `cairn` tools: they read the server's configuration, refuse to make a key of their own,
//! and fail with one clear line (issue 14, "a CLI that cannot hurt").

use std::process::{Command, Stdio};

use crate::support;

/// `cairn` with the test server's settings, from a fresh, empty working folder.
fn cairn(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("CAIRN_SECRET_KEY")
        .env_remove("CAIRN_DATA_DIR");
    c
}

fn empty_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create dir");
    dir
}

#[test]
fn help_names_the_settings_every_subcommand_reads() {
    for args in [&["--help"][..], &["history", "--help"]] {
        let out = cairn(&empty_dir()).args(args).output().expect("run cairn");
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        for var in ["DATABASE_URL", "CAIRN_DATA_DIR", "CAIRN_SECRET_KEY"] {
            assert!(help.contains(var), "{args:?}: {var} missing from\n{help}");
        }
    }
}

#[test]
fn a_database_url_without_a_database_is_a_configuration_error() {
    for url in [
        "postgres://postgres@127.0.0.1:5432",
        "postgres://postgres@127.0.0.1:5432/",
    ] {
        let out = cairn(&empty_dir())
            .env("DATABASE_URL", url)
            .arg("migrate")
            .output()
            .expect("run cairn");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(
            stderr.contains("DATABASE_URL") && stderr.contains("no database"),
            "{url}: {stderr}"
        );
    }
}

#[tokio::test]
async fn history_needs_the_servers_key_and_never_makes_one() {
    let app = support::spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&c, "Acme").await;
    let dir = empty_dir();
    let out = cairn(&dir)
        .env("DATABASE_URL", app.db.url())
        .args(["history", "organization", &org])
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CAIRN_SECRET_KEY") && stderr.contains("CAIRN_DATA_DIR"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "printed history without the key");
    assert!(
        !dir.join("data").exists(),
        "the tool created a data folder (and a key) of its own"
    );
}

#[tokio::test]
async fn history_of_an_unknown_stream_exits_1_and_a_closed_pipe_is_no_panic() {
    let app = support::spawn_app().await;
    let c = app.sign_in("ada@example.com").await;
    let org = app.create_org_as(&c, "Acme").await;
    let run = |stream_id: &str, stdout: Stdio| {
        cairn(&empty_dir())
            .env("DATABASE_URL", app.db.url())
            .env("CAIRN_SECRET_KEY", support::SECRET_KEY)
            .args(["history", "organization", stream_id])
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cairn")
    };

    let unknown = run(&uuid::Uuid::new_v4().to_string(), Stdio::piped())
        .wait_with_output()
        .expect("wait");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no stream organization/"), "{stderr}");

    // `| head -0`: the reader is gone before the first line.
    let mut child = run(&org, Stdio::piped());
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
