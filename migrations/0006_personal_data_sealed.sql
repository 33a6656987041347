-- Erasure leaves nothing (issue 11, item 7). Never edit this file once it has landed.

-- Queued mail is sealed with its recipient's key (recipient, subject, bodies and the last error
-- hold `enc:v2:` values), so that erasing the person shreds it; `subject_id` names that person
-- so that erasure can also delete their rows. Rows queued before this migration have no
-- subject and stay plaintext until they are sent or dropped (within a day).
ALTER TABLE mail_outbox ADD COLUMN subject_id uuid;
CREATE INDEX mail_outbox_subject_idx ON mail_outbox (subject_id);

-- The `.eml` files the development file transport wrote (`<mail_id>.eml` under the outbox
-- folder), so that each is deleted when its message's deadline passes or its person is erased.
CREATE TABLE mail_files (
    mail_id    uuid        PRIMARY KEY,
    subject_id uuid,
    file_name  text        NOT NULL,
    delete_at  timestamptz NOT NULL
);
CREATE INDEX mail_files_subject_idx ON mail_files (subject_id);
CREATE INDEX mail_files_delete_idx ON mail_files (delete_at);
