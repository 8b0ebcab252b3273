//! Where a local source's repository is, given the `repository.full_name` of a delivery. The
//! name comes from an unsigned webhook body, so it is checked as hostile input: exactly two safe
//! segments (`owner/name`), and the folder it names — symlinks followed — must stay inside the
//! source's `localPath` (README.md, "Security"). [`check_full_name`] is pure;
//! [`resolve`] looks at the filesystem (it must, to follow symlinks).

use std::path::{Path, PathBuf};

/// Longest `owner/name` accepted (GitHub's own limits are 39 + 100 characters).
pub const MAX_FULL_NAME: usize = 256;

/// Why a delivery's repository cannot be used: a bad name (the sender's fault), a source whose
/// folder is misconfigured or unreadable (the operator's), a name leading outside the folder (an
/// attack, or a symlink gone wrong), or a repository that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalPathError {
    /// `full_name` is not two safe segments; the message says which rule it breaks.
    BadName(String),
    /// The source's `localPath` is relative.
    NotAbsolute(PathBuf),
    /// The source's folder cannot be opened.
    Unreadable { base: PathBuf, detail: String },
    /// The repository's folder resolves (through symlinks) outside the source's folder.
    Outside {
        full_name: String,
        path: PathBuf,
        root: PathBuf,
        real: PathBuf,
    },
    /// Neither `<owner>/<name>` nor `<owner>/<name>.git` is a folder under the source's.
    NotFound {
        full_name: String,
        root: PathBuf,
        expected: PathBuf,
    },
}

impl std::fmt::Display for LocalPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalPathError::BadName(m) => f.write_str(m),
            LocalPathError::NotAbsolute(base) => write!(
                f,
                "the local source's localPath {} is not absolute: set an absolute path with \
                 kici-admin source update-local <id> --path /srv/repos",
                base.display()
            ),
            LocalPathError::Unreadable { base, detail } => write!(
                f,
                "the local source's folder {} cannot be opened: {detail}",
                base.display()
            ),
            LocalPathError::Outside {
                full_name,
                path,
                root,
                real,
            } => write!(
                f,
                "repository {full_name}: {} leads outside the source's folder {} (to {}); \
                 nothing was read",
                path.display(),
                root.display(),
                real.display()
            ),
            LocalPathError::NotFound {
                full_name,
                root,
                expected,
            } => write!(
                f,
                "no repository {full_name} under {}: expected {} (a working tree or a bare \
                 repository)",
                root.display(),
                expected.display()
            ),
        }
    }
}

impl std::error::Error for LocalPathError {}

/// Checks that `full_name` is `owner/name` with two safe segments: not empty, not `.` or `..`,
/// no `/` or `\` inside a segment, no NUL or control characters (a newline would end a line of
/// the generated `post-receive` hook), and not over [`MAX_FULL_NAME`] bytes.
pub fn check_full_name(full_name: &str) -> Result<(&str, &str), LocalPathError> {
    if full_name.len() > MAX_FULL_NAME {
        return Err(LocalPathError::BadName(format!(
            "repository name is {} bytes long, more than {MAX_FULL_NAME}",
            full_name.len()
        )));
    }
    let Some((owner, name)) = full_name.split_once('/') else {
        return Err(LocalPathError::BadName(format!(
            "repository name {full_name:?} is not owner/name (e.g. acme/app)"
        )));
    };
    for (what, segment) in [("owner", owner), ("name", name)] {
        let why = if segment.is_empty() {
            Some("is empty")
        } else if segment == "." || segment == ".." {
            Some("is . or ..")
        } else if segment.contains(['/', '\\']) {
            Some("contains a slash")
        } else if segment.chars().any(char::is_control) {
            Some("contains a control character")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LocalPathError::BadName(format!(
                "repository name {full_name:?}: the {what} {why}; a local repository is named \
                 owner/name with two plain folder names"
            )));
        }
    }
    Ok((owner, name))
}

