-- The team new members of an organization join (`organization.default_team_set`). Organizations
-- created before default teams existed have none.
ALTER TABLE organizations ADD COLUMN default_team_id uuid;
