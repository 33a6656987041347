//! The lookups a decision needs from the read models: the caller's grant in an organization,
//! and whether the labels, category and users a command names exist there.
//!
//! `commands` does them and puts the answers into the command, so the domain decides without
//! I/O. The gateway implements [`Lookups`] over the read models' typed queries and wires it in
//! with [`crate::Commands::with_lookups`]; `commands` itself knows no read-model table.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use domain::document::Placement;
use domain::{CategoryId, DocId, Grant, LabelId, OrgId, UserId};
use eventstore::Cursor;

/// A lookup's answer, to come.
pub type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, LookupError>> + Send + 'a>>;

/// The read models the lookups read, so a refusal made on one can wait for that one alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// Organizations, members, teams and their permissions: grants and assignees.
    Memberships,
    /// Labels, categories and tasks: a task's labels and category.
    Board,
    /// The documents tree: where a document may move, which slugs are taken.
    Documents,
}

impl ReadModel {
    /// Its name, as its projection's checkpoint knows it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Memberships => "memberships",
            Self::Board => "board",
            Self::Documents => "documents",
        }
    }
}

impl fmt::Display for ReadModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The read model did not include this node's commits within the bound (HTTP 503: the
    /// client retries).
    #[error("the {0} read model has not caught up yet; retry")]
    Behind(ReadModel),
    /// The read model could not be read (HTTP 503 or 500).
    #[error("a read model lookup failed")]
    Database(#[from] sqlx::Error),
}

/// What a decision needs from the read models, answered as they are now: none of these waits
/// for a read model to catch up. A refusal that a lagging read model may explain is re-checked
/// by the caller after [`Lookups::caught_up`] (see [`crate::Commands::execute_board`]).
pub trait Lookups: fmt::Debug + Send + Sync {
    /// `user`'s standing in `org`: whether a member, and the permissions their teams give.
    fn grant(&self, org: OrgId, user: UserId) -> Lookup<'_, Grant>;

    /// Which of `labels` are live labels of `org`.
    fn live_labels<'a>(
        &'a self,
        org: OrgId,
        labels: &'a BTreeSet<LabelId>,
    ) -> Lookup<'a, BTreeSet<LabelId>>;

    /// Which of `categories` are live categories of `org`.
    fn live_categories<'a>(
        &'a self,
        org: OrgId,
        categories: &'a BTreeSet<CategoryId>,
    ) -> Lookup<'a, BTreeSet<CategoryId>>;

    /// Which of `users` are members of `org`.
    fn members_among<'a>(
        &'a self,
        org: OrgId,
        users: &'a BTreeSet<UserId>,
    ) -> Lookup<'a, BTreeSet<UserId>>;

    /// What a command on document `doc` of `org` needs to know of the others: whether
    /// `parent` is a live document there, its ancestors, and whether `slug` is taken.
    fn placement<'a>(
        &'a self,
        org: OrgId,
        doc: DocId,
        parent: Option<DocId>,
        slug: Option<&'a str>,
    ) -> Lookup<'a, Placement>;

    /// Waits, woken by the read model's progress and for a bounded time, until `model`
    /// includes `cursor`; [`LookupError::Behind`] if it does not in time.
    fn caught_up(&self, model: ReadModel, cursor: Cursor) -> Lookup<'_, ()>;
}

/// The lookups of a `Commands` that has no read models (a bench or a test driving commands
/// alone): a person is a member of nothing, and nothing a command names exists. Commands by
/// the system, which needs no grant, still run; anything else is refused, never let through.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReadModels;

impl Lookups for NoReadModels {
    fn grant(&self, org: OrgId, user: UserId) -> Lookup<'_, Grant> {
        Box::pin(async move {
            Ok(Grant {
                org_id: org,
                user: Some(user),
                member: false,
                permissions: BTreeSet::new(),
            })
        })
    }

    fn live_labels<'a>(
        &'a self,
        _org: OrgId,
        _labels: &'a BTreeSet<LabelId>,
    ) -> Lookup<'a, BTreeSet<LabelId>> {
        Box::pin(async { Ok(BTreeSet::new()) })
    }

    fn live_categories<'a>(
        &'a self,
        _org: OrgId,
        _categories: &'a BTreeSet<CategoryId>,
    ) -> Lookup<'a, BTreeSet<CategoryId>> {
        Box::pin(async { Ok(BTreeSet::new()) })
    }

    fn members_among<'a>(
        &'a self,
        _org: OrgId,
        _users: &'a BTreeSet<UserId>,
    ) -> Lookup<'a, BTreeSet<UserId>> {
        Box::pin(async { Ok(BTreeSet::new()) })
    }

    fn placement<'a>(
        &'a self,
        _org: OrgId,
        _doc: DocId,
        _parent: Option<DocId>,
        _slug: Option<&'a str>,
    ) -> Lookup<'a, Placement> {
        Box::pin(async { Ok(Placement::default()) })
    }

    fn caught_up(&self, _model: ReadModel, _cursor: Cursor) -> Lookup<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