/// The folder of repository `full_name` under `base`: `<base>/<owner>/<name>` or the bare
/// `<base>/<owner>/<name>.git`, canonical, and refused unless it stays under the canonical
/// `base` once symlinks are followed. `base` itself must be absolute.
pub fn resolve(base: &Path, full_name: &str) -> Result<PathBuf, LocalPathError> {
    let (owner, name) = check_full_name(full_name)?;
    if !base.is_absolute() {
        return Err(LocalPathError::NotAbsolute(base.to_owned()));
    }
    let root = base
        .canonicalize()
        .map_err(|e| LocalPathError::Unreadable {
            base: base.to_owned(),
            detail: e.to_string(),
        })?;
    for candidate in [name.to_owned(), format!("{name}.git")] {
        let path = root.join(owner).join(&candidate);
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(&root) || real == root {
            return Err(LocalPathError::Outside {
                full_name: full_name.to_owned(),
                path,
                root,
                real,
            });
        }
        if real.is_dir() {
            return Ok(real);
        }
    }
    Err(LocalPathError::NotFound {
        full_name: full_name.to_owned(),
        expected: root.join(owner).join(name),
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_plain_segments_only() {
        assert_eq!(check_full_name("acme/app"), Ok(("acme", "app")));
        assert_eq!(check_full_name("a.b/c-d_e.f"), Ok(("a.b", "c-d_e.f")));
        for bad in [
            "",
            "app",
            "/app",
            "acme/",
            "../outside/evil",
            "acme/..",
            "./app",
            "acme/app/extra",
            "/etc/passwd",
            "acme/a\nb",
            "acme/a\0b",
            "ac\x1bme/app",
            "acme\\x/app",
        ] {
            assert!(check_full_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("acme/{}", "a".repeat(MAX_FULL_NAME - 5));
        assert!(check_full_name(&long).is_ok());
        let longer = format!("{long}a");
        let err = check_full_name(&longer).unwrap_err().to_string();
        assert!(err.contains("257 bytes long, more than 256"), "{err}");
    }

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kici-local-path-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn symlinks_may_not_lead_outside_the_folder() {
        let dir = temp("links");
        let base = dir.join("repos");
        std::fs::create_dir_all(base.join("acme/app")).unwrap();
        std::fs::create_dir_all(base.join("acme/lib.git")).unwrap();
        std::fs::create_dir_all(dir.join("outside/evil")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside/evil"), base.join("acme/evil")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), base.join("other")).unwrap();
        std::os::unix::fs::symlink(base.join("acme/app"), base.join("acme/alias")).unwrap();

        let root = base.canonicalize().unwrap();
        assert_eq!(resolve(&base, "acme/app").unwrap(), root.join("acme/app"));
        assert_eq!(
            resolve(&base, "acme/lib").unwrap(),
            root.join("acme/lib.git")
        );
        // A symlink that stays inside is fine.
        assert_eq!(resolve(&base, "acme/alias").unwrap(), root.join("acme/app"));
        for (name, want) in [
            ("acme/evil", "leads outside the source's folder"),
            ("other/evil", "leads outside the source's folder"),
            ("../outside/evil", "the owner is . or .."),
            ("acme/missing", "no repository acme/missing"),
        ] {
            let err = resolve(&base, name).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        assert!(matches!(
            resolve(&base, "acme/evil"),
            Err(LocalPathError::Outside { .. })
        ));
        assert!(matches!(
            resolve(&base, "acme/missing"),
            Err(LocalPathError::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&base, "acme/.."),
            Err(LocalPathError::BadName(_))
        ));
        let err = resolve(Path::new("relative/repos"), "acme/app").unwrap_err();
        assert_eq!(err, LocalPathError::NotAbsolute("relative/repos".into()));
        assert!(err.to_string().contains("is not absolute"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_check_full_name(name in "\\PC{0,40}|[a-z./\\\\\n]{0,12}") {
            if let Ok((owner, repo)) = check_full_name(&name) {
                prop_assert!(!owner.is_empty() && !repo.is_empty());
                prop_assert!(!repo.contains('/') && owner != ".." && repo != "..");
            }
        }
    }
}
