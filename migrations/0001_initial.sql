-- First schema: admin tokens, sources, secrets and the event log (docs/architecture.md, Database
-- tables). Applied once, in a transaction, by the embedded migrator; the checksum of its
-- statements (comments and spacing left out, src/db/checksum.rs) is recorded in schema_migrations,
-- so never change a statement after it has shipped: add a new NNNN_*.sql instead.

CREATE TABLE admin_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash   text NOT NULL UNIQUE,
    label        text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 255),
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'auditor')),
    routing_key  text NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NULL,
    last_used_at timestamptz NULL,
    revoked      boolean NOT NULL DEFAULT false
);
CREATE INDEX admin_tokens_label_idx ON admin_tokens (label);

-- GitHub App sources; their private key and webhook secret live encrypted in scoped_secrets.
CREATE TABLE sources (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider    text NOT NULL,
    name        text NOT NULL,
    routing_key text NOT NULL UNIQUE,
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    customer_id varchar(255) NOT NULL DEFAULT '__default__',
    slug        text NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sources_customer_id_idx ON sources (customer_id);
CREATE INDEX sources_provider_idx ON sources (provider);

-- Encrypted values (AES-256-GCM, AAD "<org_id>:<scope>:<key>"), see src/crypto/.
CREATE TABLE scoped_secrets (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          text NOT NULL,
    scope           text NOT NULL,
    key             text NOT NULL,
    encrypted_value text NOT NULL,
    backend_type    text NOT NULL DEFAULT 'pg',
    key_version     integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, scope, key)
);

CREATE TABLE generic_webhook_sources (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id            varchar(255) NOT NULL,
    name                   varchar(255) NOT NULL,
    routing_key            varchar(500) NOT NULL UNIQUE,
    verification_method    varchar(50) NOT NULL DEFAULT 'hmac_sha256'
        CHECK (verification_method IN ('hmac_sha256', 'bearer_token', 'ip_allowlist', 'none', 'api_key')),
    verification_config    jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_type_header      varchar(255) NULL,
    event_type_path        varchar(500) NULL,
    idempotency_key_header varchar(255) NULL,
    idempotency_key_path   varchar(500) NULL,
    dedup_window_seconds   integer NOT NULL DEFAULT 300 CHECK (dedup_window_seconds > 0),
    max_payload_bytes      integer NOT NULL DEFAULT 1048576 CHECK (max_payload_bytes > 0),
    allowed_events         jsonb NULL,
    strip_headers          jsonb NOT NULL DEFAULT
        '["authorization","cookie","set-cookie","proxy-authorization","x-api-key","x-auth-token"]'::jsonb,
    enabled                boolean NOT NULL DEFAULT true,
    rate_limit_rpm         integer NOT NULL DEFAULT 600 CHECK (rate_limit_rpm > 0),
    provider_type          text NOT NULL DEFAULT 'generic' CHECK (provider_type IN ('generic', 'local')),
    git_config             jsonb NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz NULL
);
CREATE UNIQUE INDEX generic_webhook_sources_org_name_live_idx
    ON generic_webhook_sources (customer_id, name) WHERE deleted_at IS NULL;

-- Idempotency markers of generic sources (docs/architecture.md, Database tables).
CREATE TABLE generic_idempotency (
    source_id  uuid NOT NULL,
    key        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (source_id, key)
);
CREATE INDEX generic_idempotency_expires_idx ON generic_idempotency (expires_at);

CREATE TABLE dedup_cache (
    delivery_id text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dedup_cache_expires_idx ON dedup_cache (expires_at);

CREATE TABLE event_log (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                 text NOT NULL,
    delivery_id            text NOT NULL,
    routing_key            text NULL,
    event                  text NULL,
    action                 text NULL,
    source                 text NOT NULL CHECK (source IN ('relay', 'direct')),
    provider               text NULL,
    repo_identifier        text NULL,
    ref                    text NULL,
    payload                bytea NULL,
    payload_key            text NULL,
    payload_omitted        boolean NOT NULL DEFAULT false,
    payload_omitted_reason text NULL CHECK (payload_omitted_reason IN ('size_exceeded', 'storage_failed')),
    payload_size_bytes     bigint NULL,
    payload_hash           text NULL,
    matched_count          integer NOT NULL DEFAULT 0,
    status                 text NOT NULL DEFAULT 'received'
        CHECK (status IN ('received', 'processed', 'duplicate', 'lockfile_missing', 'lockfile_corrupt', 'failed')),
    run_id                 uuid NULL,
    error_message          text NULL,
    received_at            timestamptz NOT NULL DEFAULT now(),
    archived_at            timestamptz NULL,
    archive_object_key     text NULL,
    UNIQUE (org_id, delivery_id)
);
-- (org_id, received_at) index: added with the event-log listing that needs it.

-- Hot reload: every write to a source table tells every orchestrator instance which routing key
-- changed (docs/architecture.md, Database tables). Secret-only changes also touch
-- sources.updated_at, so no trigger on scoped_secrets is needed.
-- One function for both tables: the channel is the trigger's argument.
CREATE FUNCTION notify_routing_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(TG_ARGV[0], OLD.routing_key);
        RETURN OLD;
    END IF;
    PERFORM pg_notify(TG_ARGV[0], NEW.routing_key);
    RETURN NEW;
END
$$;
CREATE TRIGGER sources_change_trigger
    AFTER INSERT OR UPDATE OR DELETE ON sources
    FOR EACH ROW EXECUTE FUNCTION notify_routing_key_change('sources_change');
CREATE TRIGGER generic_sources_change_trigger
    AFTER INSERT OR UPDATE OR DELETE ON generic_webhook_sources
    FOR EACH ROW EXECUTE FUNCTION notify_routing_key_change('generic_sources_change');
