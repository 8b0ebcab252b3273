//! `kici-admin orchestrator …`: the daemon and (later) its service lifecycle.

use argh::FromArgs;

use super::Globals;
use crate::Error;

/// Run or manage the orchestrator daemon.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "orchestrator")]
pub struct OrchestratorCmd {
    #[argh(subcommand)]
    pub command: OrchestratorSub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum OrchestratorSub {
    Run(RunCmd),
}

/// Run the orchestrator in the foreground (what a systemd unit's ExecStart runs). Configuration
/// comes from KICI_* environment variables; see README.md.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunCmd {}

pub fn run(cmd: OrchestratorCmd, _globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        OrchestratorSub::Run(RunCmd {}) => crate::daemon::run(),
    }
}
