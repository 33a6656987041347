//! The `cairn` binary: `serve` (the default), `migrate`, `verify` and `bench`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;
use gateway::{bench, telemetry, App};

#[derive(Debug, Parser)]
#[command(name = "cairn", version, about = "Cairn: an event-sourced CQRS server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default): HTTP API, health and metrics.
    Serve,
    /// Create the database if it is missing and apply every pending migration.
    Migrate,
    /// Recompute every stream's hash chain and report the first broken link (exit 1).
    Verify,
    /// Measure Cairn against anchors taken in the same run (use a release build).
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cairn: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let app = App::build(config).await?;
            let token = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                token.cancel();
            });
            app.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            eventstore::ensure_database(&config.database)
                .await
                .context("cannot reach PostgreSQL (DATABASE_URL)")?;
            let pool = eventstore::connect(config.database.clone(), 2).await?;
            eventstore::MIGRATOR
                .run(&pool)
                .await
                .context("migrations failed")?;
            let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await?;
            println!("database is up to date ({applied} migrations applied)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let pool = eventstore::connect(config.database.clone(), 2)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            let store = eventstore::Store::new(pool, eventstore::StoreOptions::default());
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
                        b.aggregate_type, b.aggregate_id, b.sequence, b.global_position, b.reason,
                        report.broken_streams, report.streams
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Bench { which } => {
            bench::run(&config, which).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
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
