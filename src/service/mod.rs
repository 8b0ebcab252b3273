//! Orchestrator instances as `kici-admin orchestrator install | start | stop | …` manage them:
//! what an instance is made of (env file, manifest, systemd unit) as pure functions over values,
//! the wizard's question flow over an injected console, and the few edges that touch the system
//! (`/proc`, the database and GitHub for the wizard's first source). Printing and argument
//! parsing stay in `cli/orchestrator/`.

pub mod existing;
pub mod layout;
pub mod manifest;
pub mod process;
pub mod provision;
pub mod settings;
pub mod unit;
pub mod wizard;
