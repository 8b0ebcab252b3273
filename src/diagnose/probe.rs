//! The I/O side of `diagnose`: asks PostgreSQL, the object store, GitHub and (when the daemon
//! runs) its Platform link and agents, and hands what it found to `checks`. Used by the admin
//! route `GET /diagnose` inside the daemon and by `kici-admin diagnose --env-file` on a stopped
//! instance, which passes no [`Daemon`].

use postgres::Client;
use serde_json::Value;

use super::{
    checks::{self, AgentFacts, AppAnswer, LinkFacts, WaitingJob},
    Check,
};
use crate::{
    crypto::SecretBox,
    db::{self, migrate},
    github::{app_jwt, AppKey, GitHubApi},
    runs::requirements::{patterns_from_json, Requirements},
    storage::{check as storage_check, Storage},
};

/// What only a running daemon knows.
#[derive(Debug, Clone, Default)]
pub struct Daemon {
    pub link: Option<LinkFacts>,
    pub agents: Vec<AgentFacts>,
}

/// Everything the checks need, gathered by the caller.
pub struct Inputs<'a> {
    pub configuration: Check,
    pub mode: &'a str,
    pub auto_migrate: bool,
    pub secrets: &'a SecretBox,
    pub github: &'a GitHubApi,
    pub storage: Option<&'a Storage>,
    /// `None`: the daemon is not running (direct mode).
    pub daemon: Option<&'a Daemon>,
}

const DB_FIRST: &str = "fix the database check first";

/// Every check, in the documented order.
pub fn run(inputs: &Inputs, db: Result<&mut Client, String>) -> Vec<Check> {
    let mut out = vec![inputs.configuration.clone()];
    let running = inputs.daemon.is_some();
    let version = db.and_then(|c| {
        c.query_one("SHOW server_version", &[])
            .map_err(|e| e.to_string())
            .and_then(|r| r.try_get::<_, String>(0).map_err(|e| e.to_string()))
            .map(|v| (c, v))
    });
    let (client, version) = match version {
        Ok((c, v)) => (Some(c), Ok(v)),
        Err(e) => (None, Err(e)),
    };
    out.push(checks::database(version.as_deref().map_err(String::as_str)));
    let Some(client) = client else {
        for name in ["migrations", "clock"] {
            out.push(Check::warn(
                name,
                "not checked: the database is unreachable",
                DB_FIRST,
            ));
        }
        out.push(storage(inputs, running));
        out.push(Check::warn(
            "github",
            "not checked: the database is unreachable",
            DB_FIRST,
        ));
        out.push(platform(inputs));
        out.push(Check::warn(
            "agents",
            "not checked: the database is unreachable",
            DB_FIRST,
        ));
        out.push(Check::warn(
            "queue",
            "not checked: the database is unreachable",
            DB_FIRST,
        ));
        return out;
    };
    out.push(match migrate::status(client) {
        Ok(statuses) => checks::migrations(&statuses, inputs.auto_migrate),
        Err(e) => Check::fail(
            "migrations",
            format!("cannot read schema_migrations: {e}"),
            DB_FIRST,
        ),
    });
    out.push(match skew(client) {
        Ok(s) => checks::clock(s),
        Err(e) => Check::warn(
            "clock",
            format!("cannot read the database's clock: {e}"),
            DB_FIRST,
        ),
    });
    out.push(storage(inputs, running));
    out.extend(github_apps(inputs, client));
    out.push(platform(inputs));
    let waiting = match waiting_jobs(client) {
        Ok(jobs) => jobs,
        Err(e) => {
            out.push(Check::warn(
                "agents",
                format!("cannot read the queue: {e}"),
                DB_FIRST,
            ));
            return out;
        }
    };
    let agents = inputs.daemon.map(|d| d.agents.as_slice());
    out.push(checks::agents(agents, waiting.len()));
    out.push(checks::queue(&waiting, agents));
    out
}

fn storage(inputs: &Inputs, running: bool) -> Check {
    match inputs.storage {
        None => checks::storage(None, &[], running),
        Some(s) => checks::storage(Some(&s.describe()), &storage_check::run(s), running),
    }
}

fn platform(inputs: &Inputs) -> Check {
    let link = inputs.daemon.and_then(|d| d.link.as_ref());
    checks::platform(inputs.mode, inputs.daemon.is_some(), link)
}

