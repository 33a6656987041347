//! `cairn projections`: every projection with its cursor and lag.

use std::process::ExitCode;

use gateway::config::Config;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let (_, store) = super::connect(&config, 2).await?;
    println!(
        "{:<16} {:>34} {:>12} {:>10}",
        "projection", "cursor", "position", "lag"
    );
    for s in projections::registry::statuses(&store).await? {
        println!(
            "{:<16} {:>34} {:>12} {:>10}",
            s.name,
            s.cursor.to_string(),
            s.cursor.position(),
            s.lag
        );
    }
    Ok(ExitCode::SUCCESS)
}
