//! `kici-admin db migrate [--status]`: directly against the database when a database URL is
//! known (`--database-url`, or `KICI_DATABASE_URL` when no admin URL is given) — the only way to
//! migrate while the daemon is down, as `KICI_AUTO_MIGRATE=false` requires — otherwise through
//! the admin API (`POST /db/migrate`, `GET /db/migrate/status`), with the same output.

use crate::cli::output::outln;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, AdminClient, TOKEN_REQUIRED},
    output, Globals,
};
use crate::{
    db::{migrate, Connector},
    Error,
};

/// Database administration.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "db")]
pub struct DbCmd {
    #[argh(subcommand)]
    pub command: DbSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum DbSub {
    Migrate(MigrateCmd),
}

/// Apply pending migrations (under a lock, safe with running instances), or list them with
/// --status.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "migrate")]
pub struct MigrateCmd {
    /// list every migration as OK or PENDING without applying anything
    #[argh(switch)]
    pub status: bool,
    /// print JSON for scripts
    #[argh(switch)]
    pub json: bool,
    /// the PostgreSQL URL to migrate directly (default: $KICI_DATABASE_URL when no --url or
    /// $KICI_ADMIN_URL is given; without any, the running orchestrator migrates through its API)
    #[argh(option)]
    pub database_url: Option<String>,
}

pub fn run(cmd: DbCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        DbSub::Migrate(m) => match direct_url(&m, globals) {
            Some(url) => migrate_direct(&m, &url),
            None => migrate_through_api(&m, globals),
        },
    }
}

/// The database to migrate directly, if any: `--database-url`, else `$KICI_DATABASE_URL` unless
/// an admin URL (`--url`, `$KICI_ADMIN_URL`) says to go through the API.
fn direct_url(m: &MigrateCmd, globals: &Globals) -> Option<String> {
    if let Some(url) = m.database_url.clone().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    let admin_url_given = globals.url.as_ref().is_some_and(|u| !u.is_empty())
        || std::env::var_os("KICI_ADMIN_URL").is_some_and(|v| !v.is_empty());
    match std::env::var("KICI_DATABASE_URL") {
        Ok(url) if !url.is_empty() && !admin_url_given => Some(url),
        _ => None,
    }
}

fn migrate_direct(m: &MigrateCmd, url: &str) -> Result<(), Error> {
    crate::install_crypto_provider();
    let mut client = Connector::from_url(url)?.connect()?;
    if m.status {
        let statuses = migrate::status(&mut client)?;
        if m.json {
            output::print_json(&json!({ "migrations": statuses }));
        } else {
            print_nonempty(&status_lines(&statuses));
        }
        return migrate::check_consistent(&statuses).map_err(Error::from);
    }
    let applied = migrate::migrate(&mut client)?;
    let names: Vec<String> = applied.into_iter().map(|a| a.name).collect();
    if m.json {
        output::print_json(&json!({ "applied": names.len(), "migrations": names }));
    } else {
        outln!("{}", applied_lines(&names));
    }
    Ok(())
}

fn migrate_through_api(m: &MigrateCmd, globals: &Globals) -> Result<(), Error> {
    // Without a token the user may as well have meant the direct mode: say how to get either.
    let client = AdminClient::from_globals(globals).map_err(|e| match e {
        Error::Usage(message) if message == TOKEN_REQUIRED => Error::Usage(
            "db migrate needs a database: pass --database-url postgresql://user:password@host:5432/db \
             or set KICI_DATABASE_URL to migrate it directly, or pass --token (or set KICI_ADMIN_TOKEN) \
             to have the running orchestrator migrate it"
                .into(),
        ),
        e => e,
    })?;
    if m.status {
        let route = "/db/migrate/status";
        let answer = client.get(route)?;
        let statuses = array_of(&answer, "migrations", route)?
            .iter()
            .map(status_of)
            .collect::<Vec<_>>();
        if m.json {
            output::print_json_camel(&answer);
        } else {
            print_nonempty(&status_lines(&statuses));
        }
        return migrate::check_consistent(&statuses).map_err(Error::from);
    }
    let route = "/db/migrate";
    let answer = client.post(route, &json!({}))?;
    if m.json {
        output::print_json_camel(&answer);
    } else {
        let names: Vec<String> = array_of(&answer, "migrations", route)?
            .iter()
            .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_owned))
            .collect();
        outln!("{}", applied_lines(&names));
    }
    Ok(())
}

/// One entry of `GET /db/migrate/status`; a status this build does not know reads as unknown.
fn status_of(entry: &Value) -> migrate::MigrationStatus {
    let status = match entry.get("status").and_then(Value::as_str) {
        Some("applied") => migrate::State::Applied,
        Some("pending") => migrate::State::Pending,
        Some("changed") => migrate::State::Changed,
        _ => migrate::State::Unknown,
    };
    migrate::MigrationStatus {
        name: output::field(entry, "name"),
        status,
        applied_at: output::opt_field(entry, "appliedAt"),
    }
}

/// `db migrate --status` text (docs/operations.md, "Admin CLI"; CHANGED and UNKNOWN are ours).
fn status_lines(statuses: &[migrate::MigrationStatus]) -> String {
    statuses
        .iter()
        .map(|s| {
            let label = match s.status {
                migrate::State::Applied => "OK",
                migrate::State::Pending => "PENDING",
                migrate::State::Changed => "CHANGED",
                migrate::State::Unknown => "UNKNOWN",
            };
            format!(
                "  {} {} {}",
                output::pad(label, 8),
                output::pad(&s.name, 50),
                s.applied_at.as_deref().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_nonempty(text: &str) {
    if !text.is_empty() {
        outln!("{text}");
    }
}

/// `db migrate` text for the migrations this call applied.
fn applied_lines(names: &[String]) -> String {
    if names.is_empty() {
        return "Database schema is up to date.".to_owned();
    }
    let mut lines = vec![format!("Applied {} migration(s).", names.len())];
    lines.extend(names.iter().map(|n| format!("  OK  {n}")));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_from_the_api_answer() {
        let answer = json!({"migrations": [
            {"name": "0001_initial", "status": "applied", "appliedAt": "2026-11-28T01:57:00.123Z"},
            {"name": "0002_next", "status": "pending"}
        ]});
        let statuses: Vec<_> = array_of(&answer, "migrations", "r")
            .unwrap()
            .iter()
            .map(status_of)
            .collect();
        assert_eq!(
            status_lines(&statuses),
            format!(
                "  OK       0001_initial{} 2026-11-28T01:57:00.123Z\n  PENDING  0002_next{} -",
                " ".repeat(38),
                " ".repeat(41)
            )
        );
        assert!(migrate::check_consistent(&statuses).is_ok());
    }

    #[test]
    fn a_changed_migration_reported_by_the_api_fails_the_command() {
        let changed = status_of(&json!({"name": "0001_initial", "status": "changed"}));
        assert!(status_lines(std::slice::from_ref(&changed)).starts_with("  CHANGED  0001_initial"));
        assert!(migrate::check_consistent(&[changed]).is_err());
    }

    #[test]
    fn applied_text() {
        assert_eq!(applied_lines(&[]), "Database schema is up to date.");
        assert_eq!(
            applied_lines(&["0001_a".into(), "0002_b".into()]),
            "Applied 2 migration(s).\n  OK  0001_a\n  OK  0002_b"
        );
    }
}
