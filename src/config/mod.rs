//! Boot configuration: the `KICI_*` environment validated into a [`Config`] (docs/operations.md,
//! "Settings").
//!
//! Every problem is collected and reported at once, so an operator fixes a broken env file in one
//! round instead of one restart per mistake. Secret values never reach a message or `Debug`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use log::LevelFilter;

use crate::crypto::SecretKey;
use crate::db::url::keyword_pairs;
pub use crate::db::url::redact_database_url;
pub use crate::sources::client_ip::TrustedProxies;

mod agents;
mod checks;
mod keys;
#[cfg(test)]
use keys::{KEY_FILE_LIMIT, SECRET_KEY_REQUIRED};
mod platform;
mod settings;
mod storage;
pub use agents::AgentSettings;
pub use checks::ChecksSettings;
pub use storage::{default_blob_base_url, StorageOnly};
mod vars;
pub use vars::is_known_var;
use vars::{suggest, IGNORED_PREFIXES, IGNORED_SUFFIX};

const DEV_HINT: &str = "Set KICI_DEV=true to downgrade unknown-variable errors to warnings.";

/// How this orchestrator reaches webhooks: through the Platform relay, directly, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Platform,
    Hybrid,
    Independent,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Platform => "platform",
            Mode::Hybrid => "hybrid",
            Mode::Independent => "independent",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    S3,
    Filesystem,
}

/// Cache/log storage. Only the fields of the chosen `kind` are filled in.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub kind: StorageType,
    pub bucket: Option<String>,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub external_endpoint: Option<String>,
    pub upload_endpoint: Option<String>,
    pub force_path_style: bool,
    /// `None`: logs go to `bucket`.
    pub log_bucket: Option<String>,
    pub fs_path: Option<PathBuf>,
    /// `None`: `http://127.0.0.1:<bound port>`; left to the caller because port 0 is only known
    /// after binding.
    pub fs_base_url: Option<String>,
    /// `KICI_USER_CACHE_QUOTA_BYTES` (default 5 GiB): workflow caches per organization, least
    /// recently used evicted beyond it (docs/caches.md, "Workflow caches").
    pub user_cache_quota_bytes: u64,
    /// `KICI_USER_CACHE_TTL_MS` (default 7 days): a workflow cache not read for this long is a
    /// miss and is deleted.
    pub user_cache_ttl_ms: u64,
}

/// The validated boot configuration (docs/operations.md, "Settings"). `Debug` is written by hand so
/// secrets never reach a log line.
#[derive(Clone)]
pub struct Config {
    pub mode: Mode,
    pub database_url: String,
    pub secret_key: SecretKey,
    pub secret_key_old: Option<SecretKey>,
    pub auto_migrate: bool,
    pub bootstrap_admin_token: Option<String>,
    pub platform_url: Option<String>,
    pub platform_token: Option<String>,
    pub port: u16,
    pub bind_address: IpAddr,
    /// `""` for the root, else `/a/b`: routes are `format!("{base_path}/health")`.
    pub base_path: String,
    pub log_level: log::LevelFilter,
    pub storage: Option<StorageConfig>,
    pub cache_ttl_days: u32,
    /// `KICI_CACHE_BUILD_JOBS` (default true): with storage, a run whose tarballs are not cached
    /// starts with a `__build__` job (docs/caches.md, "The build job").
    pub cache_build_jobs: bool,
    pub event_log_max_payload_bytes: u64,
    /// `KICI_MAX_JOBS_PER_RUN`: jobs one planned run may create (`pipeline::limits`).
    pub max_jobs_per_run: usize,
    /// `KICI_LOG_RETENTION_DAYS`: without storage, step log lines are deleted after this.
    pub log_retention_days: u32,
    pub webhook_public_url: Option<String>,
    /// `KICI_GITHUB_API_URL`: GitHub's REST API (GitHub Enterprise: `https://<host>/api/v3`).
    pub github_api_url: String,
    /// `KICI_CLUSTER_INSTANCE_ID`, else a fresh UUID per boot: names this orchestrator to the
    /// Platform (`source.register`, OIDC mint path).
    pub instance_id: String,
    pub agents: AgentSettings,
    /// GitHub check runs (`KICI_RUN_URL_TEMPLATE`, `KICI_CHECKS_*`).
    pub checks: ChecksSettings,
    /// `KICI_TRUSTED_PROXIES`: peers whose `X-Forwarded-For`/`X-Real-IP` are believed.
    pub trusted_proxies: TrustedProxies,
    /// `KICI_METRICS_TOKEN`: the bearer token remote scrapers of `/metrics` send.
    pub metrics_token: Option<String>,
    /// `KICI_METRICS_PUBLIC=true`: `/metrics` open to everyone.
    pub metrics_public: bool,
    /// `KICI_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: crate::logging::Format,
    pub dev: bool,
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn hidden<T>(secret: &Option<T>) -> Option<Redacted> {
    secret.as_ref().map(|_| Redacted)
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("database_url", &redact_database_url(&self.database_url))
            .field("secret_key", &Redacted)
            .field("secret_key_old", &hidden(&self.secret_key_old))
            .field("auto_migrate", &self.auto_migrate)
            .field(
                "bootstrap_admin_token",
                &hidden(&self.bootstrap_admin_token),
            )
            .field("platform_url", &self.platform_url)
            .field("platform_token", &hidden(&self.platform_token))
            .field("port", &self.port)
            .field("bind_address", &self.bind_address)
            .field("base_path", &self.base_path)
            .field("log_level", &self.log_level)
            .field("storage", &self.storage)
            .field("cache_ttl_days", &self.cache_ttl_days)
            .field("cache_build_jobs", &self.cache_build_jobs)
            .field(
                "event_log_max_payload_bytes",
                &self.event_log_max_payload_bytes,
            )
            .field("max_jobs_per_run", &self.max_jobs_per_run)
            .field("log_retention_days", &self.log_retention_days)
            .field("webhook_public_url", &self.webhook_public_url)
            .field("github_api_url", &self.github_api_url)
            .field("instance_id", &self.instance_id)
            .field("agents", &self.agents)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_token", &hidden(&self.metrics_token))
            .field("metrics_public", &self.metrics_public)
            .field("log_format", &self.log_format)
            .field("dev", &self.dev)
            .finish()
    }
}

