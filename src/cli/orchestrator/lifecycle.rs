//! `kici-admin orchestrator start | stop | restart | status | logs | uninstall`: through
//! systemctl and journalctl for a systemd instance, otherwise on the detached daemon
//! (`detached.rs`). The instance is found by `files::locate`.

use crate::cli::output::outln;
use std::{path::PathBuf, time::Duration};

use argh::FromArgs;
use serde_json::{json, Value};

use super::{detached, files, systemctl, RestartCmd};
use crate::{
    cli::{output::print_json, Globals},
    config::{normalize_base_path, redact_database_url},
    service::{
        layout::{Layout, Supervisor},
        manifest::Manifest,
        process,
        settings::Vars,
    },
    Error,
};

/// Start the orchestrator and wait until /ready answers 200. Without systemd the daemon runs
/// detached, with <name>.pid and <name>.log in the instance folder.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
pub struct StartCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// seconds to wait for /ready before giving up (default 30)
    #[argh(option, default = "30")]
    pub timeout: u64,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Stop the orchestrator: SIGTERM (in-flight requests finish), SIGKILL after --timeout.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct StopCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// seconds to wait after SIGTERM before SIGKILL (default 20)
    #[argh(option, default = "20")]
    pub timeout: u64,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Tell whether the orchestrator runs: pid, uptime, port and its /ready answer.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// print the status as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Show the orchestrator's log (journalctl under systemd, else <name>.log).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "logs")]
pub struct LogsCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// keep printing what is appended (Ctrl-C ends)
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// how many of the last lines to show (default 100)
    #[argh(option, short = 'n', default = "100")]
    pub lines: usize,
}

/// Stop the orchestrator and remove its unit, env file, manifest, pid and log files. The
/// database and the storage folder are kept. Asks first unless --yes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "uninstall")]
pub struct UninstallCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
    /// print the result as JSON (needs --yes: no prompt in scripts)
    #[argh(switch)]
    pub json: bool,
}

/// How a lifecycle step reports: text for people, JSON for `--json`, or nothing when the caller
/// (restart, uninstall) prints one combined result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Report {
    Text,
    Json,
    Silent,
}

impl Report {
    pub fn of(json: bool) -> Report {
        if json {
            Report::Json
        } else {
            Report::Text
        }
    }
}

/// The instance's env values and the URL its daemon serves on (from this host).
fn instance_env(layout: &Layout) -> Result<(Vars, String), Error> {
    let vars = files::read_env_vars(&layout.env_file)?;
    let url = base_url(&vars)
        .map_err(|e| Error::Config(format!("{}: {e}", layout.env_file.display())))?;
    Ok((vars, url))
}

/// `http://<address>:<port><base path>`: the bind address when it is a specific one, else
/// 127.0.0.1 (not `localhost`, which may resolve to ::1 where the daemon does not listen).
pub fn base_url(vars: &Vars) -> Result<String, String> {
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let port: u16 = get("KICI_PORT")
        .unwrap_or("4000")
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("KICI_PORT must be a fixed port (1-65535) for the lifecycle commands: re-run install with --port")?;
    let host = match get("KICI_BIND_ADDRESS").and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
        Some(ip) if !ip.is_unspecified() && ip.is_ipv6() => format!("[{ip}]"),
        Some(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_owned(),
    };
    let base = normalize_base_path(get("KICI_BASE_PATH").unwrap_or("/")).unwrap_or_default();
    Ok(format!("http://{host}:{port}{base}"))
}

fn binary(manifest: &Manifest) -> Result<PathBuf, Error> {
    match manifest.binary.as_deref().map(PathBuf::from) {
        Some(b) if b.is_file() => Ok(b),
        _ => std::env::current_exe()
            .map_err(|e| Error::Config(format!("cannot find the kici-admin binary: {e}"))),
    }
}

fn require_systemd() -> Result<(), Error> {
    if files::host().systemd {
        Ok(())
    } else {
        Err(Error::Usage(
            "this instance was installed for systemd, which does not run here: re-install it with \
             `kici-admin orchestrator install --supervisor process --force`"
                .into(),
        ))
    }
}

pub fn start(cmd: &StartCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    start_located(
        &layout,
        &manifest,
        Duration::from_secs(cmd.timeout),
        Report::of(cmd.json),
    )
    .map(drop)
}

