//! From a recorded webhook to planned jobs (docs/architecture.md, "Pipeline"), as pure code: event
//! normalization (`event`), lock-file parsing and validation (`lockfile`), trigger matching with
//! its decision trace (`matcher`, over picomatch-compatible globs in `glob` and JavaScript regexes
//! on a linear-time engine in `crate::jsregex`), and planning — matrix expansion, label routing and
//! the `needs` edges (`plan`). The I/O is at the edge: `process` (worker threads: lock fetch,
//! matching, asking `crate::runs` to create the runs) and `records` (the delivery's event-log
//! entry). `rerun` processes a recorded delivery again (reruns, replays, GitHub's re-run requests
//! in `rerequest`). Runs, jobs, their states and the `needs` lifecycle belong to `crate::runs`.

pub mod cache;
pub mod credentials;
mod dispatch;
pub mod event;
pub mod explain;
pub mod glob;
mod installation;
pub mod lease;
pub mod limits;
pub mod lockfile;
pub mod matcher;
pub mod mint;
mod origin;
pub mod plan;
pub mod process;
pub mod records;
mod rerequest;
pub mod rerun;
mod rerun_records;
mod start;
