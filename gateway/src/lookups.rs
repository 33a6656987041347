//! The command side's [`Lookups`], answered by the read models' typed queries in
//! `projections` (the gateway holds no SQL), and woken by this node's projection progress when
//! a refusal waits for a read model to catch up.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use commands::lookups::{Lookup, LookupError, Lookups, ReadModel};
use domain::document::Placement;
use domain::{CategoryId, DocId, Grant, LabelId, OrgId, UserId};
use eventstore::Cursor;
use projections::changes::Changes;
use projections::read_models::memberships::Standings;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

/// Lookups over the `memberships` and `board` read models.
#[derive(Debug, Clone)]
pub struct ReadModelLookups {
    pool: PgPool,
    /// Grants, kept until the memberships read model changes.
    standings: Standings,
    /// This node's projection progress by name (a wake-up for [`Lookups::caught_up`]).
    progress: HashMap<&'static str, watch::Receiver<Cursor>>,
    /// How long [`Lookups::caught_up`] waits.
    within: Duration,
}

impl ReadModelLookups {
    /// Lookups on `pool`, whose waits are woken by `progress` and last at most `within`;
    /// grants are kept while the memberships read model's `changes` stand still.
    pub fn new(
        pool: PgPool,
        progress: HashMap<&'static str, watch::Receiver<Cursor>>,
        changes: Changes,
        within: Duration,
    ) -> Self {
        Self {
            standings: Standings::new(pool.clone(), changes),
            pool,
            progress,
            within,
        }
    }
}

impl Lookups for ReadModelLookups {
    fn grant(&self, org: OrgId, user: UserId) -> Lookup<'_, Grant> {
        Box::pin(async move {
            let standing = self.standings.of(org, user).await?;
            Ok(Grant {
                org_id: org,
                user: Some(user),
                member: standing.member,
                permissions: standing.permissions,
            })
        })
    }

    fn live_labels<'a>(
        &'a self,
        org: OrgId,
        labels: &'a BTreeSet<LabelId>,
    ) -> Lookup<'a, BTreeSet<LabelId>> {
        Box::pin(async move {
            Ok(projections::read_models::board::live_labels(&self.pool, org, labels).await?)
        })
    }

    fn live_categories<'a>(
        &'a self,
        org: OrgId,
        categories: &'a BTreeSet<CategoryId>,
    ) -> Lookup<'a, BTreeSet<CategoryId>> {
        Box::pin(async move {
            Ok(
                projections::read_models::board::live_categories(&self.pool, org, categories)
                    .await?,
            )
        })
    }

    fn members_among<'a>(
        &'a self,
        org: OrgId,
        users: &'a BTreeSet<UserId>,
    ) -> Lookup<'a, BTreeSet<UserId>> {
        Box::pin(async move {
            let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
            let members = projections::read_models::memberships::members_among(
                &self.pool,
                org.as_uuid(),
                &ids,
            )
            .await?;
            Ok(members.into_iter().map(UserId::from_uuid).collect())
        })
    }

    fn placement<'a>(
        &'a self,
        org: OrgId,
        doc: DocId,
        parent: Option<DocId>,
        slug: Option<&'a str>,
    ) -> Lookup<'a, Placement> {
        Box::pin(async move {
            Ok(
                projections::read_models::documents::placement(&self.pool, org, doc, parent, slug)
                    .await?,
            )
        })
    }

    fn caught_up(&self, model: ReadModel, cursor: Cursor) -> Lookup<'_, ()> {
        Box::pin(async move {
            let name = model.name();
            let reached = projections::progress::wait_for(
                &self.pool,
                name,
                cursor,
                self.within,
                self.progress.get(name).cloned(),
            )
            .await?;
            if reached {
                Ok(())
            } else {
                Err(LookupError::Behind(model))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_models_are_named_as_their_projections() {
        assert_eq!(
            ReadModel::Memberships.name(),
            projections::read_models::memberships::NAME
        );
        assert_eq!(
            ReadModel::Board.name(),
            projections::read_models::board::NAME
        );
        assert_eq!(
            ReadModel::Documents.name(),
            projections::read_models::documents::NAME
        );
    }
}
