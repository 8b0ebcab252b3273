//! Step logs from `log.chunk` (docs/agent-protocol.md, "Logs"): one JSON line per log line,
//! `{"ts":"<ISO>","level":"stdout","msg":"<line>","meta":{}}`. A chunk's lines are committed to
//! `execution_log_lines` (agent/log_writer.rs, group-committed) before the chunk counts as
//! received, so they survive a crash and are readable at once. When a step or job ends its lines
//! are compacted into the log bucket (or the filesystem store) at
//! `kici-logs/executions/<runId>/job-<jobName>/step-<i>.log` and deleted from the table; a
//! daemon's housekeeping (`housekeep`) finishes compactions a previous process left pending.
//! Without storage the lines stay in the table until `KICI_LOG_RETENTION_DAYS`.
//!
//! A job's log is capped at its dispatch's `maxLogSizeBytes` ([`LogBudget`];
//! docs/agent-protocol.md, "Limits"): lines past the cap are not stored, and one truncation line
//! says so.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use super::log_writer::{self, count_lines, LogWriter, Row};
use crate::{
    db::{pool::Pool, DbError},
    storage::{keys, Area, Storage},
};

/// The per-job log cap when the dispatch names none (10 MiB).
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// How much of a job's log may still be stored: a line costs its text's bytes plus its newline;
/// lines are stored while the job's total stays within `cap`, and the first line that would pass
/// it ends the log (that line and every later one are dropped, and the truncation line is stored
/// once in their place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    pub cap: u64,
    pub used: u64,
    pub truncated: bool,
}

/// What of a chunk is stored: its first `keep` lines, then the truncation line if `truncate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub keep: usize,
    pub truncate: bool,
}

impl LogBudget {
    pub fn with_cap(cap: u64) -> LogBudget {
        LogBudget {
            cap,
            used: 0,
            truncated: false,
        }
    }

    /// The budget of a job from its stored dispatch body: `maxLogSizeBytes` as a number or a
    /// numeric string (the agent coerces it the same way), else [`DEFAULT_MAX_LOG_BYTES`].
    pub fn of(dispatch: &Value) -> LogBudget {
        let named = match dispatch.get("maxLogSizeBytes") {
            Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok().map(|f| f.max(0.0) as u64),
            _ => None,
        };
        LogBudget::with_cap(named.unwrap_or(DEFAULT_MAX_LOG_BYTES))
    }

    /// Counts a chunk against the budget.
    pub fn admit(&mut self, lines: &[String]) -> Admitted {
        if self.truncated {
            return Admitted {
                keep: 0,
                truncate: false,
            };
        }
        let mut keep = 0;
        for line in lines {
            let cost = line.len() as u64 + 1;
            if self.used.saturating_add(cost) > self.cap {
                self.truncated = true;
                return Admitted {
                    keep,
                    truncate: true,
                };
            }
            self.used += cost;
            keep += 1;
        }
        Admitted {
            keep,
            truncate: false,
        }
    }

    /// The line stored once where a job's log was cut.
    pub fn truncation_line(&self) -> String {
        format!(
            "[log truncated: the job's log passed {} bytes; later lines were not stored]",
            self.cap
        )
    }
}

pub struct Logs {
    storage: Option<Arc<Storage>>,
    writer: LogWriter,
    /// The next `seq` of each step being written to (job id, step index).
    next: Mutex<HashMap<(String, i64), i64>>,
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
    pub fn new(storage: Option<Arc<Storage>>, pool: Pool) -> Logs {
        Logs {
            storage,
            writer: LogWriter::new(pool),
            next: Mutex::default(),
        }
    }

