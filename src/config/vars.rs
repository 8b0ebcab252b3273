//! Which `KICI_*` names exist, and the did-you-mean hint for the ones that don't.

/// Every `KICI_*` name the product knows (docs/operations.md, "Settings": the reference's, the
/// agent's, the CLI's own variables, and ours). Sorted, so lookups can binary-search; a test keeps
/// it that way.
#[rustfmt::skip]
pub(super) const KNOWN: &[&str] = &[
    "KICI_ADMIN_TOKEN", "KICI_ADMIN_URL", "KICI_AGENT_AUTH", "KICI_AGENT_ID",
    "KICI_AGENT_MAX_RECONNECT_DELAY_MS", "KICI_AGENT_TOKEN", "KICI_AGENT_TOKEN_TTL_MS",
    "KICI_AUTO_MIGRATE", "KICI_BASE_PATH", "KICI_BIND_ADDRESS", "KICI_BOOTSTRAP_ADMIN_TOKEN",
    "KICI_CACHE", "KICI_CACHE_BUILD_JOBS", "KICI_CACHE_MAX_TARBALL_BYTES", "KICI_CACHE_TTL_DAYS",
    "KICI_CHECKS_MAX_BACKOFF_MS", "KICI_CHECKS_PERMISSION_RETRY_MS", "KICI_CHECKS_UPDATE_INTERVAL_MS",
    "KICI_CLUSTER_INSTANCE_ID", "KICI_CLUSTER_PEERS", "KICI_CLUSTER_ROLE", "KICI_CONFIG_ROOT",
    "KICI_DATABASE_URL", "KICI_DATA_DIR", "KICI_DEPLOY_CONTAINER", "KICI_DEPLOY_CONTAINER_RUNTIME",
    "KICI_DEPLOY_MODE", "KICI_DEV", "KICI_DISPATCH_ACK_TIMEOUT_MS",
    "KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "KICI_GITHUB_API_URL", "KICI_JOB_HEARTBEAT_INTERVAL_MS",
    "KICI_LABELS", "KICI_LOCKFILE_CACHE_MAX", "KICI_LOCKFILE_CACHE_TTL_MS", "KICI_LOG_DIR",
    "KICI_LOG_FORMAT", "KICI_LOG_LEVEL", "KICI_LOG_MAX_SIZE", "KICI_LOG_RETENTION_DAYS",
    "KICI_MAX_JOBS_PER_RUN", "KICI_METRICS_PUBLIC", "KICI_METRICS_TOKEN", "KICI_MODE",
    "KICI_ORCHESTRATOR_URL", "KICI_ORCH_RECONNECT_REPLAY_WINDOW_HOURS",
    "KICI_PLATFORM_INSTANCE_ID", "KICI_PLATFORM_TOKEN", "KICI_PLATFORM_URL", "KICI_PORT",
    "KICI_QUEUE_MAX_DEPTH", "KICI_QUEUE_TIMEOUT_MS", "KICI_ROLES", "KICI_RUN_URL_TEMPLATE", "KICI_SECRET_KEY",
    "KICI_SECRET_KEY_FILE", "KICI_SECRET_KEY_FILE_OLD", "KICI_SECRET_KEY_OLD",
    "KICI_STORAGE_BUCKET", "KICI_STORAGE_ENDPOINT", "KICI_STORAGE_EXTERNAL_ENDPOINT",
    "KICI_STORAGE_FORCE_PATH_STYLE", "KICI_STORAGE_FS_BASE_URL", "KICI_STORAGE_FS_PATH",
    "KICI_STORAGE_LOG_BUCKET", "KICI_STORAGE_PATH", "KICI_STORAGE_PREFIX", "KICI_STORAGE_REGION",
    "KICI_STORAGE_TYPE", "KICI_STORAGE_UPLOAD_ENDPOINT", "KICI_TRUSTED_PROXIES",
    "KICI_USER_CACHE_QUOTA_BYTES",
    "KICI_USER_CACHE_TTL_MS", "KICI_WEBHOOK_PAYLOAD_DIR", "KICI_WEBHOOK_PUBLIC_URL",
];

/// The reference registers its cold-store knobs (about 45 names, most of them per table) as
/// known; we keep them known too, and a family prefix saves listing names we never read.
const KNOWN_FAMILY: &str = "KICI_COLD_STORE_";

/// Test harnesses and the agent's pass-through env use these; they are never ours.
pub(super) const IGNORED_PREFIXES: &[&str] = &["KICI_E2E_", "KICI_AGENT_ENV_"];
pub(super) const IGNORED_SUFFIX: &str = "_ENV_PROBE";

/// True when `name` is a variable this product knows.
pub fn is_known_var(name: &str) -> bool {
    KNOWN.binary_search(&name).is_ok()
        || (name.starts_with(KNOWN_FAMILY) && name.len() > KNOWN_FAMILY.len())
}

/// The closest known name, if it is close enough to be a plausible typo.
pub(super) fn suggest(name: &str) -> Option<&'static str> {
    let limit = (name.chars().count() / 4).max(2);
    let closest = KNOWN
        .iter()
        .map(|known| (levenshtein(name, known), *known))
        .min_by_key(|(d, _)| *d);
    closest
        .filter(|(distance, _)| *distance <= limit)
        .map(|(_, known)| known)
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
