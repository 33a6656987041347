//! Commit signals: how tailers on every node wake within milliseconds of a commit on any node.
//!
//! Each node's group-commit writer marks what it committed ([`Commits::here`]). With
//! [`Store::share_commit_signals`](crate::Store::share_commit_signals) running, the node also
//! sends `NOTIFY cairn_commits, '<cursor>'` (at most one every 5 ms, outside the commit
//! transaction, asynchronously committed, so it adds nothing to a command's latency) and
//! `LISTEN`s for the other nodes' signals ([`Commits::elsewhere`]). Projection runners, the
//! relay and the feeds wait on [`Store::commits`](crate::Store::commits).
//!
//! A signal is only a wake-up. A lost one (a reconnect, a crash) costs a tailer its slow poll,
//! never an event: tailers always read the table.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::Cursor;

/// The `LISTEN`/`NOTIFY` channel.
pub const CHANNEL: &str = "cairn_commits";

/// The shortest time between two signals from one node; commits in between ride on the next.
const MIN_INTERVAL: Duration = Duration::from_millis(5);

/// One command's events committed by this process: they became durable when the commit
/// returned, at `at` on the wall clock. Every event of the transaction has `cursor`'s
/// transaction id (commands written together in one transaction share it, and their time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitTime {
    /// The cursor of the command's last event.
    pub cursor: Cursor,
    /// When the commit returned.
    pub at: SystemTime,
}

/// The newest commit this process made, and the newest it knows of on any node.
#[derive(Debug)]
pub(crate) struct Commits {
    here: watch::Sender<Cursor>,
    any: watch::Sender<Cursor>,
    times: broadcast::Sender<CommitTime>,
}

impl Default for Commits {
    fn default() -> Self {
        Self {
            here: watch::channel(Cursor::START).0,
            any: watch::channel(Cursor::START).0,
            times: broadcast::channel(1024).0,
        }
    }
}

fn advance(to: &watch::Sender<Cursor>, cursor: Cursor) {
    to.send_if_modified(|c| {
        let newer = cursor > *c;
        if newer {
            *c = cursor;
        }
        newer
    });
}

impl Commits {
    /// This process committed commands whose last events are at `cursors`.
    pub(crate) fn committed(&self, cursors: &[Cursor]) {
        let at = SystemTime::now();
        for &cursor in cursors {
            // No receivers is the usual case; the time is only for those who measure.
            let _ = self.times.send(CommitTime { cursor, at });
        }
        if let Some(&newest) = cursors.iter().max() {
            advance(&self.here, newest);
            advance(&self.any, newest);
        }
    }

    /// Another node committed up to `cursor`.
    pub(crate) fn elsewhere(&self, cursor: Cursor) {
        advance(&self.any, cursor);
    }

    pub(crate) fn here(&self) -> Cursor {
        *self.here.borrow()
    }

    pub(crate) fn any(&self) -> watch::Receiver<Cursor> {
        self.any.subscribe()
    }

    pub(crate) fn times(&self) -> broadcast::Receiver<CommitTime> {
        self.times.subscribe()
    }
}

/// Sends this node's commits to the others until `shutdown`.
pub(crate) async fn announce(pool: PgPool, commits: Arc<Commits>, shutdown: CancellationToken) {
    let mut here = commits.here.subscribe();
    loop {
        tokio::select! {
            changed = here.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        let cursor = *here.borrow_and_update();
        // A lost signal costs a wake-up, not an event: no need to wait for the WAL flush.
        let sent =
            sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(cursor.to_string())
                .execute(&pool)
                .await;
        if let Err(e) = sent {
            tracing::debug!("commit signal not sent: {e}");
        }
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// Marks the other nodes' commits until `shutdown`.
pub(crate) async fn listen(pool: PgPool, commits: Arc<Commits>, shutdown: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                if let Ok(cursor) = notification.payload().parse::<Cursor>() {
                    commits.elsewhere(cursor);
                }
            }
        };
        tokio::select! {
            result = attempt => {
                let result: Result<(), sqlx::Error> = result;
                if let Err(e) = result {
                    tracing::warn!("commit signals from other nodes: {e}; listening again");
                }
            }
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
