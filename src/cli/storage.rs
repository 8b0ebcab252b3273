//! `kici-admin storage check | lifecycle | presign | usage | prune`: object storage seen from the operator's
//! shell. Settings come from the same `KICI_STORAGE_*` and `AWS_*` variables as the daemon's,
//! read from `--env-file` (the instance's env file) with the process environment on top; no
//! database is needed.

use crate::cli::output::outln;
use std::{collections::HashMap, time::Duration};

use argh::FromArgs;
use jiff::Timestamp;
use serde_json::json;

use super::{instance::parse_env_file, output::print_json, Globals};
use crate::config::{default_blob_base_url, StorageOnly};
use crate::storage::{
    check, lifecycle,
    presign::{Verb, MAX_LIFETIME},
    Area, Audience, Backend, OpenParams, Storage, StorageError,
};
use crate::Error;

/// Check, configure and use the object storage (S3 or filesystem).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "storage")]
pub struct StorageCmd {
    #[argh(subcommand)]
    pub command: StorageSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum StorageSub {
    Check(CheckCmd),
    Lifecycle(LifecycleCmd),
    Presign(PresignCmd),
    Usage(UsageCmd),
    Prune(PruneCmd),
}

/// Show what the caches hold: objects and bytes of source tarballs, dependency tarballs, and
/// workflow caches per organization (docs/caches.md, "Operating the caches").
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "usage")]
pub struct UsageCmd {
    /// only this organization's workflow caches
    #[argh(option)]
    org: Option<String>,
    /// env file to read the settings from (the instance's <name>.env); the environment wins
    #[argh(option)]
    env_file: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Remove now the cache entries not used for KICI_CACHE_TTL_DAYS (with their .hash/.size
/// companions) and workflow-cache uploads abandoned for a day; the orchestrator otherwise removes
/// an expired entry when it next looks it up.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "prune")]
pub struct PruneCmd {
    /// list what would be removed, remove nothing
    #[argh(switch)]
    dry_run: bool,
    /// env file to read the settings from (the instance's <name>.env); the environment wins
    #[argh(option)]
    env_file: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Validate the storage settings, then write, read back and delete a probe object through URLs
/// built for each endpoint (internal, agent, upload, and the log bucket when split); report the
/// store's clock skew and one line per problem saying what to fix. Exit 1 on any problem.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckCmd {
    /// env file to read the settings from (the instance's <name>.env); the environment wins
    #[argh(option)]
    env_file: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Show the buckets' lifecycle rules and, with --apply, set KiCI's: cache prefixes expire after
/// --days (at least KICI_CACHE_TTL_DAYS), test-uploads/ after 1 day, logs after --log-days, and
/// incomplete multipart uploads are aborted after 1 day. Rules not named kici-* are kept.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "lifecycle")]
pub struct LifecycleCmd {
    /// write the rules to the bucket(s)
    #[argh(switch)]
    apply: bool,
    /// days after which cache objects expire (default: KICI_CACHE_TTL_DAYS; never less)
    #[argh(option)]
    days: Option<u32>,
    /// days after which logs expire (default: logs never expire)
    #[argh(option)]
    log_days: Option<u32>,
    /// env file to read the settings from (the instance's <name>.env); the environment wins
    #[argh(option)]
    env_file: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// Print a presigned URL (S3) or signed blob URL (filesystem) for one object key, as agents or
/// uploaders would get it. The key is logical (KICI_STORAGE_PREFIX is added).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "presign")]
pub struct PresignCmd {
    /// object key, e.g. source/<hash>.tar.gz
    #[argh(positional)]
    key: String,
    /// get or put (default get)
    #[argh(option, default = "String::from(\"get\")")]
    method: String,
    /// whose endpoint: agent, upload or internal (default agent)
    #[argh(option, long = "for", default = "String::from(\"agent\")")]
    audience: String,
    /// lifetime such as 90s, 15m, 2h, 1d (default 15m for get, 30m for put; at most 7d)
    #[argh(option)]
    expires: Option<String>,
    /// address the log bucket instead of the cache bucket
    #[argh(switch)]
    log_bucket: bool,
    /// env file to read the settings from (the instance's <name>.env); the environment wins
    #[argh(option)]
    env_file: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

pub fn run(cmd: StorageCmd, _globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        StorageSub::Check(c) => check_cmd(c),
        StorageSub::Lifecycle(c) => lifecycle_cmd(c),
        StorageSub::Presign(c) => presign_cmd(c),
        StorageSub::Usage(c) => usage_cmd(c),
        StorageSub::Prune(c) => prune_cmd(c),
    }
}

fn usage_cmd(c: UsageCmd) -> Result<(), Error> {
    let (_, storage) = open(c.env_file.as_deref())?;
    let rows = crate::caches::usage::usage(&storage, c.org.as_deref())
        .map_err(|e| Error::Api(format!("listing the caches: {e}")))?;
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    if c.json {
        print_json(&json!({ "usage": rows, "totalBytes": total }));
        return Ok(());
    }
    outln!(
        "{:<8} {:<24} {:>8} {:>14}",
        "KIND",
        "ORG",
        "OBJECTS",
        "BYTES"
    );
    for r in &rows {
        let org = r.org.as_deref().unwrap_or("-");
        outln!("{:<8} {:<24} {:>8} {:>14}", r.kind, org, r.objects, r.bytes);
    }
    outln!("total {total} bytes");
    Ok(())
}

fn prune_cmd(c: PruneCmd) -> Result<(), Error> {
    let (_, storage) = open(c.env_file.as_deref())?;
    let pruned = crate::caches::usage::prune(&storage, Timestamp::now(), c.dry_run)
        .map_err(|e| Error::Api(format!("pruning the caches: {e}")))?;
    if c.json {
        print_json(
            &json!({ "dryRun": c.dry_run, "removed": pruned.removed, "bytes": pruned.bytes }),
        );
        return Ok(());
    }
    let verb = if c.dry_run { "Would remove" } else { "Removed" };
    for key in &pruned.removed {
        outln!("{verb} {key}");
    }
    outln!(
        "{verb} {} expired entr(ies), {} bytes.",
        pruned.removed.len(),
        pruned.bytes
    );
    Ok(())
}

/// The env file's variables with the process environment on top.
fn variables(env_file: Option<&str>) -> Result<HashMap<String, String>, Error> {
    let mut vars = match env_file {
        None => HashMap::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Usage(format!("--env-file {path}: {e}")))?;
            parse_env_file(&text)
        }
    };
    vars.extend(std::env::vars());
    Ok(vars)
}

/// Validated settings and the opened store.
fn open(env_file: Option<&str>) -> Result<(StorageOnly, Storage), Error> {
    let vars = variables(env_file)?;
    let settings =
        StorageOnly::from_vars(vars.clone()).map_err(|e| Error::Config(e.to_string()))?;
    let Some(cfg) = &settings.storage else {
        return Err(Error::Config(
            "no storage configured: set KICI_STORAGE_TYPE to s3 or filesystem (and its settings), \
             or pass --env-file with the instance's env file"
                .into(),
        ));
    };
    let env = |name: &str| vars.get(name).cloned();
    let params = OpenParams {
        ttl_days: settings.cache_ttl_days,
        secret_key: settings.secret_key.as_ref(),
        secret_key_old: settings.secret_key_old.as_ref(),
        default_base_url: default_blob_base_url(settings.port, &settings.base_path),
        env: &env,
    };
    let storage = Storage::open(cfg, &params).map_err(Error::Config)?;
    Ok((settings, storage))
}

fn check_cmd(c: CheckCmd) -> Result<(), Error> {
    let (_, storage) = open(c.env_file.as_deref())?;
    let lines = check::run(&storage);
    let failed = lines.iter().filter(|l| !l.ok).count();
    if c.json {
        print_json(&json!({ "ok": failed == 0, "storage": storage.describe(), "checks": lines }));
    } else {
        outln!("{}", storage.describe());
        for line in &lines {
            outln!("{}", line.render());
        }
    }
    if failed > 0 {
        return Err(Error::Config(format!(
            "storage check failed: {failed} of {} check(s) (see above)",
            lines.len()
        )));
    }
    Ok(())
}

fn lifecycle_cmd(c: LifecycleCmd) -> Result<(), Error> {
    let (settings, storage) = open(c.env_file.as_deref())?;
    let days = c.days.unwrap_or(settings.cache_ttl_days);
    lifecycle::check_days(days, settings.cache_ttl_days).map_err(Error::Usage)?;
    let Backend::S3(s3) = storage.backend() else {
        if c.apply {
            return Err(Error::Usage(
                "filesystem storage has no bucket lifecycle: the orchestrator expires cache \
                 entries itself after KICI_CACHE_TTL_DAYS without access"
                    .into(),
            ));
        }
        outln!(
            "Filesystem storage: no bucket lifecycle; cache entries expire after {} days without access.",
            settings.cache_ttl_days
        );
        return Ok(());
    };
    let split = storage.bucket(Area::Logs) != storage.bucket(Area::Cache);
    let prefix = settings
        .storage
        .as_ref()
        .map(|s| s.prefix.clone())
        .unwrap_or_default();
    let (cache_rules, log_rules) = lifecycle::wanted(&prefix, days, c.log_days, split);
    let mut targets = vec![(storage.bucket(Area::Cache).to_owned(), cache_rules)];
    if split {
        targets.push((storage.bucket(Area::Logs).to_owned(), log_rules));
    }
    let mut report = Vec::new();
    let mut unsupported = false;
    for (bucket, wanted) in targets {
        let current = match s3.get_lifecycle(&bucket) {
            Ok(doc) => doc.map(|d| lifecycle::parse(&d)).unwrap_or_default(),
            Err(e) if is_unsupported(&e) => {
                unsupported = true;
                let merged = lifecycle::render(&wanted);
                if !c.json {
                    outln!(
                        "Bucket {bucket}: this store has no lifecycle API ({e}).\nApply these rules by hand \
                         (S3 PutBucketLifecycleConfiguration, or your store's console):\n{merged}\n"
                    );
                }
                report
                    .push(json!({ "bucket": bucket, "supported": false, "rulesToApply": merged }));
                continue;
            }
            Err(e) => {
                return Err(Error::Api(format!(
                    "reading the lifecycle of bucket {bucket}: {e}"
                )))
            }
        };
        let merged = lifecycle::merge(&current, &wanted);
        if !c.json {
            outln!("Bucket {bucket}: {} rule(s)", current.len());
            for r in &current {
                outln!("  {}", r.describe());
            }
            let verb = if c.apply {
                "Setting"
            } else {
                "With --apply, would set"
            };
            outln!("{verb}:");
            for r in &merged {
                outln!("  {}", r.describe());
            }
        }
        if c.apply {
            s3.put_lifecycle(&bucket, &lifecycle::render(&merged))
                .map_err(|e| {
                    Error::Api(format!("setting the lifecycle of bucket {bucket}: {e}"))
                })?;
            if !c.json {
                outln!("Bucket {bucket}: lifecycle rules applied.");
            }
        }
        let describe =
            |rules: &[lifecycle::Rule]| rules.iter().map(|r| r.describe()).collect::<Vec<_>>();
        report.push(json!({
            "bucket": bucket, "supported": true, "applied": c.apply,
            "current": describe(&current), "wanted": describe(&merged),
        }));
    }
    if c.json {
        print_json(&json!({ "buckets": report }));
    }
    if unsupported {
        return Err(Error::Api(
            "the store does not support bucket lifecycle rules (HTTP 501): apply the rules printed above by hand".into(),
        ));
    }
    Ok(())
}

fn is_unsupported(e: &StorageError) -> bool {
    matches!(e, StorageError::Refused { status: 501, .. }) || e.code_is("NotImplemented")
}

/// `90s`, `15m`, `2h`, `1d`, or plain seconds.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("--expires {text:?}: use a number with s, m, h or d, such as 15m"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("--expires {text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 || seconds > MAX_LIFETIME.as_secs() {
        return Err(format!(
            "--expires {text:?}: must be between 1s and 7d (S3's limit)"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

fn presign_cmd(c: PresignCmd) -> Result<(), Error> {
    let verb = match c.method.to_ascii_lowercase().as_str() {
        "get" => Verb::Get,
        "put" => Verb::Put,
        other => return Err(Error::Usage(format!("--method {other:?}: use get or put"))),
    };
    let audience = Audience::ALL
        .into_iter()
        .find(|a| a.as_str() == c.audience)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--for {:?}: use agent, upload or internal",
                c.audience
            ))
        })?;
    let lifetime = match &c.expires {
        Some(t) => parse_lifetime(t).map_err(Error::Usage)?,
        None if verb == Verb::Put => crate::storage::presign::PUT_LIFETIME,
        None => crate::storage::presign::GET_LIFETIME,
    };
    let (_, storage) = open(c.env_file.as_deref())?;
    let area = if c.log_bucket {
        Area::Logs
    } else {
        Area::Cache
    };
    let now = Timestamp::now();
    let url = storage
        .presign(area, &c.key, verb, audience, lifetime, now)
        .map_err(|e| Error::Usage(e.to_string()))?;
    if c.json {
        let expires = now + jiff::SignedDuration::from_secs(lifetime.as_secs() as i64);
        print_json(&json!({
            "url": url, "method": verb.as_str(), "for": audience.as_str(),
            "key": c.key, "expiresAt": expires.to_string(),
        }));
    } else {
        outln!("{url}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_lifetime("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_lifetime("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_lifetime("5"), Ok(Duration::from_secs(5)));
        for bad in ["", "0", "8d", "15x", "m", "-1s", "1.5h"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
