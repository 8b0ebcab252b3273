//! The checks of `diagnose` as pure functions: what was found → one line with its fix. The
//! thresholds are here, with why.

use std::collections::BTreeMap;

use super::Check;
use crate::{
    db::migrate::{MigrationStatus, State},
    runs::requirements::{Compiled, Requirements},
    storage::check::Line,
};

/// Beyond this the clock is worth a warning; beyond [`SKEW_FAIL_SECS`] GitHub refuses App JWTs
/// (their `iat` is backdated 60 s) and presigned URLs start to expire early or late.
pub const SKEW_WARN_SECS: f64 = 5.0;
pub const SKEW_FAIL_SECS: f64 = 60.0;

const START: &str = "start the orchestrator (kici-admin orchestrator start), then run \
                     kici-admin diagnose without --env-file";

pub fn configuration(mode: &str, problems: &[String], warnings: &[String]) -> Check {
    if !problems.is_empty() {
        return Check::fail(
            "configuration",
            format!("invalid: {}", problems.join("; ")),
            "correct these KICI_* variables in the instance's env file",
        );
    }
    if !warnings.is_empty() {
        return Check::warn(
            "configuration",
            format!("mode {mode}, with warnings: {}", warnings.join("; ")),
            "correct the variables the warnings name in the instance's env file",
        );
    }
    Check::ok("configuration", format!("valid (mode {mode})"))
}

pub fn database(version: Result<&str, &str>) -> Check {
    match version {
        Ok(v) => Check::ok("database", format!("reachable, PostgreSQL {v}")),
        Err(e) => Check::fail(
            "database",
            format!("unreachable: {e}"),
            "check KICI_DATABASE_URL (host, port, user, password, sslmode) and that PostgreSQL \
             is running and reachable from here",
        ),
    }
}

pub fn migrations(statuses: &[MigrationStatus], auto_migrate: bool) -> Check {
    let named = |state: State| -> Vec<&str> {
        statuses
            .iter()
            .filter(|s| s.status == state)
            .map(|s| s.name.as_str())
            .collect()
    };
    let (changed, unknown, pending) = (
        named(State::Changed),
        named(State::Unknown),
        named(State::Pending),
    );
    if !unknown.is_empty() {
        return Check::fail(
            "migrations",
            format!(
                "applied but unknown to this binary: {} (a newer version migrated this database)",
                unknown.join(", ")
            ),
            "run the kici-admin version that applied them, or restore the database",
        );
    }
    if !changed.is_empty() {
        return Check::fail(
            "migrations",
            format!("changed after they were applied: {}", changed.join(", ")),
            "use the binary whose migrations were applied; never edit an applied migration",
        );
    }
    if !pending.is_empty() {
        let fix = if auto_migrate {
            "they are applied at the next start; or run kici-admin db migrate now"
        } else {
            "KICI_AUTO_MIGRATE=false: run kici-admin db migrate before starting"
        };
        return Check::warn(
            "migrations",
            format!("{} pending: {}", pending.len(), pending.join(", ")),
            fix,
        );
    }
    Check::ok("migrations", format!("all {} applied", statuses.len()))
}

/// `skew_secs`: this host's clock minus the database's.
pub fn clock(skew_secs: f64) -> Check {
    // Rounded first, so a skew of -0.01 s reads 0.0 and not -0.0.
    let shown = (skew_secs * 10.0).round() / 10.0 + 0.0;
    let said = format!("{shown:.1} s against the database");
    let fix = "sync this host's clock and the database host's (NTP, e.g. systemd-timesyncd)";
    match skew_secs.abs() {
        s if s > SKEW_FAIL_SECS => Check::fail(
            "clock",
            format!("{said}: GitHub refuses App tokens and presigned URLs misbehave"),
            fix,
        ),
        s if s > SKEW_WARN_SECS => Check::warn("clock", said, fix),
        _ => Check::ok("clock", said),
    }
}

