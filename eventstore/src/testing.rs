//! A throwaway database per test: created on the local server, migrated, and dropped again.
//! Used by the test suites of every crate; not for production code.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// The server tests create their databases on: `CAIRN_TEST_DATABASE_URL`, or the local one.
pub fn server_options() -> PgConnectOptions {
    let url = std::env::var("CAIRN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    PgConnectOptions::from_str(&url).expect("CAIRN_TEST_DATABASE_URL is a postgres URL")
}

/// A fresh, migrated database that is dropped when this value is.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    options: PgConnectOptions,
}

impl TestDb {
    /// Creates and migrates a database with a unique name.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        let pool = db.pool(2).await;
        MIGRATOR.run(&pool).await.expect("migrations apply");
        pool.close().await;
        db
    }

    /// Creates a database with a unique name and no tables.
    pub async fn empty() -> Self {
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        let server = server_options();
        let mut conn = PgConnection::connect_with(&server)
            .await
            .expect("the test PostgreSQL server answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
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
