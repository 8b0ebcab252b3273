//! Where an instance's files live, computed from its name, its folder and who installs it; no
//! file is touched here.
//!
//! `<instance-dir>` (default `/etc/kici/<name>` as root, `~/.config/kici/<name>` otherwise, under
//! `$KICI_CONFIG_ROOT` when set) holds the manifest, `<name>.env`, and without systemd the pid
//! file, the log file and `data/` (the default filesystem storage). Under systemd the daemon's
//! state is `/var/lib/<name>` (`StateDirectory=`), the only place the hardened unit may write.

use std::path::{Path, PathBuf};

use super::manifest::MANIFEST_FILE;

pub const DEFAULT_NAME: &str = "kici-orchestrator";
/// The index of installed instances, in the kici root, so `--name` finds custom folders.
pub const INDEX_FILE: &str = "instances.json";

/// How the daemon is supervised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// A system unit, started and stopped through systemctl.
    Systemd,
    /// A detached process with a pid file and a log file in the instance folder.
    Process,
}

impl Supervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Supervisor::Systemd => "systemd",
            Supervisor::Process => "process",
        }
    }

    pub fn parse(s: &str) -> Option<Supervisor> {
        match s {
            "systemd" => Some(Supervisor::Systemd),
            "process" => Some(Supervisor::Process),
            _ => None,
        }
    }
}

/// Facts about the host that decide the defaults.
#[derive(Debug, Clone)]
pub struct Host {
    pub is_root: bool,
    pub home: Option<PathBuf>,
    /// `$KICI_CONFIG_ROOT`.
    pub config_root: Option<PathBuf>,
    /// PID 1 is systemd (`/run/systemd/system` exists).
    pub systemd: bool,
}

impl Host {
    /// `/etc/kici`, `~/.config/kici`, or `$KICI_CONFIG_ROOT`.
    pub fn kici_root(&self) -> PathBuf {
        match (&self.config_root, self.is_root, &self.home) {
            (Some(root), _, _) => root.clone(),
            (None, true, _) => PathBuf::from("/etc/kici"),
            (None, false, Some(home)) => home.join(".config/kici"),
            (None, false, None) => PathBuf::from(".kici"),
        }
    }

    pub fn default_instance_dir(&self, name: &str) -> PathBuf {
        self.kici_root().join(name)
    }

    /// systemd when it runs and we are root (a system unit needs both; user units cannot
    /// apply most of the hardening); a detached process otherwise.
    pub fn default_supervisor(&self) -> Supervisor {
        if self.systemd && self.is_root {
            Supervisor::Systemd
        } else {
            Supervisor::Process
        }
    }
}

/// Every path of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: PathBuf,
    pub env_file: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    /// Where the daemon may keep state (the default storage lives in `storage/` below it).
    pub state_dir: PathBuf,
    /// The systemd unit file, for a systemd instance.
    pub unit_file: Option<PathBuf>,
}

impl Layout {
    pub fn new(name: &str, dir: &Path, supervisor: Supervisor) -> Layout {
        let (state_dir, unit_file) = match supervisor {
            Supervisor::Systemd => (
                PathBuf::from("/var/lib").join(name),
                Some(PathBuf::from(format!("/etc/systemd/system/{name}.service"))),
            ),
            Supervisor::Process => (dir.join("data"), None),
        };
        Layout {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            manifest: dir.join(MANIFEST_FILE),
            env_file: dir.join(format!("{name}.env")),
            pid_file: dir.join(format!("{name}.pid")),
            log_file: dir.join(format!("{name}.log")),
            state_dir,
            unit_file,
        }
    }

    pub fn default_storage_path(&self) -> PathBuf {
        self.state_dir.join("storage")
    }
}

/// An instance name doubles as a file name and a systemd unit name: lower-case letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if starts_ok && name.len() <= 64 && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(format!(
            "--name {name:?} is not a usable instance name: use lower-case letters, digits, '-', '_' \
             and '.', starting with a letter or digit, at most 64 characters (e.g. kici-orchestrator)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(is_root: bool, systemd: bool) -> Host {
        Host {
            is_root,
            home: Some(PathBuf::from("/home/ci")),
            config_root: None,
            systemd,
        }
    }

    #[test]
    fn default_folders_follow_the_user() {
        assert_eq!(
            host(true, false).default_instance_dir("orch"),
            Path::new("/etc/kici/orch")
        );
        assert_eq!(
            host(false, true).default_instance_dir("orch"),
            Path::new("/home/ci/.config/kici/orch")
        );
        let mut h = host(true, true);
        h.config_root = Some(PathBuf::from("/tmp/k"));
        assert_eq!(h.default_instance_dir("x"), Path::new("/tmp/k/x"));
    }

    #[test]
    fn systemd_only_for_root_on_a_systemd_host() {
        assert_eq!(host(true, true).default_supervisor(), Supervisor::Systemd);
        assert_eq!(host(false, true).default_supervisor(), Supervisor::Process);
        assert_eq!(host(true, false).default_supervisor(), Supervisor::Process);
    }

    #[test]
    fn layouts() {
        let l = Layout::new("orch", Path::new("/srv/ci"), Supervisor::Process);
        assert_eq!(l.env_file, Path::new("/srv/ci/orch.env"));
        assert_eq!(l.manifest, Path::new("/srv/ci/.kici-orchestrator.json"));
        assert_eq!(l.default_storage_path(), Path::new("/srv/ci/data/storage"));
        assert_eq!(l.unit_file, None);
        let l = Layout::new("orch", Path::new("/etc/kici/orch"), Supervisor::Systemd);
        assert_eq!(l.default_storage_path(), Path::new("/var/lib/orch/storage"));
        assert_eq!(
            l.unit_file.as_deref(),
            Some(Path::new("/etc/systemd/system/orch.service"))
        );
    }

    #[test]
    fn names() {
        assert!(check_name("kici-orchestrator").is_ok());
        assert!(check_name("ci.2_b").is_ok());
        for bad in ["", "-x", "Big", "a/b", "a b", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err();
            assert!(e.starts_with("--name "), "{e}");
        }
    }
}
