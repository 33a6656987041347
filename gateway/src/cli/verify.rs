//! `cairn verify`: recompute every stream's hash chain and report the first broken link.

use std::process::ExitCode;

use gateway::config::Config;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let (_, store) = super::connect(&config, 2).await?;
    let report = store
        .verify(|n| eprint!("\rverify: {n} events checked"))
        .await?;
    eprintln!();
    match &report.first_break {
        None => {
            println!(
                "ok: {} events in {} streams, every hash chain intact",
                report.events, report.streams
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            println!(
                "BROKEN: {}/{} sequence {} (global position {}): {}; {} of {} streams broken",
                b.aggregate_type,
                b.aggregate_id,
                b.sequence,
                b.global_position,
                b.reason,
                report.broken_streams,
                report.streams
            );
            Ok(ExitCode::from(1))
        }
    }
}