/// This host's clock minus the database's, in seconds, judged at the middle of the round trip.
fn skew(client: &mut Client) -> Result<f64, String> {
    let before = jiff::Timestamp::now();
    let row = client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .map_err(|e| e.to_string())?;
    let after = jiff::Timestamp::now();
    let db: f64 = row.try_get(0).map_err(|e| e.to_string())?;
    let mid = (before.as_millisecond() + after.as_millisecond()) as f64 / 2000.0;
    Ok(mid - db)
}

/// One line per GitHub App source.
fn github_apps(inputs: &Inputs, client: &mut Client) -> Vec<Check> {
    let sources = match db::sources::list(client) {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::warn(
                "github",
                format!("cannot list the sources: {e}"),
                DB_FIRST,
            )]
        }
    };
    let apps: Vec<&Value> = sources
        .iter()
        .filter(|s| s["provider"] == "github")
        .collect();
    if apps.is_empty() {
        return vec![Check::ok("github", "no GitHub App sources")];
    }
    apps.iter()
        .map(|s| {
            let key = s["routingKey"].as_str().unwrap_or("");
            let has_secret = s["hasWebhookSecret"].as_bool() == Some(true);
            let answer = ask_github(inputs, client, s);
            checks::github_app(key, has_secret, &answer)
        })
        .collect()
}

fn ask_github(inputs: &Inputs, client: &mut Client, source: &Value) -> AppAnswer {
    let id = source["id"].as_str().unwrap_or("");
    let key = source["routingKey"].as_str().unwrap_or("");
    let app_id = source["config"]["appId"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| source["config"]["appId"].as_i64().map(|n| n.to_string()))
        .unwrap_or_else(|| key.trim_start_matches("github:").to_owned());
    let scope = db::secrets::github_scope(id);
    let pem = match db::secrets::get(client, inputs.secrets, &scope, db::sources::PRIVATE_KEY) {
        Ok(Some(pem)) => pem,
        Ok(None) => return AppAnswer::NoKey("no private key stored".into()),
        Err(e) => {
            return AppAnswer::NoKey(format!(
                "the private key cannot be read ({e}); was KICI_SECRET_KEY changed?"
            ))
        }
    };
    let key = match AppKey::from_pem(&pem) {
        Ok(k) => k,
        Err(e) => return AppAnswer::NoKey(format!("the stored private key is unusable: {e}")),
    };
    let jwt = app_jwt(&key, &app_id, jiff::Timestamp::now().as_second());
    match inputs
        .github
        .call("GET", "/app", &format!("Bearer {jwt}"), None)
    {
        Err(e) => AppAnswer::Unreachable(e.to_string()),
        Ok((status, body)) if !(200..300).contains(&status) => {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let message = v["message"].as_str().unwrap_or("(no message)").to_owned();
            AppAnswer::Rejected { status, message }
        }
        Ok((_, body)) => {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            AppAnswer::Accepted {
                app_id: v["id"].as_i64().unwrap_or(0),
                installations: v["installations_count"].as_u64(),
                checks: v["permissions"]["checks"].as_str().map(str::to_owned),
            }
        }
    }
}

/// Jobs queued and ready for an agent, oldest first (at most 1000 looked at).
fn waiting_jobs(client: &mut Client) -> Result<Vec<WaitingJob>, String> {
    let rows = client
        .query(
            "SELECT workflow_name || ' / ' || job_name, runs_on_labels, runs_on_patterns,
                    exclude_labels, exclude_patterns,
                    extract(epoch FROM now() - created_at)::bigint
               FROM dispatch_queue
              WHERE status = 'pending' AND (expires_at IS NULL OR expires_at > now())
              ORDER BY created_at LIMIT 1000",
            &[],
        )
        .map_err(|e| e.to_string())?;
    let strings = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    rows.iter()
        .map(|r| {
            let get = |i: usize| r.try_get::<_, Value>(i).map_err(|e| e.to_string());
            Ok(WaitingJob {
                name: r.try_get(0).map_err(|e| e.to_string())?,
                requirements: Requirements {
                    labels: strings(get(1)?),
                    patterns: patterns_from_json(&get(2)?),
                    exclude_labels: strings(get(3)?),
                    exclude_patterns: patterns_from_json(&get(4)?),
                },
                waiting_secs: r.try_get(5).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}