fn start_located(
    layout: &Layout,
    manifest: &Manifest,
    timeout: Duration,
    out: Report,
) -> Result<Value, Error> {
    let (vars, url) = instance_env(layout)?;
    let ready_url = format!("{url}/ready");
    let name = &layout.name;
    let report = |pid: u32, waited: Option<Duration>, already: bool| {
        let value = json!({
            "name": name, "running": true, "alreadyRunning": already, "pid": pid, "url": url,
            "readyAfterMs": waited.map(|d| d.as_millis() as u64), "logFile": log_of(layout),
        });
        if out == Report::Json {
            print_json(&value);
        } else if out == Report::Silent {
        } else if already {
            outln!("Orchestrator \"{name}\" is already running (pid {pid}) at {url}");
        } else {
            let secs = waited.map_or(0.0, |d| d.as_secs_f64());
            outln!("Orchestrator \"{name}\" started (pid {pid}); ready at {url} after {secs:.1} s");
            outln!("  Log:  {}", log_of(layout));
            outln!(
                "  Stop: kici-admin orchestrator stop --instance-dir {}",
                layout.dir.display()
            );
        }
        value
    };
    if let Supervisor::Systemd = manifest.supervisor().map_err(Error::Config)? {
        require_systemd()?;
        systemctl::systemctl(&["start", &format!("{name}.service")])?;
        let (_, pid) = systemctl::state(name)?;
        wait_probe(&ready_url, timeout).map_err(|last| {
            Error::Startup(format!(
                "systemd started {name} but {ready_url} did not answer 200 within {} s (last: {last}); \
                 see `kici-admin orchestrator logs --name {name}`",
                timeout.as_secs()
            ))
        })?;
        return Ok(report(pid, None, false));
    }
    if let Some((pid, _)) = detached::running(layout) {
        return Ok(report(pid.pid, None, true));
    }
    files::remove(&layout.pid_file)?;
    let (mut child, pid, offset) = detached::spawn(layout, &binary(manifest)?, &vars)?;
    match detached::wait_ready(layout, &mut child, &ready_url, offset, timeout) {
        detached::Readiness::Ready(after) => Ok(report(pid.pid, Some(after), false)),
        detached::Readiness::Exited(status, log) => {
            files::remove(&layout.pid_file)?;
            Err(Error::Startup(format!(
                "the orchestrator exited ({status}) before it was ready. Last log lines:\n{log}\n(full log: {})",
                layout.log_file.display()
            )))
        }
        detached::Readiness::TimedOut(last) => {
            detached::stop(&pid, Duration::from_secs(10));
            let _ = child.try_wait();
            files::remove(&layout.pid_file)?;
            Err(Error::Startup(format!(
                "the orchestrator was not ready within {} s ({ready_url}: {last}), so it was stopped again. \
                 Last log lines:\n{}\n(full log: {}; a slow database may need --timeout)",
                timeout.as_secs(),
                detached::log_since(&layout.log_file, offset),
                layout.log_file.display()
            )))
        }
    }
}

