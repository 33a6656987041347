-- The `documents` read model: each document's place in its organization's tree, its title,
-- whether it is published (and as what) or deleted. The content is not here: it is the Yjs
-- updates in the document's events.
CREATE TABLE documents (
    doc_id     uuid PRIMARY KEY,
    org_id     uuid NOT NULL,
    title      text NOT NULL,
    parent_id  uuid,
    slug       text,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX documents_by_parent ON documents (org_id, parent_id);
-- Not unique: a projection must apply whatever was recorded (two documents published under one
-- slug at once); the public page serves the one published first.
CREATE INDEX documents_by_slug ON documents (org_id, slug) WHERE slug IS NOT NULL;
