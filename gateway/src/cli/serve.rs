//! `cairn serve` (the default): the server, until SIGINT or SIGTERM.

use std::process::ExitCode;

use gateway::config::Config;
use gateway::App;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    let token = app.shutdown_token();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    app.run().await?;
    Ok(ExitCode::SUCCESS)
}
