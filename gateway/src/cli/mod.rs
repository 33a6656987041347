//! The `cairn` subcommands, one file each. Every one reads the server's configuration.

pub(crate) mod bench;
pub(crate) mod erase;
pub(crate) mod history;
pub(crate) mod migrate;
pub(crate) mod projections;
pub(crate) mod replay;
pub(crate) mod serve;
pub(crate) mod verify;

use anyhow::Context;
use eventstore::{Store, StoreOptions};
use gateway::config::Config;
use sqlx::PgPool;

/// A pool of `max` connections to the configured database, and a store on it.
pub(crate) async fn connect(config: &Config, max: u32) -> anyhow::Result<(PgPool, Store)> {
    let pool = eventstore::connect(config.database.clone(), max)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    let store = Store::new(pool.clone(), StoreOptions::default());
    Ok((pool, store))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
