-- Identity: the key vault for crypto-shredding, the mail outbox, and the `identity` projection's
-- read models. Never edit this file once it has landed.

-- One data key per person, sealed with CAIRN_SECRET_KEY. Emails in events are encrypted with it;
-- erasing a person deletes this row, after which their events still verify but no longer read.
-- `email_index` is an HMAC of the normalised address (a blind index), never the address itself.
CREATE TABLE subject_keys (
    subject_id  uuid        PRIMARY KEY,
    email_index bytea       NOT NULL UNIQUE,
    sealed_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Mail waiting to be sent. A row is leased by a sender (next_attempt_at moves ahead), and
-- deleted once the message is accepted, or at `discard_at` if it never is (a sign-in mail is
-- dropped when its link expires), so rendered messages never outlive their use.
CREATE TABLE mail_outbox (
    id              uuid        PRIMARY KEY,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    text_body       text        NOT NULL,
    html_body       text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    discard_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at);

-- Read models of the `identity` projection (rebuildable from `account.*` events).
CREATE TABLE accounts (
    user_id       uuid        PRIMARY KEY,
    email_sealed  text,
    registered_at timestamptz NOT NULL,
    erased_at     timestamptz
);

CREATE TABLE sessions (
    session_id uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    ip         text,
    user_agent text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE api_keys (
    key_id     uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    prefix     text        NOT NULL UNIQUE,
    key_hash   bytea       NOT NULL,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);
