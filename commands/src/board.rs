//! Commands on an organization's board (tasks, labels, categories): the caller's grant and the
//! references a command names are looked up here ([`Lookups`]) and put into the request, and
//! the aggregate decides.
//!
//! A lookup reads the read models as they are, without waiting for them. So a write never
//! waits on a read model it did not need, nor on one that is merely behind. When the aggregate
//! refuses for something a lookup answered (no permission, not a member, an unknown label),
//! the read model may not have seen this node's latest commits yet (a member added, a label
//! created a moment ago): the command waits for that read model to include them and is
//! decided once more, as the aggregate cache re-checks refusals made on cached state.

use std::future::Future;

use cqrs_es::Aggregate;
use domain::document::{Document, DocumentCommand, DocumentError, DocumentRequest, Placement};
use domain::label::{Category, Label, TagCommand, TagError, TagRequest};
use domain::task::{References, Task, TaskCommand, TaskError, TaskRequest};
use domain::{DocId, Grant, OrgId};

use crate::lookups::{LookupError, Lookups, ReadModel};
use crate::{Asked, CommandError, Commands, Dispatch, Metadata, Receipt};

/// An aggregate on an organization's board, whose requests carry what [`Lookups`] answered.
pub trait OnBoard: Aggregate {
    /// The command as the client asked it, before any lookup.
    type Asked: Send + Sync;

    /// The request the aggregate decides: `asked`, with `grant` and whatever else deciding it
    /// in `org` needs looked up.
    fn request<'a>(
        lookups: &'a dyn Lookups,
        org: OrgId,
        id: &'a str,
        grant: Grant,
        asked: &'a Self::Asked,
    ) -> impl Future<Output = Result<Self::Command, LookupError>> + Send + 'a;

    /// The read model whose answer `refusal` rests on, if a lagging one could explain it.
    fn refused_on(refusal: &Self::Error) -> Option<ReadModel>;

    /// A read model that must include this node's newest commit before `asked` is looked up,
    /// because what it would *accept* rests on it (a slug no other document holds): a lagging
    /// answer there is no refusal to re-check, it would let a duplicate through.
    fn reads_first(_asked: &Self::Asked) -> Option<ReadModel> {
        None
    }
}

impl OnBoard for Task {
    type Asked = TaskCommand;

    async fn request<'a>(
        lookups: &'a dyn Lookups,
        org: OrgId,
        _id: &'a str,
        grant: Grant,
        asked: &'a TaskCommand,
    ) -> Result<TaskRequest, LookupError> {
        let named = asked.references();
        let mut known = References::default();
        if !named.labels.is_empty() {
            known.labels = lookups.live_labels(org, &named.labels).await?;
        }
        if !named.categories.is_empty() {
            known.categories = lookups.live_categories(org, &named.categories).await?;
        }
        if !named.users.is_empty() {
            known.users = lookups.members_among(org, &named.users).await?;
        }
        Ok(TaskRequest {
            grant,
            known,
            command: asked.clone(),
        })
    }

    fn refused_on(refusal: &TaskError) -> Option<ReadModel> {
        use TaskError as E;
        match refusal {
            E::Forbidden(_) | E::NotMember | E::NotCommentAuthor | E::AssigneeNotMember(_) => {
                Some(ReadModel::Memberships)
            }
            E::UnknownLabel(_) | E::UnknownCategory(_) => Some(ReadModel::Board),
            E::AlreadyExists
            | E::NotFound
            | E::AlreadyAssigned(_)
            | E::NotAssigned(_)
            | E::AlreadyLabeled(_)
            | E::NotLabeled(_)
            | E::CommentNotFound => None,
        }
    }
}

/// Labels and categories: the grant is all they look up.
impl OnBoard for Document {
    type Asked = DocumentCommand;

