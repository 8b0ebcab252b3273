//! Pieces of the lock files the pipeline tests serve from the fake GitHub.

use serde_json::{json, Value};

/// A static job `name` on `linux` after `needs`, with one step `step-1` without outputs.
pub fn static_job(name: &str, needs: Value) -> Value {
    json!({"_type": "static", "name": name, "runsOn": [{"kind": "exact", "value": "linux"}],
           "needs": needs, "steps": [{"name": "step-1", "hasOutputs": false}]})
}
