//! Embedded, checksummed migrations. Every `migrations/NNNN_name.sql` is compiled into the binary
//! (build.rs); each is applied in its own transaction and recorded in `schema_migrations` with the
//! SHA-256 of its statements (comments and spacing left out: `checksum.rs`). A session-level
//! `pg_advisory_lock` serialises instances that start together: the first applies, the others
//! wait, then find nothing pending. A file whose statements changed after it was applied, or an
//! applied migration this binary does not know, stops everything with a message naming it:
//! guessing would corrupt a production schema.

use std::time::Instant;

use postgres::Client;
use serde::Serialize;

use super::{DbError, MIGRATION_LOCK_KEY};

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration of this build, in name order.
pub static MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

use super::checksum::checksum;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file's statements differ from what was applied.
    Changed,
    /// Recorded in the database but unknown to this binary (a newer version migrated it).
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub name: String,
    pub status: State,
    #[serde(rename = "appliedAt", skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub name: String,
    pub millis: u128,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// What is applied and what is pending. Takes no lock and creates nothing.
pub fn status(client: &mut Client) -> Result<Vec<MigrationStatus>, DbError> {
    let recorded = recorded(client)?;
    Ok(compare(MIGRATIONS, &recorded))
}

/// Pure comparison of this build's migrations with the rows of `schema_migrations`
/// (name, checksum, applied-at ISO text).
fn compare(known: &[Migration], recorded: &[(String, String, String)]) -> Vec<MigrationStatus> {
    let mut out: Vec<MigrationStatus> = known
        .iter()
        .map(|m| match recorded.iter().find(|r| r.0 == m.name) {
            Some((_, sum, at)) => MigrationStatus {
                name: m.name.to_owned(),
                status: if super::checksum::matches(m.name, m.sql, sum) {
                    State::Applied
                } else {
                    State::Changed
                },
                applied_at: Some(at.clone()),
            },
            None => MigrationStatus {
                name: m.name.to_owned(),
                status: State::Pending,
                applied_at: None,
            },
        })
        .collect();
    for (name, _, at) in recorded {
        if !known.iter().any(|m| m.name == name) {
            out.push(MigrationStatus {
                name: name.clone(),
                status: State::Unknown,
                applied_at: Some(at.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn recorded(client: &mut Client) -> Result<Vec<(String, String, String)>, DbError> {
    const CX: &str = "reading schema_migrations";
    let row = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .map_err(DbError::query("checking for the schema_migrations table"))?;
    let exists: bool = DbError::column(&row, 0, CX)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT name, checksum, to_char(applied_at AT TIME ZONE 'UTC', {}) FROM schema_migrations ORDER BY name",
                super::ISO
            ),
            &[],
        )
        .map_err(DbError::query(CX))?;
    rows.iter()
        .map(|r| {
            Ok((
                DbError::column(r, 0, CX)?,
                DbError::column(r, 1, CX)?,
                DbError::column(r, 2, CX)?,
            ))
        })
        .collect()
}

/// Refuses to go on when the database holds a changed or unknown migration.
pub fn check_consistent(statuses: &[MigrationStatus]) -> Result<(), DbError> {
    for s in statuses {
        match s.status {
            State::Changed => {
                return Err(DbError::Refused(format!(
                    "migration {} was changed after it was applied (its checksum differs from schema_migrations); \
                     restore the original migrations/{}.sql and put the change in a new migration",
                    s.name, s.name
                )))
            }
            State::Unknown => {
                return Err(DbError::Refused(format!(
                    "the database has migration {} applied, which this kici-admin ({}) does not know; \
                     run the newer kici-admin that applied it",
                    s.name,
                    env!("CARGO_PKG_VERSION")
                )))
            }
            State::Applied | State::Pending => {}
        }
    }
    Ok(())
}

/// Applies every pending migration under the migration lock. Returns what this call applied
/// (empty when another instance got there first).
pub fn migrate(client: &mut Client) -> Result<Vec<Applied>, DbError> {
    log::info!("Acquiring migration lock...");
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .map_err(DbError::query("acquiring the migration lock"))?;
    log::info!("Migration lock acquired");
    let result = migrate_locked(client);
    // Released with the session anyway; unlocking early lets waiting instances proceed now.
    if let Err(e) = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]) {
        log::warn!(
            "releasing the migration lock failed: {}",
            super::describe(&e)
        );
    }
    result
}

fn migrate_locked(client: &mut Client) -> Result<Vec<Applied>, DbError> {
    client
        .batch_execute(CREATE_TABLE)
        .map_err(DbError::query("creating schema_migrations"))?;
    let statuses = status(client)?;
    check_consistent(&statuses)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if !statuses
            .iter()
            .any(|s| s.name == m.name && s.status == State::Pending)
        {
            continue;
        }
        let started = Instant::now();
        let res = (|| {
            let mut tx = client.transaction()?;
            tx.batch_execute(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                &[&m.name, &checksum(m.sql)],
            )?;
            tx.commit()
        })();
        if let Err(e) = res {
            log::error!("{} ... FAILED", m.name);
            return Err(DbError::Refused(format!(
                "migration {} failed: {}",
                m.name,
                super::describe(&e)
            )));
        }
        let millis = started.elapsed().as_millis();
        log::info!("{} ... OK ({millis}ms)", m.name);
        applied.push(Applied {
            name: m.name.to_owned(),
            millis,
        });
    }
    if applied.is_empty() {
        log::info!("Database schema is up to date");
    } else {
        log::info!("Applied {} migration(s)", applied.len());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Migration = Migration {
        name: "0001_a",
        sql: "CREATE TABLE a ();",
    };
    const B: Migration = Migration {
        name: "0002_b",
        sql: "CREATE TABLE b ();",
    };

    fn row(m: &Migration, sum: Option<&str>) -> (String, String, String) {
        (
            m.name.into(),
            sum.map(str::to_owned).unwrap_or_else(|| checksum(m.sql)),
            "2026-01-01T00:00:00.000Z".into(),
        )
    }

    #[test]
    fn embedded_migrations_are_sorted_and_named() {
        assert!(!MIGRATIONS.is_empty());
        assert!(MIGRATIONS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(MIGRATIONS[0].name, "0001_initial");
    }

    #[test]
    fn compare_reports_each_state() {
        let s = compare(&[A, B], &[]);
        assert!(s.iter().all(|s| s.status == State::Pending));
        let s = compare(&[A, B], &[row(&A, None)]);
        assert_eq!(
            (s[0].status.clone(), s[1].status.clone()),
            (State::Applied, State::Pending)
        );
        assert_eq!(s[0].applied_at.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        let s = compare(&[A, B], &[row(&A, Some("00")), row(&B, None)]);
        assert_eq!(s[0].status, State::Changed);
        let err = check_consistent(&s).unwrap_err().to_string();
        assert!(err.contains("0001_a") && err.contains("changed"), "{err}");
        let s = compare(&[A], &[row(&A, None), row(&B, None)]);
        assert_eq!(s[1].status, State::Unknown);
        assert!(check_consistent(&s)
            .unwrap_err()
            .to_string()
            .contains("0002_b"));
        assert!(check_consistent(&compare(&[A, B], &[row(&A, None)])).is_ok());
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The statements of shipped migrations never change (their comments may): a failure here
    /// means a shipped file's SQL changed, which every existing database would refuse.
    #[test]
    fn shipped_migrations_keep_their_checksums() {
        let pinned = [
            (
                "0001_initial",
                "11ed5546fc436d56da76921222c600094c3928069248458e22966469fdb30cf2",
            ),
            (
                "0002_execution",
                "c26c17ae75a79feb31b234bac516472f2941ee5535605a9b38091b8d7721f4a6",
            ),
            (
                "0003_agents",
                "9a2308ca86cf86deed0e0944dd3b607bff92138753e5b712e06aa97ef004ebb7",
            ),
            (
                "0004_delivery_leases",
                "03cb5314db5ebc5bffacd10da39677d30b8d82cb829ee75c3e7244289bbb0872",
            ),
            (
                "0005_agent_identity",
                "3e2686ca01d3c41e82478e9ca9b091e92e967d9e9d9009f93aa7036b15a7a198",
            ),
        ];
        for (name, sum) in pinned {
            let m = MIGRATIONS.iter().find(|m| m.name == name).expect(name);
            assert_eq!(checksum(m.sql), sum, "{name}");
        }
    }
}