    async fn request<'a>(
        lookups: &'a dyn Lookups,
        org: OrgId,
        id: &'a str,
        grant: Grant,
        asked: &'a DocumentCommand,
    ) -> Result<DocumentRequest, LookupError> {
        use DocumentCommand as C;
        // A placement only matters where the command names another document or a slug. An
        // id that is no document's names none (the aggregate then refuses what it asks).
        let doc =
            uuid::Uuid::parse_str(id).map_or(DocId::from_uuid(uuid::Uuid::nil()), DocId::from_uuid);
        let known = match asked {
            C::Create { parent, .. } | C::Move { parent } if parent.is_some() => {
                lookups.placement(org, doc, *parent, None).await?
            }
            C::Publish { slug } => {
                lookups
                    .placement(org, doc, None, Some(slug.as_str()))
                    .await?
            }
            _ => Placement::default(),
        };
        Ok(DocumentRequest {
            grant,
            known,
            command: asked.clone(),
        })
    }

    fn reads_first(asked: &DocumentCommand) -> Option<ReadModel> {
        matches!(asked, DocumentCommand::Publish { .. }).then_some(ReadModel::Documents)
    }

    fn refused_on(refusal: &DocumentError) -> Option<ReadModel> {
        use DocumentError as E;
        match refusal {
            E::NotMember | E::Forbidden(_) => Some(ReadModel::Memberships),
            E::UnknownParent | E::WouldCycle | E::SlugTaken(_) => Some(ReadModel::Documents),
            E::AlreadyExists
            | E::NotFound
            | E::Deleted
            | E::NotDeleted
            | E::BadEdit
            | E::TooLarge
            | E::CompactsTheFuture { .. }
            | E::NotPublished => None,
        }
    }
}

macro_rules! tag_on_board {
    ($tag:ty) => {
        impl OnBoard for $tag {
            type Asked = TagCommand;

            async fn request<'a>(
                _lookups: &'a dyn Lookups,
                _org: OrgId,
                _id: &'a str,
                grant: Grant,
                asked: &'a TagCommand,
            ) -> Result<TagRequest, LookupError> {
                Ok(TagRequest {
                    grant,
                    command: asked.clone(),
                })
            }

            fn refused_on(refusal: &TagError) -> Option<ReadModel> {
                match refusal {
                    TagError::Forbidden(_) => Some(ReadModel::Memberships),
                    TagError::AlreadyExists | TagError::NotFound => None,
                }
            }
        }
    };
}

tag_on_board!(Label);
tag_on_board!(Category);

impl Commands {
    /// Executes `asked` against board aggregate `A` with id `aggregate_id` in `org`, for the
    /// actor of `metadata`: looks up their grant (the system needs none) and what the command
    /// names, and lets the aggregate decide.
    ///
    /// A refusal that rests on a lookup is decided once more after the read model it read
    /// includes everything this node had committed before the lookup (bounded; a read model
    /// that does not get there in time gives [`CommandError::Lookup`]). So a member added a
    /// moment ago can write at once, and an allowed write never waits.
    pub async fn execute_board<A>(
        &self,
        org: OrgId,
        aggregate_id: &str,
        asked: A::Asked,
        metadata: &Metadata,
    ) -> Result<Receipt, CommandError<A::Error>>
    where
        Self: Dispatch<A>,
        A: OnBoard + Clone,
        A::Command: Clone + Asked,
    {
        let lookups = self.lookups();
        // What a read model must include before a refusal made on it is final.
        let mut recheck_after = Some(self.store().committed_here());
        if let (Some(model), Some(cursor)) = (A::reads_first(&asked), recheck_after) {
            lookups
                .caught_up(model, cursor)
                .await
                .map_err(CommandError::Lookup)?;
        }
        loop {
            let grant = match metadata.actor.user() {
                Some(user) => lookups.grant(org, user).await,
                None => Ok(Grant::system(org)),
            }
            .map_err(CommandError::Lookup)?;
            let request = A::request(lookups, org, aggregate_id, grant, &asked)
                .await
                .map_err(CommandError::Lookup)?;
            let refusal = match self.execute::<A>(aggregate_id, request, metadata).await {
                Err(CommandError::Domain(refusal)) => refusal,
                done => return done,
            };
            let (Some(model), Some(cursor)) = (A::refused_on(&refusal), recheck_after.take())
            else {
                return Err(CommandError::Domain(refusal));
            };
            tracing::debug!(%model, "refused on a lookup; re-checking once the read model has this node's commits");
            lookups
                .caught_up(model, cursor)
                .await
                .map_err(CommandError::Lookup)?;
        }
    }
}