/// `described`: the store as `Storage::describe` says it (`None`: not configured). `running`:
/// false when the daemon is stopped, so probes through its own routes cannot answer.
pub fn storage(described: Option<&str>, lines: &[Line], running: bool) -> Check {
    let Some(described) = described else {
        return Check::ok(
            "storage",
            "not configured: caches are off and step logs stay in the database",
        );
    };
    let failed: Vec<&Line> = lines.iter().filter(|l| !l.ok).collect();
    let (through_daemon, other): (Vec<&Line>, Vec<&Line>) =
        failed.iter().partition(|l| l.check == "signed-urls");
    if let Some(first) = other.first() {
        let names: Vec<&str> = other.iter().map(|l| l.check.as_str()).collect();
        return Check::fail(
            "storage",
            format!(
                "{described}: {} of {} probe(s) failed ({}); {} {}: {}",
                other.len(),
                lines.len(),
                names.join(", "),
                first.check,
                first.target,
                first.detail
            ),
            format!(
                "{} (then kici-admin storage check --env-file <the instance's env file> \
                 re-tests it)",
                first.detail
            ),
        );
    }
    if let Some(l) = through_daemon.first() {
        if !running {
            return Check::warn(
                "storage",
                format!("{described}: folder OK; signed URLs not checked: not running"),
                START,
            );
        }
        return Check::fail(
            "storage",
            format!("{described}: {} {}: {}", l.check, l.target, l.detail),
            "set KICI_STORAGE_FS_BASE_URL to the orchestrator's URL as agents reach it",
        );
    }
    let checked: Vec<&str> = lines.iter().map(|l| l.check.as_str()).collect();
    Check::ok("storage", format!("{described}: {} OK", checked.join(", ")))
}

/// What `GET /app` said for one GitHub App source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppAnswer {
    /// No private key stored, or it cannot sign: nothing was sent.
    NoKey(String),
    Rejected {
        status: u16,
        message: String,
    },
    Unreachable(String),
    /// GitHub took the JWT: the App's installation count and its `checks` permission.
    Accepted {
        app_id: i64,
        installations: Option<u64>,
        checks: Option<String>,
    },
}

