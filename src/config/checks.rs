//! The check reporter's settings (docs/check-runs.md, "Settings"): `KICI_RUN_URL_TEMPLATE`
//! (each check run's "Details" link, `{runId}` replaced by the run's id), and the timings
//! `KICI_CHECKS_UPDATE_INTERVAL_MS` (in-progress updates of one check run at most this often),
//! `KICI_CHECKS_MAX_BACKOFF_MS` (the longest wait between retries after GitHub errors) and
//! `KICI_CHECKS_PERMISSION_RETRY_MS` (how long a source missing `checks: write` is left alone).

use std::time::Duration;

use super::Loader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksSettings {
    pub run_url_template: Option<String>,
    pub update_interval: Duration,
    pub max_backoff: Duration,
    pub permission_retry: Duration,
}

impl Default for ChecksSettings {
    fn default() -> ChecksSettings {
        ChecksSettings {
            run_url_template: None,
            update_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            permission_retry: Duration::from_secs(1800),
        }
    }
}

impl Loader {
    pub(super) fn checks_settings(&mut self) -> ChecksSettings {
        let d = ChecksSettings::default();
        let template = self.url("KICI_RUN_URL_TEMPLATE", &["http://", "https://"]);
        if let Some(t) = &template {
            if !t.contains("{runId}") {
                self.warnings.push(format!(
                    "KICI_RUN_URL_TEMPLATE={t:?} has no {{runId}}: every check run links to the same page"
                ));
            }
        }
        let rule = "must be a whole number of milliseconds, at least 1";
        let mut ms = |name: &str, default: Duration| {
            let v = self.number(name, default.as_millis() as u64, rule);
            if v == 0 {
                self.problem(name, format!("{rule}, got \"0\""));
            }
            Duration::from_millis(v.max(1))
        };
        ChecksSettings {
            run_url_template: template,
            update_interval: ms("KICI_CHECKS_UPDATE_INTERVAL_MS", d.update_interval),
            max_backoff: ms("KICI_CHECKS_MAX_BACKOFF_MS", d.max_backoff),
            permission_retry: ms("KICI_CHECKS_PERMISSION_RETRY_MS", d.permission_retry),
        }
    }
}
