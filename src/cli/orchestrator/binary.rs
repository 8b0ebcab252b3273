//! Which `kici-admin` an instance runs (docs/operations.md, "Instances"). The manifest records a
//! binary that outlives the clone it was built in: `--binary` as given; else this binary when
//! it is installed (on the PATH, `/usr/local/bin`, …); else, when this binary sits in a Cargo
//! build folder (`target/release`, recognised by Cargo's `.fingerprint` folder beside it), a copy
//! placed for the instance — `/usr/local/lib/kici/<name>/kici-admin` as root (a system unit's
//! user must be able to run it, and `/etc/kici/<name>` is 0700), `<instance dir>/bin/kici-admin`
//! otherwise, `$KICI_CONFIG_ROOT/lib/<name>/kici-admin` when that is set. Deleting the clone then
//! leaves the instance working; reinstalling after a rebuild refreshes the copy.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::Error;

/// Whether `exe` was left by `cargo build` in a target folder (and goes when the clone goes).
pub fn in_cargo_build_folder(exe: &Path) -> bool {
    exe.parent()
        .is_some_and(|dir| dir.join(".fingerprint").is_dir())
}

/// Where the copy of a build-folder binary goes for instance `name` in `instance_dir`.
pub fn placed_path(
    is_root: bool,
    config_root: Option<&Path>,
    name: &str,
    instance_dir: &Path,
) -> PathBuf {
    match (config_root, is_root) {
        (Some(root), _) => root.join("lib").join(name).join("kici-admin"),
        (None, true) => Path::new("/usr/local/lib/kici")
            .join(name)
            .join("kici-admin"),
        (None, false) => instance_dir.join("bin").join("kici-admin"),
    }
}

/// Puts `exe` at `dest` (a hard link when on the same file system, else a copy), atomically and
/// with mode 0755; folders are created 0755 so a service user can reach the binary. Nothing is
/// written when `dest` already is `exe`'s file.
pub fn place(exe: &Path, dest: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same(exe, dest) {
        return Ok(());
    }
    let cannot = |e: std::io::Error| {
        Error::Config(format!(
            "cannot place a copy of {} at {}: {e} (install kici-admin on the PATH, e.g. \
             `cargo install --path . --locked`, or pass --binary)",
            exe.display(),
            dest.display()
        ))
    };
    let dir = dest.parent().unwrap_or_else(|| Path::new("/"));
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .map_err(cannot)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(cannot)?;
    }
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = fs::hard_link(exe, &tmp)
        .or_else(|_| fs::copy(exe, &tmp).map(drop))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&tmp, dest));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(cannot)
}

/// The binary to record: `exe` itself unless it lives in a Cargo build folder, else its placed
/// copy (placed by this call).
pub fn for_instance(
    exe: &Path,
    host: &crate::service::layout::Host,
    name: &str,
    instance_dir: &Path,
) -> Result<PathBuf, Error> {
    if !in_cargo_build_folder(exe) {
        return Ok(exe.to_path_buf());
    }
    let dest = placed_path(
        host.is_root,
        host.config_root.as_deref(),
        name,
        instance_dir,
    );
    place(exe, &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::layout::Host;

    fn user() -> Host {
        Host {
            is_root: false,
            home: None,
            config_root: None,
            systemd: false,
        }
    }

    #[test]
    fn a_build_folder_binary_is_placed_and_survives_the_build_folder() {
        let root = std::env::temp_dir().join(format!("kici-binary-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let build = root.join("clone/target/release");
        fs::create_dir_all(build.join(".fingerprint")).unwrap();
        let exe = build.join("kici-admin");
        fs::write(&exe, b"#!/bin/sh\necho v1\n").unwrap();
        let instance = root.join("instance");
        fs::create_dir_all(&instance).unwrap();

        let placed = for_instance(&exe, &user(), "ci", &instance).unwrap();
        assert_eq!(placed, instance.join("bin/kici-admin"));
        assert!(placed.metadata().unwrap().permissions().mode() & 0o111 != 0);
        // Idempotent, then the clone goes: the instance's binary stays.
        assert_eq!(
            for_instance(&exe, &user(), "ci", &instance).unwrap(),
            placed
        );
        fs::remove_dir_all(root.join("clone")).unwrap();
        assert_eq!(fs::read(&placed).unwrap(), b"#!/bin/sh\necho v1\n");

        // An installed binary (no .fingerprint beside it) is recorded as it is.
        let installed = root.join("bin/kici-admin");
        fs::create_dir_all(installed.parent().unwrap()).unwrap();
        fs::write(&installed, b"x").unwrap();
        assert_eq!(
            for_instance(&installed, &user(), "ci", &instance).unwrap(),
            installed
        );
        assert_eq!(
            placed_path(true, None, "ci", &instance),
            Path::new("/usr/local/lib/kici/ci/kici-admin")
        );
        assert_eq!(
            placed_path(true, Some(Path::new("/srv/k")), "ci", &instance),
            Path::new("/srv/k/lib/ci/kici-admin")
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
