use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext};
use eventstore::{AggregateStore, Receipt, StoreError};
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

use crate::fingerprint::{fingerprint, Asked};
use crate::lookups::LookupError;
use crate::Metadata;

/// How many times a command is handled before a conflict is reported.
const MAX_ATTEMPTS: u32 = 8;

/// Why a command did not produce a receipt.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The domain refused the command (a 404, 409 or 422, per the aggregate's error).
    #[error(transparent)]
    Domain(E),
    /// Other writers kept winning; retried [`MAX_ATTEMPTS`] times (HTTP 409).
    #[error("the aggregate kept changing; retried {MAX_ATTEMPTS} times")]
    Conflict,
    /// The idempotency key was already used for a different aggregate (HTTP 409).
    #[error("this idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The event store failed (HTTP 503 or 500).
    #[error("event store failure")]
    Store(#[source] StoreError),
    /// A lookup the decision needed failed, or its read model did not catch up in time
    /// (HTTP 503).
    #[error(transparent)]
    Lookup(LookupError),
}

/// Runs commands for one aggregate type.
pub struct Handler<A: Aggregate> {
    store: AggregateStore<A>,
    services: A::Services,
}

impl<A: Aggregate> std::fmt::Debug for Handler<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("aggregate_type", &A::TYPE)
            .finish_non_exhaustive()
    }
}

impl<A> Handler<A>
where
    A: Aggregate + Clone,
    A::Command: Clone + Asked,
{
    /// A handler over `store`, passing `services` to the aggregate.
    pub fn new(store: AggregateStore<A>, services: A::Services) -> Self {
        Self { store, services }
    }

    /// The aggregate's current state (from the cache when warm). For authorization checks
    /// until read models cover them; never for decisions, which go through [`Self::execute`].
    pub async fn current(&self, aggregate_id: &str) -> Result<A, StoreError> {
        let mut context = self.store.load(aggregate_id).await?;
        Ok(context.aggregate().clone())
    }

    /// Handles `command` against the aggregate and appends what it decided.
    ///
    /// - A client-chosen command id that already ran returns its first receipt.
    /// - A conflict reloads from the database and tries again (bounded, with jitter).
    /// - A refusal decided on cached state is re-checked once against fresh state, since the
    ///   cache can lag behind another node.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Receipt, CommandError<A::Error>> {
        let span = tracing::info_span!(
            "command",
            aggregate_type = A::TYPE,
            aggregate_id,
            org_id = metadata.org_id.as_deref(),
            command_id = %metadata.command_id.id(),
        );
        self.execute_inner(aggregate_id, command, metadata)
            .instrument(span)
            .await
    }

    async fn execute_inner(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Receipt, CommandError<A::Error>> {
        let command_id = metadata.command_id.id();
        // Stored with the receipt, so a command id reused for a different command (a client's
        // key, or a caller's bug) is refused rather than answered with another command's receipt.
        // (Not for a server-made id of a command that opts out: `Asked::fingerprinted`.)
        let fingerprint = if metadata.command_id.from_client() || command.fingerprinted() {
            Some(
                fingerprint::<A>(aggregate_id, &command)
                    .map_err(|e| CommandError::Store(StoreError::Serde(e)))?,
            )
        } else {
            None
        };
        if metadata.command_id.from_client() {
            let stored = self
                .store
                .store()
                .find_receipt(command_id)
                .await
                .map_err(CommandError::Store)?;
            if let Some(receipt) = stored {
                return same_request::<A>(receipt, aggregate_id, fingerprint);
            }
        }
        let map = metadata.to_map();
        let mut fresh = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut context = if fresh {
                self.store.load_fresh(aggregate_id).await
            } else {
                self.store.load(aggregate_id).await
            }
            .map_err(CommandError::Store)?;
            let sink = EventSink::default();
            let decided = context
                .aggregate()
                .handle(command.clone(), &self.services, &sink)
                .await;
            if let Err(refusal) = decided {
                if context.is_cached() {
                    tracing::debug!("refused on cached state; re-checking against the database");
                    fresh = true;
                    continue;
                }
                if let Some(first) = self
                    .raced_repeat(metadata, aggregate_id, fingerprint)
                    .await?
                {
                    return Ok(first);
                }
                return Err(CommandError::Domain(refusal));
            }
            let events = sink.collect().await;
            if events.is_empty() {
                if let Some(first) = self
                    .raced_repeat(metadata, aggregate_id, fingerprint)
                    .await?
                {
                    return Ok(first);
                }
            }
            match self
                .store
                .append(events, context, command_id, fingerprint, &map)
                .await
            {
                Ok(receipt) => return Ok(receipt),
                Err(StoreError::Conflict) => {
                    tracing::debug!(attempt, "conflict; reloading and retrying");
                    fresh = true;
                    let ceiling = 1u64 << attempt.min(6);
                    let pause = rand::rng().random_range(0..=ceiling);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(StoreError::Duplicate(receipt)) => {
                    return same_request::<A>(*receipt, aggregate_id, fingerprint)
                }
                Err(StoreError::CommandIdReused(_)) => {
                    return Err(CommandError::IdempotencyKeyReused)
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Conflict)
    }
}

impl<A> Handler<A>
where
    A: Aggregate + Clone,
    A::Command: Clone + Asked,
{
    /// The first receipt of a client-keyed command whose repeat ran concurrently with it.
    ///
    /// The receipt is looked up before the aggregate is locked, so a repeat that arrives
    /// while the first run is in flight finds none, then waits for the lock and decides on
    /// the state the first run left: a refusal (a create of what it just created) or nothing
    /// to do. Under the lock the first run has committed, so its receipt is there now, and
    /// the repeat answers it like any other repeat.
    async fn raced_repeat(
        &self,
        metadata: &Metadata,
        aggregate_id: &str,
        fingerprint: Option<Uuid>,
    ) -> Result<Option<Receipt>, CommandError<A::Error>> {
        if !metadata.command_id.from_client() {
            return Ok(None);
        }
        let stored = self
            .store
            .store()
            .find_receipt(metadata.command_id.id())
            .await
            .map_err(CommandError::Store)?;
        match stored {
            Some(receipt) => same_request::<A>(receipt, aggregate_id, fingerprint).map(Some),
            None => Ok(None),
        }
    }
}

/// The stored receipt if it answers this very request; a conflict if the key was reused.
fn same_request<A: Aggregate>(
    receipt: Receipt,
    aggregate_id: &str,
    fingerprint: Option<Uuid>,
) -> Result<Receipt, CommandError<A::Error>> {
    if receipt.aggregate_type == A::TYPE
        && receipt.aggregate_id == aggregate_id
        && receipt.fingerprint == fingerprint
    {
        Ok(receipt)
    } else {
        Err(CommandError::IdempotencyKeyReused)
    }
}
