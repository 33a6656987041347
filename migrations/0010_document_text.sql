-- The `document_text` projection: each document's plain text (read from its Yjs state), and
-- the links between documents found in it (`[[Title]]`, `/docs/<id>`), for backlinks.
CREATE TABLE document_text (
    doc_id     uuid PRIMARY KEY,
    org_id     uuid NOT NULL,
    text       text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE document_links (
    org_id   uuid NOT NULL,
    from_doc uuid NOT NULL,
    to_doc   uuid NOT NULL,
    PRIMARY KEY (from_doc, to_doc)
);
CREATE INDEX document_links_to ON document_links (to_doc);
