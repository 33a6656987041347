//! The `memberships` projection: organizations, members, teams and team permissions, from
//! `organization.*` events. Permission checks read these tables (one indexed query).

use domain::organization::OrganizationEvent;
use domain::Permission;
use eventstore::RecordedEvent;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

/// The projection's name (its checkpoint key).
pub const NAME: &str = "memberships";

/// Builds `organizations`, `org_members`, `org_teams` and `org_team_members`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MembershipsProjection;

impl Projection for MembershipsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "organizations",
            "org_members",
            "org_teams",
            "org_team_members",
        ]
    }

    fn relevant(&self, event: &RecordedEvent) -> bool {
        event.aggregate_type == "organization"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// Folds the batch in memory (one read of the touched rows per table, then one delete and
    /// one upsert per table), so a burst of commands costs a handful of statements, not several
    /// per event. `apply` is this fold over a batch of one, so the two cannot differ.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            if event.aggregate_type != "organization" {
                continue;
            }
            let Ok(org) = Uuid::parse_str(&event.aggregate_id) else {
                continue;
            };
            changes.push((org, event.recorded_at, crate::decode(event)?));
        }
        if changes.is_empty() {
            return Ok(());
        }
        let mut fold = Fold::load(conn, &changes).await?;
        for (org, at, change) in changes {
            fold.apply(org, at, change);
        }
        fold.write(conn).await
    }
}

