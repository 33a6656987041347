//! Every projection by name: what the server runs, `cairn replay` rebuilds and
//! `cairn projections` lists; and where every checkpointed reader of the log stands, the one
//! source for `cairn projections` and `/metrics`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventstore::{Cursor, Store, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::Changes;
use crate::checkpoint;
use crate::read_models::board::{self, BoardProjection};
use crate::read_models::document_text::{self, DocumentTextProjection};
use crate::read_models::documents::{self, DocumentsProjection};
use crate::read_models::identity::{self, IdentityProjection};
use crate::read_models::memberships::{self, MembershipsProjection};
use crate::runner::{reset, Runner, RunnerOptions};
use crate::Projection;

/// The names of every projection.
pub const NAMES: &[&str] = &[
    identity::NAME,
    memberships::NAME,
    board::NAME,
    documents::NAME,
    document_text::NAME,
];

/// The consumers that keep a checkpoint in the event log (never rebuilt by a replay).
pub const CONSUMERS: &[&str] = &[crate::consumers::relay::NAME];

/// What [`spawn_all`] started, by projection name.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Each runner's progress (a wake-up for [`crate::progress::wait_for`]).
    pub progress: HashMap<&'static str, watch::Receiver<Cursor>>,
    /// Each runner's changes (for caches of its queries: [`crate::changes`]).
    pub changes: HashMap<&'static str, Changes>,
}

impl Running {
    /// The changes of projection `name` ([`Changes::unknown`] if it is not running here).
    pub fn changes_of(&self, name: &str) -> Changes {
        self.changes
            .get(name)
            .cloned()
            .unwrap_or_else(Changes::unknown)
    }
}

/// How long the `document_text` runner lets edits gather once caught up.
pub const DOCUMENT_TEXT_LINGER: Duration = Duration::from_millis(250);

/// Starts a runner for every projection on `tasks`, until `shutdown` (a runner finishes the
/// batch it is applying first); returns each one's progress and changes, by name.
pub fn spawn_all(store: &Store, shutdown: &CancellationToken, tasks: &TaskTracker) -> Running {
    fn spawn<P: Projection>(
        running: &mut Running,
        store: &Store,
        (projection, options): (P, RunnerOptions),
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) {
        let runner = Runner::new(store.clone(), projection, options);
        let name = runner.name();
        running.progress.insert(name, runner.progress());
        running.changes.insert(name, runner.changes());
        tasks.spawn(runner.run(shutdown.clone()));
    }
    let mut running = Running::default();
    let default = RunnerOptions::default;
    spawn(
        &mut running,
        store,
        (IdentityProjection, default()),
        shutdown,
        tasks,
    );
    spawn(
        &mut running,
        store,
        (MembershipsProjection, default()),
        shutdown,
        tasks,
    );
    spawn(
        &mut running,
        store,
        (BoardProjection, default()),
        shutdown,
        tasks,
    );
    spawn(
        &mut running,
        store,
        (DocumentsProjection, default()),
        shutdown,
        tasks,
    );
    // Each batch re-reads the whole text of every document it edits, and live documents are
    // edited hundreds of times a second: a quarter second's gathering makes that once per
    // document per quarter second instead of once per 10 ms. The text feeds search and
    // backlinks, where a quarter second is not seen.
    let text = RunnerOptions {
        batch: 2_000,
        linger: DOCUMENT_TEXT_LINGER,
        ..RunnerOptions::default()
    };
    spawn(
        &mut running,
        store,
        (DocumentTextProjection::new(store.clone()), text),
        shutdown,
        tasks,
    );
    running
}

/// What kind of reader a [`Status`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read model ([`NAMES`]).
    Projection,
    /// A consumer with a side effect ([`CONSUMERS`]).
    Consumer,
}

