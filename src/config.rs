// TEMPORARY STUB (replaced by helper's config.rs)
use std::net::IpAddr;
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
#[derive(Clone)]
pub struct Config {
    pub mode: Mode,
    pub database_url: String,
    pub secret_key: crate::crypto::SecretKey,
    pub secret_key_old: Option<crate::crypto::SecretKey>,
    pub auto_migrate: bool,
    pub bootstrap_admin_token: Option<String>,
    pub platform_url: Option<String>,
    pub platform_token: Option<String>,
    pub port: u16,
    pub bind_address: IpAddr,
    pub base_path: String,
    pub log_level: log::LevelFilter,
    pub cache_ttl_days: u32,
    pub event_log_max_payload_bytes: u64,
    pub webhook_public_url: Option<String>,
    pub dev: bool,
}
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
    pub unknown_present: bool,
}
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Configuration validation failed:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
impl Config {
    pub fn from_env() -> Result<Loaded, ConfigError> {
        let g = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut problems = vec![];
        let key = match g("KICI_SECRET_KEY") {
            Some(k) => match crate::crypto::SecretKey::parse(&k) {
                Ok(k) => Some(k),
                Err(e) => {
                    problems.push(format!("KICI_SECRET_KEY: {e}"));
                    None
                }
            },
            None => {
                problems.push("KICI_SECRET_KEY: is required".into());
                None
            }
        };
        let db = g("KICI_DATABASE_URL");
        if db.is_none() {
            problems.push("KICI_DATABASE_URL: is required".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                problems,
                unknown_present: false,
            });
        }
        Ok(Loaded {
            warnings: vec![],
            config: Config {
                mode: Mode::Independent,
                database_url: db.unwrap(),
                secret_key: key.unwrap(),
                secret_key_old: None,
                auto_migrate: g("KICI_AUTO_MIGRATE").as_deref() != Some("false"),
                bootstrap_admin_token: g("KICI_BOOTSTRAP_ADMIN_TOKEN"),
                platform_url: None,
                platform_token: None,
                port: g("KICI_PORT").and_then(|p| p.parse().ok()).unwrap_or(4000),
                bind_address: g("KICI_BIND_ADDRESS")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or([0, 0, 0, 0].into()),
                base_path: String::new(),
                log_level: log::LevelFilter::Info,
                cache_ttl_days: 30,
                event_log_max_payload_bytes: 5242880,
                webhook_public_url: None,
                dev: false,
            },
        })
    }
}
pub fn redact_database_url(url: &str) -> String {
    url.to_string()
}
