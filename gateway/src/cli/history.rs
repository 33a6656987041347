//! `cairn history <type> <id>`: one stream's history as JSON lines, personal data opened.

use std::io::Write;
use std::process::ExitCode;

use gateway::config::Config;

pub(crate) async fn run(
    config: Config,
    aggregate_type: String,
    aggregate_id: String,
) -> anyhow::Result<ExitCode> {
    let key = super::existing_secret_key(&config)?;
    let (pool, store) = super::connect(&config, 2).await?;
    let vault = eventstore::vault::Vault::new(pool, key);
    let mut opener = vault.opener();
    let mut out = std::io::stdout().lock();
    let mut from = 1;
    loop {
        let page = store
            .read_stream(&aggregate_type, &aggregate_id, from, 500)
            .await?;
        let Some(last) = page.last() else {
            if from == 1 {
                eprintln!("cairn: no stream {aggregate_type}/{aggregate_id}");
                return Ok(ExitCode::from(1));
            }
            break;
        };
        from = last.sequence + 1;
        for event in page {
            let mut data: serde_json::Value = event.decode()?;
            opener.open_event(&event.event_type, &mut data).await?;
            let line = serde_json::json!({
                "sequence": event.sequence,
                "type": event.event_type,
                "recorded_at": eventstore::encode::rfc3339(event.recorded_at),
                "data": data,
                "metadata": event.metadata,
            });
            // A reader that stops early (`| head`) closes the pipe: that ends the listing.
            match writeln!(out, "{line}") {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS)
                }
                other => other?,
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => Ok(other.map(|()| ExitCode::SUCCESS)?),
    }
}
