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
    /// Rebuild a projection from the first event, showing progress.
    Replay {
        /// The projection's name (see `cairn projections`).
        projection: String,
    },
    /// List every projection with its cursor and lag.
    Projections,
    /// Print one stream's history as JSON lines, personal data opened (or `[erased]`).
    History {
        /// The aggregate type, e.g. `account` or `organization`.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
    },
    /// Erase a person (operator): end their sessions and keys and delete their data key.
    Erase {
        /// The person's user id.
        user_id: String,
    },
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
        Command::Replay { projection } => {
            let pool = eventstore::connect(config.database.clone(), 4)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            let store = eventstore::Store::new(pool, eventstore::StoreOptions::default());
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
        Command::Projections => {
            let pool = eventstore::connect(config.database.clone(), 2)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            let store = eventstore::Store::new(pool, eventstore::StoreOptions::default());
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
        Command::History {
            aggregate_type,
            aggregate_id,
        } => {
            let key = gateway::secret_key(&config)?;
            let pool = eventstore::connect(config.database.clone(), 2)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            let store = eventstore::Store::new(pool.clone(), eventstore::StoreOptions::default());
            let vault = eventstore::vault::Vault::new(pool, key);
            let mut opener = vault.opener();
            let mut from = 1;
            loop {
                let page = store
                    .read_stream(&aggregate_type, &aggregate_id, from, 500)
                    .await?;
                let Some(last) = page.last() else { break };
                from = last.sequence + 1;
                for event in page {
                    let mut data: serde_json::Value = event.decode()?;
                    opener.open_event(&event.event_type, &mut data).await?;
                    let line = serde_json::json!({
                        "sequence": event.sequence,
                        "type": event.event_type,
                        "recorded_at": event.recorded_at.format(&time::format_description::well_known::Rfc3339)?,
                        "data": data,
                        "metadata": event.metadata,
                    });
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Erase { user_id } => {
            let user = user_id
                .parse::<domain::UserId>()
                .map_err(|_| anyhow::anyhow!("`{user_id}` is not a user id (a UUID)"))?;
            let key = gateway::secret_key(&config)?;
            let pool = eventstore::connect(config.database.clone(), 2)
                .await
                .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
            let store = eventstore::Store::new(pool.clone(), eventstore::StoreOptions::default());
            let pool_for_wait = pool.clone();
            let identity = commands::identity::Identity::new(
                commands::Commands::new(store),
                eventstore::vault::Vault::new(pool, key),
            );
            let meta = commands::Metadata::new(commands::Actor::System);
            match identity.erase(user, &meta).await {
                Ok(receipt) => {
                    // Sessions end when the identity projection (run by the servers) applies
                    // the erasure; wait for that so "erased" means signed out everywhere.
                    let applied = match receipt.cursor {
                        Some(cursor) => projections::progress::wait_for(
                            &pool_for_wait,
                            projections::read_models::identity::NAME,
                            cursor,
                            std::time::Duration::from_secs(10),
                            None,
                        )
                        .await
                        .unwrap_or(false),
                        None => true,
                    };
                    println!("erased {user}");
                    if !applied {
                        eprintln!(
                            "note: no server has applied the erasure yet; its sessions end when one does"
                        );
                    }
                }
                Err(commands::CommandError::Domain(e)) => {
                    println!("not erased: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(anyhow::anyhow!("erasure failed: {e}")),
            }
            Ok(ExitCode::SUCCESS)
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
