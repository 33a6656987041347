//! `cairn bench collab`: documents typed into live. A server runs in this process on a fresh
//! database; `--docs` documents each get `--clients` yrs clients over real WebSockets
//! (`/collab/{doc}`, y-websocket), every client typing one character every `--every-ms`.
//! Every update is persisted before anyone else sees it, so the figures are:
//! - persisted updates per second (counted in the store);
//! - update → peer delivery: from the moment a client sends an update to the moment each other
//!   client of the document has applied it (a receiver knows from its state vector which of a
//!   sender's updates it now holds);
//! - CPU per update: the server's CPU time per persisted update, and the clients' beside it.
//!   The clients run on a runtime of their own (threads named [`CLIENT_THREADS`]), so the
//!   process's CPU time splits by thread: theirs, and the rest (the server's);
//! - opening a document of `--open-edits` edits, compacted as a room compacts: the first open
//!   of a cold room over a WebSocket (load, then sync), and the load alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use commands::{Actor, Commands, Metadata};
use domain::document::{Bytes, Document, DocumentCommand, DocumentRequest, Placement};
use domain::{DocId, Grant, OrgId};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Text, Transact};

use gateway::config::Config;
use gateway::App;

/// Options for `cairn bench collab`.
#[derive(Debug, clap::Args)]
pub struct CollabArgs {
    /// Documents typed into at once.
    #[arg(long, default_value_t = 50)]
    docs: usize,
    /// Clients per document.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Each client types one character this often (ms).
    #[arg(long, default_value_t = 20)]
    every_ms: u64,
    /// Seconds of typing measured (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Edits of the document opened at the end (compacted every 1,000, as a room does).
    #[arg(long, default_value_t = 100_000)]
    open_edits: usize,
    /// Keep the benchmark database instead of dropping it.
    #[arg(long)]
    keep: bool,
}

/// Runs the bench.
pub async fn collab(config: &Config, args: CollabArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.docs > 0 && args.clients > 1 && args.every_ms > 0 && args.seconds > 0,
        "--docs, --every-ms and --seconds must be above zero, --clients above one"
    );
    let (name, pool) = super::bench_database(config).await?;
    let data_dir = std::env::temp_dir().join(&name);
    let result = run(config, &args, &name, pool.clone(), data_dir.clone()).await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if args.keep {
        println!("kept database {name}");
    } else {
        super::drop_database(config, &name).await?;
    }
    result
}

/// The name of the clients' runtime threads, by which their CPU time is told from the server's.
const CLIENT_THREADS: &str = "bench-client";

/// Each sender's send times, by the clock its update reached (one character each: clock `n`
/// is the `n`th update), shared by the document's clients.
type Sends = Arc<Mutex<HashMap<yrs::block::ClientID, Vec<Instant>>>>;