/// Where a checkpointed reader of the log stands.
#[derive(Debug, Clone)]
pub struct Status {
    /// Its name.
    pub name: &'static str,
    /// A projection or a consumer.
    pub kind: Kind,
    /// Where it has got to.
    pub cursor: Cursor,
    /// Events committed after it (approximate: by global position; exact when nothing is in
    /// flight).
    pub lag: i64,
}

/// Where every projection stands, in [`NAMES`] order (`cairn projections`).
pub async fn statuses(store: &Store) -> Result<Vec<Status>, StoreError> {
    read_statuses(store, NAMES, &[]).await
}

/// Where every projection and every consumer stands: the projections in [`NAMES`] order, then
/// the [`CONSUMERS`] (`/metrics`).
pub async fn all_statuses(store: &Store) -> Result<Vec<Status>, StoreError> {
    read_statuses(store, NAMES, CONSUMERS).await
}

/// Two indexed reads: the checkpoints' rows (a reader not started yet is at the start) and the
/// head of the log. Nothing reads the event table whole, and nothing is written.
async fn read_statuses(
    store: &Store,
    projections: &[&'static str],
    consumers: &[&'static str],
) -> Result<Vec<Status>, StoreError> {
    let names: Vec<(&'static str, Kind)> = projections
        .iter()
        .map(|&name| (name, Kind::Projection))
        .chain(consumers.iter().map(|&name| (name, Kind::Consumer)))
        .collect();
    let just_names: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
    let cursors = checkpoint::read_all(store.pool(), &just_names).await?;
    let head = store.head().await?;
    Ok(names
        .into_iter()
        .zip(cursors)
        .map(|((name, kind), cursor)| Status {
            name,
            kind,
            cursor,
            lag: (head.position() - cursor.position()).max(0),
        })
        .collect())
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No projection has that name.
    #[error("no projection named `{name}`; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed.
    #[error("event store: {0}")]
    Store(#[from] eventstore::StoreError),
}

/// Rebuilds projection `name` from the first event, calling `progress(applied position,
/// target position, events per second)` about once a second. A runner in this process competes
/// for the projection's lock with any server's; whichever holds it does the work.
pub async fn replay(
    store: &Store,
    name: &str,
    progress: impl FnMut(i64, i64, f64),
) -> Result<Duration, ReplayError> {
    match name {
        identity::NAME => replay_one(store, IdentityProjection, progress).await,
        memberships::NAME => replay_one(store, MembershipsProjection, progress).await,
        board::NAME => replay_one(store, BoardProjection, progress).await,
        documents::NAME => replay_one(store, DocumentsProjection, progress).await,
        document_text::NAME => {
            replay_one(store, DocumentTextProjection::new(store.clone()), progress).await
        }
        other => Err(ReplayError::Unknown {
            name: other.to_owned(),
            known: NAMES.join(", "),
        }),
    }
}

async fn replay_one<P: Projection>(
    store: &Store,
    projection: P,
    mut progress: impl FnMut(i64, i64, f64),
) -> Result<Duration, ReplayError> {
    let pool = store.pool();
    let target = store.head().await?;
    reset(pool, &projection).await?;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let runner = Runner::new(
        store.clone(),
        projection,
        RunnerOptions {
            batch: 10_000,
            poll: Duration::from_millis(200),
            ..RunnerOptions::default()
        },
    );
    let name = runner.name();
    let mut applied = runner.progress();
    let running = tokio::spawn(runner.run(stop.clone()));
    let result = loop {
        let at = match checkpoint::load(pool, name).await {
            Ok(at) => at,
            Err(e) => break Err(e.into()),
        };
        let rate = at.position() as f64 / started.elapsed().as_secs_f64().max(1e-3);
        progress(at.position(), target.position(), rate);
        if at >= target {
            break Ok(started.elapsed());
        }
        // Wake at once when this process's runner commits a batch (exact timing), or poll
        // the checkpoint in case another node's runner does the work.
        let _ = tokio::time::timeout(Duration::from_millis(500), applied.changed()).await;
    };
    stop.cancel();
    let _ = running.await;
    result
}
