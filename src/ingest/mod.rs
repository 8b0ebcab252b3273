//! Webhook ingestion behind the HTTP routes: the group-committing recorder.

pub mod recorder;

pub use recorder::{Recorded, Recorder};
