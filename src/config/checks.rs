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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn load(vars: &[(&str, &str)]) -> (ChecksSettings, Vec<String>, Vec<String>) {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut l = Loader::new(vars, BTreeSet::new());
        let s = l.checks_settings();
        (s, l.problems, l.warnings)
    }

    #[test]
    fn defaults_values_and_problems() {
        let (s, problems, _) = load(&[]);
        assert_eq!(s, ChecksSettings::default());
        assert!(problems.is_empty());
        let (s, problems, warnings) = load(&[
            ("KICI_RUN_URL_TEMPLATE", "https://ci.example/runs/{runId}"),
            ("KICI_CHECKS_UPDATE_INTERVAL_MS", "250"),
            ("KICI_CHECKS_MAX_BACKOFF_MS", "1000"),
            ("KICI_CHECKS_PERMISSION_RETRY_MS", "60000"),
        ]);
        assert!(
            problems.is_empty() && warnings.is_empty(),
            "{problems:?} {warnings:?}"
        );
        assert_eq!(
            s.run_url_template.as_deref(),
            Some("https://ci.example/runs/{runId}")
        );
        assert_eq!(s.update_interval, Duration::from_millis(250));
        assert_eq!(s.max_backoff, Duration::from_secs(1));
        assert_eq!(s.permission_retry, Duration::from_secs(60));
        let (_, problems, warnings) = load(&[
            ("KICI_RUN_URL_TEMPLATE", "https://ci.example/runs"),
            ("KICI_CHECKS_UPDATE_INTERVAL_MS", "0"),
            ("KICI_CHECKS_MAX_BACKOFF_MS", "soon"),
        ]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("{runId}"), "{warnings:?}");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("KICI_CHECKS_UPDATE_INTERVAL_MS: "),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("KICI_CHECKS_MAX_BACKOFF_MS: "),
            "{problems:?}"
        );
        let (_, problems, _) = load(&[("KICI_RUN_URL_TEMPLATE", "ci.example/{runId}")]);
        assert!(
            problems[0].starts_with("KICI_RUN_URL_TEMPLATE: "),
            "{problems:?}"
        );
    }
}
