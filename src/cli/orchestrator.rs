//! `kici-admin orchestrator …`: the daemon (`run`) and its instance lifecycle (`install`,
//! `start`, `stop`, `restart`, `status`, `logs`, `uninstall`). The instance model lives in
//! `service/`; these files parse, do the file and process work, and print.

pub(super) mod console;
mod detached;
pub(super) mod files;
mod install;
mod lifecycle;
mod systemctl;

use argh::FromArgs;

use super::Globals;
use crate::Error;

pub use install::InstallCmd;
pub use lifecycle::{LogsCmd, StartCmd, StatusCmd, StopCmd, UninstallCmd};

/// Run or manage the orchestrator daemon.
#[derive(FromArgs)]
#[argh(subcommand, name = "orchestrator")]
pub struct OrchestratorCmd {
    #[argh(subcommand)]
    pub command: OrchestratorSub,
}

/// No Debug: `install` holds secrets given on the command line.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs)]
#[argh(subcommand)]
pub enum OrchestratorSub {
    Run(RunCmd),
    Install(InstallCmd),
    Start(StartCmd),
    Stop(StopCmd),
    Restart(RestartCmd),
    Status(StatusCmd),
    Logs(LogsCmd),
    Uninstall(UninstallCmd),
}

/// Run the orchestrator in the foreground (what a systemd unit's ExecStart runs). Configuration
/// comes from KICI_* environment variables; see README.md.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunCmd {}

/// Stop the orchestrator, then start it again and wait until it is ready.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restart")]
pub struct RestartCmd {
    /// the instance's name (default: the instance in --instance-dir or the current folder)
    #[argh(option)]
    pub name: Option<String>,
    /// seconds to wait for the daemon to stop, then to become ready (default 30)
    #[argh(option, default = "30")]
    pub timeout: u64,
}

pub fn run(cmd: OrchestratorCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        OrchestratorSub::Run(RunCmd {}) => crate::daemon::run(),
        OrchestratorSub::Install(c) => install::run(c, globals),
        OrchestratorSub::Start(c) => lifecycle::start(&c, globals),
        OrchestratorSub::Stop(c) => lifecycle::stop(&c, globals),
        OrchestratorSub::Restart(c) => lifecycle::restart(&c, globals),
        OrchestratorSub::Status(c) => lifecycle::status(&c, globals),
        OrchestratorSub::Logs(c) => lifecycle::logs(&c, globals),
        OrchestratorSub::Uninstall(c) => lifecycle::uninstall(&c, globals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(args: &[&str]) -> bool {
        OrchestratorCmd::from_args(&["orchestrator"], args).is_ok()
    }

    #[test]
    fn every_subcommand_parses() {
        for line in [
            &["run"][..],
            &[
                "install",
                "--mode",
                "independent",
                "--database-url",
                "postgresql://x/y",
                "--port",
                "4100",
                "--json",
            ],
            &[
                "install",
                "--wizard",
                "--name",
                "ci",
                "--storage-type",
                "none",
                "--force",
            ],
            &[
                "install",
                "--env-file",
                "/tmp/x.env",
                "--supervisor",
                "process",
            ],
            &["start", "--name", "ci", "--timeout", "5", "--json"],
            &["stop", "--timeout", "5"],
            &["restart"],
            &["status", "--json"],
            &["logs", "-f", "-n", "20"],
            &["uninstall", "--yes"],
        ] {
            assert!(parses(line), "does not parse: {line:?}");
        }
        assert!(!parses(&["install", "--port"]));
    }
}
