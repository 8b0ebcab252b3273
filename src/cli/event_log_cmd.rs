//! `kici-admin event-log …`: the command group. `list` and `show` live in `event_log.rs`,
//! `replay` in `event_log_replay.rs` (each subcommand brings its own arguments).

use argh::FromArgs;

use super::{event_log, event_log_replay, Globals};
use crate::Error;

/// See each webhook delivery: what arrived, what it started, and why each workflow did or did
/// not run; process one again.
#[derive(FromArgs)]
#[argh(subcommand, name = "event-log")]
pub struct EventLogCmd {
    #[argh(subcommand)]
    pub command: EventLogSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum EventLogSub {
    List(event_log::ListCmd),
    Show(event_log::ShowCmd),
    Replay(event_log_replay::ReplayCmd),
}

pub fn run(cmd: EventLogCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        EventLogSub::List(c) => event_log::list(c, globals),
        EventLogSub::Show(c) => event_log::show(c, globals),
        EventLogSub::Replay(c) => event_log_replay::run(c, globals),
    }
}
