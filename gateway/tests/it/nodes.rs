//! Several nodes on one PostgreSQL (and one NATS): projections run on exactly one of them and
//! move to another when it dies; live clients on any node see changes made through any other.

use crate::support;

use support::ws;

use std::collections::BTreeMap;
use std::time::Duration;

use eventstore::testing::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

/// A `cairn serve` process of its own on a free port, named `name` in `pg_stat_activity`.
struct Node {
    child: tokio::process::Child,
    port: u16,
    data_dir: std::path::PathBuf,
}

impl Node {
    fn start(database_url: &str, name: &str, vars: &[(&str, String)]) -> Self {
        let data_dir = std::env::temp_dir().join(format!("cairn-{name}-{}", uuid::Uuid::new_v4()));
        let port = support::nats::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .env_remove("RUST_LOG")
            .env_remove("NATS_URL")
            .env(
                "DATABASE_URL",
                format!("{database_url}?application_name={name}"),
            )
            .env("CAIRN_BIND", format!("127.0.0.1:{port}"))
            .env("CAIRN_DATA_DIR", &data_dir)
            .env("CAIRN_SECRET_KEY", support::SECRET_KEY)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a node");
        Self {
            child,
            port,
            data_dir,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it without a goodbye (SIGKILL).
    async fn kill(mut self) {
        self.child.start_kill().expect("kill the node");
        self.child.wait().await.expect("the node exits");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Which node (by `application_name`) holds each advisory lock in this database, one row per
/// held lock. pg_locks shows an int8 key as its two 32-bit halves.
async fn lock_holders(pool: &PgPool) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT (l.classid::int8 << 32) | l.objid::int8, a.application_name
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .expect("pg_locks")
}

/// The projection locks' keys, as the runner computes them, and the relay's.
async fn projection_keys(pool: &PgPool) -> Vec<i64> {
    let mut keys = Vec::new();
    let names = projections::registry::NAMES
        .iter()
        .map(|name| format!("cairn.projection.{name}"))
        .chain(["cairn.relay".to_owned()]);
    for name in names {
        let key: i64 = sqlx::query_scalar("SELECT hashtext($1)::int8")
            .bind(name)
            .fetch_one(pool)
            .await
            .expect("hash");
        keys.push(key);
    }
    keys
}

/// Waits until every projection lock is held by `node`, checking on every look that no lock is
/// ever held twice.
async fn wait_for_leader(pool: &PgPool, keys: &[i64], node: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holders = lock_holders(pool).await;
        let mut by_key: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (key, app) in holders {
            by_key.entry(key).or_default().push(app);
        }
        for (key, apps) in &by_key {
            assert!(apps.len() <= 1, "lock {key} held by {apps:?}");
        }
        if keys
            .iter()
            .all(|k| by_key.get(k).is_some_and(|apps| apps == &[node.to_owned()]))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projections never all ran on {node}: {by_key:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The board's tables as sorted text rows.
async fn board_tables(pool: &PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["labels", "board_tasks", "task_comments"] {
        let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .expect("read");
        rows.sort();
        out.extend(rows);
    }
    out
}

/// Creates a task through `app` and reads it back with `?after=`, so it must have been
/// projected by whichever node runs the board.
async fn create_and_read_back(
    app: &support::TestApp,
    client: &reqwest::Client,
    org: &str,
    title: &str,
) {
    let r = client
        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "{title}");
    let cursor = r
        .headers()
        .get("cairn-cursor")
        .and_then(|v| v.to_str().ok())
        .expect("Cairn-Cursor")
        .to_owned();
    let list: Value = client
        .get(app.url(&format!("/api/v1/orgs/{org}/tasks?after={cursor}")))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let titles: Vec<&str> = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert!(titles.contains(&title), "{title} not in {titles:?}");
}

#[tokio::test]
async fn projections_run_on_one_node_and_move_to_another_when_it_dies() {
    let db = TestDb::new().await;
    let url = db.url();
    let pool = db.pool(2).await;
    let keys = projection_keys(&pool).await;

    // Node B: a separate `cairn serve` process, started first so that it leads.
    let node_b = Node::start(&url, "cairn-b", &[]);
    wait_for_leader(&pool, &keys, "cairn-b").await;

    // Node A: in this process, same database. It serves the API; B keeps the projections.
    let a = support::start_with(
        db,
        &[("DATABASE_URL", format!("{url}?application_name=cairn-a"))],
    )
    .await;
    a.wait_ready(Duration::from_secs(20)).await;
    let ada = a.sign_in("ada@example.com").await;
    let org = a.create_org_as(&ada, "Acme").await;
    for n in 0..5 {
        create_and_read_back(&a, &ada, &org, &format!("made on A, projected by B {n}")).await;
    }
    wait_for_leader(&pool, &keys, "cairn-b").await;

    // B dies without a goodbye: its connections drop, PostgreSQL frees its locks, A takes over.
    node_b.kill().await;
    wait_for_leader(&pool, &keys, "cairn-a").await;
    for n in 0..5 {
        create_and_read_back(&a, &ada, &org, &format!("projected by A {n}")).await;
    }

    // Nothing lost or applied twice across the handover: the tables equal a rebuild.
    let live = board_tables(&pool).await;
    assert_eq!(live.iter().filter(|r| r.contains("projected")).count(), 10);
    let store = eventstore::Store::new(pool.clone(), eventstore::StoreOptions::default());
    projections::registry::replay(&store, projections::board::NAME, |_, _, _| {})
        .await
        .expect("replay");
    assert_eq!(board_tables(&pool).await, live);
    a.stop().await;
}

#[tokio::test]
async fn a_live_client_on_one_node_sees_changes_made_through_another() {
    let nats = support::nats::Namespace::shared();
    let db = TestDb::new().await;
    let url = db.url();
    let pool = db.pool(2).await;
    let keys = projection_keys(&pool).await;
    let b = Node::start(&url, "cairn-b", &nats.vars());
    wait_for_leader(&pool, &keys, "cairn-b").await;

    let mut vars = nats.vars();
    vars.push(("DATABASE_URL", format!("{url}?application_name=cairn-a")));
    vars.push(("CAIRN_WS_MIN_INTERVAL_MS", "0.01".to_owned()));
    let a = support::start_with(db, &vars).await;
    a.wait_ready(Duration::from_secs(20)).await;
    let (key, ada) = ws::key_for(&a, "ada@example.com", json!(["tasks:read", "tasks:write"])).await;
    let org = a.create_org_as(&ada, "Acme").await;
    let api = support::with_key(&key);

    // B knows the key and the membership once its projections have them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut on_b = loop {
        let mut ws = ws::connect_to(&b.base(), Some(&key)).await;
        ws::next(&mut ws).await;
        if ws::join(&mut ws, &org, "tasks").await["type"] == "SUBSCRIBED" {
            break ws;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never let ada in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut on_a = ws::connect(&a, Some(&key)).await;
    ws::next(&mut on_a).await;
    ws::subscribe(&mut on_a, &org, "tasks").await;

    // Made through B: seen on A (and on B), each once and in order. And the other way.
    let mut from_b = Vec::new();
    for n in 0..3 {
        from_b.push(ws::create_task_at(&b.base(), &api, &org, &format!("via B {n}")).await);
    }
    assert_eq!(ws::created_ids(&mut on_a, 3).await, from_b);
    assert_eq!(ws::created_ids(&mut on_b, 3).await, from_b);
    let mut from_a = Vec::new();
    for n in 0..3 {
        from_a.push(ws::create_task(&a, &api, &org, &format!("via A {n}")).await);
    }
    assert_eq!(ws::created_ids(&mut on_b, 3).await, from_a);
    assert_eq!(ws::created_ids(&mut on_a, 3).await, from_a);

    // Projections and the relay still run once, all on B.
    wait_for_leader(&pool, &keys, "cairn-b").await;
    a.stop().await;
    b.kill().await;
    nats.delete().await;
}
