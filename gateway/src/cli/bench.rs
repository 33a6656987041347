//! `cairn bench`: Cairn's figures beside anchors measured in the same run, on this machine.
//!
//! Benchmarks are programs, not timed tests: they print numbers and ratios; nothing asserts on
//! wall-clock time. Each run uses a fresh database (dropped afterwards unless `--keep`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use commands::{Actor, Commands, Metadata};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
use domain::organization::{Organization, OrganizationCommand as C, OrganizationEvent};
use domain::task::{self, Task, TaskEvent};
use domain::{CommentId, Name, OrgId, Request, TeamId, Text, UserId};
use eventstore::append::{AppendRequest, NewEvent};
use eventstore::{Store, StoreOptions};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use uuid::Uuid;

use gateway::config::Config;

mod collab;
mod fanout;
mod tasks;

/// Which benchmark to run.
#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Command throughput and latency, beside raw INSERT and plain postgres-es, latency
    /// against stream length, and projection lag under the write load.
    Write(WriteArgs),
    /// Rebuild rate of the `board` projection over generated task events, beside a plain
    /// scan of the events table.
    Replay(ReplayArgs),
    /// Commit → WebSocket delivery latency with 1,000 and 10,000 subscribed clients, and the
    /// server's memory per idle connection.
    Fanout(fanout::FanoutArgs),
    /// Documents typed into live over `/collab`: persisted updates/s, update -> peer delivery
    /// latency, CPU per update, and opening a long compacted document.
    Collab(collab::CollabArgs),
    /// The clients of `bench fanout`, in their own process (started by it).
    #[command(hide = true)]
    FanoutClients(fanout::FanoutClientArgs),
}

/// Options for `cairn bench replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// How many task events to generate (10 per task).
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    /// Keep the benchmark database instead of dropping it.
    #[arg(long)]
    keep: bool,
}

/// Options for `cairn bench write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// Concurrent clients in every phase.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds each throughput phase runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The long stream length for the latency-against-length phase.
    #[arg(long, default_value_t = 10_000)]
    long_stream: i64,
    /// Commands per client measured at each stream length.
    #[arg(long, default_value_t = 200)]
    samples: u64,
    /// Length of each slice where two phases alternate (the anchor pair and the task pair).
    #[arg(long, default_value_t = 1.0, hide = true)]
    slice: f64,
    /// Group-commit writer tasks for Cairn's store (see `StoreOptions::writers`).
    #[arg(long, default_value_t = StoreOptions::default().writers)]
    writers: usize,
    /// Keep the benchmark database instead of dropping it.
    #[arg(long)]
    keep: bool,
}

/// Runs one benchmark.
pub async fn run(config: &Config, which: Which) -> anyhow::Result<()> {
    match which {
        Which::Write(args) => write(config, args).await,
        Which::Replay(args) => replay(config, args).await,
        Which::Fanout(args) => fanout::fanout(config, args).await,
        Which::Collab(args) => collab::collab(config, args).await,
        Which::FanoutClients(args) => fanout::clients(args).await,
    }
}

