//! The `memberships` projection: organizations, members, teams and team permissions, from
//! `organization.*` events. Permission checks read these tables (one indexed query).

use domain::organization::OrganizationEvent;
use domain::Permission;
use eventstore::RecordedEvent;
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

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != "organization" {
            return Ok(());
        }
        let Ok(org) = Uuid::parse_str(&event.aggregate_id) else {
            return Ok(());
        };
        let decoded: OrganizationEvent = crate::decode(event)?;
        let at = event.recorded_at;
        use OrganizationEvent as V;
        match decoded {
            V::Created { name, .. } => {
                sqlx::query(
                    "INSERT INTO organizations (org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (org_id) DO NOTHING",
                )
                .bind(org)
                .bind(name.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            V::Renamed { name } => {
                sqlx::query(
                    "UPDATE organizations SET name = $2, updated_at = $3 WHERE org_id = $1",
                )
                .bind(org)
                .bind(name.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            V::MemberAdded { user_id } => {
                sqlx::query(
                    "INSERT INTO org_members (org_id, user_id, added_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(org)
                .bind(user_id.as_uuid())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            V::MemberRemoved { user_id } => {
                for sql in [
                    "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2",
                    "DELETE FROM org_team_members WHERE org_id = $1 AND user_id = $2",
                ] {
                    sqlx::query(sql)
                        .bind(org)
                        .bind(user_id.as_uuid())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            V::TeamCreated { team_id, name } => {
                sqlx::query(
                    "INSERT INTO org_teams (team_id, org_id, name, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(team_id.as_uuid())
                .bind(org)
                .bind(name.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            V::TeamRenamed { team_id, name } => {
                sqlx::query("UPDATE org_teams SET name = $2 WHERE team_id = $1")
                    .bind(team_id.as_uuid())
                    .bind(name.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            V::TeamDeleted { team_id } => {
                for sql in [
                    "DELETE FROM org_teams WHERE team_id = $1",
                    "DELETE FROM org_team_members WHERE team_id = $1",
                ] {
                    sqlx::query(sql)
                        .bind(team_id.as_uuid())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            V::TeamPermissionsSet {
                team_id,
                permissions,
            } => {
                let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
                sqlx::query("UPDATE org_teams SET permissions = $2 WHERE team_id = $1")
                    .bind(team_id.as_uuid())
                    .bind(names)
                    .execute(&mut *conn)
                    .await?;
            }
            V::TeamMemberAdded { team_id, user_id } => {
                sqlx::query(
                    "INSERT INTO org_team_members (team_id, org_id, user_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(team_id.as_uuid())
                .bind(org)
                .bind(user_id.as_uuid())
                .execute(&mut *conn)
                .await?;
            }
            V::TeamMemberRemoved { team_id, user_id } => {
                sqlx::query("DELETE FROM org_team_members WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id.as_uuid())
                    .bind(user_id.as_uuid())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
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
