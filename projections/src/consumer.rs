//! The one loop every background consumer runs: the projection runners, the relay and the
//! mail sender.
//!
//! - [`supervise`] keeps an attempt going until shutdown, backing off after each failure.
//! - [`drive`] is the loop body: do a [`Work::step`]; when idle, wait for a wake-up or the slow
//!   poll (the correctness path), and [`Work::check`] at each poll; retry a failed step with
//!   backoff; stop between steps when the server stops.
//! - [`Tail`] is a consumer of the event log on top of those two: one node at a time (an
//!   advisory lock, [`lead`]), from its checkpoint, batch by batch with the gapless cursor. What
//!   it does with a batch is its [`Handler`]: a read model applies the batch and moves its
//!   checkpoint in one transaction ([`crate::runner`]); the relay publishes, then moves its
//!   checkpoint ([`crate::consumers::relay`]). Either way the checkpoint moves by
//!   compare-and-set ([`checkpoint::advance`]).
//!
//! The mail sender ([`crate::consumers::mailer`]) runs [`drive`] under [`supervise`] too, with no
//! lock and no checkpoint: its work is rows in its own outbox, leased with `SKIP LOCKED`.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{Cursor, Kept, RecordedEvent, Store, StoreError};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint;

/// What one [`Work::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do: wait for a wake-up or the slow poll.
    Idle,
    /// Nothing to do yet, but something is known to be coming: look again after this pause.
    Soon(Duration),
    /// Did some work. `more`: there may be more at once (a full batch); otherwise linger a
    /// moment so that a burst gathers into one step.
    Worked {
        /// Go again at once.
        more: bool,
    },
}

/// A consumer's work, driven by [`drive`].
pub(crate) trait Work: Send {
    /// Why a step or a check failed.
    type Error: Display + Send;

    /// Does one unit of work (a batch, a lease of messages).
    fn step(&mut self) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Resolves when new work may have arrived (a commit, a queued message).
    fn woken(&mut self) -> impl Future<Output = ()> + Send;

