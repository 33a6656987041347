-- `cairn_event_hash` was declared IMMUTABLE, but `concat_ws` and `convert_to` are only STABLE.
-- PostgreSQL inlines a SQL function into its caller only when the declared volatility is not
-- stricter than its body's, so every call, one per inserted event from the chain trigger, ran
-- the function as a separate query (an executor started and stopped per row: about a third of
-- an event's insert cost). Declared STABLE, which is what it is, the body is inlined into the
-- trigger's expression and into `cairn verify`'s query. The digest is unchanged: same body,
-- same encoding, so every stored chain still verifies.
ALTER FUNCTION cairn_event_hash(bytea, text, text, bigint, text, text, jsonb, jsonb, uuid, timestamptz)
    STABLE;
