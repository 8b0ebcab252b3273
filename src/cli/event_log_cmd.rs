//! `kici-admin event-log …`: the recorded deliveries. Each subcommand lives in its own file
//! (`event_log_replay.rs` for `replay`).

use argh::FromArgs;

use super::Globals;
use crate::Error;

/// Recorded webhook deliveries: process one again.
#[derive(FromArgs)]
#[argh(subcommand, name = "event-log")]
pub struct EventLogCmd {
    #[argh(subcommand)]
    pub command: EventLogSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum EventLogSub {
    Replay(super::event_log_replay::ReplayCmd),
}

pub fn run(cmd: EventLogCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        EventLogSub::Replay(c) => super::event_log_replay::run(c, globals),
    }
}
