//! `kici-admin db migrate [--status]`: directly against the database when a database URL is
//! known (`--database-url`, or `KICI_DATABASE_URL` when no admin URL is given) — the only way to
//! migrate while the daemon is down, as `KICI_AUTO_MIGRATE=false` requires.

use argh::FromArgs;
use serde_json::json;

use super::{output, Globals};
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
    /// the PostgreSQL URL to migrate directly (default: $KICI_DATABASE_URL when no --url is given)
    #[argh(option)]
    pub database_url: Option<String>,
}

pub fn run(cmd: DbCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        DbSub::Migrate(m) => migrate_cmd(m, globals),
    }
}

fn direct_url(m: &MigrateCmd, globals: &Globals) -> Result<String, Error> {
    if let Some(url) = m.database_url.clone().filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    let admin_url_given =
        globals.url.is_some() || std::env::var_os("KICI_ADMIN_URL").is_some_and(|v| !v.is_empty());
    match std::env::var("KICI_DATABASE_URL") {
        Ok(url) if !url.is_empty() && !admin_url_given => Ok(url),
        _ => Err(Error::Usage(
            "db migrate needs a database: pass --database-url postgresql://user:password@host:5432/db \
             or set KICI_DATABASE_URL (migrating through the admin API with --url is not available in this build)"
                .into(),
        )),
    }
}

fn migrate_cmd(m: MigrateCmd, globals: &Globals) -> Result<(), Error> {
    let url = direct_url(&m, globals)?;
    crate::install_crypto_provider();
    let mut client = Connector::from_url(&url)?.connect()?;
    if m.status {
        let statuses = migrate::status(&mut client)?;
        if m.json {
            output::print_json(&json!({ "migrations": statuses }));
        } else {
            for s in &statuses {
                let label = match s.status {
                    migrate::State::Applied => "OK",
                    migrate::State::Pending => "PENDING",
                    migrate::State::Changed => "CHANGED",
                    migrate::State::Unknown => "UNKNOWN",
                };
                println!(
                    "  {} {} {}",
                    output::pad(label, 8),
                    output::pad(&s.name, 50),
                    s.applied_at.as_deref().unwrap_or("-")
                );
            }
        }
        return migrate::check_consistent(&statuses).map_err(Error::from);
    }
    let applied = migrate::migrate(&mut client)?;
    if m.json {
        let names: Vec<&str> = applied.iter().map(|a| a.name.as_str()).collect();
        output::print_json(&json!({ "applied": applied.len(), "migrations": names }));
    } else if applied.is_empty() {
        println!("Database schema is up to date.");
    } else {
        println!("Applied {} migration(s).", applied.len());
        for a in &applied {
            println!("  OK  {}", a.name);
        }
    }
    Ok(())
}
