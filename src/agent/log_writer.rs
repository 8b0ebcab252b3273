//! Durable step log lines (docs/agent-protocol.md, "Logs"; docs/architecture.md, "Database
//! tables"): the lines of a `log.chunk` are inserted into `execution_log_lines` and committed
//! before the chunk counts as received. Commits are grouped across agents, leader/follower as
//! src/ingest/recorder.rs does for webhooks: a handler thread queues its rows; if a writer slot is
//! free it leads, taking everything queued (up to `MAX_BATCH` rows) and writing it with one
//! statement (one commit), then hands the slot to the oldest waiter if more queued meanwhile.
//!
//! A row's `seq` is the line's 0-based offset in its step's log, so offsets agree between the
//! table and the compacted object: `splice` joins an object and the rows after it.

use std::sync::{
    mpsc::{self, SyncSender},
    Arc, Mutex, MutexGuard,
};

use postgres::{Client, GenericClient};

use crate::{
    db::{pool::Pool, DbError},
    runs::state::{JobStatus, TERMINAL_STEP_STATUSES},
};

const MAX_BATCH: usize = 4096;
/// Batches in flight at once (each holds a pool connection while it commits).
const SLOTS: usize = 2;

/// One log line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub job_id: String,
    pub step: i64,
    pub seq: i64,
    /// The stored JSON line, without its newline.
    pub body: String,
}

type Reply = Result<(), String>;

enum Msg {
    Done(Reply),
    /// Write the next batch (this waiter's rows are in it).
    Lead,
}

struct Pending {
    rows: Vec<Row>,
    tell: SyncSender<Msg>,
}

struct State {
    queue: Vec<Pending>,
    free: usize,
}

struct Inner {
    pool: Pool,
    state: Mutex<State>,
}

/// Cheap to clone; `write` blocks until its rows are committed.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Inner>,
}

