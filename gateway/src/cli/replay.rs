//! `cairn replay <projection>`: rebuild a projection from the first event, showing progress.

use std::process::ExitCode;

use gateway::config::Config;

pub(crate) async fn run(config: Config, projection: String) -> anyhow::Result<ExitCode> {
    let (_, store) = super::connect(&config, 4).await?;
    let took = projections::registry::replay(&store, &projection, |at, target, rate| {
        let pct = if target > 0 { 100.0 * at as f64 / target as f64 } else { 100.0 };
        eprint!("\rreplay {projection}: position {at} of {target} ({pct:.1}%), {rate:.0} positions/s   ");
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!();
    println!("replayed {projection} in {:.1} s", took.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
