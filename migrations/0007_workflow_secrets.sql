-- Workflow secrets, environments and the secret audit log (docs/secrets.md). Workflow secrets are
-- rows of scoped_secrets (0001) with the customer's org_id: AES-256-GCM under KICI_SECRET_KEY,
-- AAD "<org_id>:<scope>:<key>". The scope "__org__" holds an org's org-wide secrets; other scopes
-- starting with "__" and the org "__system__" are internal and refused by the admin API.

-- An environment is a named record of an org; it reaches secrets only through its bindings. A
-- 'glob' environment stands for every declared name its glob_pattern matches.
CREATE TABLE environments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          text NOT NULL,
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    type            text NOT NULL DEFAULT 'fixed' CHECK (type IN ('fixed', 'glob')),
    glob_pattern    text NULL,
    -- Jobs of untrusted events (fork pull requests) get this environment's secrets and
    -- variables only when true.
    allow_untrusted boolean NOT NULL DEFAULT false,
    enabled         boolean NOT NULL DEFAULT true,
    created_by      text NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name),
    CHECK ((type = 'glob') = (glob_pattern IS NOT NULL))
);

-- environment -> scope pattern (an exact scope or a glob such as aws/prod/**).
CREATE TABLE environment_bindings (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         text NOT NULL,
    environment_id uuid NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    scope_pattern  text NOT NULL CHECK (char_length(scope_pattern) BETWEEN 1 AND 500),
    host_pattern   text NOT NULL DEFAULT '**',
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, scope_pattern, host_pattern)
);

-- Plain (not secret) variables of an environment, delivered to jobs as environment variables.
CREATE TABLE environment_variables (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         text NOT NULL,
    environment_id uuid NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    key            text NOT NULL,
    value          text NOT NULL,
    locked         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, environment_id, key)
);

-- Who did what to which secret, never a value. user_id is the admin token's id, token_label and
-- role what it was at the time; run_id and job_id are set for resolutions at dispatch.
CREATE TABLE secret_audit_log (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    timestamp    timestamptz NOT NULL DEFAULT now(),
    action       text NOT NULL,
    org_id       text NULL,
    context_name text NOT NULL,
    routing_key  text NULL,
    secret_keys  jsonb NOT NULL DEFAULT '[]',
    outcome      text NOT NULL DEFAULT 'allowed' CHECK (outcome IN ('allowed', 'denied')),
    run_id       uuid NULL,
    job_id       uuid NULL,
    user_id      text NULL,
    token_label  text NULL,
    role         text NULL,
    metadata     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX secret_audit_log_timestamp_idx ON secret_audit_log (timestamp DESC);
CREATE INDEX secret_audit_log_org_timestamp_idx ON secret_audit_log (org_id, timestamp DESC);
