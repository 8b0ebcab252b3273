-- Agent tokens and the job queue, with an atomic claim (docs/architecture.md, Database tables;
-- src/agent/queue.rs). A queue row's id is the job id sent in job.dispatch and equals
-- execution_jobs.job_id.

CREATE TABLE agent_tokens (
    id               uuid PRIMARY KEY,
    token_hash       text NOT NULL UNIQUE,
    token_prefix     text NOT NULL,
    description      text,
    -- NULL: any label; else every label an agent advertises must be listed (kici:os:, kici:arch:,
    -- kici:host: excepted).
    labels           jsonb,
    -- Taint: the agent only receives jobs whose runsOn labels contain all of these.
    mandatory_labels jsonb NOT NULL DEFAULT '[]',
    agent_type       text NOT NULL DEFAULT 'static',
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    revoked_at       timestamptz,
    consumed_at      timestamptz,
    last_seen_at     timestamptz
);

CREATE TABLE dispatch_queue (
    id                uuid PRIMARY KEY,
    run_id            uuid NOT NULL,
    workflow_name     text NOT NULL,
    job_name          text NOT NULL,
    -- The job.dispatch frame without messageId and timestamp (repoUrl, ref, sha, jobConfig, ...).
    dispatch          jsonb NOT NULL,
    runs_on_labels    jsonb NOT NULL DEFAULT '[]',
    runs_on_patterns  jsonb NOT NULL DEFAULT '[]',
    exclude_labels    jsonb NOT NULL DEFAULT '[]',
    exclude_patterns  jsonb NOT NULL DEFAULT '[]',
    runs_on_pick      text NOT NULL DEFAULT 'deterministic',
    status            text NOT NULL DEFAULT 'pending'
                      -- waiting: its needs are not met yet; skipped: they never will be.
                      CHECK (status IN ('waiting', 'pending', 'dispatched', 'recovering', 'completed', 'failed',
                                        'expired', 'cancelled', 'skipped')),
    agent_id          text,
    dispatch_attempts integer NOT NULL DEFAULT 0,
    ack_deadline      timestamptz,
    recovery_deadline timestamptz,
    last_error        text,
    routing_key       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatch_queue_pending ON dispatch_queue (created_at) WHERE status = 'pending';
CREATE INDEX dispatch_queue_agent ON dispatch_queue (agent_id) WHERE status IN ('dispatched', 'recovering');

-- Other orchestrators on the same database drain their agents when work is queued.
CREATE FUNCTION notify_dispatch_queue() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('dispatch_queue_pending', NEW.id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER dispatch_queue_pending_notify
    AFTER INSERT OR UPDATE OF status ON dispatch_queue
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION notify_dispatch_queue();