/// A valid configuration plus the warnings met on the way, for the caller to log once logging
/// is set up (the log level is itself part of the configuration).
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The configuration is unusable. `problems` holds one `KICI_NAME: message` line per problem.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
    /// True when some problem is an unknown variable, which `KICI_DEV=true` would downgrade.
    pub unknown_present: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Configuration validation failed:")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        if self.unknown_present {
            write!(f, "\n{DEV_HINT}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Validate from the process environment. Non-UTF-8 `KICI_*` values are problems.
    ///
    /// # Errors
    /// Every problem found, at once.
    pub fn from_env() -> Result<Loaded, ConfigError> {
        Loader::from_os(std::env::vars_os()).load()
    }

    /// Same, from an explicit list. Only names starting with `KICI_` matter.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Loaded, ConfigError> {
        let vars = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("KICI_"));
        Loader::new(vars.collect(), BTreeSet::new()).load()
    }
}

/// The `KICI_*` variables, and what was found wrong with them so far.
struct Loader {
    vars: BTreeMap<String, String>,
    /// Names whose value is not UTF-8: reported once, and never again as missing.
    unreadable: BTreeSet<String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Loader {
    fn from_os<I: IntoIterator<Item = (OsString, OsString)>>(env: I) -> Loader {
        let mut vars = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for (name, value) in env {
            // A non-UTF-8 name turns lossy, never matches a known name, and so gets reported.
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with("KICI_") {
                continue;
            }
            if let Ok(value) = value.into_string() {
                vars.insert(name, value);
            } else {
                unreadable.insert(name);
            }
        }
        Loader::new(vars, unreadable)
    }

    fn new(vars: BTreeMap<String, String>, unreadable: BTreeSet<String>) -> Loader {
        let problems = unreadable
            .iter()
            .map(|n| format!("{n}: value is not valid UTF-8"))
            .collect();
        Loader {
            vars,
            unreadable,
            problems,
            warnings: Vec::new(),
        }
    }

    fn load(mut self) -> Result<Loaded, ConfigError> {
        let dev = self.flag("KICI_DEV", "development mode");
        let modes = [
            ("platform", Mode::Platform),
            ("hybrid", Mode::Hybrid),
            ("independent", Mode::Independent),
        ];
        let mode = self.choice("KICI_MODE", &modes, Mode::Platform);
        let database_url = self.database_url();
        let secret_key = self.key("KICI_SECRET_KEY", "KICI_SECRET_KEY_FILE", true);
        let secret_key_old = self.key("KICI_SECRET_KEY_OLD", "KICI_SECRET_KEY_FILE_OLD", false);
        let auto_migrate = self.auto_migrate();
        let (platform_url, platform_token) = self.platform(mode);
        let port = self.number(
            "KICI_PORT",
            4000u16,
            "must be a whole number from 0 to 65535",
        );
        let bind_address = self.bind_address();
        let base_path = self.base_path();
        let levels = [
            ("trace", LevelFilter::Trace),
            ("debug", LevelFilter::Debug),
            ("info", LevelFilter::Info),
            ("warn", LevelFilter::Warn),
            ("error", LevelFilter::Error),
        ];
        let log_level = self.choice("KICI_LOG_LEVEL", &levels, LevelFilter::Info);
        let storage = self.storage();
        let cache_ttl_days = self.cache_ttl_days();
        let cache_build_jobs = self
            .choice(
                "KICI_CACHE_BUILD_JOBS",
                &[("true", true), ("false", false)],
                true,
            )
            .unwrap_or(true);
        let agents = self.agent_settings();
        let checks = self.checks_settings();
        let trusted_proxies = self.trusted_proxies();
        let (metrics_token, metrics_public) = self.metrics_access();
        let formats = [
            ("text", crate::logging::Format::Text),
            ("json", crate::logging::Format::Json),
        ];
        let log_format = self.choice("KICI_LOG_FORMAT", &formats, crate::logging::Format::Text);
        let max_payload = self.max_payload();
        let max_jobs_per_run = self.max_jobs_per_run();
        let log_retention_days = self.log_retention_days();
        let webhook_public_url = self.url("KICI_WEBHOOK_PUBLIC_URL", &["http://", "https://"]);
        let github_api_url = self
            .url("KICI_GITHUB_API_URL", &["http://", "https://"])
            .unwrap_or_else(|| "https://api.github.com".to_owned());
        let unknown_present = self.unknown_vars(dev);

        // The `None`s below come only with a problem, so the defaults are never used.
        let (Some(secret_key), true) = (secret_key, self.problems.is_empty()) else {
            return Err(ConfigError {
                problems: self.problems,
                unknown_present,
            });
        };
        let config = Config {
            mode: mode.unwrap_or(Mode::Platform),
            database_url: database_url.unwrap_or_default(),
            secret_key,
            secret_key_old,
            auto_migrate,
            bootstrap_admin_token: self.get("KICI_BOOTSTRAP_ADMIN_TOKEN"),
            platform_url,
            platform_token,
            port,
            bind_address,
            base_path,
            log_level: log_level.unwrap_or(LevelFilter::Info),
            storage,
            cache_ttl_days,
            cache_build_jobs,
            event_log_max_payload_bytes: max_payload,
            max_jobs_per_run,
            log_retention_days,
            webhook_public_url,
            github_api_url,
            instance_id: self
                .get("KICI_CLUSTER_INSTANCE_ID")
                .unwrap_or_else(crate::crypto::random_uuid),
            agents,
            checks,
            trusted_proxies,
            metrics_token,
            metrics_public,
            log_format: log_format.unwrap_or(crate::logging::Format::Text),
            dev,
        };
        Ok(Loaded {
            config,
            warnings: self.warnings,
        })
    }

    /// Empty counts as unset: env files and templates often write `KICI_X=`.
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn problem(&mut self, name: &str, message: impl fmt::Display) {
        self.problems.push(format!("{name}: {message}"));
    }

    /// `get`, or a problem saying `message` unless the value was already reported as unreadable.
    fn required(&mut self, name: &str, message: &str) -> Option<String> {
        let value = self.get(name);
        if value.is_none() && !self.unreadable.contains(name) {
            self.problem(name, message);
        }
        value
    }

    /// `None` (after reporting) when the value is not one of `choices`.
    fn choice<T: Copy>(&mut self, name: &str, choices: &[(&str, T)], default: T) -> Option<T> {
        let Some(value) = self.get(name) else {
            return Some(default);
        };
        let found = choices.iter().find(|(text, _)| *text == value).map(|c| c.1);
        if found.is_none() {
            let accepted: Vec<&str> = choices.iter().map(|c| c.0).collect();
            self.problem(
                name,
                format!("must be one of {}, got {value:?}", accepted.join(", ")),
            );
        }
        found
    }

    /// `rule` is the accepted form. Digits only: `str::parse` would also take `+4000`.
    fn number<T: std::str::FromStr + Copy>(&mut self, name: &str, default: T, rule: &str) -> T {
        let Some(value) = self.get(name) else {
            return default;
        };
        let parsed = value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse().ok());
        parsed.flatten().unwrap_or_else(|| {
            self.problem(name, format!("{rule}, got {value:?}"));
            default
        })
    }