type At = time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct OrgRow {
    org_id: Uuid,
    name: String,
    created_at: At,
    updated_at: At,
    default_team_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct TeamRow {
    team_id: Uuid,
    org_id: Uuid,
    name: String,
    permissions: Vec<String>,
    created_at: At,
}

/// A table's touched rows: what the database held (`before`) and what they become (`after`,
/// `None` = absent).
#[derive(Debug)]
struct Rows<K, V> {
    before: HashMap<K, Option<V>>,
    after: HashMap<K, Option<V>>,
}

impl<K: Eq + Hash + Copy, V: Clone + PartialEq> Rows<K, V> {
    fn new(keys: impl IntoIterator<Item = K>, stored: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut before: HashMap<K, Option<V>> = keys.into_iter().map(|k| (k, None)).collect();
        before.extend(stored.into_iter().map(|(k, v)| (k, Some(v))));
        Self {
            after: before.clone(),
            before,
        }
    }

    fn get_mut(&mut self, key: K) -> &mut Option<V> {
        self.after.entry(key).or_insert(None)
    }

    /// Keys to delete and rows to upsert.
    fn diff(&self) -> (Vec<K>, Vec<(K, &V)>) {
        let mut gone = Vec::new();
        let mut put = Vec::new();
        for (key, now) in &self.after {
            let was = self.before.get(key).and_then(Option::as_ref);
            match (was, now) {
                (Some(_), None) => gone.push(*key),
                (was, Some(now)) if was != Some(now) => put.push((*key, now)),
                _ => {}
            }
        }
        (gone, put)
    }
}

/// A batch of `organization.*` events folded over the rows they touch.
#[derive(Debug)]
struct Fold {
    orgs: Rows<Uuid, OrgRow>,
    members: Rows<(Uuid, Uuid), At>,
    teams: Rows<Uuid, TeamRow>,
    /// `(team, user)` → the team's organization.
    team_members: Rows<(Uuid, Uuid), Uuid>,
}

impl Fold {
    /// Reads every row the batch can touch, including the team memberships that a member's
    /// removal or a team's deletion takes away.
    async fn load(
        conn: &mut PgConnection,
        changes: &[(Uuid, At, OrganizationEvent)],
    ) -> Result<Self, ProjectionError> {
        use OrganizationEvent as V;
        let mut orgs = HashSet::new();
        let mut members = HashSet::new();
        let mut teams = HashSet::new();
        let mut team_members = HashSet::new();
        let mut leaving = HashSet::new();
        for (org, _, change) in changes {
            match change {
                V::Created { .. } | V::Renamed { .. } | V::DefaultTeamSet { .. } => {
                    orgs.insert(*org);
                }
                V::MemberAdded { user_id } => {
                    members.insert((*org, user_id.as_uuid()));
                }
                V::MemberRemoved { user_id } => {
                    members.insert((*org, user_id.as_uuid()));
                    leaving.insert((*org, user_id.as_uuid()));
                }
                V::TeamCreated { team_id, .. }
                | V::TeamRenamed { team_id, .. }
                | V::TeamDeleted { team_id }
                | V::TeamPermissionsSet { team_id, .. } => {
                    teams.insert(team_id.as_uuid());
                }
                V::TeamMemberAdded { team_id, user_id }
                | V::TeamMemberRemoved { team_id, user_id } => {
                    team_members.insert((team_id.as_uuid(), user_id.as_uuid()));
                }
            }
        }
        let org_ids: Vec<Uuid> = orgs.iter().copied().collect();
        let stored_orgs: Vec<OrgRow> = if org_ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT org_id, name, created_at, updated_at, default_team_id FROM organizations
                  WHERE org_id = ANY($1)",
            )
            .bind(&org_ids)
            .fetch_all(&mut *conn)
            .await?
        };
        let (m_org, m_user): (Vec<Uuid>, Vec<Uuid>) = members.iter().copied().unzip();
        let stored_members: Vec<(Uuid, Uuid, At)> = if m_org.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT m.org_id, m.user_id, m.added_at
                   FROM org_members m JOIN UNNEST($1::uuid[], $2::uuid[]) AS k(org_id, user_id)
                     ON m.org_id = k.org_id AND m.user_id = k.user_id",
            )
            .bind(&m_org)
            .bind(&m_user)
            .fetch_all(&mut *conn)
            .await?
        };
        let team_ids: Vec<Uuid> = teams.iter().copied().collect();
        let stored_teams: Vec<TeamRow> = if team_ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT team_id, org_id, name, permissions, created_at FROM org_teams
                  WHERE team_id = ANY($1)",
            )
            .bind(&team_ids)
            .fetch_all(&mut *conn)
            .await?
        };
        let (tm_team, tm_user): (Vec<Uuid>, Vec<Uuid>) = team_members.iter().copied().unzip();
        let (l_org, l_user): (Vec<Uuid>, Vec<Uuid>) = leaving.iter().copied().unzip();
        let stored_team_members: Vec<(Uuid, Uuid, Uuid)> = if tm_team.is_empty()
            && team_ids.is_empty()
            && l_org.is_empty()
        {
            Vec::new()
        } else {
            sqlx::query_as(
                    "SELECT tm.team_id, tm.user_id, tm.org_id FROM org_team_members tm
                      WHERE (tm.team_id, tm.user_id) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))
                         OR tm.team_id = ANY($3)
                         OR (tm.org_id, tm.user_id) IN (SELECT * FROM UNNEST($4::uuid[], $5::uuid[]))",
                )
                .bind(&tm_team)
                .bind(&tm_user)
                .bind(&team_ids)
                .bind(&l_org)
                .bind(&l_user)
                .fetch_all(&mut *conn)
                .await?
        };
        Ok(Self {
            orgs: Rows::new(orgs, stored_orgs.into_iter().map(|r| (r.org_id, r))),
            members: Rows::new(
                members,
                stored_members.into_iter().map(|(o, u, at)| ((o, u), at)),
            ),
            teams: Rows::new(teams, stored_teams.into_iter().map(|r| (r.team_id, r))),
            team_members: Rows::new(
                team_members,
                stored_team_members.into_iter().map(|(t, u, o)| ((t, u), o)),
            ),
        })
    }

    /// One event, with the semantics of the statements it stands for: inserts keep an
    /// existing row, updates touch only existing rows.
    fn apply(&mut self, org: Uuid, at: At, change: OrganizationEvent) {
        use OrganizationEvent as V;
        match change {
            V::Created { name, .. } => {
                self.orgs.get_mut(org).get_or_insert_with(|| OrgRow {
                    org_id: org,
                    name: name.as_str().to_owned(),
                    created_at: at,
                    updated_at: at,
                    default_team_id: None,
                });
            }
            V::DefaultTeamSet { team_id } => {
                if let Some(row) = self.orgs.get_mut(org) {
                    row.default_team_id = team_id.map(|t| t.as_uuid());
                    row.updated_at = at;
                }
            }
            V::Renamed { name } => {
                if let Some(row) = self.orgs.get_mut(org) {
                    row.name = name.as_str().to_owned();
                    row.updated_at = at;
                }
            }
            V::MemberAdded { user_id } => {
                self.members
                    .get_mut((org, user_id.as_uuid()))
                    .get_or_insert(at);
            }
            V::MemberRemoved { user_id } => {
                let user = user_id.as_uuid();
                *self.members.get_mut((org, user)) = None;
                for ((_, u), team_org) in self.team_members.after.iter_mut() {
                    if *u == user && *team_org == Some(org) {
                        *team_org = None;
                    }
                }
            }
            V::TeamCreated { team_id, name } => {
                self.teams
                    .get_mut(team_id.as_uuid())
                    .get_or_insert_with(|| TeamRow {
                        team_id: team_id.as_uuid(),
                        org_id: org,
                        name: name.as_str().to_owned(),
                        permissions: Vec::new(),
                        created_at: at,
                    });
            }
            V::TeamRenamed { team_id, name } => {
                if let Some(team) = self.teams.get_mut(team_id.as_uuid()) {
                    team.name = name.as_str().to_owned();
                }
            }
            V::TeamDeleted { team_id } => {
                let team = team_id.as_uuid();
                *self.teams.get_mut(team) = None;
                for ((t, _), team_org) in self.team_members.after.iter_mut() {
                    if *t == team {
                        *team_org = None;
                    }
                }
            }
            V::TeamPermissionsSet {
                team_id,
                permissions,
            } => {
                if let Some(team) = self.teams.get_mut(team_id.as_uuid()) {
                    team.permissions = permissions.iter().map(|p| p.as_str().to_owned()).collect();
                }
            }
            V::TeamMemberAdded { team_id, user_id } => {
                self.team_members
                    .get_mut((team_id.as_uuid(), user_id.as_uuid()))
                    .get_or_insert(org);
            }
            V::TeamMemberRemoved { team_id, user_id } => {
                *self
                    .team_members
                    .get_mut((team_id.as_uuid(), user_id.as_uuid())) = None;
            }
        }
    }

    /// Deletes what is gone and upserts what changed, one statement each per table.
    async fn write(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let (gone, put) = self.orgs.diff();
        if !gone.is_empty() {
            sqlx::query("DELETE FROM organizations WHERE org_id = ANY($1)")
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
        }
        if !put.is_empty() {
            sqlx::query(
                "INSERT INTO organizations (org_id, name, created_at, updated_at, default_team_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                      $5::uuid[])
                 ON CONFLICT (org_id) DO UPDATE SET name = EXCLUDED.name,
                     created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                     default_team_id = EXCLUDED.default_team_id",
            )
            .bind(put.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, r)| r.name.as_str()).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, r)| r.updated_at).collect::<Vec<_>>())
            .bind(
                put.iter()
                    .map(|(_, r)| r.default_team_id)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }

        let (gone, put) = self.members.diff();
        if !gone.is_empty() {
            let (orgs, users): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
            sqlx::query(
                "DELETE FROM org_members
                  WHERE (org_id, user_id) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
            )
            .bind(orgs)
            .bind(users)
            .execute(&mut *conn)
            .await?;
        }
        if !put.is_empty() {
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, added_at)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[])
                 ON CONFLICT (org_id, user_id) DO UPDATE SET added_at = EXCLUDED.added_at",
            )
            .bind(put.iter().map(|((o, _), _)| *o).collect::<Vec<_>>())
            .bind(put.iter().map(|((_, u), _)| *u).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, at)| **at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }

        let (gone, put) = self.teams.diff();
        if !gone.is_empty() {
            sqlx::query("DELETE FROM org_teams WHERE team_id = ANY($1)")
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
        }
        if !put.is_empty() {
            // Permission sets travel as JSON arrays: PostgreSQL has no array of arrays.
            let permissions = put
                .iter()
                .map(|(_, r)| serde_json::Value::from(r.permissions.clone()))
                .collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO org_teams (team_id, org_id, name, permissions, created_at)
                 SELECT u.team_id, u.org_id, u.name,
                        ARRAY(SELECT jsonb_array_elements_text(u.permissions)), u.created_at
                   FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[])
                        AS u(team_id, org_id, name, permissions, created_at)
                 ON CONFLICT (team_id) DO UPDATE SET org_id = EXCLUDED.org_id,
                     name = EXCLUDED.name, permissions = EXCLUDED.permissions,
                     created_at = EXCLUDED.created_at",
            )
            .bind(put.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, r)| r.org_id).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, r)| r.name.as_str()).collect::<Vec<_>>())
            .bind(permissions)
            .bind(put.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }

        let (gone, put) = self.team_members.diff();
        if !gone.is_empty() {
            let (teams, users): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
            sqlx::query(
                "DELETE FROM org_team_members
                  WHERE (team_id, user_id) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
            )
            .bind(teams)
            .bind(users)
            .execute(&mut *conn)
            .await?;
        }
        if !put.is_empty() {
            sqlx::query(
                "INSERT INTO org_team_members (team_id, user_id, org_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[])
                 ON CONFLICT (team_id, user_id) DO UPDATE SET org_id = EXCLUDED.org_id",
            )
            .bind(put.iter().map(|((t, _), _)| *t).collect::<Vec<_>>())
            .bind(put.iter().map(|((_, u), _)| *u).collect::<Vec<_>>())
            .bind(put.iter().map(|(_, o)| **o).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The organizations `user` belongs to.
pub async fn organizations_of(pool: &PgPool, user: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1 ORDER BY org_id")
        .bind(user)
        .fetch_all(pool)
        .await
}

/// Whether `user` is a member of `org`.
pub async fn is_member(pool: &PgPool, org: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM org_members WHERE org_id = $1 AND user_id = $2)",
    )
    .bind(org)
    .bind(user)
    .fetch_one(pool)
    .await
}