type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// What one phase measured.
struct Outcome {
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Outcome {
    fn empty() -> anyhow::Result<Self> {
        Ok(Self {
            ops: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        })
    }
    fn absorb(&mut self, other: Outcome) -> anyhow::Result<()> {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latency.add(other.latency)?;
        Ok(())
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `op` from `clients` tasks until `duration` passes (or each has done `max_ops`),
/// printing progress every second.
async fn drive(
    label: &str,
    clients: usize,
    duration: Duration,
    max_ops: Option<u64>,
    op: Op,
) -> anyhow::Result<Outcome> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let ticker = {
        let done = done.clone();
        let label = label.to_owned();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "  {label}: {} ops after {:.0} s",
                    done.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let op = op.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut i = 0;
            while Instant::now() < deadline && max_ops.is_none_or(|m| i < m) {
                let t = Instant::now();
                op(client, i).await?;
                latency.saturating_record(t.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        latency.add(t.await??)?;
    }
    ticker.abort();
    Ok(Outcome {
        ops: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latency,
    })
}

/// Two operations measured in alternating slices (A B, B A, A B, ...): this machine's flush
/// times drift by 2× from one minute to the next, and alternating short slices lets the drift
/// fall on both sides alike. Each round's B / A ratio is kept; [`Paired::ratio`] is their
/// median.
struct Paired {
    a: Outcome,
    b: Outcome,
    ratios: Vec<f64>,
}

impl Paired {
    /// The median of the rounds' B / A ratios.
    fn ratio(&self) -> f64 {
        let mut sorted = self.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
    /// The rounds' ratios, for the report.
    fn rounds(&self) -> String {
        self.ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

type Settle<'a> = &'a (dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Sync);

/// Runs `a` and `b` from `clients` clients in `rounds` rounds of one `slice` each, alternating
/// which goes first; `settle` runs after every slice (to let a server's projections catch up,
/// so that one side's deferred work does not fall into the other's slice).
async fn paired(
    [label_a, label_b]: [&str; 2],
    [a, b]: [Op; 2],
    clients: usize,
    rounds: usize,
    slice: Duration,
    settle: Settle<'_>,
) -> anyhow::Result<Paired> {
    let (a, b) = (continuing(a, clients), continuing(b, clients));
    let mut paired = Paired {
        a: Outcome::empty()?,
        b: Outcome::empty()?,
        ratios: Vec::with_capacity(rounds),
    };
    let (labels, ops) = ([label_a, label_b], [a, b]);
    for round in 0..rounds {
        eprintln!("  round {}/{rounds}", round + 1);
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut outcomes: [Option<Outcome>; 2] = [None, None];
        for side in order {
            let outcome = drive(labels[side], clients, slice, None, ops[side].clone()).await?;
            settle().await?;
            outcomes[side] = Some(outcome);
        }
        let [Some(oa), Some(ob)] = outcomes else {
            anyhow::bail!("a slice did not run");
        };
        paired.ratios.push(ob.rate() / oa.rate());
        paired.a.absorb(oa)?;
        paired.b.absorb(ob)?;
    }
    Ok(paired)
}

/// `op` with each client's turn counted across calls of [`drive`], so an operation that
/// numbers its rows or alternates its commands carries on where the last slice stopped.
fn continuing(op: Op, clients: usize) -> Op {
    let turns: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    Arc::new(move |client, _| op(client, turns[client].fetch_add(1, Ordering::Relaxed)))
}

fn settled() -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async { Ok(()) })
}

fn metadata_map(org: &str) -> HashMap<String, String> {
    Metadata::new(Actor::System).in_org(org).to_map()
}

/// The organization command a client issues on its `i`th turn: rename, add, remove, ...
fn org_command(client: usize, i: u64) -> anyhow::Result<C> {
    let user_id = UserId::from_uuid(Uuid::from_u128(client as u128 + 1));
    Ok(match i % 3 {
        0 => C::Rename {
            name: Name::parse("name", &format!("Bench {client} {i}"))?,
        },
        1 => C::AddMember { user_id },
        _ => C::RemoveMember { user_id },
    })
}

fn fresh_org() -> OrgId {
    OrgId::from_uuid(Uuid::now_v7())
}

async fn write(config: &Config, args: WriteArgs) -> anyhow::Result<()> {
    let name = format!(
        "cairn_bench_{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let options = config.database.clone().database(&name);
    eventstore::ensure_database(&options)
        .await
        .context("cannot reach PostgreSQL (DATABASE_URL)")?;
    // One connection per client where a phase needs it (the raw INSERT anchors), but within
    // PostgreSQL's default of 100 beside the HTTP phase's server: with more clients, they take turns.
    let pool = eventstore::connect(options.clone(), (args.clients as u32 + 8).min(60)).await?;
    eventstore::MIGRATOR.run(&pool).await?;
    for table in ["bench_raw_events", "bench_pges_events"] {
        sqlx::query(&format!(
            "CREATE TABLE {table} (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
               sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL,
               payload jsonb NOT NULL, metadata jsonb NOT NULL,
               PRIMARY KEY (aggregate_type, aggregate_id, sequence))"
        ))
        .execute(&pool)
        .await?;
    }
    sqlx::query(
        "CREATE TABLE bench_pges_snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
           last_sequence bigint NOT NULL, current_snapshot bigint NOT NULL, payload jsonb NOT NULL,
           timestamp timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (aggregate_type, aggregate_id))",
    )
    .execute(&pool)
    .await?;

    let clients = args.clients;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "cairn bench write: {clients} clients, {} s per phase, fresh database {name}",
        args.seconds
    );

    let levels: Vec<usize> = [16, 64, 128]
        .into_iter()
        .filter(|n| *n < clients)
        .chain([clients])
        .collect();
    let phases = 8 + levels.len();
    let mut phase = 0;
    let mut next = |what: &str| {
        phase += 1;
        eprintln!("phase {phase}/{phases}: {what}");
    };
    let rounds = (args.seconds as usize).max(3);
    let slice = Duration::from_secs_f64(args.slice);
    next("raw single-row INSERT (anchor) and cairn commands::execute, alternating 1 s slices");
    let cairn_op = {
        let options = StoreOptions {
            writers: args.writers,
            ..StoreOptions::default()
        };
        let commands = Commands::new(Store::new(pool.clone(), options));
        let orgs = setup_orgs(&commands, clients).await?;
        commands_op(commands, orgs)
    };
    let anchor = paired(
        ["raw INSERT", "cairn"],
        [raw_op(&pool), cairn_op],
        clients,
        rounds,
        slice,
        &settled,
    )
    .await?;
    let (raw, cairn) = (&anchor.a, &anchor.b);
    next("100-row INSERT, autocommit (anchor for group commit)");
    let batched = batched_inserts(&pool, clients.min(16), duration).await?;
    next("plain postgres-es execute (anchor)");
    let pges = postgres_es_execute(&pool, clients, duration).await?;
    next("cairn commands::execute with the memberships projection running");
    let (projected, lag) = cairn_execute(&pool, clients, duration, args.writers, true).await?;
    next("latency against stream length (aggregate cache off)");
    let short = by_length(&pool, clients, 10, args.samples).await?;
    let long = by_length(&pool, clients, args.long_stream, args.samples).await?;
    next("task writes on one server, through commands::execute and through HTTP (API key, grant, command, receipt), alternating 1 s slices");
    // The server has a database of its own. Both sides write through it (its writer, with its
    // projections and relay running behind both), so the difference is the HTTP path alone.
    let http_database = format!("{name}_http");
    let task_clients = clients.min(16);
    let server = tasks::HttpServer::start(
        config,
        options.clone().database(&http_database),
        task_clients,
    )
    .await?;
    let tasks = async {
        // Measure the steady state: the server's projections first work through its setup.
        server.settle().await?;
        let settle = || -> BoxFuture<'static, anyhow::Result<()>> {
            let config = server.config().clone();
            Box::pin(async move { tasks::caught_up(&config).await })
        };
        paired(
            ["commands (tasks)", "http (tasks)"],
            [server.commands_op.clone(), server.op.clone()],
            task_clients,
            rounds,
            slice,
            &settle,
        )
        .await
    }
    .await;
    server.stop().await;
    let tasks = tasks?;
    let (task_commands, task_http) = (&tasks.a, &tasks.b);
    let mut scaling = Vec::new();
    for &n in &levels {
        next(&format!("group commit at {n} clients"));
        let (outcome, _) = cairn_execute(&pool, n, duration, args.writers, false).await?;
        scaling.push((n, outcome));
    }

    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("{:<44} {:>10} {:>9} {:>9}", "", "ops/s", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>10.0} {:>9} {:>9}",
        "raw single-row INSERT, autocommit (anchor)",
        raw.rate(),
        "-",
        "-"
    );
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2}",
        "plain postgres-es execute (anchor)",
        pges.rate(),
        pges.p(0.5),
        pges.p(0.99)
    );
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2}",
        "cairn commands::execute",
        cairn.rate(),
        cairn.p(0.5),
        cairn.p(0.99)
    );
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2}",
        "cairn, memberships projection running",
        projected.rate(),
        projected.p(0.5),
        projected.p(0.99)
    );
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2}",
        "task writes, server's commands::execute",
        task_commands.rate(),
        task_commands.p(0.5),
        task_commands.p(0.99)
    );
    println!(
        "{:<44} {:>10.0} {:>9.2} {:>9.2}",
        "task writes, the same server over HTTP",
        task_http.rate(),
        task_http.p(0.5),
        task_http.p(0.99)
    );
    println!(
        "{:<44} {:>10.0} {:>9} {:>9}",
        "100-row INSERT, rows/s (anchor)",
        batched.rate(),
        "-",
        "-"
    );
    for (n, outcome) in &scaling {
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2}   {:.2}x the 100-row INSERT (long-term goal >= 0.5x)",
            format!("cairn group commit, {n} clients"),
            outcome.rate(),
            outcome.p(0.5),
            outcome.p(0.99),
            outcome.rate() / batched.rate()
        );
    }
    println!();
    let vs_raw = anchor.ratio();
    let vs_pges = cairn.rate() / pges.rate();
    let growth = long.p(0.5) / short.p(0.5);
    println!(
        "cairn / raw INSERT        {vs_raw:>6.2}x   target >= 0.70x   {}  (median of {} alternating rounds: {})",
        check(vs_raw >= 0.7),
        anchor.ratios.len(),
        anchor.rounds()
    );
    println!(
        "cairn / plain postgres-es {vs_pges:>6.2}x   target >= 2.50x   {}",
        check(vs_pges >= 2.5)
    );
    println!(
        "cairn p99                 {:>6.2} ms  target <= 10 ms    {}",
        cairn.p(0.99),
        check(cairn.p(0.99) <= 10.0)
    );
    let lag_p99 = lag.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "projection lag p99        {lag_p99:>6.2} ms  target <= 50 ms    {}  (memberships; commit -> read model, p50 {:.2} ms, {} samples)",
        check(lag_p99 <= 50.0),
        lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag.len()
    );
    println!(
        "p50 at stream length {}  {:>6.2} ms; at length 10: {:.2} ms; ratio {growth:.2}  target <= 1.5  {}",
        args.long_stream,
        long.p(0.5),
        short.p(0.5),
        check(growth <= 1.5)
    );

    let http_ratio = tasks.ratio();
    println!(
        "http / commands (tasks)   {http_ratio:>6.2}x   target >= 0.50x   {}  (one server, its consumers behind both; median of {} alternating rounds: {})",
        check(http_ratio >= 0.5),
        tasks.ratios.len(),
        tasks.rounds()
    );
    println!(
        "http p99 (tasks)          {:>6.2} ms  target <= 20 ms    {}",
        task_http.p(0.99),
        check(task_http.p(0.99) <= 20.0)
    );

    pool.close().await;
    if !args.keep {
        drop_database(config, &name).await?;
        drop_database(config, &http_database).await?;
    }
    Ok(())
}

