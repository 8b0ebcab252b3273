//! The detached daemon of an instance without systemd, as the pid file and `/proc` show it.
//!
//! The pid file holds the pid on its first line (what other tools expect) and the process's
//! start time in clock ticks since boot on the second. A pid is only ever signalled when
//! `/proc/<pid>/stat` still shows that start time and its command line is `… orchestrator run`:
//! after a reboot or a crash the pid may belong to an unrelated process by now.

use std::time::Duration;

/// What `start` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidFile {
    pub pid: u32,
    pub start_ticks: u64,
}

impl PidFile {
    pub fn render(&self) -> String {
        format!("{}\n{}\n", self.pid, self.start_ticks)
    }

    pub fn parse(text: &str) -> Option<PidFile> {
        let mut lines = text.lines().map(str::trim);
        let pid = lines.next()?.parse().ok().filter(|p| *p > 1)?;
        let start_ticks = lines.next()?.parse().ok()?;
        Some(PidFile { pid, start_ticks })
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// R, S, D, Z (zombie: exited, not yet reaped), X …
    pub state: char,
    pub start_ticks: u64,
}

impl Stat {
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`: state is field 3, starttime field 22.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

/// True when a NUL-separated `/proc/<pid>/cmdline` is `<anything> orchestrator run`.
pub fn is_daemon_cmdline(cmdline: &[u8]) -> bool {
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    args.len() >= 3 && args[args.len() - 2] == b"orchestrator" && args[args.len() - 1] == b"run"
}

/// How long the process has run: system uptime minus its start time.
pub fn uptime(start_ticks: u64, ticks_per_second: u64, system_uptime: Duration) -> Duration {
    let started = Duration::from_millis(start_ticks * 1000 / ticks_per_second.max(1));
    system_uptime.saturating_sub(started)
}

/// `1h 02m 03s` style.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, sec) => format!("{m}m {sec:02}s"),
        (0, h, m, sec) => format!("{h}h {m:02}m {sec:02}s"),
        (d, h, m, _) => format!("{d}d {h}h {m:02}m"),
    }
}

/// The last `n` lines of a log.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- the /proc edge -------------------------------------------------------------------------

/// `/proc/<pid>/stat`, when the process exists.
pub fn stat_of(pid: u32) -> Option<Stat> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| parse_stat(&t))
}

/// The live (not exited) daemon the pid file names, or `None` (gone, reused, or exited).
pub fn live_daemon(pid_file: &PidFile) -> Option<Stat> {
    let stat = stat_of(pid_file.pid)?;
    if stat.exited() || stat.start_ticks != pid_file.start_ticks {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid_file.pid)).ok()?;
    is_daemon_cmdline(&cmdline).then_some(stat)
}

/// Seconds since boot (`/proc/uptime`).
pub fn system_uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Sends `signal` to `pid`; false when the process is gone.
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory preconditions; pid > 1 is checked by PidFile::parse.
    unsafe { libc::kill(pid, signal) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trip_and_junk() {
        let p = PidFile {
            pid: 4242,
            start_ticks: 987_654,
        };
        assert_eq!(PidFile::parse(&p.render()), Some(p));
        assert_eq!(PidFile::parse("4242\n"), None);
        assert_eq!(PidFile::parse("1\n5\n"), None);
        assert_eq!(PidFile::parse("x\n5\n"), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (kici (admin) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 123456 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_ticks: 123_456
            })
        );
        let zombie = "7 (kici-admin) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert!(parse_stat(zombie).unwrap().exited());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn only_the_daemon_command_line_matches() {
        assert!(is_daemon_cmdline(
            b"/usr/local/bin/kici-admin\0orchestrator\0run\0"
        ));
        assert!(!is_daemon_cmdline(
            b"/usr/local/bin/kici-admin\0orchestrator\0status\0"
        ));
        assert!(!is_daemon_cmdline(b""));
    }

    #[test]
    fn uptime_and_its_text() {
        let up = uptime(1000, 100, Duration::from_secs(3725 + 10));
        assert_eq!(up, Duration::from_secs(3725));
        assert_eq!(human_duration(up), "1h 02m 05s");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(61)), "1m 01s");
        assert_eq!(human_duration(Duration::from_secs(90_000)), "1d 1h 00m");
        assert_eq!(uptime(10_000, 100, Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
