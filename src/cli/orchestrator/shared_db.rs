//! Which instances on this host share a database (docs/operations.md, "Instances"): `uninstall`
//! must not advise dropping a database another instance still uses, and `install` warns when
//! it is pointed at one. Two URLs name the same database when scheme-less host, port and
//! database name agree; user, password and query options do not matter.

use std::path::PathBuf;

use crate::cli::{instance, orchestrator::files};

/// `host:port/dbname` of a `postgres://` / `postgresql://` URL (lowercase host, default port
/// 5432, default database the user's name as libpq does), or `None` for other forms.
pub fn database_identity(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u.split(':').next().unwrap_or_default(), h),
        None => ("", authority),
    };
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':').unwrap_or_default()),
            None => (hostport.to_owned(), ""),
        },
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), p),
            None => (hostport.to_ascii_lowercase(), ""),
        },
    };
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    let port = if port.is_empty() { "5432" } else { port };
    let db = if db.is_empty() { user } else { db };
    Some(format!("{host}:{port}/{db}"))
}

/// The other registered instances (name, folder) whose env file, when readable, names the same
/// database as `database_url`.
pub fn instances_on(database_url: &str, except: &str) -> Vec<(String, PathBuf)> {
    let Some(wanted) = database_identity(database_url) else {
        return Vec::new();
    };
    files::index(&files::host())
        .into_iter()
        .filter(|e| e.name != except && e.component == "orchestrator")
        .filter_map(|e| {
            let dir = PathBuf::from(&e.instance_dir);
            let (_, vars) = instance::instance_env(&dir.join(instance::MANIFEST_FILE)).ok()?;
            let url = vars.get("KICI_DATABASE_URL")?;
            (database_identity(url).as_deref() == Some(wanted.as_str())).then_some((e.name, dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_database_whatever_the_credentials_and_options() {
        let a = database_identity("postgresql://kici:pw@DB.example:5432/ci?sslmode=require");
        let b = database_identity("postgres://other@db.example/ci");
        assert_eq!(a.as_deref(), Some("db.example:5432/ci"));
        assert_eq!(a, b);
        assert_ne!(a, database_identity("postgresql://db.example:5433/ci"));
        assert_ne!(a, database_identity("postgresql://db.example/other"));
        assert_eq!(
            database_identity("postgresql://postgres@127.0.0.1:54329").as_deref(),
            Some("127.0.0.1:54329/postgres")
        );
        assert_eq!(
            database_identity("postgresql://[::1]:6000/x").as_deref(),
            Some("[::1]:6000/x")
        );
        assert_eq!(
            database_identity("postgresql://[::1]/x").as_deref(),
            Some("[::1]:5432/x")
        );
        assert_eq!(database_identity("host=/run/postgresql dbname=ci"), None);
    }
}
