//! A throwaway database per test: created on the local server (migrated, from a template), and
//! dropped again.
//! Used by the test suites of every crate, through the `testing` feature that only their
//! dev-dependencies enable: it is never compiled into the server, so its `expect`s stay in tests.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// The server tests create their databases on: `CAIRN_TEST_DATABASE_URL`, or the local one.
pub fn server_options() -> PgConnectOptions {
    let url = std::env::var("CAIRN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    crate::parse_url(&url).expect("CAIRN_TEST_DATABASE_URL is a postgres URL")
}

/// A fresh database for one test, dropped when this value is.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    options: PgConnectOptions,
}

impl TestDb {
    /// Creates a migrated database with a unique name: a copy of a template database that
    /// holds every migration (made once per migration set, and shared by every test process),
    /// which is much cheaper than migrating each test's database anew.
    pub async fn new() -> Self {
        let template = template().await;
        Self::create(&format!("TEMPLATE {template}")).await
    }

    /// Creates a database with a unique name and no tables.
    pub async fn empty() -> Self {
        Self::create("").await
    }

    async fn create(from: &str) -> Self {
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        let server = server_options();
        let mut conn = PgConnection::connect_with(&server)
            .await
            .expect("the test PostgreSQL server answers");
        // Copying a template fails while another session is connected to it (only ever
        // briefly, by a process creating the template): retry.
        let mut tries = 0;
        loop {
            match sqlx::query(&format!("CREATE DATABASE {name} {from}"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(e)
                    if tries < 100 && e.to_string().contains("being accessed by other users") =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let _ = conn.close().await;
        Self {
            options: server.database(&name),
            name,
        }
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options for it.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// A URL for it (the local test server has trust auth, so no password is needed).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.options.get_username(),
            self.options.get_host(),
            self.options.get_port(),
            self.name
        )
    }

    /// A pool on it with Cairn's session settings.
    pub async fn pool(&self, max: u32) -> PgPool {
        crate::connect(self.options(), max)
            .await
            .expect("connect to test database")
    }
}

/// The template database for the current migrations, made on first use: its name carries a
/// digest of every migration's checksum, so a changed migration set gets a template of its own.
/// Test processes may race to make it; the loser waits for the winner.
async fn template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            use sha2::{Digest, Sha256};
            let mut digest = Sha256::new();
            for m in MIGRATOR.iter() {
                digest.update(m.version.to_le_bytes());
                digest.update(&*m.checksum);
            }
            let name = format!("cairn_template_{}", &hex::encode(digest.finalize())[..16]);
            let server = server_options();
            let mut conn = PgConnection::connect_with(&server)
                .await
                .expect("the test PostgreSQL server answers");
            // One maker at a time across processes (a session-level advisory lock on the
            // maintenance database, released when this connection closes).
            sqlx::query("SELECT pg_advisory_lock(hashtext('cairn.test.template'))")
                .execute(&mut conn)
                .await
                .expect("lock the template");
            let ready: Option<bool> =
                sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await
                    .expect("look for the template");
            if ready != Some(true) {
                // Left half-made by a process that died: start again.
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .expect("drop a half-made template");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create the template");
                let pool = crate::connect(server.clone().database(&name), 1)
                    .await
                    .expect("connect to the template");
                MIGRATOR.run(&pool).await.expect("migrations apply");
                pool.close().await;
                sqlx::query(&format!("ALTER DATABASE {name} WITH IS_TEMPLATE true"))
                    .execute(&mut conn)
                    .await
                    .expect("mark the template");
            }
            let _ = conn.close().await;
            name
        })
        .await
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context; a short-lived runtime on its own thread does the I/O.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&server_options()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
