//! Several nodes on one PostgreSQL (and one NATS): projections run on exactly one of them and
//! move to another when it dies; live clients on any node see changes made through any other.

use crate::support;

use support::ws;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventstore::testing::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

/// A `cairn serve` process of its own, named `name` in `pg_stat_activity`. It binds port 0
/// and the test reads the port it got from its "listening" log line, so no other process can
/// take the port between a probe and the bind.
pub(crate) struct Node {
    child: tokio::process::Child,
    port: u16,
    data_dir: std::path::PathBuf,
}

impl Node {
    pub(crate) async fn start(database_url: &str, name: &str, vars: &[(&str, String)]) -> Self {
        use tokio::io::AsyncBufReadExt;

        let data_dir = std::env::temp_dir().join(format!("cairn-{name}-{}", uuid::Uuid::new_v4()));
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .env_remove("NATS_URL")
            .env("RUST_LOG", "warn,gateway::startup=info")
            .env("CAIRN_LOG_FORMAT", "json")
            .env(
                "DATABASE_URL",
                format!("{database_url}?application_name={name}"),
            )
            .env("CAIRN_BIND", "127.0.0.1:0")
            .env("CAIRN_DATA_DIR", &data_dir)
            .env("CAIRN_SECRET_KEY", support::SECRET_KEY)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a node");
        let stdout = child.stdout.take().expect("the node's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read the node's log")
                    .expect("the node logs where it listens before exiting");
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "listening" {
                    let address = entry["fields"]["address"].as_str().expect("address");
                    let address: std::net::SocketAddr = address.parse().expect("an address");
                    return address.port();
                }
            }
        })
        .await
        .expect("the node listens in time");
        // Keep reading, so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            port,
            data_dir,
        }
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until its `/readyz` answers 200, failing the test after `within`.
    pub(crate) async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while reqwest::get(format!("{}/readyz", self.base()))
            .await
            .map_or(true, |r| r.status() != 200)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} never got ready",
                self.base()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it without a goodbye (SIGKILL).
    pub(crate) async fn kill(mut self) {
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

/// Records every move of every checkpoint (projections and the relay) with the
/// `application_name` of the node that made it, in the same transaction as the move: a
/// projection applied by two nodes, or a batch applied twice, shows in the record.
async fn record_checkpoint_moves(pool: &PgPool) {
    for sql in [
        "CREATE TABLE test_checkpoint_moves (
             seq bigserial PRIMARY KEY,
             name text NOT NULL,
             node text NOT NULL,
             at timestamptz NOT NULL DEFAULT clock_timestamp(),
             old_xid text NOT NULL, old_position bigint NOT NULL,
             new_xid text NOT NULL, new_position bigint NOT NULL)",
        "CREATE FUNCTION test_record_checkpoint_move() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO test_checkpoint_moves
                 (name, node, old_xid, old_position, new_xid, new_position)
             VALUES (NEW.name, current_setting('application_name'),
                     OLD.last_xid::text, OLD.last_position, NEW.last_xid::text, NEW.last_position);
             RETURN NEW;
         END $$",
        "CREATE TRIGGER test_record_checkpoint_move AFTER UPDATE ON projection_checkpoints
             FOR EACH ROW EXECUTE FUNCTION test_record_checkpoint_move()",
    ] {
        sqlx::query(sql).execute(pool).await.expect("record moves");
    }
}

/// One recorded checkpoint move: which node, when, from where to where.
struct Move {
    node: String,
    at: time::OffsetDateTime,
    from: eventstore::Cursor,
    to: eventstore::Cursor,
}

