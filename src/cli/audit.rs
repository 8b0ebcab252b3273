//! `kici-admin audit [--org] [--action] [--since] [--until] [--limit] [--json]` (docs/secrets.md,
//! "Audit"): the secret audit log, newest first. `--since` and `--until` take RFC 3339, a date,
//! or a time ago (`30m`, `24h`, `7d`), turned into a timestamp here.

use argh::FromArgs;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, show},
    Globals,
};
use crate::Error;

/// Read the secret audit log: who set, deleted, rotated or resolved which secret (never values).
#[derive(FromArgs)]
#[argh(subcommand, name = "audit")]
pub struct AuditCmd {
    /// only this org
    #[argh(option)]
    pub org: Option<String>,
    /// only this action: setSecret, deleteSecret, deleteScope, renameScope, purge, rotateKey,
    /// resolve
    #[argh(option)]
    pub action: Option<String>,
    /// only this scope or environment name
    #[argh(option)]
    pub context: Option<String>,
    /// from this time on: RFC 3339, a date (2026-12-01) or a time ago (30m, 24h, 7d)
    #[argh(option)]
    pub since: Option<String>,
    /// before this time (same forms as --since)
    #[argh(option)]
    pub until: Option<String>,
    /// at most this many entries (default 100, at most 1000)
    #[argh(option)]
    pub limit: Option<u32>,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// A time filter as the API reads it: `<n>m|h|d` ago becomes RFC 3339; anything else is passed
/// on for the server to check.
pub fn time_filter(flag: &str, text: &str, now: Timestamp) -> Result<String, Error> {
    let text = text.trim();
    let unit = match text.chars().last() {
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Ok(text.to_owned()),
    };
    let digits = &text[..text.len() - 1];
    let ago = digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(unit))
        .and_then(|secs| now.checked_sub(SignedDuration::from_secs(secs)).ok());
    ago.map(|t| t.to_string()).ok_or_else(|| {
        Error::Usage(format!(
            "{flag} {text:?} is not a time: use RFC 3339 (2026-12-01T10:00:00Z), a date (2026-12-01) or a time ago (30m, 24h, 7d)"
        ))
    })
}

pub fn run(cmd: AuditCmd, globals: &Globals) -> Result<(), Error> {
    let now = Timestamp::now();
    let mut params = Vec::new();
    for (name, value) in [
        ("orgId", cmd.org.clone()),
        ("action", cmd.action.clone()),
        ("contextName", cmd.context.clone()),
    ] {
        if let Some(v) = value {
            params.push(format!("{name}={}", encode_component(&v)));
        }
    }
    if let Some(t) = &cmd.since {
        params.push(format!(
            "since={}",
            encode_component(&time_filter("--since", t, now)?)
        ));
    }
    if let Some(t) = &cmd.until {
        params.push(format!(
            "until={}",
            encode_component(&time_filter("--until", t, now)?)
        ));
    }
    if let Some(n) = cmd.limit {
        params.push(format!("limit={n}"));
    }
    let route = if params.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{}", params.join("&"))
    };
    let answer = AdminClient::from_globals(globals)?.get(&route)?;
    let entries = array_of(&answer, "entries", "GET /audit")?;
    show(&answer, cmd.json, |_| audit_table(&entries));
    Ok(())
}

/// `Timestamp | Action | Org | Context | Keys | By | Run / Job`, `-` for what is unset.
pub fn audit_table(entries: &[Value]) -> String {
    if entries.is_empty() {
        return "No audit entries found.".to_owned();
    }
    let header = "Timestamp | Action | Org | Context | Keys | By | Run / Job";
    let mut lines = vec![header.to_owned(), "-".repeat(header.len())];
    for e in entries {
        let cell = |k: &str| {
            Some(field(e, k))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into())
        };
        let keys: Vec<&str> = e["secret_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let keys = if keys.is_empty() {
            "-".to_owned()
        } else {
            keys.join(",")
        };
        let by = match (e["token_label"].as_str(), e["role"].as_str()) {
            (Some(label), Some(role)) => format!("{label} ({role})"),
            (None, Some(role)) => role.to_owned(),
            _ => cell("user_id"),
        };
        let run = match (e["run_id"].as_str(), e["job_id"].as_str()) {
            (Some(r), Some(j)) => format!("{r} / {j}"),
            (Some(r), None) => r.to_owned(),
            _ => "-".to_owned(),
        };
        let denied = if e["outcome"] == "denied" {
            " (denied)"
        } else {
            ""
        };
        lines.push(format!(
            "{} | {}{denied} | {} | {} | {keys} | {by} | {run}",
            cell("timestamp"),
            cell("action"),
            cell("org_id"),
            cell("context_name"),
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn relative_times() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        for (given, want) in [
            ("24h", "2026-12-04T12:00:00Z"),
            ("30m", "2026-12-05T11:30:00Z"),
            ("7d", "2026-11-28T12:00:00Z"),
            ("2026-12-01", "2026-12-01"),
        ] {
            assert_eq!(time_filter("--since", given, now).unwrap(), want, "{given}");
        }
        assert!(time_filter("--since", "xd", now).is_err());
        assert!(time_filter("--since", "99999999999999999d", now).is_err());
    }

    #[test]
    fn table() {
        assert_eq!(audit_table(&[]), "No audit entries found.");
        let rows = [
            json!({"timestamp": "2026-12-05T10:00:00.000Z", "action": "setSecret", "org_id": "acme",
                   "context_name": "aws/prod", "secret_keys": ["DB"], "token_label": "ci", "role": "admin",
                   "outcome": "allowed"}),
            json!({"timestamp": "2026-12-05T11:00:00.000Z", "action": "resolve", "org_id": "acme",
                   "context_name": "prod", "secret_keys": ["A", "B"], "token_label": "orchestrator", "role": "system",
                   "run_id": "r1", "job_id": "j1", "outcome": "allowed"}),
        ];
        let text = audit_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "2026-12-05T10:00:00.000Z | setSecret | acme | aws/prod | DB | ci (admin) | -"
        );
        assert_eq!(
            lines[3],
            "2026-12-05T11:00:00.000Z | resolve | acme | prod | A,B | orchestrator (system) | r1 / j1"
        );
    }
}
