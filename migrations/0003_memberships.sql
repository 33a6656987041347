-- Read models of the `memberships` projection (rebuildable from `organization.*` events):
-- who belongs to which organization and team, and what each team may do. Authorization reads
-- these tables, never an event stream. Never edit this file once it has landed.

CREATE TABLE organizations (
    org_id     uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE org_members (
    org_id   uuid        NOT NULL,
    user_id  uuid        NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members (user_id);

CREATE TABLE org_teams (
    team_id     uuid        PRIMARY KEY,
    org_id      uuid        NOT NULL,
    name        text        NOT NULL,
    permissions text[]      NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL
);
CREATE INDEX org_teams_org_idx ON org_teams (org_id);

CREATE TABLE org_team_members (
    team_id uuid NOT NULL,
    org_id  uuid NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX org_team_members_user_idx ON org_team_members (org_id, user_id);

-- Every permission a member holds through their teams (administrator expanded to all is done
-- by readers: `admin.administrator` implies every permission).
CREATE VIEW effective_permissions AS
SELECT DISTINCT m.org_id, m.user_id, p.permission
  FROM org_members m
  JOIN org_team_members tm ON tm.org_id = m.org_id AND tm.user_id = m.user_id
  JOIN org_teams t ON t.team_id = tm.team_id
  CROSS JOIN LATERAL unnest(t.permissions) AS p(permission);
