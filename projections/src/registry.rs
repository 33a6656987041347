//! Every projection by name: what the server runs, `cairn replay` rebuilds and
//! `cairn projections` lists.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventstore::{Cursor, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::board::BoardProjection;
use crate::identity::IdentityProjection;
use crate::memberships::MembershipsProjection;
use crate::runner::{checkpoint, reset, Runner, RunnerOptions};
use crate::Projection;

/// The names of every projection.
pub const NAMES: &[&str] = &[
    crate::identity::NAME,
    crate::memberships::NAME,
    crate::board::NAME,
];

/// Starts a runner for every projection on `tasks`, until `shutdown` (a runner finishes the
/// batch it is applying first); returns each one's progress, by name.
pub fn spawn_all(
    store: &Store,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> HashMap<&'static str, watch::Receiver<Cursor>> {
    fn spawn<P: Projection>(
        store: &Store,
        projection: P,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> (&'static str, watch::Receiver<Cursor>) {
        let runner = Runner::new(store.clone(), projection, RunnerOptions::default());
        let progress = runner.progress();
        let name = runner.name();
        tasks.spawn(runner.run(shutdown.clone()));
        (name, progress)
    }
    HashMap::from([
        spawn(store, IdentityProjection, shutdown, tasks),
        spawn(store, MembershipsProjection, shutdown, tasks),
        spawn(store, BoardProjection, shutdown, tasks),
    ])
}

/// A projection's state, for `cairn projections`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Its name.
    pub name: &'static str,
    /// Where it has got to.
    pub cursor: Cursor,
    /// Events committed after it (approximate: by global position).
    pub lag: i64,
}

/// The state of every projection.
pub async fn statuses(store: &Store) -> Result<Vec<Status>, sqlx::Error> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(store.pool())
        .await?;
    let mut out = Vec::with_capacity(NAMES.len());
    for name in NAMES {
        let cursor = checkpoint(store.pool(), name).await?;
        out.push(Status {
            name,
            cursor,
            lag: (head - cursor.position()).max(0),
        });
    }
    Ok(out)
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
        crate::identity::NAME => replay_one(store, IdentityProjection, progress).await,
        crate::memberships::NAME => replay_one(store, MembershipsProjection, progress).await,
        crate::board::NAME => replay_one(store, BoardProjection, progress).await,
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
        let at = match checkpoint(pool, name).await {
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