/// One line per GitHub App source: the App JWT accepted by `GET /app`, installed somewhere, a
/// webhook secret stored, and `checks: write` granted (check-run reporting needs it).
pub fn github_app(routing_key: &str, has_webhook_secret: bool, answer: &AppAnswer) -> Check {
    let name = routing_key;
    let update = format!("kici-admin source update {routing_key}");
    let mut problems: Vec<(super::Level, String, String)> = Vec::new();
    let fail = super::Level::Fail;
    let warn = super::Level::Warn;
    match answer {
        AppAnswer::NoKey(why) => problems.push((
            fail,
            why.clone(),
            format!("{update} --private-key @app.pem (a key generated on the App's settings page)"),
        )),
        AppAnswer::Rejected { status, message } => problems.push((
            fail,
            format!("GitHub refused the App JWT (HTTP {status}: {message})"),
            format!(
                "the stored private key is not this App's (or was deleted on GitHub), or this \
                 host's clock is off: generate a new key on the App's settings page and run \
                 {update} --private-key @app.pem"
            ),
        )),
        AppAnswer::Unreachable(e) => problems.push((
            fail,
            format!("GitHub unreachable: {e}"),
            "check KICI_GITHUB_API_URL and this host's network (proxy, firewall, DNS)".to_owned(),
        )),
        AppAnswer::Accepted {
            installations,
            checks,
            ..
        } => {
            if *installations == Some(0) {
                problems.push((
                    warn,
                    "the App is installed nowhere".to_owned(),
                    "install it on the organisations or repositories to build (the App's page, \
                     Install App)"
                        .to_owned(),
                ));
            }
            if checks.as_deref() != Some("write") {
                let has = checks.as_deref().unwrap_or("none");
                problems.push((
                    warn,
                    format!("the App has checks: {has}, check runs need checks: write"),
                    "App settings, Permissions, Checks: Read and write; then accept the new \
                     permission on each installation"
                        .to_owned(),
                ));
            }
        }
    }
    if !has_webhook_secret {
        problems.push((
            fail,
            "no webhook secret stored: every delivery is refused".to_owned(),
            format!("{update} --webhook-secret @secret.txt (the App's webhook secret)"),
        ));
    }
    let check = format!("github:{}", name.strip_prefix("github:").unwrap_or(name));
    let Some(level) = problems.iter().map(|p| p.0).max() else {
        let installs = match answer {
            AppAnswer::Accepted {
                installations: Some(n),
                ..
            } => format!(", {n} installation(s)"),
            _ => String::new(),
        };
        return Check::ok(
            &check,
            format!("App JWT accepted{installs}, webhook secret stored, checks: write"),
        );
    };
    Check {
        check,
        level,
        message: problems
            .iter()
            .map(|p| p.1.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        fix: Some(
            problems
                .iter()
                .map(|p| p.2.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The Platform link as the running daemon sees it (`/ready`'s `platform`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub state: String,
    pub since: String,
    pub last_error: Option<String>,
    pub attempts: u32,
}

/// `link`: `None` when the daemon is not running (or has no link: independent mode).
pub fn platform(mode: &str, running: bool, link: Option<&LinkFacts>) -> Check {
    if mode == "independent" {
        return Check::ok("platform", "independent mode: no Platform link");
    }
    let Some(link) = link.filter(|_| running) else {
        return Check::warn("platform", "link state unknown: not running", START);
    };
    if link.state == "connected" {
        return Check::ok("platform", format!("connected since {}", link.since));
    }
    let error = link
        .last_error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    Check::fail(
        "platform",
        format!(
            "{} since {} after {} attempt(s){error}",
            link.state, link.since, link.attempts
        ),
        "check that the Platform at KICI_PLATFORM_URL is up and reachable from this host and \
         that KICI_PLATFORM_TOKEN is the orchestrator key it issued; the link reconnects by \
         itself (direct webhooks and agents are unaffected)",
    )
}

/// A connected agent (this orchestrator's; others on the same database have their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    pub id: String,
    pub labels: Vec<String>,
    pub taint: Vec<String>,
    pub free_slots: u32,
}

/// A queued job waiting for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingJob {
    pub name: String,
    pub requirements: Requirements,
    pub waiting_secs: i64,
}

pub fn agents(agents: Option<&[AgentFacts]>, waiting: usize) -> Check {
    let Some(agents) = agents else {
        return Check::warn("agents", "not known: not running", START);
    };
    if agents.is_empty() {
        if waiting == 0 {
            return Check::ok("agents", "none connected (no job is waiting)");
        }
        return Check::warn(
            "agents",
            format!("none connected, {waiting} job(s) waiting"),
            "start an agent with a token from kici-admin agent-token create, pointed at this \
             orchestrator",
        );
    }
    let free: u32 = agents.iter().map(|a| a.free_slots).sum();
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).take(10).collect();
    Check::ok(
        "agents",
        format!(
            "{} connected ({}), {free} free slot(s)",
            agents.len(),
            ids.join(", ")
        ),
    )
}

/// The labels a job asks for, as people write them in `runsOn`.
fn wanted(req: &Requirements) -> String {
    let mut parts: Vec<String> = req.labels.clone();
    parts.extend(
        req.patterns
            .iter()
            .map(|p| format!("/{}/{}", p.source, p.flags)),
    );
    parts.extend(req.exclude_labels.iter().map(|l| format!("!{l}")));
    parts.extend(
        req.exclude_patterns
            .iter()
            .map(|p| format!("!/{}/{}", p.source, p.flags)),
    );
    if parts.is_empty() {
        "(any agent)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Jobs waiting for labels no connected agent has, grouped by what they ask for.
pub fn queue(jobs: &[WaitingJob], agents: Option<&[AgentFacts]>) -> Check {
    if jobs.is_empty() {
        return Check::ok("queue", "no job waiting for an agent");
    }
    let Some(agents) = agents else {
        return Check::warn(
            "queue",
            format!(
                "{} job(s) waiting; which agents serve them: not running",
                jobs.len()
            ),
            START,
        );
    };
    let mut compiled = Compiled::default();
    let mut unserved: BTreeMap<String, (usize, i64, &str)> = BTreeMap::new();
    for job in jobs {
        let served = agents
            .iter()
            .any(|a| compiled.eligible(&a.labels, &a.taint, &job.requirements));
        if !served {
            let entry =
                unserved
                    .entry(wanted(&job.requirements))
                    .or_insert((0, 0, job.name.as_str()));
            entry.0 += 1;
            entry.1 = entry.1.max(job.waiting_secs);
        }
    }
    if unserved.is_empty() {
        return Check::ok(
            "queue",
            format!(
                "{} job(s) waiting, each servable by a connected agent",
                jobs.len()
            ),
        );
    }
    let said: Vec<String> = unserved
        .iter()
        .map(|(labels, (n, secs, first))| {
            format!("{n} job(s) (e.g. {first}, waiting {secs} s) need runsOn [{labels}]")
        })
        .collect();
    let labels: Vec<&str> = unserved.keys().map(String::as_str).collect();
    Check::warn(
        "queue",
        format!("no connected agent has the labels: {}", said.join("; ")),
        format!(
            "start an agent offering them (KICI_LABELS={}) or change the workflow's runsOn",
            labels.join(" / ")
        ),
    )
}

#[cfg(test)]
mod tests;