impl LogWriter {
    pub fn new(pool: Pool) -> LogWriter {
        LogWriter {
            inner: Arc::new(Inner {
                pool,
                state: Mutex::new(State {
                    queue: Vec::new(),
                    free: SLOTS,
                }),
            }),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// `Err` (with the reason) when the rows could not be committed.
    pub fn write(&self, rows: Vec<Row>) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let (tell, inbox) = mpsc::sync_channel(4);
        let mut st = self.lock();
        st.queue.push(Pending { rows, tell });
        let lead = st.free > 0;
        if lead {
            st.free -= 1;
        }
        drop(st);
        if lead {
            self.lead();
        }
        loop {
            match inbox.recv() {
                Ok(Msg::Done(reply)) => return reply,
                Ok(Msg::Lead) => self.lead(),
                Err(_) => return Err("the log writer lost this chunk's reply".into()),
            }
        }
    }

    fn lead(&self) {
        let mut st = self.lock();
        let n = batch_len(st.queue.iter().map(|p| p.rows.len()), MAX_BATCH);
        let batch: Vec<Pending> = st.queue.drain(..n).collect();
        drop(st);
        if !batch.is_empty() {
            let rows: Vec<&Row> = batch.iter().flat_map(|p| &p.rows).collect();
            let outcome = self
                .inner
                .pool
                .with_retry(|c| insert(c, &rows))
                .map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                log::warn!("storing {} log line(s) failed: {e}", rows.len());
            } else {
                let bytes = rows.iter().map(|r| r.body.len()).sum();
                crate::metrics::hooks::log_stored(rows.len(), bytes);
            }
            for p in batch {
                let _ = p.tell.try_send(Msg::Done(outcome.clone()));
            }
        }
        let mut st = self.lock();
        match st.queue.first() {
            Some(next) => {
                if next.tell.try_send(Msg::Lead).is_err() {
                    st.free += 1; // cannot happen (a queued waiter's inbox is empty)
                }
            }
            None => st.free += 1,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How many queued chunks (of `sizes` rows each) the next batch takes: at least one, then while
/// the rows stay within `max`.
pub fn batch_len(sizes: impl Iterator<Item = usize>, max: usize) -> usize {
    let mut rows = 0;
    let mut n = 0;
    for size in sizes {
        if n > 0 && rows + size > max {
            break;
        }
        rows += size;
        n += 1;
    }
    n
}

fn insert(c: &mut Client, rows: &[&Row]) -> Result<(), DbError> {
    let jobs: Vec<&str> = rows.iter().map(|r| r.job_id.as_str()).collect();
    let steps: Vec<i32> = rows.iter().map(|r| r.step as i32).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    c.execute(
        "INSERT INTO execution_log_lines (job_id, step_index, seq, body)
         SELECT j::uuid, s, q, b FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[])
             AS t(j, s, q, b)
         ON CONFLICT DO NOTHING",
        &[&jobs, &steps, &seqs, &bodies],
    )
    .map_err(DbError::query("storing log lines"))?;
    Ok(())
}

/// The next `seq` of a step in the table (`None`: the table holds none of its lines).
pub fn next_seq(c: &mut Client, job_id: &str, step: i64) -> Result<Option<i64>, DbError> {
    let row = c
        .query_one(
            "SELECT max(seq) + 1 FROM execution_log_lines
             WHERE job_id = $1::text::uuid AND step_index = $2",
            &[&job_id, &(step as i32)],
        )
        .map_err(DbError::query("reading a step's last log line"))?;
    Ok(row.get::<_, Option<i64>>(0))
}

/// At most `limit` of a step's lines in the table from `from` on, in `seq` order: `(seq, body)`.
pub fn lines_from(
    c: &mut Client,
    job_id: &str,
    step: i64,
    from: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    let rows = c
        .query(
            "SELECT seq, body FROM execution_log_lines
             WHERE job_id = $1::text::uuid AND step_index = $2 AND seq >= $3
             ORDER BY seq LIMIT $4",
            &[&job_id, &(step as i32), &from, &limit],
        )
        .map_err(DbError::query("reading log lines"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The last `n` of a step's lines in the table, in `seq` order: `(seq, body)`.
pub fn last_rows(
    c: &mut Client,
    job_id: &str,
    step: i64,
    n: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    let rows = c
        .query(
            "SELECT seq, body FROM execution_log_lines
             WHERE job_id = $1::text::uuid AND step_index = $2 ORDER BY seq DESC LIMIT $3",
            &[&job_id, &(step as i32), &n],
        )
        .map_err(DbError::query("reading a step's last log lines"))?;
    Ok(rows.iter().rev().map(|r| (r.get(0), r.get(1))).collect())
}

/// The last `seq` of a step in the table (`None`: none of its lines is there).
pub fn last_seq(c: &mut Client, job_id: &str, step: i64) -> Result<Option<i64>, DbError> {
    Ok(next_seq(c, job_id, step)?.map(|n| n - 1))
}

/// Whether a read that found `seen` lines missed some: the table held line `last` before the
/// read began, so a complete read has more than `last` lines (a compaction between reading the
/// object and the table hides them until the object is read again).
pub fn missed(last: Option<i64>, seen: i64) -> bool {
    last.is_some_and(|l| seen <= l)
}

/// Deletes a step's rows up to `last` (once they are in storage).
pub fn delete_upto(
    c: &mut impl GenericClient,
    job_id: &str,
    step: i64,
    last: i64,
) -> Result<u64, DbError> {
    c.execute(
        "DELETE FROM execution_log_lines
         WHERE job_id = $1::text::uuid AND step_index = $2 AND seq <= $3",
        &[&job_id, &(step as i32), &last],
    )
    .map_err(DbError::query("deleting compacted log lines"))
}

/// The run id and job name of a job, for its log keys.
pub fn job_names(
    c: &mut impl GenericClient,
    job_id: &str,
) -> Result<Option<(String, String)>, DbError> {
    let row = c
        .query_opt(
            "SELECT run_id::text, job_name FROM execution_jobs WHERE job_id = $1::text::uuid",
            &[&job_id],
        )
        .map_err(DbError::query("reading a job's names"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A step's rows in `seq` order, locked until the transaction ends: `(seq, body)`.
pub fn lock_lines(
    c: &mut impl GenericClient,
    job_id: &str,
    step: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    let rows = c
        .query(
            "SELECT seq, body FROM execution_log_lines
             WHERE job_id = $1::text::uuid AND step_index = $2 ORDER BY seq FOR UPDATE",
            &[&job_id, &(step as i32)],
        )
        .map_err(DbError::query("locking log lines"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The steps of a job with lines in the table.
pub fn steps_of(c: &mut Client, job_id: &str) -> Result<Vec<i64>, DbError> {
    let rows = c
        .query(
            "SELECT DISTINCT step_index FROM execution_log_lines WHERE job_id = $1::text::uuid",
            &[&job_id],
        )
        .map_err(DbError::query("listing a job's log steps"))?;
    Ok(rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).collect())
}

/// Steps with lines in the table whose step or job has ended: compaction a previous process
/// left pending.
pub fn pending_steps(c: &mut Client) -> Result<Vec<(String, i64)>, DbError> {
    let job_terminal: Vec<&str> = JobStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    let step_terminal: Vec<&str> = TERMINAL_STEP_STATUSES.to_vec();
    let rows = c
        .query(
            "SELECT DISTINCT l.job_id::text, l.step_index FROM execution_log_lines l
             JOIN execution_jobs j ON j.job_id = l.job_id
             LEFT JOIN execution_steps s ON s.job_id = l.job_id AND s.step_index = l.step_index
             WHERE j.status = ANY($1) OR s.status = ANY($2)",
            &[&job_terminal, &step_terminal],
        )
        .map_err(DbError::query("finding pending log compactions"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), i64::from(r.get::<_, i32>(1))))
        .collect())
}

/// Deletes lines older than `days` (kept in the table when no storage is configured).
pub fn expire(c: &mut Client, days: u32) -> Result<u64, DbError> {
    c.execute(
        "DELETE FROM execution_log_lines WHERE created_at < now() - make_interval(days => $1)",
        &[&(days as i32)],
    )
    .map_err(DbError::query("expiring log lines"))
}

/// Complete lines in stored bytes (an unfinished last line does not count).
pub fn count_lines(bytes: &[u8]) -> i64 {
    bytes.iter().filter(|b| **b == b'\n').count() as i64
}

/// The rows that continue an object of `stored` lines: those from `seq == stored` on while they
/// follow each other (rows before it are already in the object; a gap ends what can be read),
/// as JSON-line bytes, and the last `seq` taken.
///
/// `contiguous` off (compaction of an ended step) takes every row after the object, gaps or not:
/// a reader never reads past a gap, so no offset it holds moves.
pub fn splice(stored: i64, rows: &[(i64, String)], contiguous: bool) -> (Vec<u8>, Option<i64>) {
    let mut out = Vec::new();
    let mut next = stored;
    let mut last = None;
    for (seq, body) in rows {
        if *seq < next {
            continue;
        }
        if *seq > next && contiguous {
            break;
        }
        out.extend_from_slice(body.as_bytes());
        out.push(b'\n');
        last = Some(*seq);
        next += 1;
    }
    (out, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seqs: &[i64]) -> Vec<(i64, String)> {
        seqs.iter().map(|s| (*s, format!("l{s}"))).collect()
    }

    #[test]
    fn splice_continues_the_object_without_doubles_or_gaps() {
        assert_eq!(
            splice(0, &rows(&[0, 1, 2]), true),
            (b"l0\nl1\nl2\n".to_vec(), Some(2))
        );
        // Rows already compacted (a crash before their delete) are not repeated.
        assert_eq!(
            splice(2, &rows(&[0, 1, 2, 3]), true),
            (b"l2\nl3\n".to_vec(), Some(3))
        );
        // A gap stops the read: nothing after it is taken before the missing line.
        assert_eq!(splice(1, &rows(&[1, 3]), true), (b"l1\n".to_vec(), Some(1)));
        assert_eq!(splice(5, &rows(&[7]), true), (Vec::new(), None));
        assert_eq!(splice(3, &[], true), (Vec::new(), None));
        // Compaction of an ended step keeps every line after the object.
        assert_eq!(
            splice(1, &rows(&[1, 3]), false),
            (b"l1\nl3\n".to_vec(), Some(3))
        );
    }

    #[test]
    fn a_read_that_a_compaction_overtook_is_repeated() {
        assert!(!missed(None, 0), "nothing was in the table");
        assert!(!missed(Some(4), 5), "lines 0..=4 seen");
        assert!(
            missed(Some(4), 3),
            "the table held line 4 but only 3 lines were seen"
        );
    }

    #[test]
    fn counting_stored_lines() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a\nb\n"), 2);
        assert_eq!(count_lines(b"a\nb"), 1);
    }

    #[test]
    fn batches_take_whole_chunks_within_the_limit() {
        assert_eq!(batch_len([3, 3, 3].into_iter(), 7), 2);
        assert_eq!(
            batch_len([10, 1].into_iter(), 7),
            1,
            "one chunk always goes"
        );
        assert_eq!(batch_len(std::iter::empty(), 7), 0);
        assert_eq!(batch_len([1, 2, 4].into_iter(), 7), 3);
    }
}
