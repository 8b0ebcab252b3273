//! The hardened systemd unit, rendered from one template: `install` writes it with the
//! instance's paths, and `systemd/kici-orchestrator.service` is the same template with the
//! default paths (a test keeps the two identical).
//!
//! `Type=notify`: the daemon sends READY=1 once it listens, STOPPING=1 on SIGTERM, and
//! WATCHDOG=1 at half of `WatchdogSec` from its housekeeping loop. The env file is read by
//! systemd itself (as root) before the sandbox is set up, so it can stay root-only (0600); the
//! service user never reads it. Hardening measured with `systemd-analyze security`: exposure 1.1
//! with systemd 252 (target ≤ 2.0).

use std::path::Path;

/// What varies between instances.
#[derive(Debug, Clone)]
pub struct UnitParams<'a> {
    pub name: &'a str,
    pub binary: &'a Path,
    pub env_file: &'a Path,
    pub user: &'a str,
    /// Extra writable paths (filesystem storage outside `/var/lib/<name>`).
    pub read_write_paths: &'a [&'a Path],
    /// The first comment lines (without `# `).
    pub header: &'a [&'a str],
}

/// The parameters of the repository's `systemd/kici-orchestrator.service`.
pub fn reference_params() -> UnitParams<'static> {
    UnitParams {
        name: "kici-orchestrator",
        binary: Path::new("/usr/local/bin/kici-admin"),
        env_file: Path::new("/etc/kici/kici-orchestrator/kici-orchestrator.env"),
        user: "kici",
        read_write_paths: &[],
        header: &[
            "KiCI orchestrator, hardened. `kici-admin orchestrator install` writes this unit (rendered from",
            "the same template, src/service/unit.rs) with the instance's paths. For a hand install:",
            "  install -m 0755 kici-admin /usr/local/bin/",
            "  useradd --system --no-create-home --shell /usr/sbin/nologin kici",
            "  install -d -m 0700 /etc/kici/kici-orchestrator",
            "  install -m 0600 kici-orchestrator.env /etc/kici/kici-orchestrator/",
        ],
    }
}

/// A path as a unit file may carry it: `%` doubled (systemd specifiers); whitespace, quotes and
/// backslashes refused rather than escaped, since each directive quotes differently.
fn unit_path(what: &str, path: &Path) -> Result<String, String> {
    let text = path.to_str().ok_or_else(|| {
        format!(
            "{what} {} is not valid UTF-8: a systemd unit cannot name it",
            path.display()
        )
    })?;
    if !path.is_absolute() || text.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c)) {
        return Err(format!(
            "{what} {text:?} cannot go into a systemd unit: it must be an absolute path without spaces, quotes or backslashes"
        ));
    }
    Ok(text.replace('%', "%%"))
}

pub fn render(p: &UnitParams) -> Result<String, String> {
    let binary = unit_path("the kici-admin binary", p.binary)?;
    let env_file = unit_path("the env file", p.env_file)?;
    let mut header = String::new();
    for line in p.header {
        header.push_str(&format!("# {line}\n"));
    }
    let mut rw = String::new();
    for path in p.read_write_paths {
        rw.push_str(&format!(
            "ReadWritePaths={}\n",
            unit_path("the storage path", path)?
        ));
    }
    let (name, user) = (p.name, p.user);
    Ok(format!(
        "{header}[Unit]
Description=KiCI CI orchestrator ({name})
After=network-online.target postgresql.service
Wants=network-online.target
StartLimitBurst=5
StartLimitIntervalSec=300

[Service]
# READY=1 is sent once migrations ran and the port listens; WATCHDOG=1 every WatchdogSec/2.
Type=notify
NotifyAccess=main
ExecStart={binary} orchestrator run
EnvironmentFile={env_file}
User={user}
Group={user}
StateDirectory={name}
StateDirectoryMode=0700
WorkingDirectory=/var/lib/{name}
{rw}Restart=on-failure
RestartSec=1s
WatchdogSec=60s
# SIGTERM: stop accepting, finish in-flight requests (at most 10 s), exit 0.
KillSignal=SIGTERM
TimeoutStopSec=20s
UMask=0077

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
DevicePolicy=closed

[Install]
WantedBy=multi-user.target
"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_unit_is_the_template_with_default_paths() {
        let repo = include_str!("../../systemd/kici-orchestrator.service");
        assert_eq!(
            render(&reference_params()).unwrap(),
            repo,
            "systemd/kici-orchestrator.service is out of sync with src/service/unit.rs: regenerate it with \
             cargo test --lib service::unit::tests::regenerate -- --ignored"
        );
    }

    /// Writes the repository's unit file from the template.
    #[test]
    #[ignore = "writes systemd/kici-orchestrator.service; run by hand after changing the template"]
    fn regenerate() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/kici-orchestrator.service"
        );
        std::fs::write(path, render(&reference_params()).unwrap()).unwrap();
    }

    #[test]
    fn instance_paths_are_used_and_escaped() {
        let storage = Path::new("/srv/kici%blobs");
        let rw = [storage];
        let p = UnitParams {
            name: "ci-a",
            binary: Path::new("/opt/kici/kici-admin"),
            env_file: Path::new("/etc/kici/ci-a/ci-a.env"),
            user: "kici",
            read_write_paths: &rw,
            header: &["written by install"],
        };
        let unit = render(&p).unwrap();
        assert!(unit.starts_with("# written by install\n[Unit]\n"), "{unit}");
        assert!(unit.contains("\nExecStart=/opt/kici/kici-admin orchestrator run\n"));
        assert!(unit.contains("\nEnvironmentFile=/etc/kici/ci-a/ci-a.env\n"));
        assert!(unit.contains("\nStateDirectory=ci-a\n"));
        assert!(unit.contains("\nReadWritePaths=/srv/kici%%blobs\n"));
    }

    #[test]
    fn paths_a_unit_cannot_carry_are_refused_by_name() {
        let mut p = reference_params();
        p.binary = Path::new("/home/me/my bin/kici-admin");
        let e = render(&p).unwrap_err();
        assert!(
            e.starts_with("the kici-admin binary \"/home/me/my bin/kici-admin\""),
            "{e}"
        );
        p.binary = Path::new("relative/kici-admin");
        assert!(render(&p).unwrap_err().contains("absolute path"));
    }
}
