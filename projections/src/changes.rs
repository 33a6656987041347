//! When a read model may have changed, so that this process can keep answers to its queries.
//!
//! The write path asks two read models on every request: `identity` (whose API key is this?)
//! and `memberships` (what may this person do here?). Their answers change rarely (a key
//! issued or revoked, a member added), so a [`ReadCache`] keeps them, under a **generation**
//! that the projection's runner moves around each commit of a batch that touched the read model
//! ([`crate::Projection::relevant`]): to "in flight" just *before* the commit, and to a new
//! settled generation just *after* it. While a commit is in flight nothing is served from or
//! stored in the cache; an answer is stored under the generation read *before* its query ran.
//! So an answer that may predate a change is never served after the change can be seen, by any
//! path: a reader that saw the commit in the database (a checkpoint read by
//! [`crate::progress::wait_for`]) then finds the generation in flight or moved on.
//!
//! Only the node that runs the projection learns of its commits, so the generation is known
//! only while this node leads that projection; on the others (and while leadership changes
//! hands), [`Changes::generation`] is `None` and every lookup goes to the table, as before.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

/// The sending half, held by a projection's runner.
#[derive(Debug)]
pub(crate) struct ChangeSignal {
    /// `None` while this node does not lead; else the generation and whether it is settled
    /// (`false` while a commit is in flight).
    generation: watch::Sender<Option<(u64, bool)>>,
    /// The last generation handed out, across periods of leadership (so that an answer kept
    /// while this node led before is never valid again).
    counter: AtomicU64,
}

impl ChangeSignal {
    pub(crate) fn new() -> Self {
        Self {
            generation: watch::channel(None).0,
            counter: AtomicU64::new(0),
        }
    }

    fn set(&self, settled: bool) {
        let next = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.generation.send_modify(|g| {
            if g.is_some() {
                *g = Some((next, settled));
            }
        });
    }

    /// A commit that may change the read model is about to be made: serve nothing kept, and
    /// keep nothing, until [`Self::changed`].
    pub(crate) fn begin(&self) {
        self.set(false);
    }

    /// The read model may have changed (the commit is done, or failed): every answer kept so
    /// far is stale.
    pub(crate) fn changed(&self) {
        self.set(true);
    }

    /// This node starts (`true`) or stops leading the projection.
    pub(crate) fn leading(&self, now: bool) {
        let next = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.generation.send_replace(now.then_some((next, true)));
    }

    pub(crate) fn subscribe(&self) -> Changes {
        Changes(self.generation.subscribe())
    }
}

/// Where a read model's changes stand, as seen by this process.
#[derive(Debug, Clone)]
pub struct Changes(watch::Receiver<Option<(u64, bool)>>);

impl Changes {
    /// The current settled generation, or `None` if this process cannot know when the read
    /// model changes (another node runs the projection) or a commit is in flight.
    pub fn generation(&self) -> Option<u64> {
        match *self.0.borrow() {
            Some((generation, true)) => Some(generation),
            _ => None,
        }
    }

    /// A signal that never knows: a cache on it always asks the table.
    pub fn unknown() -> Self {
        Self(watch::channel(None).1)
    }
}

/// How many answers a cache of the write path's lookups keeps (about a megabyte each).
pub(crate) const KEPT: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => unreachable!(),
};

/// Answers of one read-model query by key, at most `capacity` of them (least recently used
/// first out), each valid while its read model's generation has not moved.
#[derive(Debug)]
pub struct ReadCache<K: Hash + Eq, V> {
    changes: Changes,
    entries: Mutex<lru::LruCache<K, (u64, V)>>,
}

impl<K: Hash + Eq, V: Clone> ReadCache<K, V> {
    /// A cache of at most `capacity` answers, kept while `changes` stands still.
    pub fn new(changes: Changes, capacity: NonZeroUsize) -> Self {
        Self {
            changes,
            entries: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The kept answer for `key`, or `load`'s (kept if `keep` says so, when the generation
    /// is known). `load` runs only on a miss.
    pub async fn get_or_load<E>(
        &self,
        key: K,
        load: impl std::future::Future<Output = Result<V, E>>,
        keep: impl FnOnce(&V) -> bool,
    ) -> Result<V, E> {
        // Read before the query: if the read model changes while it runs, the answer is kept
        // under the old generation and never served.
        let Some(generation) = self.changes.generation() else {
            return load.await;
        };
        if let Some((kept, value)) = self.lock().get(&key) {
            if *kept == generation {
                return Ok(value.clone());
            }
        }
        let value = load.await?;
        if keep(&value) {
            self.lock().put(key, (generation, value.clone()));
        }
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<K, (u64, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache(signal: &ChangeSignal) -> ReadCache<u32, u32> {
        ReadCache::new(signal.subscribe(), NonZeroUsize::new(8).expect("8 > 0"))
    }

    async fn get(cache: &ReadCache<u32, u32>, loads: &AtomicUsize, answer: u32) -> u32 {
        cache
            .get_or_load(
                1,
                async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(answer)
                },
                |_| true,
            )
            .await
            .expect("the load cannot fail")
    }

    #[tokio::test]
    async fn answers_are_kept_until_the_read_model_changes() {
        let signal = ChangeSignal::new();
        signal.leading(true);
        let (cache, loads) = (cache(&signal), AtomicUsize::new(0));
        assert_eq!(get(&cache, &loads, 10).await, 10);
        assert_eq!(get(&cache, &loads, 11).await, 10, "kept");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        signal.changed();
        assert_eq!(
            get(&cache, &loads, 12).await,
            12,
            "asked again after a change"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_is_kept_where_this_node_does_not_lead() {
        let signal = ChangeSignal::new();
        let (cache, loads) = (cache(&signal), AtomicUsize::new(0));
        get(&cache, &loads, 1).await;
        get(&cache, &loads, 1).await;
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        // Kept while leading, and not across a loss and a return of the lead.
        signal.leading(true);
        get(&cache, &loads, 2).await;
        signal.leading(false);
        signal.leading(true);
        assert_eq!(get(&cache, &loads, 3).await, 3);
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn nothing_is_served_or_kept_while_a_commit_is_in_flight() {
        let signal = ChangeSignal::new();
        signal.leading(true);
        let (cache, loads) = (cache(&signal), AtomicUsize::new(0));
        get(&cache, &loads, 1).await;
        // The commit is visible in the database from here on (a reader may have seen its
        // checkpoint): the old answer must not be served, and a new one not yet kept.
        signal.begin();
        assert_eq!(get(&cache, &loads, 2).await, 2);
        assert_eq!(get(&cache, &loads, 3).await, 3);
        signal.changed();
        assert_eq!(get(&cache, &loads, 4).await, 4);
        assert_eq!(get(&cache, &loads, 5).await, 4, "kept again once settled");
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_answer_loaded_across_a_change_is_not_served_after_it() {
        let signal = ChangeSignal::new();
        signal.leading(true);
        let cache = cache(&signal);
        let stale = cache
            .get_or_load(
                1,
                async {
                    // The read model changes while the (old) answer is on its way.
                    signal.changed();
                    Ok::<_, ()>(1)
                },
                |_| true,
            )
            .await;
        assert_eq!(stale, Ok(1));
        let loads = AtomicUsize::new(0);
        assert_eq!(get(&cache, &loads, 2).await, 2);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
