//! Pieces of the lock files the pipeline tests serve from the fake GitHub.

use serde_json::{json, Value};

/// A static job `name` on `linux` after `needs`, with one step `step-1` without outputs.
pub fn static_job(name: &str, needs: Value) -> Value {
    json!({"_type": "static", "name": name, "runsOn": [{"kind": "exact", "value": "linux"}],
           "needs": needs, "steps": [{"name": "step-1", "hasOutputs": false}]})
}

/// A schema-29 lock file of `.kici/workflows/ci.ts` (content hash `lock-hash`) holding
/// `workflows`, as the bytes served.
pub fn ci_lock_file(workflows: Value) -> Vec<u8> {
    json!({
        "schemaVersion": 29,
        "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
        "contentHash": "lock-hash",
        "workflows": workflows,
    })
    .to_string()
    .into_bytes()
}
