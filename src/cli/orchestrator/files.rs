//! The file edges of instance management: what the host is, where an instance is, and writing
//! its files (atomically, with their modes) only when their content changes.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::{
    cli::Globals,
    service::{
        layout::{Host, Layout, DEFAULT_NAME, INDEX_FILE},
        manifest::{self, IndexEntry, Manifest, MANIFEST_FILE},
        settings::Vars,
    },
    Error,
};

pub fn host() -> Host {
    let env_path = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    Host {
        // SAFETY: geteuid has no preconditions and cannot fail.
        is_root: unsafe { libc::geteuid() } == 0,
        home: env_path("HOME"),
        config_root: env_path("KICI_CONFIG_ROOT"),
        systemd: Path::new("/run/systemd/system").is_dir(),
    }
}

/// `path` made absolute against the current directory (the unit and manifest need absolute
/// paths; the folder may not exist yet, so no canonicalize).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let joined = cwd.join(path);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub fn read_env_vars(path: &Path) -> Result<Vars, Error> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read the env file {}: {e}", path.display())))?;
    Ok(crate::cli::instance::parse_env_file(&text)
        .into_iter()
        .collect())
}

pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, Error> {
    let path = dir.join(MANIFEST_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Manifest::parse(&text)
            .map(Some)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::Config(format!(
                "cannot create the folder {}: {e} (run as a user who may, or pick another --instance-dir)",
                dir.display()
            ))
        })
}

/// Writes `text` to `path` with `mode` through a temporary file and a rename, so a reader
/// never sees half a file and a secret file is never briefly world-readable. Returns false
/// (and writes nothing) when the file already holds exactly `text` with that mode.
pub fn write_if_changed(path: &Path, text: &str, mode: u32) -> Result<bool, Error> {
    let same_text = fs::read_to_string(path).is_ok_and(|old| old == text);
    let same_mode = fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same_text && same_mode {
        return Ok(false);
    }
    let cannot = |e: std::io::Error| Error::Config(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(cannot)?;
    Ok(true)
}

/// Removes a file; a missing one is fine. True when something was removed.
pub fn remove(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Config(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

fn index_path(host: &Host) -> PathBuf {
    host.kici_root().join(INDEX_FILE)
}

pub fn index(host: &Host) -> Vec<IndexEntry> {
    fs::read_to_string(index_path(host))
        .map(|t| manifest::parse_index(&t))
        .unwrap_or_default()
}

/// Records (or with `None` forgets) an instance in the host's index. Best effort: the index
/// only helps `--name` find instances in custom folders, so a failure is a warning.
pub fn update_index(host: &Host, name: &str, entry: Option<IndexEntry>) {
    let entries = manifest::update_index(index(host), name, entry);
    let path = index_path(host);
    let written = ensure_dir(&host.kici_root())
        .and_then(|()| write_if_changed(&path, &manifest::render_index(&entries), 0o600));
    if let Err(e) = written {
        eprintln!("Warning: the instance index was not updated ({e}); use --instance-dir to find this instance");
    }
}

/// The instance a lifecycle command is about: `--instance-dir`, else `--name` (through the
/// index, else its default folder), else the current folder when it holds a manifest, else the
/// default instance.
pub fn locate(globals: &Globals, name: Option<&str>) -> Result<(Layout, Manifest), Error> {
    let host = host();
    let dir = if let Some(dir) = globals.instance_dir.as_deref().filter(|d| !d.is_empty()) {
        absolute(Path::new(dir))
    } else if let Some(name) = name {
        manifest::find_in_index(&index(&host), name)
            .unwrap_or_else(|| host.default_instance_dir(name))
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        if cwd.join(MANIFEST_FILE).is_file() {
            cwd
        } else {
            host.default_instance_dir(DEFAULT_NAME)
        }
    };
    let Some(manifest) = read_manifest(&dir)? else {
        return Err(Error::Usage(not_found(&dir, &index(&host))));
    };
    if let Some(name) = name.filter(|n| *n != manifest.name) {
        return Err(Error::Usage(format!(
            "{} holds the instance {:?}, not {name:?}: pass --name {} or another --instance-dir",
            dir.display(),
            manifest.name,
            manifest.name
        )));
    }
    let supervisor = manifest
        .supervisor()
        .map_err(|e| Error::Config(format!("{}: {e}", dir.join(MANIFEST_FILE).display())))?;
    Ok((Layout::new(&manifest.name, &dir, supervisor), manifest))
}

fn not_found(dir: &Path, known: &[IndexEntry]) -> String {
    let mut m = format!(
        "no orchestrator instance at {} (no {MANIFEST_FILE} there)",
        dir.display()
    );
    if known.is_empty() {
        m.push_str(
            ".\nInstall one with `kici-admin orchestrator install`, or pass --instance-dir <folder> / --name <name>.",
        );
    } else {
        m.push_str(". Instances on this host:");
        for e in known {
            m.push_str(&format!(
                "\n  - {}  {}  {}",
                e.name, e.platform, e.instance_dir
            ));
        }
        m.push_str(
            "\nPass --instance-dir <folder> or --name <name>, or cd into the instance folder.",
        );
    }
    m
}
