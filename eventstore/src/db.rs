use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Every migration in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Adds the session settings Cairn relies on to connection options.
///
/// `idle_in_transaction_session_timeout` matters for correctness of the tail, not only for
/// hygiene: an open writing transaction holds every tailer back (DESIGN "Gapless tailing").
///
/// The `application_name` is `cairn` unless the URL names one (`?application_name=node-a`),
/// which tells nodes apart in `pg_stat_activity` and `pg_locks`.
pub fn tune(options: PgConnectOptions) -> PgConnectOptions {
    let name = options.get_application_name().unwrap_or("cairn").to_owned();
    options.application_name(&name).options([
        ("idle_in_transaction_session_timeout", "10s"),
        ("statement_timeout", "60s"),
    ])
}

/// Creates the database named in `options` if it does not exist yet, connecting to the
/// server's `postgres` maintenance database with the same credentials.
pub async fn ensure_database(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut conn = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another node created it between the check and the create.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e),
        }
    }
    conn.close().await
}

/// Opens a pool with Cairn's session settings.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(tune(options))
        .await
}
