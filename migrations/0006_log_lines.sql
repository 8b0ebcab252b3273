-- Step log lines as they arrive (docs/architecture.md, "Database tables"): one row per line,
-- committed before its log.chunk counts as received. `seq` is the line's 0-based offset in the step's log,
-- so a line has the same offset here and in the compacted object
-- `kici-logs/executions/<runId>/job-<jobName>/step-<i>.log`. `body` is the stored JSON line
-- (`{"ts","level","msg","meta"}`) exactly as compaction writes it. Rows are deleted once their
-- step is compacted into storage; without storage they stay until KICI_LOG_RETENTION_DAYS.
CREATE TABLE execution_log_lines (
    job_id      uuid NOT NULL REFERENCES execution_jobs (job_id) ON DELETE CASCADE,
    step_index  integer NOT NULL,
    seq         bigint NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step_index, seq)
);
CREATE INDEX execution_log_lines_created_at ON execution_log_lines (created_at);
