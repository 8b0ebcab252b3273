//! The daemon without systemd: started detached (own session and process group, stdin from
//! /dev/null, stdout and stderr appended to `<name>.log`, the env file as its environment),
//! tracked by `<name>.pid`, stopped with SIGTERM then SIGKILL after a timeout.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::files;
use crate::{
    service::{
        layout::Layout,
        process::{self, PidFile},
        settings::Vars,
    },
    Error,
};

/// Log lines shown when the daemon fails to start.
const TAIL_LINES: usize = 20;
const POLL: Duration = Duration::from_millis(100);

/// The daemon `pid_file` names, if it is running.
pub fn running(layout: &Layout) -> Option<(PidFile, process::Stat)> {
    let text = fs::read_to_string(&layout.pid_file).ok()?;
    let pid = PidFile::parse(&text)?;
    process::live_daemon(&pid).map(|stat| (pid, stat))
}

/// Environment variables the daemon must not inherit from whoever ran `start`: another
/// instance's settings, or a service manager's sockets meant for `kici-admin` itself.
fn inherited_noise(name: &str) -> bool {
    name.starts_with("KICI_")
        || matches!(
            name,
            "NOTIFY_SOCKET"
                | "WATCHDOG_USEC"
                | "WATCHDOG_PID"
                | "LISTEN_FDS"
                | "LISTEN_PID"
                | "JOURNAL_STREAM"
        )
}

/// Spawns the daemon; returns it, its pid file and where its log output starts. Does not wait
/// for readiness. The `Child` is only used to learn its exit status while `start` waits:
/// dropping it neither kills nor waits for the daemon.
pub fn spawn(
    layout: &Layout,
    binary: &Path,
    vars: &Vars,
) -> Result<(std::process::Child, PidFile, u64), Error> {
    files::ensure_dir(&layout.state_dir)?;
    let open_log = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&layout.log_file)
    };
    let cannot_log = |e: std::io::Error| {
        Error::Startup(format!(
            "cannot open the log file {}: {e}",
            layout.log_file.display()
        ))
    };
    let log = open_log().map_err(cannot_log)?;
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(binary);
    cmd.args(["orchestrator", "run"]).current_dir(&layout.dir);
    for (key, _) in std::env::vars_os() {
        if inherited_noise(&key.to_string_lossy()) {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(vars)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(cannot_log)?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; between fork and exec nothing else runs.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        Error::Startup(format!(
            "cannot run {}: {e} (reinstall with --binary <path>)",
            binary.display()
        ))
    })?;
    let pid = child.id();
    let start_ticks = process::stat_of(pid).map(|s| s.start_ticks).unwrap_or(0);
    let pid_file = PidFile { pid, start_ticks };
    files::write_if_changed(&layout.pid_file, &pid_file.render(), 0o600)?;
    Ok((child, pid_file, offset))
}

/// What the wait for `/ready` ended with.
pub enum Readiness {
    Ready(Duration),
    /// The daemon exited: its exit status, and the log written since it started.
    Exited(String, String),
    /// Still not ready at the deadline; the last `/ready` outcome.
    TimedOut(String),
}

pub fn wait_ready(
    layout: &Layout,
    child: &mut std::process::Child,
    url: &str,
    offset: u64,
    timeout: Duration,
) -> Readiness {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_since(&layout.log_file, offset);
            return Readiness::Exited(status.to_string(), log);
        }
        let last = match probe(url) {
            Ok(200) => return Readiness::Ready(started.elapsed()),
            Ok(status) => format!("HTTP {status}"),
            Err(e) => e,
        };
        if started.elapsed() >= timeout {
            return Readiness::TimedOut(last);
        }
        thread::sleep(POLL);
    }
}

/// One GET; the status, or why there was none.
pub fn probe(url: &str) -> Result<u16, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    agent
        .get(url)
        .call()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

pub fn log_since(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_string(&mut text);
    }
    process::tail(&text, TAIL_LINES)
}

/// SIGTERM, wait up to `timeout`, then SIGKILL. Returns how it ended.
pub fn stop(pid: &PidFile, timeout: Duration) -> Stopped {
    let started = Instant::now();
    if !process::send_signal(pid.pid, libc::SIGTERM) {
        return Stopped::Gone;
    }
    if wait_gone(pid, timeout) {
        return Stopped::Terminated(started.elapsed());
    }
    process::send_signal(pid.pid, libc::SIGKILL);
    if wait_gone(pid, Duration::from_secs(5)) {
        Stopped::Killed(started.elapsed())
    } else {
        Stopped::Stuck
    }
}

pub enum Stopped {
    Gone,
    Terminated(Duration),
    Killed(Duration),
    Stuck,
}

fn wait_gone(pid: &PidFile, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process::live_daemon(pid).is_some() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

/// Prints the log's last `lines` lines, then with `follow` whatever is appended, until killed.
pub fn print_log(path: &Path, lines: usize, follow: bool) -> Result<(), Error> {
    use std::io::Write;
    let text = fs::read(path).map_err(|e| {
        Error::Usage(format!(
            "no log at {}: {e} (the orchestrator has not been started here yet)",
            path.display()
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    let shown = process::tail(&text, lines);
    let mut out = std::io::stdout();
    if !shown.is_empty() {
        crate::cli::output::write_stdout(format_args!("{shown}\n"));
    }
    if !follow {
        return Ok(());
    }
    let mut pos = text.len() as u64;
    loop {
        thread::sleep(Duration::from_millis(250));
        let Ok(mut f) = fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or replaced: start over
        }
        if len == pos {
            continue;
        }
        let mut buf = Vec::new();
        let _ = f.seek(SeekFrom::Start(pos));
        let _ = f.read_to_end(&mut buf);
        pos += buf.len() as u64;
        if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
            crate::cli::output::stdout_failed(&e);
        }
    }
}