fn wait_probe(url: &str, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match detached::probe(url) {
            Ok(200) => return Ok(()),
            Ok(s) => format!("HTTP {s}"),
            Err(e) => e,
        };
        if std::time::Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn log_of(layout: &Layout) -> String {
    match layout.unit_file {
        Some(_) => format!("journalctl -u {}", layout.name),
        None => layout.log_file.display().to_string(),
    }
}

pub fn stop(cmd: &StopCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    stop_located(
        &layout,
        &manifest,
        Duration::from_secs(cmd.timeout),
        Report::of(cmd.json),
    )
    .map(drop)
}

/// Stops the instance; the JSON result is `{name, running: false, outcome, pid, seconds}` with
/// `outcome` one of `stopped` (systemd), `terminated`, `killed`, `alreadyExited`, `notRunning`.
fn stop_located(
    layout: &Layout,
    manifest: &Manifest,
    timeout: Duration,
    out: Report,
) -> Result<Value, Error> {
    let name = &layout.name;
    let finish = |line: String, outcome: &str, pid: Option<u32>, took: Option<Duration>| {
        let value = json!({
            "name": name, "running": false, "outcome": outcome, "pid": pid,
            "seconds": took.map(|d| d.as_secs_f64()),
        });
        match out {
            Report::Text => outln!("{line}"),
            Report::Json => print_json(&value),
            Report::Silent => {}
        }
        value
    };
    if let Supervisor::Systemd = manifest.supervisor().map_err(Error::Config)? {
        require_systemd()?;
        systemctl::systemctl(&["stop", &format!("{name}.service")])?;
        let line = format!("Orchestrator \"{name}\" stopped.");
        return Ok(finish(line, "stopped", None, None));
    }
    let Some((pid, _)) = detached::running(layout) else {
        let stale = files::remove(&layout.pid_file)?;
        let note = if stale {
            " (removed a stale pid file)"
        } else {
            ""
        };
        let line = format!("Orchestrator \"{name}\" is not running{note}.");
        return Ok(finish(line, "notRunning", None, None));
    };
    let outcome = detached::stop(&pid, timeout);
    let (kind, took) = match outcome {
        detached::Stopped::Gone => ("alreadyExited", None),
        detached::Stopped::Terminated(d) => ("terminated", Some(d)),
        detached::Stopped::Killed(d) => ("killed", Some(d)),
        detached::Stopped::Stuck => ("stuck", None),
    };
    let line = match outcome {
        detached::Stopped::Gone => format!("Orchestrator \"{name}\" had already exited (pid {})", pid.pid),
        detached::Stopped::Terminated(d) => {
            format!("Orchestrator \"{name}\" stopped (pid {}, {:.1} s)", pid.pid, d.as_secs_f64())
        }
        detached::Stopped::Killed(d) => format!(
            "Orchestrator \"{name}\" did not stop within {} s of SIGTERM and was killed (pid {}, {:.1} s)",
            timeout.as_secs(),
            pid.pid,
            d.as_secs_f64()
        ),
        detached::Stopped::Stuck => {
            return Err(Error::Startup(format!(
                "pid {} survived SIGTERM and SIGKILL: check it with `ps -o pid,stat,cmd -p {}`",
                pid.pid, pid.pid
            )))
        }
    };
    files::remove(&layout.pid_file)?;
    Ok(finish(line, kind, Some(pid.pid), took))
}

pub fn restart(cmd: &RestartCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    let timeout = Duration::from_secs(cmd.timeout);
    if manifest.supervisor().map_err(Error::Config)? == Supervisor::Systemd {
        require_systemd()?;
        systemctl::systemctl(&["restart", &format!("{}.service", layout.name)])?;
        if cmd.json {
            print_json(&json!({ "name": layout.name, "restarted": true }));
        } else {
            outln!("Orchestrator \"{}\" restarted.", layout.name);
        }
        return Ok(());
    }
    if !cmd.json {
        stop_located(&layout, &manifest, timeout, Report::Text)?;
        return start_located(&layout, &manifest, timeout, Report::Text).map(drop);
    }
    let stopped = stop_located(&layout, &manifest, timeout, Report::Silent)?;
    let started = start_located(&layout, &manifest, timeout, Report::Silent)?;
    print_json(
        &json!({ "name": layout.name, "restarted": true, "stopped": stopped, "started": started }),
    );
    Ok(())
}

pub fn status(cmd: &StatusCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    let (_, url) = instance_env(&layout)?;
    let supervisor = manifest.supervisor().map_err(Error::Config)?;
    let (running, pid, start_ticks) = match supervisor {
        Supervisor::Systemd => {
            require_systemd()?;
            let (active, pid) = systemctl::state(&layout.name)?;
            let ticks = process::stat_of(pid).map(|s| s.start_ticks);
            (
                active == "active" || active == "activating",
                Some(pid).filter(|p| *p > 0),
                ticks,
            )
        }
        Supervisor::Process => match detached::running(&layout) {
            Some((pid, stat)) => (true, Some(pid.pid), Some(stat.start_ticks)),
            None => (false, None, None),
        },
    };
    let uptime = start_ticks
        .filter(|_| running)
        .zip(process::system_uptime())
        .map(|(ticks, up)| process::uptime(ticks, process::ticks_per_second(), up));
    let ready = running.then(|| detached::probe(&format!("{url}/ready")));
    if cmd.json {
        print_json(&json!({
            "name": layout.name,
            "supervisor": supervisor.as_str(),
            "running": running,
            "pid": pid,
            "uptimeSeconds": uptime.map(|u| u.as_secs()),
            "url": url,
            "port": url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse::<u16>().ok()),
            "ready": matches!(ready, Some(Ok(200))),
            "readyStatus": ready.as_ref().and_then(|r| r.as_ref().ok()),
            "readyError": ready.as_ref().and_then(|r| r.as_ref().err()),
            "instanceDir": layout.dir,
            "log": log_of(&layout),
        }));
        return Ok(());
    }
    if !running {
        outln!("Orchestrator \"{}\": stopped", layout.name);
        outln!(
            "  Start: kici-admin orchestrator start --instance-dir {}",
            layout.dir.display()
        );
        return Ok(());
    }
    let up = uptime.map_or("unknown".to_owned(), process::human_duration);
    let pid = pid.map_or("unknown".to_owned(), |p| p.to_string());
    outln!(
        "Orchestrator \"{}\": running (pid {pid}, up {up})",
        layout.name
    );
    let ready = match ready {
        Some(Ok(200)) => "200 ready".to_owned(),
        Some(Ok(s)) => format!("{s} not ready (the database does not answer; see the log)"),
        Some(Err(e)) => format!("no answer: {e}"),
        None => String::new(),
    };
    outln!("  URL:    {url}   /ready: {ready}");
    outln!("  Log:    {}", log_of(&layout));
    Ok(())
}

