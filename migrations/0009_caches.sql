-- Source and dependency caches (docs/caches.md, "The build job"). `cache_builds` is the durable
-- claim on one build: the tarballs a workflow needs (its build key: content hash, platform and
-- architecture, lockfile hash) are built by one `__build__<workflow>` job at a time, whichever
-- run asked first; runs that need the same tarballs meanwhile wait in `cache_build_waiters`
-- through their own `__build__` job, which ends as the building one does.
CREATE TABLE cache_builds (
    build_key   text PRIMARY KEY,
    run_id      uuid NOT NULL,
    job_id      uuid NOT NULL,
    status      text NOT NULL DEFAULT 'building',
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX cache_builds_job_id ON cache_builds (job_id);

CREATE TABLE cache_build_waiters (
    build_key   text NOT NULL REFERENCES cache_builds (build_key) ON DELETE CASCADE,
    run_id      uuid NOT NULL,
    job_id      uuid NOT NULL,
    PRIMARY KEY (build_key, job_id)
);

-- Whether a job started from cache: one row per tarball kind (`source`, `deps`) at dispatch.
CREATE TABLE job_cache_use (
    job_id      uuid NOT NULL REFERENCES execution_jobs (job_id) ON DELETE CASCADE,
    kind        text NOT NULL,
    cache_key   text NOT NULL,
    hit         boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, kind)
);