/// The single-row INSERT anchor: one event row per statement, autocommit.
fn raw_op(pool: &PgPool) -> Op {
    let pool = pool.clone();
    Arc::new(move |client, i| {
        let pool = pool.clone();
        Box::pin(async move {
            let org = format!("raw-{client}");
            let payload = serde_json::json!({"type": "organization.renamed", "name": format!("Bench {client} {i}")});
            sqlx::query(
                "INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('organization', $1, $2, 'organization.renamed', '1', $3, $4)",
            )
            .bind(&org)
            .bind(i as i64 + 1)
            .bind(payload)
            .bind(serde_json::to_value(metadata_map(&org))?)
            .execute(&pool)
            .await?;
            Ok(())
        })
    })
}

/// Multi-row INSERTs of 100 events each: the rate a batching writer could reach at best.
/// `ops` counts rows.
async fn batched_inserts(
    pool: &PgPool,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    const ROWS: u64 = 100;
    let pool = pool.clone();
    let op: Op = Arc::new(move |client, i| {
        let pool = pool.clone();
        Box::pin(async move {
            let org = format!("batch-{client}");
            let metadata = serde_json::to_value(metadata_map(&org))?;
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
            );
            query.push_values(0..ROWS, |mut row, n| {
                let sequence = (i * ROWS + n) as i64 + 1;
                row.push_bind("organization")
                    .push_bind(&org)
                    .push_bind(sequence)
                    .push_bind("organization.renamed")
                    .push_bind("1")
                    .push_bind(serde_json::json!({"type": "organization.renamed", "name": format!("Bench {client} {sequence}")}))
                    .push_bind(&metadata);
            });
            query.build().execute(&pool).await?;
            Ok(())
        })
    });
    let mut outcome = drive("100-row INSERT", clients, duration, None, op).await?;
    outcome.ops *= ROWS;
    Ok(outcome)
}

