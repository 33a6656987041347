//! `cairn projections`: every projection and consumer, with its cursor and lag (and the
//! mailer's queue as its lag: it has no cursor).

use std::process::ExitCode;

use gateway::config::Config;
use projections::registry::Kind;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let (pool, store) = super::connect(&config, 2).await?;
    println!(
        "{:<16} {:<10} {:>34} {:>12} {:>10}",
        "name", "kind", "cursor", "position", "lag"
    );
    for s in projections::registry::all_statuses(&store).await? {
        let kind = match s.kind {
            Kind::Projection => "projection",
            Kind::Consumer => "consumer",
        };
        println!(
            "{:<16} {:<10} {:>34} {:>12} {:>10}",
            s.name,
            kind,
            s.cursor.to_string(),
            s.cursor.position(),
            s.lag
        );
    }
    let queued = projections::consumers::mailer::queued(&pool).await?;
    println!(
        "{:<16} {:<10} {:>34} {:>12} {:>10}",
        "mailer", "consumer", "-", "-", queued
    );
    Ok(ExitCode::SUCCESS)
}
