//! Bucket lifecycle rules for `kici-admin storage lifecycle` (pure): the rules KiCI wants, merged
//! into whatever the bucket already has (rules we did not write are kept byte for byte), and
//! rendered as S3's `LifecycleConfiguration` XML.
//!
//! What we set (docs/operations.md, "Object storage"): cache prefixes (`source/`, `deps/`,
//! `cache/`) expire after `--days` ≥ `KICI_CACHE_TTL_DAYS`; `test-uploads/` after 1 day; logs
//! (`kici-logs/`, `event-log/`) after `--log-days` when given; incomplete multipart uploads are
//! aborted after 1 day in both buckets.

use super::keys::{CACHE_PREFIXES, LOG_PREFIXES, TEST_UPLOADS_PREFIX};
use super::xml::{self, escape};

/// IDs of the rules this tool owns start with this; others are never touched.
pub const OWN_PREFIX: &str = "kici-";

/// Why a bucket rule may not expire caches sooner than the cache TTL.
pub const TTL_REASON: &str = "the orchestrator relies on cache freshness: a bucket expiration \
     shorter than KICI_CACHE_TTL_DAYS (default 30, enforced minimum 30) deletes cache entries the \
     orchestrator still hands out, causing cache misses";

pub const MIN_TTL_DAYS: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub prefix: String,
    pub enabled: bool,
    pub expiration_days: Option<u32>,
    pub abort_multipart_days: Option<u32>,
    /// The rule's XML as the bucket returned it (foreign rules are re-sent unchanged).
    pub raw: Option<String>,
}

impl Rule {
    fn ours(id: &str, prefix: String, expiration: Option<u32>, abort: Option<u32>) -> Rule {
        Rule {
            id: format!("{OWN_PREFIX}{id}"),
            prefix,
            enabled: true,
            expiration_days: expiration,
            abort_multipart_days: abort,
            raw: None,
        }
    }

    /// One line for `storage lifecycle` output.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(d) = self.expiration_days {
            what.push(format!("expire after {d} day(s)"));
        }
        if let Some(d) = self.abort_multipart_days {
            what.push(format!(
                "abort incomplete multipart uploads after {d} day(s)"
            ));
        }
        if what.is_empty() {
            what.push("other actions".into());
        }
        let prefix = if self.prefix.is_empty() {
            "(whole bucket)".to_owned()
        } else {
            self.prefix.clone()
        };
        let state = if self.enabled { "" } else { " [disabled]" };
        format!("{:<24} {prefix:<28} {}{state}", self.id, what.join(", "))
    }

    fn render(&self) -> String {
        if let Some(raw) = &self.raw {
            return format!("<Rule>{raw}</Rule>");
        }
        let mut out = format!(
            "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>{}</Status>",
            escape(&self.id),
            escape(&self.prefix),
            if self.enabled { "Enabled" } else { "Disabled" }
        );
        if let Some(d) = self.expiration_days {
            out.push_str(&format!("<Expiration><Days>{d}</Days></Expiration>"));
        }
        if let Some(d) = self.abort_multipart_days {
            out.push_str(&format!(
                "<AbortIncompleteMultipartUpload><DaysAfterInitiation>{d}</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
            ));
        }
        out.push_str("</Rule>");
        out
    }
}

/// The rules of a `LifecycleConfiguration` document.
pub fn parse(document: &str) -> Vec<Rule> {
    xml::elements(document, "Rule")
        .into_iter()
        .map(|raw| {
            let days = |outer: &str, inner: &str| {
                xml::elements(raw, outer)
                    .first()
                    .and_then(|o| xml::text(o, inner))
                    .and_then(|d| d.parse().ok())
            };
            Rule {
                id: xml::text(raw, "ID").unwrap_or_default(),
                prefix: xml::text(raw, "Prefix").unwrap_or_default(),
                enabled: xml::text(raw, "Status").as_deref() == Some("Enabled"),
                expiration_days: days("Expiration", "Days"),
                abort_multipart_days: days("AbortIncompleteMultipartUpload", "DaysAfterInitiation"),
                raw: Some(raw.to_owned()),
            }
        })
        .collect()
}

pub fn render(rules: &[Rule]) -> String {
    let body: String = rules.iter().map(Rule::render).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{body}</LifecycleConfiguration>"
    )
}

/// Refuses a cache expiration shorter than the cache TTL (or than 30 days).
pub fn check_days(days: u32, ttl_days: u32) -> Result<(), String> {
    let floor = ttl_days.max(MIN_TTL_DAYS);
    if days < floor {
        return Err(format!(
            "--days {days} refused: must be at least {floor} (KICI_CACHE_TTL_DAYS is {ttl_days}), because {TTL_REASON}"
        ));
    }
    Ok(())
}