async fn postgres_es_execute(
    pool: &PgPool,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let repo = PostgresEventRepository::new(pool.clone())
        .with_tables("bench_pges_events", "bench_pges_snapshots");
    let cqrs = Arc::new(CqrsFramework::new(
        PersistedEventStore::<_, Organization>::new_event_store(repo),
        vec![],
        (),
    ));
    let mut orgs = Vec::with_capacity(clients);
    for _ in 0..clients {
        let org = fresh_org();
        cqrs.execute_with_metadata(
            &org.to_string(),
            Request::system(C::Create {
                org_id: org,
                admin_team: TeamId::from_uuid(Uuid::now_v7()),
                name: Name::parse("name", "Bench")?,
            }),
            metadata_map(&org.to_string()),
        )
        .await?;
        orgs.push(org.to_string());
    }
    let orgs = Arc::new(orgs);
    let op: Op = Arc::new(move |client, i| {
        let cqrs = cqrs.clone();
        let orgs = orgs.clone();
        Box::pin(async move {
            let org = &orgs[client];
            cqrs.execute_with_metadata(
                org,
                Request::system(org_command(client, i)?),
                metadata_map(org),
            )
            .await?;
            Ok(())
        })
    });
    drive("postgres-es", clients, duration, None, op).await
}

async fn setup_orgs(commands: &Commands, clients: usize) -> anyhow::Result<Arc<Vec<String>>> {
    let mut orgs = Vec::with_capacity(clients);
    for _ in 0..clients {
        let org = fresh_org();
        commands
            .execute::<Organization>(
                &org.to_string(),
                Request::system(C::Create {
                    org_id: org,
                    admin_team: TeamId::from_uuid(Uuid::now_v7()),
                    name: Name::parse("name", "Bench")?,
                }),
                &Metadata::new(Actor::System).in_org(org),
            )
            .await?;
        orgs.push(org.to_string());
    }
    Ok(Arc::new(orgs))
}

