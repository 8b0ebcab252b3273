-- The event log as operators read it (docs/operations.md, "Event log"): the request headers a
-- delivery keeps (never signatures, tokens or cookies: src/ingest/kept_headers.rs), when the
-- pipeline finished with it, and the index the newest-first listing reads.
ALTER TABLE event_log ADD COLUMN headers jsonb;
ALTER TABLE event_log ADD COLUMN processed_at timestamptz;
CREATE INDEX event_log_received ON event_log (received_at DESC, id DESC);