async fn run(
    config: &Config,
    args: &CollabArgs,
    database: &str,
    pool: sqlx::PgPool,
    data_dir: std::path::PathBuf,
) -> anyhow::Result<()> {
    let mut config = config.clone();
    config.database = config.database.clone().database(database);
    config.bind = "127.0.0.1:0".parse()?;
    config.nats_url = None;
    config.smtp_url = None;
    config.data_dir = data_dir.clone();
    std::fs::create_dir_all(&data_dir)?;
    config.api_rate = u32::MAX / 2;
    let key = gateway::secret_key(&config)?;
    config.secret_key = Some(key.clone());
    let app = App::build(config.clone()).await?;
    let base = format!("http://{}", app.local_addr());
    let shutdown = app.shutdown_token();
    let serving = tokio::spawn(app.run());
    let result = async {
        let http = reqwest::Client::new();
        super::tasks::wait_ready(&http, &base).await?;
        let api_key = super::tasks::api_key_with(
            &config,
            key,
            &[
                domain::Scope::Admin,
                domain::Scope::DocsRead,
                domain::Scope::DocsWrite,
            ],
        )
        .await?;
        let auth = format!("Bearer {api_key}");
        let post = |path: String, body: Value| {
            http.post(format!("{base}/api/v1{path}"))
                .header("authorization", &auth)
                .json(&body)
                .send()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let org = loop {
            let answer = post("/orgs".into(), json!({"name": "Bench collab"})).await?;
            if answer.status().is_success() {
                let body: Value = answer.json().await?;
                break body["id"].as_str().context("org id")?.to_owned();
            }
            anyhow::ensure!(Instant::now() < deadline, "the bench key never worked");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("phase 1/3: {} documents", args.docs);
        let mut docs = Vec::with_capacity(args.docs);
        for i in 0..args.docs {
            let body: Value = post(
                format!("/orgs/{org}/docs"),
                json!({ "title": format!("Bench {i}") }),
            )
            .await?
            .error_for_status()?
            .json()
            .await?;
            docs.push(body["id"].as_str().context("doc id")?.to_owned());
        }
        super::tasks::caught_up(&config).await?;

        eprintln!(
            "phase 2/3: {} clients typing every {} ms for {} s",
            args.docs * args.clients,
            args.every_ms,
            args.seconds
        );
        let ws_base = base.replacen("http://", "ws://", 1);
        let stop = tokio_util::sync::CancellationToken::new();
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // When the measured window opened: only updates sent after it count (a client that
        // connected late receives the warm-up's updates in its first sync, long after they
        // were sent; that is a late join, not a slow delivery).
        let window: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        // The clients on threads of their own, so that their CPU time can be told from the
        // server's (both still share this machine's cores, as a browser and a server would not).
        let clients = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(CLIENT_THREADS)
            .enable_all()
            .build()?;
        let mut tasks = Vec::new();
        for doc in &docs {
            let sends: Sends = Arc::default();
            for _ in 0..args.clients {
                let url = format!("{ws_base}/collab/{doc}");
                tasks.push(clients.spawn(typist(
                    url,
                    auth.clone(),
                    sends.clone(),
                    Duration::from_millis(args.every_ms),
                    stop.clone(),
                    measuring.clone(),
                    window.clone(),
                )));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let edits_before = edits(&pool).await?;
        let position_before = newest_position(&pool).await?;
        let (cpu_before, client_cpu_before) = (cpu_seconds(), thread_cpu_seconds(CLIENT_THREADS));
        let started = Instant::now();
        let _ = window.set(Instant::now());
        measuring.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        for second in 1..=args.seconds {
            ticker.tick().await;
            // Progress from the newest event's position (one index probe): counting the
            // edits, a scan of the growing table, every second inside the measured window
            // would add its own load to what is measured. The exact count is taken after.
            eprintln!(
                "  {second} s: about {} events stored",
                newest_position(&pool).await? - position_before
            );
        }
        measuring.store(false, std::sync::atomic::Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let stored = (edits(&pool).await? - edits_before) as f64;
        let client_cpu = thread_cpu_seconds(CLIENT_THREADS) - client_cpu_before;
        let server_cpu = cpu_seconds() - cpu_before - client_cpu;
        stop.cancel();
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for task in tasks {
            latency.add(task.await??)?;
        }
        // Inside the main runtime: let its threads go without waiting for them here.
        clients.shutdown_background();

        eprintln!(
            "phase 3/3: a document of {} edits, compacted every 1,000",
            args.open_edits
        );
        let (cold, loaded) = open(&config, &pool, &ws_base, &auth, &org, args).await?;

        let rate = stored / elapsed;
        let p = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        let check = |ok: bool| if ok { "ok" } else { "MISSED" };
        println!();
        println!(
            "{} documents x {} clients, one update every {} ms each ({:.0} offered/s)",
            args.docs,
            args.clients,
            args.every_ms,
            (args.docs * args.clients) as f64 * 1000.0 / args.every_ms as f64
        );
        println!(
            "update -> peer delivery: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
            p(0.5),
            p(0.99),
            p(1.0),
            latency.len()
        );
        println!(
            "server CPU per persisted update: {:.0} us (the clients: {:.0} us more)",
            server_cpu / stored.max(1.0) * 1e6,
            client_cpu / stored.max(1.0) * 1e6
        );
        println!(
            "open, load alone (p50 of 5): {:.1} ms",
            loaded.as_secs_f64() * 1000.0
        );
        println!();
        println!(
            "persisted updates/s        {rate:>8.0}   target >= 5,000    {}",
            check(rate >= 5000.0)
        );
        println!(
            "update -> peer p99        {:>6.1} ms   target <= 50 ms    {}",
            p(0.99),
            check(p(0.99) <= 50.0)
        );
        let cold_ms = cold.as_secs_f64() * 1000.0;
        println!(
            "open {} edits, cold     {cold_ms:>6.1} ms   target <= 50 ms    {}",
            args.open_edits,
            check(cold_ms <= 50.0)
        );
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = serving.await;
    result
}

/// Stored `document.edited` events.
async fn edits(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'document.edited'")
            .fetch_one(pool)
            .await?,
    )
}

/// The global position of the newest event (in tail order), or 0.
async fn newest_position(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
}

/// This process's CPU time (user and system) in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Linux's USER_HZ is 100 on every architecture it supports.
    stat.rsplit_once(')')
        .map_or(0.0, |(_, rest)| stat_ticks(rest) / 100.0)
}

/// The CPU time (user and system) in seconds of this process's threads named `name`, from
/// `/proc/self/task/*/stat`.
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            // `pid (comm) state ...`: the thread's name is between the parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let (_, comm) = head.split_once('(')?;
            (comm == name).then(|| stat_ticks(rest))
        })
        .sum::<f64>()
        / 100.0
}

/// utime + stime, in ticks, from what follows the command name in a `stat` line.
fn stat_ticks(rest: &str) -> f64 {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line (11 and 12 after the name).
    ticks(11) + ticks(12)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, auth: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("authorization", auth.parse()?);
    // Small buffers, as a browser's would be (tungstenite zeroes its read buffer, 128 KiB by
    // default, on every read).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(ws)
}

/// One client: types every `every` until `stop`, applies what arrives, and returns the
/// delivery latencies it saw while `measuring`.
async fn typist(
    url: String,
    auth: String,
    sends: Sends,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
    measuring: Arc<std::sync::atomic::AtomicBool>,
    window: Arc<std::sync::OnceLock<Instant>>,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ws = connect(&url, &auth).await?;
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("content");
    let me = doc.client_id();
    sends
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(me, Vec::new());
    let step1 = Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()));
    ws.send(WsMessage::Binary(step1.encode_v1().into())).await?;
    // How far each other client's updates have reached here.
    let mut seen: HashMap<yrs::block::ClientID, u32> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                let update = {
                    // At the top of the document. yrs finds an index by walking the text's
                    // items from the start, and the four clients' interleaved characters never
                    // merge into longer items: typing at the end cost the load generator, in
                    // this same process, about half the machine (47 % of samples), which the
                    // server then lacked. Where a client types changes nothing for the server,
                    // which integrates an update by the ids it names.
                    let mut txn = doc.transact_mut();
                    text.insert(&mut txn, 0, "x");
                    // The transaction's own update, as a Yjs provider sends it (encoding the
                    // state since a state vector would walk the whole store for deletions).
                    txn.encode_update_v1()
                };
                sends.lock().unwrap_or_else(|p| p.into_inner())
                    .entry(me).or_default().push(Instant::now());
                ws.send(WsMessage::Binary(Message::Sync(SyncMessage::Update(update)).encode_v1().into())).await?;
            }
            frame = ws.next() => {
                let Some(frame) = frame else { break };
                let WsMessage::Binary(bytes) = frame? else { continue };
                let mut decoder = DecoderV1::new(Cursor::new(&bytes));
                let messages: Vec<Message> = MessageReader::new(&mut decoder).collect::<Result<_, _>>()?;
                for message in messages {
                    match message {
                        Message::Sync(SyncMessage::SyncStep1(state)) => {
                            let diff = doc.transact().encode_diff_v1(&state);
                            ws.send(WsMessage::Binary(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1().into())).await?;
                        }
                        Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                            doc.transact_mut().apply_update(yrs::Update::decode_v1(&update)?)?;
                        }
                        _ => {}
                    }
                }
                let now = Instant::now();
                let state = doc.transact().state_vector();
                let measure = measuring.load(std::sync::atomic::Ordering::Relaxed);
                let since = window.get().copied();
                let sends = sends.lock().unwrap_or_else(|p| p.into_inner());
                for (client, times) in sends.iter().filter(|(c, _)| **c != me) {
                    let reached = state.get(client);
                    let from = seen.entry(*client).or_insert(0);
                    for clock in *from..reached {
                        let sent = times.get(clock as usize).filter(|sent| since.is_some_and(|s| **sent >= s));
                        if let (true, Some(sent)) = (measure, sent) {
                            latency.record((now - *sent).as_micros().max(1) as u64)?;
                        }
                    }
                    *from = (*from).max(reached);
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(latency)
}

