//! `kici-admin event-log …`: the command group. `list` and `show` live in `event_log.rs`;
//! `replay` is registered here by its own module (each subcommand brings its own arguments).

use argh::FromArgs;

use super::{event_log, Globals};
use crate::Error;

/// See each webhook delivery: what arrived, what it started, and why each workflow did or did
/// not run.
#[derive(FromArgs)]
#[argh(subcommand, name = "event-log")]
pub struct EventLogCmd {
    #[argh(subcommand)]
    pub command: EventLogSub,
}

// Merge note: `Replay(...)` joins `List` and `Show` here.
#[derive(FromArgs)]
#[argh(subcommand)]
pub enum EventLogSub {
    List(event_log::ListCmd),
    Show(event_log::ShowCmd),
}

pub fn run(cmd: EventLogCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        EventLogSub::List(c) => event_log::list(c, globals),
        EventLogSub::Show(c) => event_log::show(c, globals),
    }
}