fn commands_op(commands: Commands, orgs: Arc<Vec<String>>) -> Op {
    Arc::new(move |client, i| {
        let commands = commands.clone();
        let orgs = orgs.clone();
        Box::pin(async move {
            let org = &orgs[client];
            commands
                .execute::<Organization>(
                    org,
                    Request::system(org_command(client, i)?),
                    &Metadata::new(Actor::System).in_org(org),
                )
                .await?;
            Ok(())
        })
    })
}

async fn cairn_execute(
    pool: &PgPool,
    clients: usize,
    duration: Duration,
    writers: usize,
    project: bool,
) -> anyhow::Result<(Outcome, Histogram<u64>)> {
    use projections::read_models::memberships::MembershipsProjection;
    use projections::runner::{Runner, RunnerOptions};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    let options = StoreOptions {
        writers,
        ..StoreOptions::default()
    };
    let store = Store::new(pool.clone(), options);
    let commands = Commands::new(store.clone());
    let orgs = setup_orgs(&commands, clients).await?;

    // The memberships projection runs alongside, as on a server; each receipt's cursor is
    // timed from the command's acknowledgement to the batch that applies it.
    let runner = Runner::new(store, MembershipsProjection, RunnerOptions::default());
    let mut progress = runner.progress();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = project.then(|| tokio::spawn(runner.run(stop.clone())));
    if project {
        // Catch up on the earlier phases' events first, so only lag under load is measured.
        let target = commands.store().head().await?;
        let name = projections::read_models::memberships::NAME;
        let within = Duration::from_secs(120);
        if !projections::progress::wait_for(pool, name, target, within, None).await? {
            anyhow::bail!("the memberships projection did not catch up within 120 s");
        }
    }
    let pending: Arc<Mutex<VecDeque<(eventstore::Cursor, Instant)>>> = Arc::default();
    let lag = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let watcher = {
        let pending = pending.clone();
        let lag = lag.clone();
        tokio::spawn(async move {
            while progress.changed().await.is_ok() {
                let applied = *progress.borrow();
                let now = Instant::now();
                let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                let mut lag = lag.lock().unwrap_or_else(|p| p.into_inner());
                // Cursors arrive nearly in order; scan all, since concurrent clients interleave.
                pending.retain(|(cursor, at)| {
                    let done = *cursor <= applied;
                    if done {
                        lag.saturating_record(now.duration_since(*at).as_micros() as u64);
                    }
                    !done
                });
            }
        })
    };
    let op: Op = {
        let pending = pending.clone();
        Arc::new(move |client, i| {
            let commands = commands.clone();
            let orgs = orgs.clone();
            let pending = pending.clone();
            Box::pin(async move {
                let org = &orgs[client];
                let receipt = commands
                    .execute::<Organization>(
                        org,
                        Request::system(org_command(client, i)?),
                        &Metadata::new(Actor::System).in_org(org),
                    )
                    .await?;
                if let Some(cursor) = receipt.cursor.filter(|_| project) {
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back((cursor, Instant::now()));
                }
                Ok(())
            })
        })
    };
    let outcome = drive("cairn", clients, duration, None, op).await?;
    // Let the projection finish what was acknowledged, then stop it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty() && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    if let Some(running) = running {
        let _ = running.await;
    }
    watcher.abort();
    let lag = lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((outcome, lag))
}