pub fn logs(cmd: &LogsCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    match manifest.supervisor().map_err(Error::Config)? {
        Supervisor::Systemd => systemctl::journal(&layout.name, cmd.lines, cmd.follow),
        Supervisor::Process => detached::print_log(&layout.log_file, cmd.lines, cmd.follow),
    }
}

pub fn uninstall(cmd: &UninstallCmd, globals: &Globals) -> Result<(), Error> {
    let (layout, manifest) = files::locate(globals, cmd.name.as_deref())?;
    let name = &layout.name;
    if cmd.json && !cmd.yes {
        return Err(Error::Usage(
            "uninstall --json asks no question: add --yes".into(),
        ));
    }
    if !cmd.yes {
        let prompt = format!(
            "Uninstall the orchestrator instance \"{name}\" in {}? The database is not touched. (y/N) ",
            layout.dir.display()
        );
        let confirmed = crate::cli::source::confirm(
            &prompt,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout(),
        )
        .map_err(|e| Error::Usage(format!("cannot read the confirmation: {e}")))?;
        if !confirmed {
            outln!("Cancelled.");
            return Ok(());
        }
    }
    let database_url = files::read_env_vars(&layout.env_file)
        .ok()
        .and_then(|v| v.get("KICI_DATABASE_URL").cloned());
    let sharing = database_url
        .as_deref()
        .map(|u| super::shared_db::instances_on(u, name))
        .unwrap_or_default();
    let database = database_url.as_deref().map(redact_database_url);
    let report = if cmd.json {
        Report::Silent
    } else {
        Report::Text
    };
    if manifest.supervisor().map_err(Error::Config)? == Supervisor::Systemd {
        require_systemd()?;
        systemctl::systemctl(&["disable", "--now", &format!("{name}.service")])?;
        if let Some(unit) = &layout.unit_file {
            files::remove(unit)?;
        }
        systemctl::systemctl(&["daemon-reload"])?;
    } else {
        stop_located(&layout, &manifest, Duration::from_secs(20), report)?;
    }
    for file in [
        &layout.env_file,
        &layout.pid_file,
        &layout.log_file,
        &layout.manifest,
    ] {
        files::remove(file)?;
    }
    files::update_index(&files::host(), name, None);
    let folder_gone = std::fs::remove_dir(&layout.dir).is_ok();
    let kept_state = !folder_gone && layout.state_dir.exists();
    if cmd.json {
        print_json(&json!({
            "name": name,
            "uninstalled": true,
            "instanceDir": layout.dir,
            "removedUnit": layout.unit_file,
            "keptStateDir": kept_state.then_some(&layout.state_dir),
            "database": database,
            "databaseUsedBy": sharing.iter().map(|(n, d)| json!({"name": n, "instanceDir": d})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    outln!("Orchestrator instance \"{name}\" uninstalled.");
    if let Some(unit) = &layout.unit_file {
        outln!("  Removed the unit {}", unit.display());
    }
    outln!(
        "  Removed the env file, manifest, pid and log files in {}",
        layout.dir.display()
    );
    if kept_state {
        outln!(
            "  Kept {} (the instance's state and filesystem storage): remove it by hand if it is no longer needed",
            layout.state_dir.display()
        );
    }
    match (database, sharing.as_slice()) {
        (Some(db), []) => outln!(
            "  The database {db} was not touched; no other instance registered here uses it: drop it \
             yourself if it is no longer needed"
        ),
        (Some(db), others) => {
            let names: Vec<String> = others
                .iter()
                .map(|(n, d)| format!("{n} ({})", d.display()))
                .collect();
            outln!(
                "  The database {db} was not touched and is still used by: {} — do not drop it",
                names.join(", ")
            )
        }
        (None, _) => outln!("  The database was not touched"),
    }
    Ok(())
}