    /// Runs at each slow poll and before a failed step is retried: confirms this node may
    /// still do the work (its lock) and picks up changes made elsewhere (a rewound
    /// checkpoint). A failure ends the attempt; [`supervise`] starts a new one.
    fn check(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The timing of [`drive`].
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    /// The slow poll, the correctness path when no wake-up arrives.
    pub(crate) poll: Duration,
    /// How long to let new work gather after a step that was not full. Without it, a
    /// consumer under a steady write load wakes for every group commit and spends more on its
    /// per-step overhead than on the work; with it, a burst becomes one step.
    pub(crate) linger: Duration,
}

/// A pause that doubles from `first` up to `max`, back to `first` on [`Backoff::reset`].
#[derive(Debug)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starting at `first`, never longer than `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the next one is twice as long.
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Back to the shortest pause.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The pause before a failed step is retried: 50 ms doubling to 2 s (a bus that is down, the
/// database restarting), reset by a step that succeeds.
const STEP_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The pause before [`supervise`] starts a new attempt: 100 ms doubling to 5 s.
const ATTEMPT_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Sleeps for `pause`; `false` if `shutdown` came first.
async fn pause(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Drives `work` until `shutdown` (between steps, even when behind: a stopping server waits
/// for this task) or until a check fails. A failed step is logged and retried, after a
/// backoff and a [`Work::check`].
pub(crate) async fn drive<W: Work>(
    name: &'static str,
    work: &mut W,
    pace: &Pace,
    shutdown: &CancellationToken,
) -> Result<(), W::Error> {
    let mut failures = Backoff::new(STEP_RETRY.0, STEP_RETRY.1);
    loop {
        match work.step().await {
            Ok(Step::Idle) => {
                tokio::select! {
                    () = work.woken() => {}
                    () = tokio::time::sleep(pace.poll) => work.check().await?,
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
            Ok(Step::Soon(wait)) => {
                if !pause(wait, shutdown).await {
                    return Ok(());
                }
            }
            Ok(Step::Worked { more }) => {
                failures.reset();
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if !more && !pace.linger.is_zero() && !pause(pace.linger, shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => {
                let wait = failures.next();
                tracing::warn!(
                    consumer = name,
                    retry_in_ms = wait.as_millis() as u64,
                    "step failed, retrying: {e}"
                );
                if !pause(wait, shutdown).await {
                    return Ok(());
                }
                work.check().await?;
            }
        }
    }
}

/// Runs `attempt` until it returns `Ok` or `shutdown` is cancelled. After each error, logs it
/// and waits, backing off from 100 ms to 5 s; an attempt that ran for longer than the longest
/// pause counts as a fresh start.
pub(crate) async fn supervise<F, Fut, E>(
    name: &'static str,
    shutdown: &CancellationToken,
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut failures = Backoff::new(ATTEMPT_RETRY.0, ATTEMPT_RETRY.1);
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        match attempt().await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > ATTEMPT_RETRY.1 {
                    failures.reset();
                }
                tracing::warn!(consumer = name, "stopped, retrying: {e}");
                if !pause(failures.next(), shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Takes advisory lock `key`, waiting (polling every `poll`) while another node holds it, on
/// a connection detached from the pool: if the holder dies, dropping the connection closes it
/// and PostgreSQL releases the lock, instead of the lock living on in a pooled connection.
/// `None` if `shutdown` comes first.
pub(crate) async fn lead(
    pool: &PgPool,
    key: &str,
    poll: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut lock = pool.acquire().await?.detach();
    loop {
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1)::int8)")
            .bind(key)
            .fetch_one(&mut lock)
            .await?;
        if held {
            return Ok(Some(lock));
        }
        if !pause(poll, shutdown).await {
            return Ok(None);
        }
    }
}

/// Releases a lock taken by [`lead`], so a successor need not wait for the connection to close.
pub(crate) async fn release(lock: &mut PgConnection, key: &str) {
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1)::int8)")
        .bind(key)
        .execute(lock)
        .await;
}

/// What a caught-up tailer does about commits it knows of (from [`Store::commits`]) that the
/// gapless tail does not show yet: they wait behind an older transaction still open somewhere
/// in the cluster, and no further wake-up may come for them. Rather than sleep until the next
/// commit or the slow poll, read again soon, backing off from 1 ms to 100 ms.
#[derive(Debug)]
pub(crate) struct Unseen {
    pause: Duration,
}

impl Default for Unseen {
    fn default() -> Self {
        Self {
            pause: Duration::from_millis(1),
        }
    }
}

impl Unseen {
    /// After an empty read at `cursor`: how long to pause before reading again, or `None` if
    /// nothing known is missing (wait for the next commit).
    pub(crate) fn retry(
        &mut self,
        commits: &watch::Receiver<Cursor>,
        cursor: Cursor,
    ) -> Option<Duration> {
        if *commits.borrow() > cursor {
            let pause = self.pause;
            self.pause = (self.pause * 2).min(Duration::from_millis(100));
            Some(pause)
        } else {
            *self = Self::default();
            None
        }
    }
}

/// What an event consumer does with a batch: the one thing a read model and a side effect do
/// differently.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Why a batch could not be handled.
    type Error: From<sqlx::Error> + From<StoreError> + Display + Send + 'static;

    /// The checkpoint's name.
    fn name(&self) -> &'static str;

    /// Whether this consumer wants `event` at all (default: every event). Events it does not
    /// want are never copied out of the store's window for it: its batches hold only the
    /// others, and its checkpoint still moves past them.
    fn wants(&self, _event: &RecordedEvent) -> bool {
        true
    }

    /// Handles `batch`, the events it [`wants`](Handler::wants) of those after `from` up to
    /// and including `to` (possibly none), and moves the checkpoint from `from` to `to`.
    /// Returns where the checkpoint now is: `to`, or the cursor found stored if the checkpoint
    /// was no longer at `from` (the batch is then read again from there, so a side effect may
    /// repeat: consumers are at-least-once).
    ///
    /// `connection` is the one holding the consumer's lock: its writes go there (no pool
    /// checkout per batch, and a write can only happen while the lock is held); `pool` serves
    /// whatever else it reads.
    fn handle(
        &self,
        connection: &mut PgConnection,
        pool: &PgPool,
        from: Cursor,
        to: Cursor,
        batch: &[RecordedEvent],
    ) -> impl Future<Output = Result<Cursor, Self::Error>> + Send;

    /// This node starts (`true`) or stops following the log (a read model's caches in this
    /// process are only valid while it does: [`crate::changes`]).
    fn leading(&self, _now: bool) {}
}

/// How a [`Tail`] reads.
#[derive(Debug, Clone)]
pub(crate) struct TailOptions {
    /// The advisory lock that makes one node at a time the consumer.
    pub(crate) lock_key: String,
    /// Events per batch.
    pub(crate) batch: i64,
    /// The loop's timing.
    pub(crate) pace: Pace,
}

/// A checkpointed consumer of the event log: one node at a time, from its checkpoint, batch
/// after batch in commit order, handing each to its [`Handler`].
#[derive(Debug)]
pub(crate) struct Tail<H> {
    store: Store,
    handler: Arc<H>,
    options: TailOptions,
    progress: watch::Sender<Cursor>,
}

impl<H: Handler> Tail<H> {
    /// A consumer of `store`'s events through `handler`.
    pub(crate) fn new(store: Store, handler: H, options: TailOptions) -> Self {
        Self {
            store,
            handler: Arc::new(handler),
            options,
            progress: watch::channel(Cursor::START).0,
        }
    }

    /// The same consumer with slow poll `poll`.
    pub(crate) fn with_poll(mut self, poll: Duration) -> Self {
        self.options.pace.poll = poll;
        self
    }

    /// The handler.
    pub(crate) fn handler(&self) -> &H {
        &self.handler
    }

    /// Changes each time a batch is handled and checkpointed.
    pub(crate) fn progress(&self) -> watch::Receiver<Cursor> {
        self.progress.subscribe()
    }

    /// Runs until `shutdown` is cancelled (a batch being handled finishes first). Failures
    /// are logged and retried; this never returns early otherwise.
    pub(crate) async fn run(&self, shutdown: CancellationToken) {
        supervise(self.handler.name(), &shutdown, || self.lead(&shutdown)).await;
    }

    /// Takes the lock (waiting while another node holds it), then follows the log until
    /// cancelled or the lock's connection fails.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), H::Error> {
        let name = self.handler.name();
        let key = &self.options.lock_key;
        let pool = self.store.pool();
        let Some(mut lock) = lead(pool, key, self.options.pace.poll, shutdown).await? else {
            return Ok(());
        };
        tracing::info!(consumer = name, "leading");
        self.handler.leading(true);
        let result = async {
            let mut following = Following::start(self, &mut lock).await?;
            drive(name, &mut following, &self.options.pace, shutdown).await
        }
        .await;
        self.handler.leading(false);
        release(&mut lock, key).await;
        result
    }
}

/// A [`Tail`] while this node leads it.
struct Following<'a, H> {
    tail: &'a Tail<H>,
    lock: &'a mut PgConnection,
    cursor: Cursor,
    commits: watch::Receiver<Cursor>,
    unseen: Unseen,
    /// The next batch, read while the last one was handled (when behind).
    prefetched: Option<Kept>,
}

impl<'a, H: Handler> Following<'a, H> {
    async fn start(tail: &'a Tail<H>, lock: &'a mut PgConnection) -> Result<Self, H::Error> {
        let cursor = checkpoint::load_on(&mut *lock, tail.handler.name()).await?;
        let _ = tail.progress.send(cursor);
        Ok(Self {
            tail,
            lock,
            cursor,
            commits: tail.store.commits(),
            unseen: Unseen::default(),
            prefetched: None,
        })
    }
}

impl<H: Handler> Work for Following<'_, H> {
    type Error = H::Error;

    async fn step(&mut self) -> Result<Step, H::Error> {
        let store = &self.tail.store;
        let size = self.tail.options.batch;
        let handler = &self.tail.handler;
        let read = match self.prefetched.take() {
            Some(read) => read,
            None => {
                // A commit this node knows of and has not read yet: a bound already above it
                // will do (no lookup). After a slow poll, look the bound up afresh.
                let known = *self.commits.borrow();
                let wanted = (known > self.cursor).then_some(known);
                let wants = |e: &RecordedEvent| handler.wants(e);
                store
                    .tail_on_where(&mut *self.lock, self.cursor, size, wanted, &wants)
                    .await?
            }
        };
        if read.read == 0 {
            return Ok(match self.unseen.retry(&self.commits, self.cursor) {
                Some(wait) => Step::Soon(wait),
                None => Step::Idle,
            });
        }
        self.unseen = Unseen::default();
        // A full batch means the consumer is behind (a rebuild, or a burst): read the next
        // batch on another connection, in its own task (so decoding it runs in parallel with
        // this batch), while this one is handled.
        let end = read.end;
        let full = read.read as i64 >= size;
        let next = full.then(|| {
            let (store, handler) = (store.clone(), handler.clone());
            tokio::spawn(async move {
                let wants = |e: &RecordedEvent| handler.wants(e);
                store.tail_where(end, size, &wants).await
            })
        });
        let handled = handler
            .handle(
                &mut *self.lock,
                store.pool(),
                self.cursor,
                end,
                &read.events,
            )
            .await;
        let next = match next {
            Some(task) => task.await.ok().and_then(Result::ok),
            None => None,
        };
        self.cursor = handled?;
        if self.cursor == end {
            self.prefetched = next;
        }
        let _ = self.tail.progress.send(self.cursor);
        Ok(Step::Worked { more: full })
    }

    async fn woken(&mut self) {
        if self.commits.changed().await.is_err() {
            // The store is gone; only the poll and shutdown remain.
            std::future::pending::<()>().await;
        }
    }

    async fn check(&mut self) -> Result<(), H::Error> {
        // Still holding the lock? Its connection failing means another node may take over;
        // stop here and compete for the lock again.
        sqlx::query("SELECT 1").execute(&mut *self.lock).await?;
        // A rebuild (`cairn replay`) may have rewound the checkpoint meanwhile.
        let name = self.tail.handler.name();
        let stored = checkpoint::load_on(&mut *self.lock, name).await?;
        if stored != self.cursor {
            tracing::info!(
                consumer = name,
                "checkpoint moved (a rebuild?); resuming from it"
            );
            self.cursor = stored;
            self.prefetched = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Work that plays a script of step outcomes, noting when each step ran.
    struct Script {
        outcomes: VecDeque<Result<Step, &'static str>>,
        steps: Vec<tokio::time::Instant>,
        checks: usize,
        done: CancellationToken,
    }

    impl Script {
        fn new(outcomes: impl IntoIterator<Item = Result<Step, &'static str>>) -> Self {
            Self {
                outcomes: outcomes.into_iter().collect(),
                steps: Vec::new(),
                checks: 0,
                done: CancellationToken::new(),
            }
        }
    }

    impl Work for Script {
        type Error = &'static str;

        async fn step(&mut self) -> Result<Step, &'static str> {
            self.steps.push(tokio::time::Instant::now());
            let next = self.outcomes.pop_front();
            if self.outcomes.is_empty() {
                self.done.cancel();
            }
            next.unwrap_or(Ok(Step::Idle))
        }

        async fn woken(&mut self) {
            std::future::pending::<()>().await;
        }

        async fn check(&mut self) -> Result<(), &'static str> {
            self.checks += 1;
            Ok(())
        }
    }

    fn pace() -> Pace {
        Pace {
            poll: Duration::from_secs(1),
            linger: Duration::from_millis(10),
        }
    }

    fn gaps(steps: &[tokio::time::Instant]) -> Vec<Duration> {
        steps.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_step_is_retried_with_a_growing_pause_reset_by_success() {
        let mut work = Script::new([
            Err("down"),
            Err("down"),
            Err("down"),
            Ok(Step::Worked { more: true }),
            Err("down"),
            Ok(Step::Worked { more: true }),
        ]);
        let shutdown = work.done.clone();
        drive("test", &mut work, &pace(), &shutdown)
            .await
            .expect("no check fails");
        let ms = Duration::from_millis;
        assert_eq!(
            gaps(&work.steps),
            [ms(50), ms(100), ms(200), ms(0), ms(50)],
            "50 ms doubling while failing, back to 50 ms after a success"
        );
        assert_eq!(work.checks, 4, "a check before every retry");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_poll_and_a_partial_batch_lingers() {
        let mut work = Script::new([
            Ok(Step::Worked { more: false }),
            Ok(Step::Idle),
            Ok(Step::Soon(Duration::from_millis(3))),
            Ok(Step::Worked { more: true }),
        ]);
        let shutdown = work.done.clone();
        drive("test", &mut work, &pace(), &shutdown)
            .await
            .expect("no check fails");
        let ms = Duration::from_millis;
        assert_eq!(gaps(&work.steps), [ms(10), ms(1000), ms(3)]);
        assert_eq!(work.checks, 1, "one check at the poll");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_check_ends_the_attempt_and_supervise_starts_another() {
        struct Failing;
        impl Work for Failing {
            type Error = &'static str;
            async fn step(&mut self) -> Result<Step, &'static str> {
                Err("lost the database")
            }
            async fn woken(&mut self) {}
            async fn check(&mut self) -> Result<(), &'static str> {
                Err("lost the lock")
            }
        }
        let shutdown = CancellationToken::new();
        let starts = std::cell::RefCell::new(Vec::new());
        let (starts_ref, stop) = (&starts, &shutdown);
        supervise("test", &shutdown, move || async move {
            starts_ref.borrow_mut().push(tokio::time::Instant::now());
            if starts_ref.borrow().len() == 4 {
                stop.cancel();
            }
            drive("test", &mut Failing, &pace(), stop).await
        })
        .await;
        // Each attempt: a failed step, a 50 ms pause, a failed check; then supervise backs
        // off 100, 200, 400 ms before the next.
        let ms = Duration::from_millis;
        assert_eq!(gaps(&starts.borrow()), [ms(150), ms(250), ms(450)]);
    }
}
