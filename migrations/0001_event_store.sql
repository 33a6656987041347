-- Cairn event store. postgres-es's `events` table with extra columns that all carry defaults,
-- so postgres-es can still read and write it. Never edit this file once it has landed: add a
-- new numbered migration instead.

CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    -- Tie-break inside one transaction; never used alone for tailing (see DESIGN "Gapless tailing").
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    org_id          text        GENERATED ALWAYS AS (metadata ->> 'org_id') STORED,
    prev_hash       bytea,
    hash            bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The gapless tail reads in (transaction_id, global_position) order.
CREATE UNIQUE INDEX events_tail_idx ON events (transaction_id, global_position);

-- The digest of one event given its predecessor's hash. `cairn verify` recomputes chains with
-- this same function, so the trigger and the verifier can never disagree on the encoding.
CREATE FUNCTION cairn_event_hash(
    prev_hash bytea, aggregate_type text, aggregate_id text, sequence bigint,
    event_type text, event_version text, payload jsonb, metadata jsonb,
    event_id uuid, recorded_at timestamptz
) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(
        coalesce(prev_hash, '\x'::bytea) || convert_to(concat_ws(E'\x1f',
            aggregate_type, aggregate_id, sequence::text, event_type, event_version,
            payload::text, metadata::text, event_id::text,
            (extract(epoch FROM recorded_at) * 1000000)::bigint::text), 'UTF8'))
$$;

-- Per-stream hash chain. The writer normally carries `prev_hash` from the aggregate it loaded,
-- which costs nothing here; a writer that does not (postgres-es itself, hand-written SQL) gets
-- the predecessor looked up. Within one multi-row INSERT the previous row's hash is remembered
-- in a transaction-local setting, so a commit of several events needs no lookups either.
CREATE FUNCTION cairn_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prev_key text;
    tip      text;
BEGIN
    IF NEW.sequence = 1 THEN
        IF NEW.prev_hash IS NOT NULL THEN
            RAISE EXCEPTION 'cairn: the first event of a stream has no predecessor'
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.prev_hash IS NULL THEN
        prev_key := NEW.aggregate_type || '/' || NEW.aggregate_id || '/' || (NEW.sequence - 1)::text || '#';
        tip := current_setting('cairn.chain_tip', true);
        IF tip IS NOT NULL AND length(tip) = length(prev_key) + 64 AND left(tip, length(prev_key)) = prev_key THEN
            NEW.prev_hash := decode(right(tip, 64), 'hex');
        ELSE
            SELECT e.hash INTO NEW.prev_hash FROM events e
             WHERE e.aggregate_type = NEW.aggregate_type
               AND e.aggregate_id = NEW.aggregate_id
               AND e.sequence = NEW.sequence - 1;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'cairn: event % of %/% has no predecessor',
                    NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
        END IF;
    END IF;
    NEW.hash := cairn_event_hash(NEW.prev_hash, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
        NEW.event_type, NEW.event_version, NEW.payload, NEW.metadata, NEW.event_id, NEW.recorded_at);
    PERFORM set_config('cairn.chain_tip',
        NEW.aggregate_type || '/' || NEW.aggregate_id || '/' || NEW.sequence::text || '#' || encode(NEW.hash, 'hex'),
        true);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION cairn_events_chain();

-- History is append-only.
CREATE FUNCTION cairn_events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cairn: events are append-only (% rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION cairn_events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION cairn_events_immutable();

-- Aggregate snapshots: the state after `last_sequence` (that event's hash is joined from
-- `events` on load, so a snapshot can be written in the same statement as its events).
CREATE TABLE snapshots (
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    last_sequence    bigint      NOT NULL,
    snapshot_version integer     NOT NULL,
    payload          jsonb       NOT NULL,
    taken_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- One row per command that appended events, written in the same statement as its events. A
-- repeated command id (an Idempotency-Key) is answered from here, the receipt's positions read
-- back from `events`, and nothing is appended. `fingerprint` tells a repeat from a key reused
-- for a different request.
CREATE TABLE command_receipts (
    command_id     uuid        PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    fingerprint    uuid,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

-- Where each projection or consumer has got to in the gapless tail.
CREATE TABLE projection_checkpoints (
    name            text        PRIMARY KEY,
    last_xid        xid8        NOT NULL DEFAULT '0',
    last_position   bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