/// Which of `users` are members of `org` (one query, whatever the number asked about).
pub async fn members_among(
    pool: &PgPool,
    org: Uuid,
    users: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM org_members WHERE org_id = $1 AND user_id = ANY($2)",
    )
    .bind(org)
    .bind(users)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

/// Whether `user` holds `permission` in `org` (administrator implies all).
pub async fn allows(
    pool: &PgPool,
    org: Uuid,
    user: Uuid,
    permission: Permission,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM effective_permissions
                         WHERE org_id = $1 AND user_id = $2
                           AND permission IN ($3, 'admin.administrator'))",
    )
    .bind(org)
    .bind(user)
    .bind(permission.as_str())
    .fetch_one(pool)
    .await
}

// ---- Queries for the API and for the command side's lookups. ----

use std::collections::BTreeSet;

use domain::{OrgId, UserId};

/// A person's standing in an organization: what a grant is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// Whether they are a member.
    pub member: bool,
    /// The permissions their teams give them (as stored; `admin.administrator` is not
    /// expanded).
    pub permissions: BTreeSet<Permission>,
}

/// `user`'s standing in `org`, in one query. A stored permission this build does not know
/// (one retired since) grants nothing.
pub async fn standing(pool: &PgPool, org: OrgId, user: UserId) -> Result<Standing, sqlx::Error> {
    let (member, names): (bool, Vec<String>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM org_members WHERE org_id = $1 AND user_id = $2),
                ARRAY(SELECT permission FROM effective_permissions
                       WHERE org_id = $1 AND user_id = $2)",
    )
    .bind(org.as_uuid())
    .bind(user.as_uuid())
    .fetch_one(pool)
    .await?;
    Ok(Standing {
        member,
        permissions: names.iter().filter_map(|n| n.parse().ok()).collect(),
    })
}

