//! The daemon's single-value settings read by [`Loader`]: where it listens (bind address, base
//! path, trusted proxies), who may scrape `/metrics`, and the positive limits (payload size, jobs
//! per run, log retention). Each reader reports its own problem, naming the variable and the rule
//! (docs/operations.md, "Settings").

use std::net::{IpAddr, Ipv4Addr};

use super::{normalize_base_path, Loader, TrustedProxies};

impl Loader {
    pub(super) fn bind_address(&mut self) -> IpAddr {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let Some(value) = self.get("KICI_BIND_ADDRESS") else {
            return any;
        };
        value.parse().unwrap_or_else(|_| {
            let rule = "must be an IP address such as 0.0.0.0, 127.0.0.1 or ::";
            self.problem("KICI_BIND_ADDRESS", format!("{rule}, got {value:?}"));
            any
        })
    }

    pub(super) fn base_path(&mut self) -> String {
        let raw = self.get("KICI_BASE_PATH").unwrap_or_else(|| "/".to_owned());
        normalize_base_path(&raw).unwrap_or_else(|| {
            let rule = "must be a URL path starting with / (such as /kici), without ?, #, whitespace or .. segments";
            self.problem("KICI_BASE_PATH", format!("{rule}, got {raw:?}"));
            String::new()
        })
    }

    /// Each invalid entry is its own problem, naming the entry.
    pub(super) fn trusted_proxies(&mut self) -> TrustedProxies {
        const NAME: &str = "KICI_TRUSTED_PROXIES";
        let Some(list) = self.get(NAME) else {
            return TrustedProxies::default();
        };
        TrustedProxies::parse(&list).unwrap_or_else(|problems| {
            for p in problems {
                self.problem(NAME, format!("{p}; use a comma-separated list of addresses or CIDR blocks, such as 127.0.0.1/32,10.0.0.0/8,::1"));
            }
            TrustedProxies::default()
        })
    }

    /// `KICI_METRICS_TOKEN` (at least 16 characters, never echoed) and `KICI_METRICS_PUBLIC`.
    pub(super) fn metrics_access(&mut self) -> (Option<String>, bool) {
        const NAME: &str = "KICI_METRICS_TOKEN";
        let public = self.flag("KICI_METRICS_PUBLIC", "unauthenticated /metrics");
        let token = self.get(NAME);
        if let Some(t) = &token {
            if t.chars().count() < 16 || t.chars().any(char::is_whitespace) {
                let n = t.chars().count();
                self.problem(NAME, format!("must be at least 16 characters without spaces (got {n} characters); generate one with `openssl rand -hex 32`"));
            } else if public {
                self.warnings.push(format!(
                    "{NAME} is unused: KICI_METRICS_PUBLIC=true serves /metrics to everyone"
                ));
            }
        }
        (token, public)
    }

    pub(super) fn max_payload(&mut self) -> u64 {
        self.positive(
            "KICI_EVENT_LOG_MAX_PAYLOAD_BYTES",
            5_242_880u64,
            "a whole number of bytes",
        )
    }

    pub(super) fn max_jobs_per_run(&mut self) -> usize {
        use crate::pipeline::limits::{DEFAULT_JOBS_PER_RUN, JOBS_PER_RUN_VAR};
        self.positive(
            JOBS_PER_RUN_VAR,
            DEFAULT_JOBS_PER_RUN,
            "a whole number of jobs",
        )
    }

    pub(super) fn log_retention_days(&mut self) -> u32 {
        self.positive("KICI_LOG_RETENTION_DAYS", 30, "a whole number of days")
    }

    /// A whole number greater than 0 (`what`, e.g. "a whole number of days"); 0 is a problem.
    fn positive<T>(&mut self, name: &str, default: T, what: &str) -> T
    where
        T: std::str::FromStr + Copy + PartialEq + Default,
    {
        let rule = format!("must be {what} greater than 0");
        let n = self.number(name, default, &rule);
        if n == T::default() {
            let got = self.get(name).unwrap_or_default();
            self.problem(name, format!("{rule}, got {got:?}"));
        }
        n
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
