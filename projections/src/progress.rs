//! Read-your-writes: waiting until a projection has applied a given cursor.

use std::time::Duration;

use eventstore::Cursor;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::checkpoint;

/// Waits until projection `name` has applied everything up to `target`, for read-your-writes.
/// Returns `false` if `within` passes first. Works whichever node runs the projection: `local`
/// (this node's runner progress) answers without a query and wakes the wait as soon as a batch
/// lands; the checkpoint is read at first and then with a backoff (10 ms doubling to 250 ms),
/// the path when another node runs the projection.
pub async fn wait_for(
    pool: &PgPool,
    name: &str,
    target: Cursor,
    within: Duration,
    mut local: Option<watch::Receiver<Cursor>>,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + within;
    let mut nap = Duration::from_millis(10);
    let mut query_at = tokio::time::Instant::now();
    loop {
        if local.as_ref().is_some_and(|rx| *rx.borrow() >= target) {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= query_at {
            let reached = checkpoint::read(pool, name).await?;
            if reached.is_some_and(|at| at >= target) {
                return Ok(true);
            }
            query_at = now + nap;
            nap = (nap * 2).min(Duration::from_millis(250));
        }
        if now >= deadline {
            return Ok(false);
        }
        let wake = query_at.min(deadline);
        match local.as_mut() {
            Some(rx) => {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            local = None;
                        }
                    }
                    () = tokio::time::sleep_until(wake) => {}
                }
            }
            None => tokio::time::sleep_until(wake).await,
        }
    }
}
