//! One line per event on stderr. Not a terminal (systemd, files, pipes): each line starts with
//! the syslog priority `<N>` that journald reads (SyslogLevelPrefix=yes is its default); the
//! timestamp is left out when journald adds its own (JOURNAL_STREAM set). Dependencies log at
//! warn and above only. Nothing here knows secrets: callers never pass them to a log macro.

use std::io::{IsTerminal, Write};

use log::{Level, LevelFilter};

pub fn init(level: LevelFilter) {
    let terminal = std::io::stderr().is_terminal();
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Warn.min(level))
        .filter_module("kici_orchestrator", level)
        .filter_module("kici_admin", level)
        .format(move |buf, r| {
            let priority = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            if terminal {
                writeln!(
                    buf,
                    "{} {:<5} {}",
                    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    r.level(),
                    r.args()
                )
            } else if journald {
                writeln!(buf, "<{priority}>{}", r.args())
            } else {
                writeln!(
                    buf,
                    "<{priority}>{} {:<5} {}",
                    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    r.level(),
                    r.args()
                )
            }
        });
    // A second init (tests) is harmless.
    let _ = b.try_init();
}
