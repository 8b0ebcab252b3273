//! From a recorded webhook to planned jobs (spec-runtime §3), as pure code: event normalization
//! (`event`), lock-file parsing and validation (`lockfile`), trigger matching with its decision
//! trace (`matcher`, over picomatch-compatible globs in `glob` and JavaScript regexes on a
//! linear-time engine in `jsregex`), and planning — matrix
//! expansion, label routing, the `needs` DAG, readiness and skip cascades, run status and the
//! job state machine (`plan`, `state`). The I/O is at the edge: `process` (worker threads: lock
//! fetch, matching, run creation) and `records` (the database side).

pub mod cache;
pub mod credentials;
mod dispatch;
pub mod event;
pub mod glob;
pub mod jsregex;
pub mod lease;
pub mod limits;
pub mod lockfile;
pub mod matcher;
pub mod mint;
mod origin;
pub mod plan;
pub mod process;
pub mod records;
pub mod state;
