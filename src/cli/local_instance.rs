//! The local instance the admin commands talk to when the command line does not say otherwise
//! (docs/operations.md, "Admin CLI"): the folder `--instance-dir` names, else the current folder
//! when it holds a manifest, else the only instance registered on this host. Its env file gives
//! the URL and, when the user may read it, the admin token (`KICI_BOOTSTRAP_ADMIN_TOKEN`), so
//! the quickstart's printed commands work without an `export` first.
//!
//! The token is taken from the instance only when the URL is the instance's too: a `--url` to
//! another server never receives a local instance's token.

use std::path::{Path, PathBuf};

use crate::{
    cli::{
        client::{resolve_token, TOKEN_REQUIRED},
        instance::{self, MANIFEST_FILE},
        Globals,
    },
    Error,
};

/// How the instance was found, as `-v` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    InstanceDirFlag,
    CurrentFolder,
    OnlyRegistered,
}

impl FoundBy {
    fn describe(self) -> &'static str {
        match self {
            FoundBy::InstanceDirFlag => "--instance-dir",
            FoundBy::CurrentFolder => "the current folder",
            FoundBy::OnlyRegistered => "the only instance registered on this host",
        }
    }
}

/// The instance's manifest and how it was found: `--instance-dir`, the current folder, or the
/// one folder among `registered` that holds a manifest.
pub fn find(
    instance_dir: Option<&Path>,
    cwd: Option<&Path>,
    registered: &[PathBuf],
) -> Result<Option<(PathBuf, FoundBy)>, Error> {
    if let Some(m) = instance::instance_manifest(instance_dir, cwd)? {
        let by = if instance_dir.is_some() {
            FoundBy::InstanceDirFlag
        } else {
            FoundBy::CurrentFolder
        };
        return Ok(Some((m, by)));
    }
    let mut found = registered
        .iter()
        .map(|d| d.join(MANIFEST_FILE))
        .filter(|m| m.is_file());
    Ok(match (found.next(), found.next()) {
        (Some(only), None) => Some((only, FoundBy::OnlyRegistered)),
        _ => None,
    })
}

/// Where the admin client goes and with which token.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub token: String,
}

/// The URL and token for this command line; with `-v`, says on stderr where each came from.
pub fn target(globals: &Globals) -> Result<Target, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let say = |m: String| {
        if globals.verbose {
            eprintln!("kici-admin: {m}");
        }
    };
    let url_given = globals.url.as_deref().filter(|u| !u.is_empty()).is_some()
        || env("KICI_ADMIN_URL").is_some();
    let token_given = resolve_token(globals.token.as_deref(), env("KICI_ADMIN_TOKEN").as_deref());
    if url_given {
        let url = instance::resolve_admin_url(
            globals.url.as_deref(),
            env("KICI_ADMIN_URL").as_deref(),
            None,
            None,
        )?;
        say(format!("admin URL {url} (from --url or KICI_ADMIN_URL)"));
        return Ok(Target {
            url,
            token: token_given?,
        });
    }
    let cwd = std::env::current_dir().ok();
    let registered = registered_folders();
    let found = find(
        globals.instance_dir.as_deref().map(Path::new),
        cwd.as_deref(),
        &registered,
    )?;
    let Some((manifest, by)) = found else {
        let url = instance::admin_url_of(None)?;
        say(format!(
            "admin URL {url} (the default: no instance folder given, none in the current folder, \
             and {} instances registered on this host)",
            registered.len()
        ));
        return Ok(Target {
            url,
            token: token_given?,
        });
    };
    let env_file = instance::instance_env(&manifest);
    let (env_file, vars) = match (env_file, by) {
        (Ok(found), _) => found,
        // A registered instance is a guess: one the user cannot read is passed over.
        (Err(e), FoundBy::OnlyRegistered) => {
            say(format!("not using {}: {e}", manifest.display()));
            let url = instance::admin_url_of(None)?;
            return Ok(Target {
                url,
                token: token_given?,
            });
        }
        (Err(e), _) => return Err(e),
    };
    let url = instance::admin_url_of(Some(&manifest))?;
    say(format!(
        "admin URL {url} (from {}, instance found by {})",
        env_file.display(),
        by.describe()
    ));
    if let Ok(token) = token_given {
        say("admin token from --token or KICI_ADMIN_TOKEN".into());
        return Ok(Target { url, token });
    }
    match vars
        .get("KICI_BOOTSTRAP_ADMIN_TOKEN")
        .filter(|t| !t.is_empty())
    {
        Some(token) => {
            say(format!(
                "admin token KICI_BOOTSTRAP_ADMIN_TOKEN from {}",
                env_file.display()
            ));
            Ok(Target {
                url,
                token: token.clone(),
            })
        }
        None => Err(Error::Usage(format!(
            "{TOKEN_REQUIRED} ({} has no KICI_BOOTSTRAP_ADMIN_TOKEN to fall back on)",
            env_file.display()
        ))),
    }
}

/// The folders of the orchestrator instances in this host's index.
fn registered_folders() -> Vec<PathBuf> {
    let host = crate::cli::orchestrator::files::host();
    crate::cli::orchestrator::files::index(&host)
        .into_iter()
        .filter(|e| e.component == "orchestrator")
        .map(|e| PathBuf::from(e.instance_dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kici-local-instance-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn flag_then_current_folder_then_the_only_registered_instance() {
        let a = temp("a");
        let b = temp("b");
        let empty = temp("empty");
        std::fs::write(a.join(MANIFEST_FILE), "{}").unwrap();
        std::fs::write(b.join(MANIFEST_FILE), "{}").unwrap();
        let by = |d: Option<&Path>, cwd: Option<&Path>, reg: &[PathBuf]| find(d, cwd, reg).unwrap();
        assert_eq!(
            by(Some(&a), Some(&b), &[]),
            Some((a.join(MANIFEST_FILE), FoundBy::InstanceDirFlag))
        );
        assert_eq!(
            by(None, Some(&b), std::slice::from_ref(&a)),
            Some((b.join(MANIFEST_FILE), FoundBy::CurrentFolder))
        );
        assert_eq!(
            by(None, Some(&empty), &[a.clone(), empty.clone()]),
            Some((a.join(MANIFEST_FILE), FoundBy::OnlyRegistered))
        );
        // Two registered instances: no guess.
        assert_eq!(by(None, Some(&empty), &[a.clone(), b.clone()]), None);
        assert_eq!(by(None, None, &[]), None);
        // A named folder without a manifest is an error, never a guess.
        assert!(find(Some(&empty), None, std::slice::from_ref(&a)).is_err());
        for d in [a, b, empty] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
