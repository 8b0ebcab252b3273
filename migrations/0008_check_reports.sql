-- GitHub check runs (docs/check-runs.md, "The reporter"): one row per check run we report, the
-- whole run (`check_key` = 'run') or one job (`check_key` = the job id). The reporter derives what
-- each check run should say from execution_runs/jobs/steps; this table remembers what GitHub was
-- last told (`sent_hash`, `sent_status`) and the check run's id on GitHub, so a restart or an
-- outage resends what is missing and never creates a second check run for the same row.
CREATE TABLE check_reports (
    run_id        uuid NOT NULL REFERENCES execution_runs (run_id) ON DELETE CASCADE,
    check_key     text NOT NULL,
    name          text NOT NULL,
    check_run_id  bigint,
    sent_status   text CHECK (sent_status IN ('queued', 'in_progress', 'completed')),
    sent_hash     text,
    sent_at       timestamptz,
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, check_key)
);

-- Runs whose reports are all delivered (the whole-run check run completed): the reporter's sweep
-- skips them. Runs started before this migration are never reported.
CREATE TABLE check_report_settled (
    run_id     uuid PRIMARY KEY REFERENCES execution_runs (run_id) ON DELETE CASCADE,
    settled_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE check_reporting_since (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    since timestamptz NOT NULL DEFAULT now()
);
INSERT INTO check_reporting_since DEFAULT VALUES;
