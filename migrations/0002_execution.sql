-- Runs, jobs and steps (docs/architecture.md, Database tables): what the Platform is told about
-- (docs/platform-protocol.md) and what state.replay sends after a reconnect. The pipeline and
-- agent link fill them; the job queue (dispatch_queue) comes with them.

CREATE TABLE execution_runs (
    run_id          uuid PRIMARY KEY,
    workflow_name   text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled', 'cancelling', 'held')),
    provider        text,
    routing_key     text,
    repo_identifier text,
    ref             text,
    sha             text,
    delivery_id     text,
    trigger_event   text,
    commit_message  text,
    trigger_decision jsonb,
    provider_context jsonb,
    failure_reason  text,
    init_failure    jsonb,
    job_count       integer NOT NULL DEFAULT 0,
    log_bytes       bigint NOT NULL DEFAULT 0,
    parent_run_id   uuid,
    original_run_id uuid,
    triggered_by    text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    duration_ms     bigint,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_runs_started_at ON execution_runs (started_at DESC);

CREATE TABLE execution_jobs (
    job_id          uuid PRIMARY KEY,
    run_id          uuid NOT NULL REFERENCES execution_runs (run_id) ON DELETE CASCADE,
    job_name        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    matrix_values   jsonb,
    agent_id        text,
    runs_on_labels  jsonb NOT NULL DEFAULT '[]',
    environments    jsonb NOT NULL DEFAULT '[]',
    error_message   text,
    outputs         jsonb,
    log_bytes       bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    duration_ms     bigint,
    last_heartbeat_at timestamptz
);
CREATE INDEX execution_jobs_run_id ON execution_jobs (run_id);

CREATE TABLE execution_steps (
    job_id          uuid NOT NULL REFERENCES execution_jobs (job_id) ON DELETE CASCADE,
    run_id          uuid NOT NULL,
    step_index      integer NOT NULL,
    step_name       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    step_type       text,
    started_at      timestamptz,
    completed_at    timestamptz,
    duration_ms     bigint,
    exit_code       integer,
    error_message   text,
    log_path        text,
    secrets_accessed jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (job_id, step_index)
);

CREATE TABLE execution_job_needs (
    run_id          uuid NOT NULL REFERENCES execution_runs (run_id) ON DELETE CASCADE,
    job_name        text NOT NULL,
    upstream_name   text NOT NULL,
    run_on          text NOT NULL DEFAULT 'success',
    PRIMARY KEY (run_id, job_name, upstream_name)
);

-- Why a delivery did (or did not) start runs: one decision trace per workflow
-- (docs/architecture.md, Database tables). The reference keeps only matched_count.
ALTER TABLE event_log ADD COLUMN decisions jsonb;

-- `processing`: a pipeline worker claimed the delivery (so a sweep never processes it twice).
ALTER TABLE event_log DROP CONSTRAINT event_log_status_check;
ALTER TABLE event_log ADD CONSTRAINT event_log_status_check
    CHECK (status IN ('received', 'processing', 'processed', 'duplicate', 'lockfile_missing', 'lockfile_corrupt', 'failed'));
