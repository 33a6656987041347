//! The `cairn` binary: `serve` (the default), `migrate`, `verify` and `bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::Config;
use gateway::telemetry;

mod cli;

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// buffers on several threads, where glibc's malloc spent a tenth of the server's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cli::bench;

/// Shown under every `--help`: the tools read the same settings as the server.
pub(crate) const CONFIGURATION: &str = "\
Every subcommand reads the server's configuration from the environment (README, \"Configuration\"):
  DATABASE_URL       the PostgreSQL database (must name a database)
  CAIRN_DATA_DIR     the data folder (secret.key, mail outbox); default ./data
  CAIRN_SECRET_KEY   the master key (64 hex digits); else $CAIRN_DATA_DIR/secret.key,
                     which only `cairn serve` creates
  NATS_URL, SMTP_URL, MEILISEARCH_URL, STORAGE_URL, CAIRN_BIND, CAIRN_PUBLIC_URL and the
  other CAIRN_* settings apply to `serve`.";

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: an event-sourced CQRS server",
    after_help = CONFIGURATION
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default): HTTP API, health and metrics.
    #[command(after_help = CONFIGURATION)]
    Serve,
    /// Create the database if it is missing and apply every pending migration.
    #[command(after_help = CONFIGURATION)]
    Migrate,
    /// Recompute every stream's hash chain and report the first broken link (exit 1).
    #[command(after_help = CONFIGURATION)]
    Verify,
    /// Rebuild a projection from the first event, showing progress.
    #[command(after_help = CONFIGURATION)]
    Replay {
        /// The projection's name (see `cairn projections`).
        projection: String,
    },
    /// List every projection with its cursor and lag.
    #[command(after_help = CONFIGURATION)]
    Projections,
    /// Print one stream's history as JSON lines, personal data opened (or `[erased]`).
    #[command(after_help = CONFIGURATION)]
    History {
        /// The aggregate type, e.g. `account` or `organization`.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
    },
    /// Erase a person (operator): end their sessions and keys and delete their data key.
    #[command(after_help = CONFIGURATION)]
    Erase {
        /// The person's user id.
        user_id: String,
    },
    /// Operators' API keys: `cairn keys create --email … --scopes …` prints a new key once.
    #[command(after_help = CONFIGURATION)]
    Keys {
        #[command(subcommand)]
        which: cli::keys::Keys,
    },
    /// Measure Cairn against anchors taken in the same run (use a release build).
    #[command(after_help = CONFIGURATION)]
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
        Command::Serve => cli::serve::run(config).await,
        Command::Migrate => cli::migrate::run(config).await,
        Command::Verify => cli::verify::run(config).await,
        Command::Replay { projection } => cli::replay::run(config, projection).await,
        Command::Projections => cli::projections::run(config).await,
        Command::History {
            aggregate_type,
            aggregate_id,
        } => cli::history::run(config, aggregate_type, aggregate_id).await,
        Command::Erase { user_id } => cli::erase::run(config, user_id).await,
        Command::Keys { which } => cli::keys::run(config, which).await,
        Command::Bench { which } => {
            bench::run(&config, which).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
