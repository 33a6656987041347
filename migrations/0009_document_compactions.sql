-- Where each document's compactions are: opening a document (or reading it as it was) starts
-- from its last `document.compacted` at or before the point asked, so that lookup must not
-- depend on how long the stream is. The primary key would do only with fresh statistics (the
-- planner otherwise reads the whole stream in a bitmap scan and sorts it); this partial index
-- holds the compactions alone, a few per thousand updates.
CREATE INDEX events_document_compactions ON events (aggregate_type, aggregate_id, sequence)
    WHERE event_type = 'document.compacted';
