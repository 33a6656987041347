use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
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

/// Parses a `postgres://` URL into connection options.
///
/// One default differs from libpq's: a URL that names a loopback host (`localhost`,
/// `127.0.0.1`, `::1`) and says nothing about `sslmode` connects without TLS. libpq's
/// `prefer` would negotiate TLS there, which protects nothing on the loopback interface and
/// costs both ends CPU on every query. Say `?sslmode=require` (or any mode) to choose.
pub fn parse_url(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let says_sslmode = url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
        })
        .unwrap_or(true);
    let loopback = matches!(
        options.get_host(),
        "localhost" | "127.0.0.1" | "::1" | "[::1]"
    );
    Ok(if loopback && !says_sslmode {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// Opens a pool with Cairn's session settings.
///
/// Connections are not pinged before each use (sqlx's `test_before_acquire`): that ping is a
/// round trip per query, which on the write path doubled the database work. A connection the
/// server has dropped fails the one query that meets it and is then replaced; the pool also
/// retires idle connections after ten minutes and every connection after thirty.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_with(tune(options))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_skip_tls_unless_they_ask_for_it() {
        let mode = |url: &str| format!("{:?}", parse_url(url).map(|o| o.get_ssl_mode()));
        assert_eq!(
            mode("postgres://postgres@127.0.0.1:5432/cairn"),
            "Ok(Disable)"
        );
        assert_eq!(mode("postgres://postgres@localhost/cairn"), "Ok(Disable)");
        assert_eq!(
            mode("postgres://postgres@127.0.0.1/cairn?sslmode=require"),
            "Ok(Require)"
        );
        assert_eq!(mode("postgres://db.example.com/cairn"), "Ok(Prefer)");
    }
}