/// Latency of commands on streams that already hold `length` events, with the aggregate cache
/// off so every command loads from the database (snapshot plus tail).
async fn by_length(
    pool: &PgPool,
    clients: usize,
    length: i64,
    samples: u64,
) -> anyhow::Result<Outcome> {
    let options = StoreOptions {
        cache_capacity: 0,
        ..StoreOptions::default()
    };
    let store = Store::new(pool.clone(), options);
    let commands = Commands::new(store.clone());
    let mut orgs = Vec::with_capacity(clients);
    eprintln!("  writing {clients} streams of {length} events");
    for _ in 0..clients {
        let org = fresh_org();
        let mut events = vec![OrganizationEvent::Created {
            org_id: org,
            name: Name::parse("name", "Bench")?,
        }];
        for s in 2..=length {
            events.push(OrganizationEvent::Renamed {
                name: Name::parse("name", &format!("Bench {s}"))?,
            });
        }
        let org = org.to_string();
        store
            .append_bulk([bulk_request::<Organization>(&org, &org, events)?])
            .await?;
        orgs.push(org);
    }
    let label = format!("length {length}");
    drive(
        &label,
        clients,
        Duration::from_secs(600),
        Some(samples),
        commands_op(commands, Arc::new(orgs)),
    )
    .await
}

