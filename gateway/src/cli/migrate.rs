//! `cairn migrate`: create the database if it is missing and apply every pending migration.

use std::process::ExitCode;

use anyhow::Context;
use gateway::config::Config;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    eventstore::ensure_database(&config.database)
        .await
        .context("cannot reach PostgreSQL (DATABASE_URL)")?;
    let pool = eventstore::connect(config.database.clone(), 2).await?;
    eventstore::MIGRATOR
        .run(&pool)
        .await
        .context("migrations failed")?;
    let applied = eventstore::MIGRATOR.iter().count();
    println!("database is up to date ({applied} migrations applied)");
    Ok(ExitCode::SUCCESS)
}