/// Writes a document of `args.open_edits` one-character edits, compacted every 1,000 as a
/// room would, then times a cold open over a WebSocket (until the client holds every edit)
/// and the load alone (p50 of five).
async fn open(
    config: &Config,
    pool: &sqlx::PgPool,
    ws_base: &str,
    auth: &str,
    org: &str,
    args: &CollabArgs,
) -> anyhow::Result<(Duration, Duration)> {
    let org_id: OrgId = org.parse()?;
    let store = eventstore::Store::new(pool.clone(), eventstore::StoreOptions::default());
    let commands = Commands::new(store.clone());
    let doc = DocId::from_uuid(uuid::Uuid::now_v7());
    let id = doc.to_string();
    let meta = || Metadata::new(Actor::System).in_org(org_id);
    let run = |command: DocumentCommand| DocumentRequest {
        grant: Grant::system(org_id),
        known: Placement::default(),
        command,
    };
    commands
        .execute::<Document>(
            &id,
            run(DocumentCommand::Create {
                doc_id: doc,
                org_id,
                title: domain::Text::parse("title", "Long", 200, false)?,
                parent: None,
            }),
            &meta(),
        )
        .await?;
    let ydoc = yrs::Doc::new();
    let text = ydoc.get_or_insert_text("content");
    let mut written = 0;
    while written < args.open_edits {
        let chunk = (args.open_edits - written).min(1000);
        let mut updates = Vec::with_capacity(chunk);
        for _ in 0..chunk {
            let before = ydoc.transact().state_vector();
            {
                let mut txn = ydoc.transact_mut();
                let at = text.len(&txn);
                text.insert(&mut txn, at, "y");
            }
            updates.push(Bytes::from(
                ydoc.transact().encode_state_as_update_v1(&before),
            ));
        }
        let receipt = commands
            .execute::<Document>(&id, run(DocumentCommand::Edit { updates }), &meta())
            .await?;
        written += chunk;
        let covers = receipt.events.last().map_or(0, |e| e.sequence as u64);
        commands
            .execute::<Document>(
                &id,
                run(DocumentCommand::Compact {
                    state: Bytes::from(projections::read_models::documents::state_of(&ydoc)),
                    covers,
                }),
                &meta(),
            )
            .await?;
        if written % 20_000 == 0 {
            eprintln!("  {written} edits written");
        }
    }
    // The tree read model must know the document before a socket may open it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while projections::read_models::documents::org_of(pool, doc)
        .await?
        .is_none()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the document never reached the tree"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = config;

    let started = Instant::now();
    let mut ws = connect(&format!("{ws_base}/collab/{doc}"), auth).await?;
    let client = yrs::Doc::new();
    let content = client.get_or_insert_text("content");
    let step1 = Message::Sync(SyncMessage::SyncStep1(client.transact().state_vector()));
    ws.send(WsMessage::Binary(step1.encode_v1().into())).await?;
    while (content.len(&client.transact()) as usize) < args.open_edits {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await?
            .context("the socket closed")??;
        let WsMessage::Binary(bytes) = frame else {
            continue;
        };
        let mut decoder = DecoderV1::new(Cursor::new(&bytes));
        for message in MessageReader::new(&mut decoder) {
            if let Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) =
                message?
            {
                client
                    .transact_mut()
                    .apply_update(yrs::Update::decode_v1(&update)?)?;
            }
        }
    }
    let cold = started.elapsed();
    let _ = ws.close(None).await;
    let mut loads = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        projections::read_models::documents::load(&store, doc, None).await?;
        loads.push(started.elapsed());
    }
    loads.sort();
    Ok((cold, loads[2]))
}