/// The rules we want: `(cache bucket, log bucket)`; with one bucket, everything is in the first.
pub fn wanted(
    prefix: &str,
    days: u32,
    log_days: Option<u32>,
    split: bool,
) -> (Vec<Rule>, Vec<Rule>) {
    let mut cache: Vec<Rule> = CACHE_PREFIXES
        .iter()
        .map(|p| {
            let name = format!("cache-{}", p.trim_end_matches('/'));
            Rule::ours(&name, format!("{prefix}{p}"), Some(days), None)
        })
        .collect();
    cache.push(Rule::ours(
        "test-uploads",
        format!("{prefix}{TEST_UPLOADS_PREFIX}"),
        Some(1),
        None,
    ));
    cache.push(Rule::ours(
        "abort-multipart",
        prefix.to_owned(),
        None,
        Some(1),
    ));
    let mut logs: Vec<Rule> = log_days
        .map(|d| {
            LOG_PREFIXES
                .iter()
                .map(|p| {
                    let name = format!("logs-{}", p.trim_end_matches('/'));
                    Rule::ours(&name, format!("{prefix}{p}"), Some(d), None)
                })
                .collect()
        })
        .unwrap_or_default();
    if split {
        logs.push(Rule::ours(
            "abort-multipart",
            prefix.to_owned(),
            None,
            Some(1),
        ));
        (cache, logs)
    } else {
        cache.extend(logs);
        (cache, Vec::new())
    }
}

/// Foreign rules kept as they were, ours replaced.
pub fn merge(existing: &[Rule], ours: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = existing
        .iter()
        .filter(|r| !r.id.starts_with(OWN_PREFIX))
        .cloned()
        .collect();
    out.extend(ours.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_days_below_the_ttl() {
        assert!(check_days(30, 30).is_ok());
        assert!(check_days(45, 45).is_ok());
        let e = check_days(10, 30).unwrap_err();
        assert!(
            e.starts_with("--days 10 refused: must be at least 30"),
            "{e}"
        );
        assert!(e.contains("cache misses"), "{e}");
        assert!(check_days(40, 45).is_err());
    }

    #[test]
    fn wanted_rules_single_and_split() {
        let (cache, logs) = wanted("p/", 30, None, false);
        let ids: Vec<&str> = cache.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "kici-cache-source",
                "kici-cache-deps",
                "kici-cache-cache",
                "kici-test-uploads",
                "kici-abort-multipart"
            ]
        );
        assert_eq!(cache[0].prefix, "p/source/");
        assert_eq!(cache[3].expiration_days, Some(1));
        assert_eq!(cache[4].abort_multipart_days, Some(1));
        assert!(logs.is_empty());
        let (cache, logs) = wanted("", 60, Some(7), true);
        assert_eq!(cache.len(), 5);
        assert_eq!(cache[0].expiration_days, Some(60));
        let ids: Vec<&str> = logs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "kici-logs-kici-logs",
                "kici-logs-event-log",
                "kici-abort-multipart"
            ]
        );
        assert_eq!(logs[0].expiration_days, Some(7));
        let (cache, _) = wanted("", 30, Some(7), false);
        assert_eq!(cache.len(), 7);
    }

    #[test]
    fn merge_keeps_foreign_rules_verbatim_and_replaces_ours() {
        let existing = r#"<LifecycleConfiguration><Rule><ID>theirs</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule><Rule><ID>kici-cache-source</ID><Filter><Prefix>source/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>90</Days></Expiration></Rule></LifecycleConfiguration>"#;
        let parsed = parse(existing);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].expiration_days, Some(3));
        assert_eq!(parsed[1].prefix, "source/");
        let (ours, _) = wanted("", 30, None, false);
        let merged = merge(&parsed, &ours);
        assert_eq!(merged.len(), 6);
        let doc = render(&merged);
        assert!(
            doc.contains("<Tag><Key>k</Key><Value>v</Value></Tag>"),
            "{doc}"
        );
        assert!(!doc.contains("<Days>90</Days>"));
        // What we render parses back to the same rules.
        let again = parse(&doc);
        assert_eq!(again.len(), 6);
        assert_eq!(again[1].id, "kici-cache-source");
        assert_eq!(again[1].expiration_days, Some(30));
        assert_eq!(again[5].abort_multipart_days, Some(1));
        assert!(again.iter().all(|r| r.enabled));
    }
}
