//! The `cairn` subcommands, one file each. Every one reads the server's configuration.

pub(crate) mod bench;
pub(crate) mod erase;
pub(crate) mod history;
pub(crate) mod keys;
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

/// The server's key, for the tools: `CAIRN_SECRET_KEY`, or the key file that `cairn serve`
/// created in `CAIRN_DATA_DIR`. Only `serve` creates a key: a tool run from another folder
/// must not make a new one, which would open nothing.
pub(crate) fn existing_secret_key(config: &Config) -> anyhow::Result<eventstore::vault::MasterKey> {
    let path = config.data_dir.join("secret.key");
    if config.secret_key.is_none() && !path.exists() {
        anyhow::bail!(
            "no secret key: set CAIRN_SECRET_KEY, or CAIRN_DATA_DIR to the server's data folder \
             (there is no {} here); only `cairn serve` creates a key",
            path.display()
        );
    }
    Ok(gateway::secret_key(config)?)
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
