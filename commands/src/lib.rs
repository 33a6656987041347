//! Cairn's command handling.
//!
//! `commands` turns a domain command plus request [`Metadata`] into stored events and a
//! [`Receipt`]. It owns what surrounds a decision but is not part of it:
//! - the metadata every event carries (actor, tenant, correlation, request details);
//! - idempotency: a client's `Idempotency-Key` becomes the command id, and a repeat returns the
//!   first receipt without appending;
//! - optimistic concurrency: a conflict (another node appended first) reloads the aggregate and
//!   handles the command again, up to a bound, then answers [`CommandError::Conflict`];
//! - the lookups a decision needs ([`Lookups`]: a caller's grant, whether what a command names
//!   exists), put into the command before the aggregate decides, and re-checked once when a
//!   lagging read model may explain a refusal ([`Commands::execute_board`]).
//!
//! **It must not** know HTTP or JSON wire shapes (that is `gateway`), read read-model tables
//! (that is `projections`, behind [`Lookups`]) or make decisions (that is `domain`). Start at
//! [`Commands::execute`].
//!
//! Each aggregate runs through cqrs-es's `Aggregate::handle` and `EventStore`, driven by
//! [`Handler`] rather than `CqrsFramework`: the framework discards the commit result (so no
//! receipt) and cannot tell a refusal made on cached state from one made on fresh state.

pub mod board;
mod fingerprint;
mod handler;
pub mod identity;
pub mod lookups;
mod metadata;
pub mod secrets;

use std::sync::Arc;

use domain::account::Account;
use domain::document::Document;
use domain::label::{Category, Label};
use domain::organization::Organization;
use domain::task::Task;
use eventstore::Store;

pub use board::OnBoard;
pub use eventstore::{Cursor, Receipt};
pub use fingerprint::Asked;
pub use handler::{CommandError, Handler};
pub use lookups::{LookupError, Lookups, ReadModel};
pub use metadata::{Actor, CommandId, Metadata};

/// Routes a command type to its aggregate's handler.
pub trait Dispatch<A: cqrs_es::Aggregate> {
    /// The handler for `A`.
    fn handler(&self) -> &Handler<A>;
}

/// The command side of Cairn: one handler per aggregate over one event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Commands {
    inner: Arc<Inner>,
    /// Seals each command's request details with its actor's key (see [`Metadata::to_map`]).
    vault: Option<eventstore::vault::Vault>,
    /// What decisions look up in the read models.
    lookups: Arc<dyn Lookups>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    organizations: Handler<Organization>,
    accounts: Handler<Account>,
    tasks: Handler<Task>,
    labels: Handler<Label>,
    categories: Handler<Category>,
    documents: Handler<Document>,
}

impl Commands {
    /// Handlers for every aggregate on `store`, with no read models to look anything up in
    /// ([`lookups::NoReadModels`]) until [`Self::with_lookups`] wires some.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                organizations: Handler::new(store.aggregate(), ()),
                accounts: Handler::new(store.aggregate(), ()),
                tasks: Handler::new(store.aggregate(), ()),
                labels: Handler::new(store.aggregate(), ()),
                categories: Handler::new(store.aggregate(), ()),
                documents: Handler::new(store.aggregate(), ()),
                store,
            }),
            vault: None,
            lookups: Arc::new(lookups::NoReadModels),
        }
    }

    /// Looks up what board decisions need (grants, references) with `lookups`.
    pub fn with_lookups(mut self, lookups: Arc<dyn Lookups>) -> Self {
        self.lookups = lookups;
        self
    }

    /// What decisions look up in the read models.
    pub fn lookups(&self) -> &dyn Lookups {
        self.lookups.as_ref()
    }

    /// Seals the IP and user agent of signed-in actors' commands with their keys. Without a
    /// vault those details are not stored at all.
    pub fn sealing_with(mut self, vault: eventstore::vault::Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The event store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Executes `command` against aggregate `A` with id `aggregate_id`.
    ///
    /// The aggregate is named by type, as in
    /// `commands.execute::<Organization>(&org_id, OrganizationCommand::Rename { name }, &meta)`.
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Receipt, CommandError<A::Error>>
    where
        Self: Dispatch<A>,
        A: cqrs_es::Aggregate + Clone,
        A::Command: Clone + Asked,
    {
        // Only for requests that carry details and have a person behind; the key is kept a
        // little while (`Vault::sealing_key`), so a person's writes do not each read it.
        if let (Some(user), Some(vault)) = (metadata.wants_personal_key(), &self.vault) {
            let key = vault
                .sealing_key(user.as_uuid())
                .await
                .map_err(CommandError::Store)?;
            let metadata = metadata.clone().with_personal_key(key);
            return self
                .handler()
                .execute(aggregate_id, command, &metadata)
                .await;
        }
        self.handler()
            .execute(aggregate_id, command, metadata)
            .await
    }
}

impl Commands {
    /// The current state of aggregate `A` with id `aggregate_id` (see [`Handler::current`]).
    pub async fn current<A>(&self, aggregate_id: &str) -> Result<A, eventstore::StoreError>
    where
        Self: Dispatch<A>,
        A: cqrs_es::Aggregate + Clone,
        A::Command: Clone + Asked,
    {
        self.handler().current(aggregate_id).await
    }
}

impl Dispatch<Organization> for Commands {
    fn handler(&self) -> &Handler<Organization> {
        &self.inner.organizations
    }
}

impl Dispatch<Account> for Commands {
    fn handler(&self) -> &Handler<Account> {
        &self.inner.accounts
    }
}

impl Dispatch<Task> for Commands {
    fn handler(&self) -> &Handler<Task> {
        &self.inner.tasks
    }
}

impl Dispatch<Label> for Commands {
    fn handler(&self) -> &Handler<Label> {
        &self.inner.labels
    }
}

impl Dispatch<Document> for Commands {
    fn handler(&self) -> &Handler<Document> {
        &self.inner.documents
    }
}

impl Dispatch<Category> for Commands {
    fn handler(&self) -> &Handler<Category> {
        &self.inner.categories
    }
}
