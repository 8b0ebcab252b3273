//! Webhook ingestion behind the HTTP routes: what may be accepted (admission) and the
//! group-committing recorder.

pub mod admission;
pub mod recorder;

pub use recorder::{Recorded, Recorder};
