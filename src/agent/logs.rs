//! Step logs from `log.chunk` (docs/agent-protocol.md, "Logs"): one JSON line per log line,
//! `{"ts":"<ISO>","level":"stdout","msg":"<line>","meta":{}}`, stored per step at
//! `kici-logs/executions/<runId>/job-<jobName>/step-<i>.log` in the log bucket (or the
//! filesystem store). Lines are buffered per step and written when a step or job ends or the
//! buffer passes 64 KiB, so S3's read-modify-write append happens rarely. Without storage the
//! bytes are only counted.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::json;

use crate::storage::{keys, Area, Storage};

const FLUSH_AT: usize = 64 * 1024;

struct Buffer {
    run_id: String,
    job_name: String,
    data: Vec<u8>,
}

#[derive(Default)]
pub struct Logs {
    storage: Option<Arc<Storage>>,
    buffers: Mutex<HashMap<(String, i64), Buffer>>,
}

/// JSON lines for `lines`, stamped with the chunk's time.
pub fn encode(lines: &[String], timestamp_ms: i64) -> Vec<u8> {
    let ts = jiff::Timestamp::from_millisecond(timestamp_ms)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut out = Vec::new();
    for line in lines {
        let record = json!({ "ts": ts, "level": "stdout", "msg": line, "meta": {} });
        out.extend_from_slice(record.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

impl Logs {
    pub fn new(storage: Option<Arc<Storage>>) -> Logs {
        Logs {
            storage,
            buffers: Mutex::default(),
        }
    }

    /// Buffers a chunk; returns its size in bytes (what `log_bytes` counts).
    pub fn append(
        &self,
        run_id: &str,
        job_id: &str,
        job_name: &str,
        step: i64,
        lines: &[String],
        ts: i64,
    ) -> u64 {
        let bytes = encode(lines, ts);
        let size = bytes.len() as u64;
        if self.storage.is_none() {
            return size;
        }
        let full = {
            let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
            let buffer = buffers
                .entry((job_id.to_owned(), step))
                .or_insert_with(|| Buffer {
                    run_id: run_id.to_owned(),
                    job_name: job_name.to_owned(),
                    data: Vec::new(),
                });
            buffer.data.extend_from_slice(&bytes);
            buffer.data.len() >= FLUSH_AT
        };
        if full {
            self.flush(|k| k.0 == job_id && k.1 == step);
        }
        size
    }

    pub fn flush_step(&self, job_id: &str, step: i64) {
        self.flush(|k| k.0 == job_id && k.1 == step);
    }

    pub fn flush_job(&self, job_id: &str) {
        self.flush(|k| k.0 == job_id);
    }

    fn flush(&self, which: impl Fn(&(String, i64)) -> bool) {
        let Some(storage) = &self.storage else { return };
        let taken: Vec<((String, i64), Buffer)> = {
            let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(String, i64)> = buffers.keys().filter(|k| which(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| buffers.remove(&k).map(|b| (k, b)))
                .collect()
        };
        for ((_, step), buffer) in taken {
            let key = keys::step_log(&buffer.run_id, &buffer.job_name, step);
            if let Err(e) = storage.append(Area::Logs, &key, &buffer.data) {
                log::warn!(
                    "writing {} byte(s) of step log {key} failed: {e}",
                    buffer.data.len()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        let out = encode(
            &["hello".into(), "a \"quoted\" line".into()],
            1_795_825_883_893,
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"level":"stdout","meta":{},"msg":"hello","ts":"2026-11-28T00:31:23.893Z"}"#
        );
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["msg"], "a \"quoted\" line");
    }
}
