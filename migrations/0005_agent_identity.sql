-- Agent identity bound to its token (src/agent/identity.rs): which agent token a dispatched job
-- was handed to. An agentId is self-chosen, so the id alone cannot say who may resume, report on
-- or get upload URLs for a job; the token id can, and it survives an orchestrator restart.
-- NULL when KICI_AGENT_AUTH=none (no tokens), when the row is not dispatched, or for rows
-- dispatched before this migration: a NULL binds no token (src/agent/queue.rs `adopt`).

ALTER TABLE dispatch_queue ADD COLUMN agent_token_id uuid;
-- Who ran the job, for audit after the queue row has moved on.
ALTER TABLE execution_jobs ADD COLUMN agent_token_id uuid;
CREATE INDEX dispatch_queue_agent_token ON dispatch_queue (agent_token_id)
    WHERE status IN ('dispatched', 'recovering');