/// [`standing`], kept in this process until the memberships read model changes
/// ([`crate::changes`]): the write path asks it on every request.
#[derive(Debug, Clone)]
pub struct Standings {
    pool: PgPool,
    cache: std::sync::Arc<crate::changes::ReadCache<(OrgId, UserId), Standing>>,
}

impl Standings {
    /// Standings read on `pool`, kept while `changes` (the memberships runner's) stands still.
    pub fn new(pool: PgPool, changes: crate::changes::Changes) -> Self {
        Self {
            pool,
            cache: std::sync::Arc::new(crate::changes::ReadCache::new(
                changes,
                crate::changes::KEPT,
            )),
        }
    }

    /// `user`'s standing in `org` ([`standing`]).
    pub async fn of(&self, org: OrgId, user: UserId) -> Result<Standing, sqlx::Error> {
        self.cache
            .get_or_load((org, user), standing(&self.pool, org, user), |_| true)
            .await
    }
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Member {
    /// The person.
    pub user_id: Uuid,
    /// When they were added.
    pub added_at: time::OffsetDateTime,
    /// The permissions their teams give them, sorted.
    pub permissions: Vec<String>,
}

/// The members of `org` in the order they were added, after `after` (a time added and a user
/// id), at most `limit`.
pub async fn members(
    pool: &PgPool,
    org: OrgId,
    after: Option<(time::OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.user_id, m.added_at,
                coalesce(array_agg(DISTINCT p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}')
                  AS permissions
           FROM org_members m
           LEFT JOIN effective_permissions p ON p.org_id = m.org_id AND p.user_id = m.user_id
          WHERE m.org_id = $1
            AND ($2::timestamptz IS NULL OR (m.added_at, m.user_id) > ($2, $3::uuid))
          GROUP BY m.user_id, m.added_at ORDER BY m.added_at, m.user_id LIMIT $4",
    )
    .bind(org.as_uuid())
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A team of an organization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Team {
    /// Its id.
    pub team_id: Uuid,
    /// Its name.
    pub name: String,
    /// The permissions it gives its members.
    pub permissions: Vec<String>,
    /// Its members.
    pub members: Vec<Uuid>,
    /// When it was created.
    pub created_at: time::OffsetDateTime,
}

/// The teams of `org` in the order they were created, after `after` (a creation time and a
/// team id), at most `limit`.
pub async fn teams(
    pool: &PgPool,
    org: OrgId,
    after: Option<(time::OffsetDateTime, Uuid)>,
    limit: i64,
) -> Result<Vec<Team>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.team_id, t.name, t.permissions,
                coalesce(array_agg(tm.user_id) FILTER (WHERE tm.user_id IS NOT NULL), '{}')
                  AS members,
                t.created_at
           FROM org_teams t LEFT JOIN org_team_members tm ON tm.team_id = t.team_id
          WHERE t.org_id = $1
            AND ($2::timestamptz IS NULL OR (t.created_at, t.team_id) > ($2, $3::uuid))
          GROUP BY t.team_id ORDER BY t.created_at, t.team_id LIMIT $4",
    )
    .bind(org.as_uuid())
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An organization, by its public facts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Organization {
    /// Its id.
    pub org_id: Uuid,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: time::OffsetDateTime,
    /// The team new members join, if any.
    pub default_team_id: Option<Uuid>,
}

/// The most organizations [`organizations_for`] lists.
pub const MAX_ORGANIZATIONS: i64 = 1000;

/// The organizations `user` belongs to, by name (at most [`MAX_ORGANIZATIONS`]).
pub async fn organizations_for(
    pool: &PgPool,
    user: Uuid,
) -> Result<Vec<Organization>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.org_id, o.name, o.created_at, o.default_team_id
           FROM org_members m JOIN organizations o ON o.org_id = m.org_id
          WHERE m.user_id = $1
          ORDER BY o.name, o.org_id
          LIMIT $2",
    )
    .bind(user)
    .bind(MAX_ORGANIZATIONS)
    .fetch_all(pool)
    .await
}

/// One organization, if it exists.
pub async fn organization(pool: &PgPool, org: Uuid) -> Result<Option<Organization>, sqlx::Error> {
    sqlx::query_as(
        "SELECT org_id, name, created_at, default_team_id FROM organizations WHERE org_id = $1",
    )
    .bind(org)
    .fetch_optional(pool)
    .await
}