/// A fresh, migrated database for one benchmark run.
async fn bench_database(config: &Config) -> anyhow::Result<(String, PgPool)> {
    let name = format!(
        "cairn_bench_{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let options = config.database.clone().database(&name);
    eventstore::ensure_database(&options)
        .await
        .context("cannot reach PostgreSQL (DATABASE_URL)")?;
    let pool = eventstore::connect(options, 8).await?;
    eventstore::MIGRATOR.run(&pool).await?;
    Ok((name, pool))
}

async fn drop_database(config: &Config, name: &str) -> anyhow::Result<()> {
    let admin = eventstore::connect(config.database.clone().database("postgres"), 1).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    Ok(())
}

/// One stream's events from sequence 1, as a request for [`Store::append_bulk`].
fn bulk_request<A: Aggregate>(
    aggregate_id: &str,
    org: &str,
    events: Vec<A::Event>,
) -> anyhow::Result<AppendRequest> {
    Ok(AppendRequest {
        command_id: Uuid::new_v4(),
        fingerprint: None,
        aggregate_type: A::TYPE.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        prev_hash: None,
        events: (1..)
            .zip(events)
            .map(|(sequence, event)| {
                Ok(NewEvent {
                    sequence,
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(&event)?,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?,
        metadata: serde_json::to_value(metadata_map(org))?,
        snapshot: None,
    })
}

/// Writes `tasks` tasks of 10 events each (created, status, title, 3 comments, priority, a
/// comment edited, an assignee, a comment deleted), through the event store's bulk append in
/// batches of 10,000 tasks.
async fn generate_task_events(pool: &PgPool, tasks: i64) -> anyhow::Result<()> {
    let store = Store::new(pool.clone(), StoreOptions::default());
    let org = fresh_org();
    let text = |raw: &str| Text::parse("text", raw, task::BODY_MAX, true);
    let chunk = 10_000;
    let mut done = 0;
    while done < tasks {
        let n = chunk.min(tasks - done);
        let mut requests = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let id = Uuid::new_v4();
            let comments: Vec<CommentId> = (0..3)
                .map(|_| CommentId::from_uuid(Uuid::new_v4()))
                .collect();
            let comment = |i: usize, body: &str| -> anyhow::Result<TaskEvent> {
                Ok(TaskEvent::CommentAdded {
                    comment_id: comments[i],
                    author: None,
                    body: text(body)?,
                })
            };
            let events = vec![
                TaskEvent::Created {
                    org_id: org,
                    title: text(&format!("Task {id}"))?,
                    description: text("")?,
                    status: task::Status::Todo,
                    priority: task::Priority::None,
                    category_id: None,
                    labels: BTreeSet::new(),
                    assignees: BTreeSet::new(),
                },
                TaskEvent::StatusChanged {
                    status: task::Status::InProgress,
                },
                TaskEvent::TitleChanged {
                    title: text(&format!("Renamed {id}"))?,
                },
                comment(0, "comment 4")?,
                comment(1, "comment 5")?,
                comment(2, "comment 6")?,
                TaskEvent::PriorityChanged {
                    priority: task::Priority::High,
                },
                TaskEvent::CommentEdited {
                    comment_id: comments[0],
                    body: text("edited")?,
                },
                TaskEvent::Assigned {
                    user_id: UserId::from_uuid(Uuid::new_v4()),
                },
                TaskEvent::CommentDeleted {
                    comment_id: comments[1],
                },
            ];
            requests.push(bulk_request::<Task>(
                &id.to_string(),
                &org.to_string(),
                events,
            )?);
        }
        store.append_bulk(requests).await?;
        done += n;
        eprintln!("  generated {} of {} events", done * 10, tasks * 10);
    }
    Ok(())
}

async fn replay(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    let (name, pool) = bench_database(config).await?;
    let tasks = (args.events / 10).max(1);
    println!(
        "cairn bench replay: {} task events, fresh database {name}",
        tasks * 10
    );
    eprintln!("phase 1/3: generating events");
    generate_task_events(&pool, tasks).await?;
    sqlx::query("ANALYZE events").execute(&pool).await?;

    eprintln!("phase 2/3: plain scan of the events table (anchor)");
    let started = Instant::now();
    let mut rows = sqlx::query("SELECT * FROM events").fetch(&pool);
    let mut scanned = 0u64;
    while futures::TryStreamExt::try_next(&mut rows).await?.is_some() {
        scanned += 1;
    }
    drop(rows);
    let scan_rate = scanned as f64 / started.elapsed().as_secs_f64();

    eprintln!("phase 3/3: rebuilding the board projection");
    let store = Store::new(pool.clone(), StoreOptions::default());
    let took = projections::registry::replay(
        &store,
        projections::read_models::board::NAME,
        |at, target, rate| {
            eprintln!("  replay: position {at} of {target}, {rate:.0} events/s");
        },
    )
    .await?;
    let replay_rate = scanned as f64 / took.as_secs_f64();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM board_tasks")
        .fetch_one(&pool)
        .await?;

    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("plain SELECT scan of events (anchor)   {scan_rate:>10.0} events/s");
    println!(
        "board projection rebuild                {replay_rate:>10.0} events/s  ({applied} tasks)"
    );
    println!(
        "rebuild rate              {replay_rate:>8.0}/s  target >= 50,000/s   {}",
        check(replay_rate >= 50_000.0)
    );
    println!(
        "rebuild / scan            {:>8.2}x   target >= 0.30x      {}",
        replay_rate / scan_rate,
        check(replay_rate / scan_rate >= 0.3)
    );
    pool.close().await;
    if !args.keep {
        drop_database(config, &name).await?;
    }
    Ok(())
}