    /// Only the exact value `true` turns a flag on (docs/operations.md, "Settings"); other values
    /// but `false` are probably mistakes worth a warning.
    fn flag(&mut self, name: &str, what: &str) -> bool {
        match self.get(name).as_deref() {
            Some("true") => true,
            None | Some("false") => false,
            Some(other) => {
                let message = format!("{name}={other:?} is treated as false: only the exact value true enables {what}");
                self.warnings.push(message);
                false
            }
        }
    }

    /// An optional URL that must start with one of `schemes` and name a host after it.
    fn url(&mut self, name: &str, schemes: &[&str]) -> Option<String> {
        let value = self.get(name)?;
        let scheme_len = schemes.iter().find(|s| {
            value
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        let rest = scheme_len.map_or("", |s| &value[s.len()..]);
        if !rest.is_empty() && !rest.starts_with('/') && !value.contains(char::is_whitespace) {
            return Some(value);
        }
        let list = match schemes.split_last() {
            Some((last, others)) if !others.is_empty() => {
                format!("{} or {last}", others.join(", "))
            }
            _ => schemes.join(""),
        };
        self.problem(
            name,
            format!("must be a URL starting with {list}, got {value:?}"),
        );
        None
    }

    /// Reference behaviour: only the exact string `false` disables. We keep it, and warn when a
    /// value looks like it meant something else (`0`, `no`, `FALSE`, ...).
    fn auto_migrate(&mut self) -> bool {
        let Some(value) = self.get("KICI_AUTO_MIGRATE") else {
            return true;
        };
        if value == "false" {
            return false;
        }
        if !["true", "1", "yes", "on"]
            .iter()
            .any(|t| value.eq_ignore_ascii_case(t))
        {
            let message = format!("KICI_AUTO_MIGRATE={value:?} is treated as true: only the exact value false disables auto-migration");
            self.warnings.push(message);
        }
        true
    }

    fn database_url(&mut self) -> Option<String> {
        const NAME: &str = "KICI_DATABASE_URL";
        let example = "postgresql://user:password@127.0.0.1:5432/kici";
        let url = self.required(
            NAME,
            &format!("is required (a PostgreSQL URL such as {example})"),
        )?;
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let is_keywords = keyword_pairs(&url)
            .iter()
            .any(|(key, _)| matches!(*key, "host" | "hostaddr" | "dbname"));
        if is_url || is_keywords {
            return Some(url);
        }
        let got = redact_database_url(&url);
        let rule = format!("must be a PostgreSQL URL such as {example}, or a libpq key=value string with host= or dbname=");
        self.problem(NAME, format!("{rule}, got {got:?}"));
        None
    }

    /// The typo catcher (docs/operations.md, "Boot and shutdown"). Returns whether unknown names
    /// became problems.
    fn unknown_vars(&mut self, dev: bool) -> bool {
        let ignored = |name: &str| {
            IGNORED_PREFIXES.iter().any(|p| name.starts_with(p)) || name.ends_with(IGNORED_SUFFIX)
        };
        let names: BTreeSet<String> = self.vars.keys().chain(&self.unreadable).cloned().collect();
        let unknown: Vec<String> = names
            .into_iter()
            .filter(|n| !is_known_var(n) && !ignored(n))
            .collect();
        for name in &unknown {
            let hint = suggest(name).map_or("no similar known name".to_owned(), |known| {
                format!("did you mean {known}?")
            });
            let line = format!("{name}: unknown variable ({hint})");
            if dev {
                self.warnings.push(line)
            } else {
                self.problems.push(line)
            }
        }
        !dev && !unknown.is_empty()
    }
}

/// `""` for the root, else `/a/b`; `None` when the value cannot be a path prefix.
pub(crate) fn normalize_base_path(raw: &str) -> Option<String> {
    let bad_char = |c: char| c == '?' || c == '#' || c.is_whitespace() || c.is_control();
    if !raw.starts_with('/') || raw.contains(bad_char) {
        return None;
    }
    let mut out = String::new();
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return None;
        }
        out.push('/');
        out.push_str(segment);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