    /// Stores a chunk (committed when this returns); returns its size in bytes (what
    /// `log_bytes` counts).
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
        if lines.is_empty() {
            return size;
        }
        let key = (job_id.to_owned(), step);
        let known = self.lock().get(&key).copied();
        let first = match known {
            Some(n) => n,
            None => self.first_seq(run_id, job_id, job_name, step),
        };
        let bodies: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect();
        let rows = {
            let mut next = self.lock();
            let seq = next.entry(key.clone()).or_insert(first);
            let rows: Vec<Row> = bodies
                .into_iter()
                .map(|body| {
                    *seq += 1;
                    Row {
                        job_id: job_id.to_owned(),
                        step,
                        seq: *seq - 1,
                        body,
                    }
                })
                .collect();
            rows
        };
        if self.writer.write(rows).is_err() {
            // Lines lost here must not leave a gap: the next chunk starts from what is stored.
            self.lock().remove(&key);
        }
        size
    }

    /// Where a step's lines continue: after its rows in the table, else after its stored log.
    fn first_seq(&self, run_id: &str, job_id: &str, job_name: &str, step: i64) -> i64 {
        match self
            .writer
            .pool()
            .with_retry(|c| log_writer::next_seq(c, job_id, step))
        {
            Ok(Some(n)) => return n,
            Ok(None) => {}
            Err(e) => log::warn!("reading where step {step} of job {job_id} stands: {e}"),
        }
        let Some(storage) = &self.storage else {
            return 0;
        };
        match storage.get(Area::Logs, &keys::step_log(run_id, job_name, step)) {
            Ok(bytes) => bytes.map_or(0, |b| count_lines(&b)),
            Err(e) => {
                log::warn!("reading the stored log of step {step} of job {job_id}: {e}");
                0
            }
        }
    }

    pub fn flush_step(&self, job_id: &str, step: i64) {
        if let Err(e) = compact(self.writer.pool(), self.storage.as_deref(), job_id, step) {
            log::warn!("compacting the log of step {step} of job {job_id}: {e}");
        }
    }

    /// Compacts every step of a job with lines still in the table (its setup log included).
    pub fn flush_job(&self, job_id: &str) {
        self.lock().retain(|k, _| k.0 != job_id);
        if self.storage.is_none() {
            return;
        }
        match self
            .writer
            .pool()
            .with_retry(|c| log_writer::steps_of(c, job_id))
        {
            Ok(steps) => {
                for step in steps {
                    self.flush_step(job_id, step);
                }
            }
            Err(e) => log::warn!("listing the logs of job {job_id}: {e}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i64), i64>> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Appends a step's table rows to its stored log and deletes them, in one transaction holding
/// the rows locked (so two compactions of one step never both append). Rows already in the object
/// (a crash between the write and the delete) are not appended again. Without storage: nothing.
pub fn compact(
    pool: &Pool,
    storage: Option<&Storage>,
    job_id: &str,
    step: i64,
) -> Result<(), String> {
    let Some(storage) = storage else {
        return Ok(());
    };
    let outcome = pool.with_retry(|c| {
        let mut tx = c
            .transaction()
            .map_err(DbError::query("compacting a log"))?;
        let rows = log_writer::lock_lines(&mut tx, job_id, step)?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(Ok(()));
        };
        let Some((run_id, job_name)) = log_writer::job_names(&mut tx, job_id)? else {
            return Ok(Ok(()));
        };
        let key = keys::step_log(&run_id, &job_name, step);
        let stored = match storage.get(Area::Logs, &key) {
            Ok(b) => b.map_or(0, |b| count_lines(&b)),
            Err(e) => return Ok(Err(format!("reading {key}: {e}"))),
        };
        let (bytes, _) = log_writer::splice(stored, &rows, false);
        if !bytes.is_empty() {
            if let Err(e) = storage.append(Area::Logs, &key, &bytes) {
                return Ok(Err(format!("writing {key}: {e}")));
            }
        }
        log_writer::delete_upto(&mut tx, job_id, step, last)?;
        tx.commit().map_err(DbError::query("compacting a log"))?;
        Ok(Ok(()))
    });
    outcome.map_err(|e| e.to_string())?
}

/// Finishes compactions left pending (steps or jobs that ended with lines still in the table)
/// and, without storage, deletes lines older than `retention_days`. Run at start and periodically.
pub fn housekeep(pool: &Pool, storage: Option<&Storage>, retention_days: u32) {
    match storage {
        Some(_) => match pool.with_retry(log_writer::pending_steps) {
            Ok(steps) => {
                for (job_id, step) in steps {
                    if let Err(e) = compact(pool, storage, &job_id, step) {
                        log::warn!("compacting the log of step {step} of job {job_id}: {e}");
                    }
                }
            }
            Err(e) => log::warn!("finding pending log compactions: {e}"),
        },
        None => match pool.with_retry(|c| log_writer::expire(c, retention_days)) {
            Ok(0) => {}
            Ok(n) => log::info!("deleted {n} log line(s) older than {retention_days} day(s)"),
            Err(e) => log::warn!("expiring log lines: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_budget_keeps_lines_up_to_the_cap_then_truncates_once() {
        let mut b = LogBudget::with_cap(10);
        // "abcd\n" costs 5: two fit exactly.
        assert_eq!(
            b.admit(&lines(&["abcd", "efgh"])),
            Admitted {
                keep: 2,
                truncate: false
            }
        );
        assert_eq!(b.used, 10);
        // One more byte passes the cap: nothing of this chunk, and the truncation line.
        assert_eq!(
            b.admit(&lines(&["", "x"])),
            Admitted {
                keep: 0,
                truncate: true
            }
        );
        // Once truncated, nothing more and no second truncation line.
        assert_eq!(
            b.admit(&lines(&["y"])),
            Admitted {
                keep: 0,
                truncate: false
            }
        );
        assert_eq!(b.used, 10);
    }

    #[test]
    fn the_line_that_passes_the_cap_is_cut_with_the_rest_of_its_chunk() {
        let mut b = LogBudget::with_cap(12);
        assert_eq!(
            b.admit(&lines(&["aaaa", "bbbb", "cc", "dd"])),
            Admitted {
                keep: 2,
                truncate: true
            }
        );
        assert!(b.truncated);
        assert_eq!(
            b.truncation_line(),
            "[log truncated: the job's log passed 12 bytes; later lines were not stored]"
        );
        // An empty chunk under the cap changes nothing.
        let mut fresh = LogBudget::with_cap(0);
        assert_eq!(
            fresh.admit(&[]),
            Admitted {
                keep: 0,
                truncate: false
            }
        );
        assert!(!fresh.truncated);
    }

    #[test]
    fn the_cap_comes_from_the_dispatch_else_ten_mebibytes() {
        assert_eq!(LogBudget::of(&json!({})).cap, DEFAULT_MAX_LOG_BYTES);
        assert_eq!(LogBudget::of(&json!({"maxLogSizeBytes": 300})).cap, 300);
        assert_eq!(LogBudget::of(&json!({"maxLogSizeBytes": "4096"})).cap, 4096);
        assert_eq!(LogBudget::of(&json!({"maxLogSizeBytes": 1.5e3})).cap, 1500);
        assert_eq!(
            LogBudget::of(&json!({"maxLogSizeBytes": "lots"})).cap,
            DEFAULT_MAX_LOG_BYTES
        );
        assert_eq!(LogBudget::of(&json!({"maxLogSizeBytes": -5})).cap, 0);
    }

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
