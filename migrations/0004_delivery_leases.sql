-- Deliveries are re-claimed by a lease, and a delivery starts at most one run per workflow
-- (src/pipeline/lease.rs, src/pipeline/records.rs). Before this, a re-claim was judged by
-- received_at, so a delivery that waited in a backlog could be claimed by a second worker while
-- the first still processed it.

-- When a pipeline worker last claimed the delivery, and how many times one did: a claim older than
-- the lease (LEASE_SECS in src/pipeline/lease.rs) is taken to be a crashed worker's, and after
-- MAX_PROCESSING_ATTEMPTS the delivery is `failed` with the reason.
ALTER TABLE event_log ADD COLUMN claimed_at timestamptz;
ALTER TABLE event_log ADD COLUMN processing_attempts integer NOT NULL DEFAULT 0;
-- Rows claimed by an older version: their lease runs from when they arrived.
UPDATE event_log SET claimed_at = received_at, processing_attempts = 1 WHERE status = 'processing';
-- Only deliveries the pipeline processes: plain generic ones stay `received` for good, and keeping
-- them out means recording them (the webhook hot path) maintains no extra index.
CREATE INDEX event_log_unfinished ON event_log (received_at)
    WHERE status IN ('received', 'processing') AND provider IN ('github', 'local');

-- At most one run per (delivery, workflow), so processing a delivery again after a crash finds the
-- run it already started instead of starting a second one. Databases written by older versions may
-- already hold such duplicates: every run after the first (by start time) keeps its row and is
-- marked as a duplicate of the first, and the index leaves marked rows out.
ALTER TABLE execution_runs ADD COLUMN duplicate_of uuid;
UPDATE execution_runs r SET duplicate_of = first.run_id
  FROM (SELECT DISTINCT ON (delivery_id, workflow_name) delivery_id, workflow_name, run_id
          FROM execution_runs
         WHERE delivery_id IS NOT NULL
         ORDER BY delivery_id, workflow_name, started_at, run_id) first
 WHERE r.delivery_id = first.delivery_id AND r.workflow_name = first.workflow_name
   AND r.run_id <> first.run_id;
CREATE UNIQUE INDEX execution_runs_one_per_delivery
    ON execution_runs (delivery_id, workflow_name) WHERE duplicate_of IS NULL;

-- A job whose repository credentials could not be minted when it was sent is not claimed again
-- before this (src/agent/queue.rs requeue): retried at once, each retry's own NOTIFY would wake
-- the dispatcher and use up every attempt within milliseconds.
ALTER TABLE dispatch_queue ADD COLUMN retry_after timestamptz;
