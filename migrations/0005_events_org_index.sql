-- Filtered tails by organization (the integrator feeds, `/ws` `since` replays) read one
-- organization's events in commit order. With only `events_tail_idx`, such a read walks the
-- whole history to find the few events of one organization: its cost grew with every event
-- stored, whoever's it was. These two indexes serve it in order, so a read costs in
-- proportion to the events it returns:
--
-- - `events_org_tail_idx`: one organization's events in commit order (the feeds);
-- - `events_org_type_tail_idx`: one organization's events of one aggregate type in commit
--   order (a `/ws` channel carries a few aggregate types; the public channel's organization
--   events are rare among an organization's task events).
--
-- Events without an organization (accounts) are never read by organization: left out.
CREATE INDEX events_org_tail_idx
    ON events (org_id, transaction_id, global_position)
    WHERE org_id IS NOT NULL;

CREATE INDEX events_org_type_tail_idx
    ON events (org_id, aggregate_type, transaction_id, global_position)
    WHERE org_id IS NOT NULL;
