-- Reruns and replays (docs/operations.md, "Reruns and replays"): a recorded delivery processed
-- again starts new runs of the same workflows. The runs keep the delivery's id (the event they were
-- built from); `rerun_key` tells the processings apart: '' for the delivery's own processing, else
-- what started it again (`github-rerequest:<run id>` for a re-run asked from GitHub, a fresh
-- `rerun:<uuid>` or `replay:<uuid>` per admin request). One run per (delivery, workflow,
-- rerun_key) keeps each processing safe to repeat after a crash, as migration 0004's index did
-- for the first one.
ALTER TABLE execution_runs ADD COLUMN rerun_key text NOT NULL DEFAULT '';
DROP INDEX execution_runs_one_per_delivery;
CREATE UNIQUE INDEX execution_runs_one_per_delivery
    ON execution_runs (delivery_id, workflow_name, rerun_key) WHERE duplicate_of IS NULL;

-- A GitHub check run re-requested by name finds our latest run of that workflow at its commit, and
-- a re-requested check suite every workflow run at its commit.
CREATE INDEX execution_runs_by_sha ON execution_runs (sha, workflow_name) WHERE sha IS NOT NULL;