/// The recorded moves, by checkpoint, in the order they were made (each checkpoint's row is
/// locked while it moves, so per checkpoint the sequence order is the commit order). Checks on
/// the way that each checkpoint's moves form one chain from the start, each forward from
/// where the last one ended: a batch applied twice, or by two nodes at once, breaks it.
async fn checkpoint_moves(pool: &PgPool) -> BTreeMap<String, Vec<Move>> {
    let rows: Vec<(String, String, time::OffsetDateTime, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT name, node, at, old_xid::int8, old_position, new_xid::int8, new_position
           FROM test_checkpoint_moves ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .expect("checkpoint moves");
    let mut moves: BTreeMap<String, Vec<Move>> = BTreeMap::new();
    for (name, node, at, old_xid, old_position, new_xid, new_position) in rows {
        let from = eventstore::Cursor::new(old_xid as u64, old_position);
        let to = eventstore::Cursor::new(new_xid as u64, new_position);
        let chain = moves.entry(name.clone()).or_default();
        let expected = chain.last().map_or(eventstore::Cursor::START, |m| m.to);
        assert_eq!(
            from, expected,
            "{name}: moved by {node} from {from:?}, but the last move ended at {expected:?}"
        );
        assert!(to > from, "{name}: moved by {node} backwards or not at all");
        chain.push(Move { node, at, from, to });
    }
    moves
}

/// The database's clock now (the moves are stamped with it).
async fn db_now(pool: &PgPool) -> time::OffsetDateTime {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .expect("clock")
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

/// Waits until every projection lock (and the relay's) is held by `node` alone.
async fn wait_for_leader(pool: &PgPool, keys: &[i64], node: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holders = lock_holders(pool).await;
        let mut by_key: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (key, app) in holders {
            by_key.entry(key).or_default().push(app);
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
    record_checkpoint_moves(&pool).await;

    // Node B: a separate `cairn serve` process, started first so that it leads.
    let node_b = Node::start(&url, "cairn-b", &[]).await;
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
    let kill_started = db_now(&pool).await;
    node_b.kill().await;
    wait_for_leader(&pool, &keys, "cairn-a").await;
    for n in 0..5 {
        create_and_read_back(&a, &ada, &org, &format!("projected by A {n}")).await;
    }

    // Every checkpoint moved in one chain: by B, and by A only once B was being killed.
    let moves = checkpoint_moves(&pool).await;
    for (name, chain) in &moves {
        for m in chain {
            match m.node.as_str() {
                "cairn-b" => {}
                "cairn-a" => assert!(
                    m.at > kill_started,
                    "{name}: A moved it ({:?} to {:?}) while B led",
                    m.from,
                    m.to
                ),
                other => panic!("{name}: moved by {other}"),
            }
        }
    }
    let board: BTreeSet<&str> = moves
        .get(projections::read_models::board::NAME)
        .expect("the board's checkpoint moved")
        .iter()
        .map(|m| m.node.as_str())
        .collect();
    assert_eq!(
        board,
        BTreeSet::from(["cairn-a", "cairn-b"]),
        "the board moved to A"
    );

    // Nothing lost or applied twice across the handover: the tables equal a rebuild.
    let live = board_tables(&pool).await;
    assert_eq!(live.iter().filter(|r| r.contains("projected")).count(), 10);
    let store = eventstore::Store::new(pool.clone(), eventstore::StoreOptions::default());
    projections::registry::replay(&store, projections::read_models::board::NAME, |_, _, _| {})
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
    record_checkpoint_moves(&pool).await;
    let b = Node::start(&url, "cairn-b", &nats.vars()).await;
    wait_for_leader(&pool, &keys, "cairn-b").await;

    let mut vars = nats.vars();
    vars.push(("DATABASE_URL", format!("{url}?application_name=cairn-a")));
    // Either node's mailer may send the sign-in mail: one outbox folder for both.
    vars.push(("CAIRN_DATA_DIR", b.data_dir.display().to_string()));
    vars.push(ws::no_rate_limit());
    vars.extend(ws::no_heartbeat());
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

    // Projections and the relay still run once, all on B: every checkpoint moved in one
    // chain, by B alone.
    wait_for_leader(&pool, &keys, "cairn-b").await;
    let moves = checkpoint_moves(&pool).await;
    assert!(
        moves.contains_key(projections::read_models::board::NAME)
            && moves.contains_key(projections::consumers::relay::NAME),
        "the board and the relay moved: {:?}",
        moves.keys().collect::<Vec<_>>()
    );
    for (name, chain) in &moves {
        for m in chain {
            assert_eq!(
                m.node, "cairn-b",
                "{name}: moved {:?} to {:?}",
                m.from, m.to
            );
        }
    }
    a.stop().await;
    b.kill().await;
    nats.delete().await;
}
