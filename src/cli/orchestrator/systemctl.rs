//! The systemd edge: writing the unit, the service user, and `systemctl` / `journalctl` calls
//! for instances installed under systemd.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use super::files;
use crate::{
    service::{
        layout::Layout,
        unit::{self, UnitParams},
    },
    Error,
};

/// Writes the unit when it changed, creates the service user when missing, and enables the
/// unit. True when the unit file changed.
pub fn install_unit(
    layout: &Layout,
    binary: &Path,
    user: &str,
    storage: Option<&Path>,
) -> Result<bool, Error> {
    // ProtectHome=yes hides /home, /root and /run/user from the service, binary included.
    if ["/home/", "/root/", "/run/user/"]
        .iter()
        .any(|p| binary.starts_with(p))
    {
        return Err(Error::Usage(format!(
            "the unit cannot run {}: its ProtectHome=yes hides home folders from the service. \
             Copy the binary first (install -m 0755 {} /usr/local/bin/kici-admin) and pass --binary /usr/local/bin/kici-admin",
            binary.display(),
            binary.display()
        )));
    }
    ensure_user(user)?;
    let rw: Vec<&Path> = storage
        .filter(|p| !p.starts_with(&layout.state_dir))
        .into_iter()
        .collect();
    let dir = layout.dir.display().to_string();
    let header = format!(
        "Written by `kici-admin orchestrator install` for the instance in {dir}; re-run install instead of editing."
    );
    let unit_file = layout
        .unit_file
        .as_deref()
        .ok_or_else(|| Error::Config("a systemd instance without a unit path".into()))?;
    let text = unit::render(&UnitParams {
        name: &layout.name,
        binary,
        env_file: &layout.env_file,
        user,
        read_write_paths: &rw,
        header: &[header.as_str()],
    })
    .map_err(Error::Usage)?;
    let changed = files::write_if_changed(unit_file, &text, 0o644)?;
    if changed {
        systemctl(&["daemon-reload"])?;
    }
    systemctl(&["enable", &format!("{}.service", layout.name)])?;
    Ok(changed)
}

fn ensure_user(user: &str) -> Result<(), Error> {
    let exists = Command::new("id")
        .args(["-u", user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return Ok(());
    }
    run(
        "useradd",
        &[
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ],
    )
}

/// Runs a command, failing with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Startup(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Startup(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

pub fn systemctl(args: &[&str]) -> Result<(), Error> {
    run("systemctl", args)
}

/// `systemctl show` values: (ActiveState, MainPID).
pub fn state(name: &str) -> Result<(String, u32), Error> {
    let out = Command::new("systemctl")
        .args([
            "show",
            "--property=ActiveState,MainPID",
            &format!("{name}.service"),
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Startup(format!("cannot run systemctl: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut active = String::from("unknown");
    let mut pid = 0;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("ActiveState", v)) => active = v.to_owned(),
            Some(("MainPID", v)) => pid = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok((active, pid))
}

/// `journalctl -u <name>`, attached to our stdout.
pub fn journal(name: &str, lines: usize, follow: bool) -> Result<(), Error> {
    let unit = format!("{name}.service");
    let count = lines.to_string();
    let mut args = vec!["-u", unit.as_str(), "-n", count.as_str(), "--no-pager"];
    if follow {
        args.push("-f");
    }
    let status = Command::new("journalctl")
        .args(&args)
        .status()
        .map_err(|e| Error::Startup(format!("cannot run journalctl: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Startup(format!(
            "journalctl {} failed ({status})",
            args.join(" ")
        )))
    }
}
