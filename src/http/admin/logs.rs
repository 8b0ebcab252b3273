//! `GET /runs/:runId/logs?job=&step=&after=&limit=` (docs/operations.md, "Run logs"): a run's
//! step logs as lines `{ts, job, step, stream, line}`, read from the stored step logs
//! (`kici-logs/executions/<runId>/job-<jobName>/step-<i>.log`, one JSON line per log line, written
//! by agent/logs.rs) followed by the step's lines not yet compacted (`execution_log_lines`, whose
//! `seq` is the line's offset in the step's log, so an offset means the same line before and
//! after compaction), with an opaque cursor to resume from. Steps come in order (jobs by creation,
//! then step index, the setup log `-1` first) and lines in file order. The cursor names a job, a
//! line offset in its setup log and a step with a line offset in it; it never moves past a step
//! or a job that can still grow, so a client polling with it sees every line once. A job's setup
//! log can grow until the job ends: its late lines come after the step lines already returned.
//! `complete` is true once the run is terminal and every listed step was read to its end. Reading
//! needs `context.read` and obeys the routing-key scope, as `GET /runs/:runId` does.

use serde_json::{json, Value};

use super::{not_found, ApiError, ApiResult};
use crate::{
    agent::log_writer::{count_lines, last_seq, lines_from, missed, splice},
    app::RunCtx,
    db::pool::Pool,
    http::{Request, Response},
    rbac::{Caller, Permission},
    runs::{state::step_is_terminal, state::JobStatus, store::views},
    storage::{keys, Area},
};

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
/// Cursors longer than this are refused before decoding (ours are far shorter).
const MAX_CURSOR_CHARS: usize = 4096;
const CURSOR_PREFIX: &str = "c1.";
const TERMINAL_RUN: [&str; 3] = ["success", "failed", "cancelled"];

/// Where a reader stands: in the job named `job` (the empty name stands before every job), the
/// next lines to read are line `setup` of its setup log and line `offset` of step `step` (`-1`:
/// no step read yet). Offsets are 0-based and count every stored line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub job: String,
    pub setup: u64,
    pub step: i64,
    pub offset: u64,
}

impl Cursor {
    pub fn start() -> Cursor {
        Cursor {
            job: String::new(),
            setup: 0,
            step: -1,
            offset: 0,
        }
    }

    /// The opaque form: `c1.` and the hex of `<setup>\n<step>\n<offset>\n<job>`.
    pub fn encode(&self) -> String {
        let plain = format!(
            "{}\n{}\n{}\n{}",
            self.setup, self.step, self.offset, self.job
        );
        let mut out = String::with_capacity(CURSOR_PREFIX.len() + plain.len() * 2);
        out.push_str(CURSOR_PREFIX);
        for b in plain.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The cursor `encode` made, or `None` for anything else.
    pub fn parse(s: &str) -> Option<Cursor> {
        if s.len() > MAX_CURSOR_CHARS {
            return None;
        }
        let hex = s.strip_prefix(CURSOR_PREFIX)?.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes = hex
            .chunks(2)
            .map(|pair| {
                let digits = std::str::from_utf8(pair).ok()?;
                u8::from_str_radix(digits, 16).ok()
            })
            .collect::<Option<Vec<u8>>>()?;
        let plain = String::from_utf8(bytes).ok()?;
        let mut parts = plain.splitn(4, '\n');
        let setup = parts.next()?.parse::<u64>().ok()?;
        let step = parts.next()?.parse::<i64>().ok()?;
        let offset = parts.next()?.parse::<u64>().ok()?;
        let job = parts.next()?.to_owned();
        Some(Cursor {
            job,
            setup,
            step,
            offset,
        })
    }
}

/// One stored log line, as the API returns it (without job and step).
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub ts: String,
    pub stream: String,
    pub line: String,
}

/// What `read_lines` found in one step's stored bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub lines: Vec<Line>,
    /// Stored lines passed over (the malformed ones included), counted from the start offset.
    pub consumed: u64,
    /// No stored line remains after the ones passed over.
    pub at_end: bool,
}

/// Reads at most `max` lines of `bytes` (JSON lines), skipping the first `offset` stored lines.
/// A last line without its newline may still be being written, so it counts only when `final_`
/// is set (the step has ended). A malformed line is skipped (it still counts as passed over).
pub fn read_lines(bytes: &[u8], offset: u64, max: usize, final_: bool) -> Read {
    let mut raw: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // `split` yields a last piece after the final newline (empty) or an unfinished line.
    let tail = raw.pop().unwrap_or_default();
    if final_ && !tail.is_empty() {
        raw.push(tail);
    }
    let mut out = Read {
        lines: Vec::new(),
        consumed: 0,
        at_end: true,
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(raw.len());
    for stored in &raw[start..] {
        if out.lines.len() >= max {
            out.at_end = false;
            break;
        }
        out.consumed += 1;
        if let Some(line) = parse_line(stored) {
            out.lines.push(line);
        }
    }
    out
}

/// One stored line `{"ts","level","msg","meta"}`; `None` when it is not one.
pub fn parse_line(stored: &[u8]) -> Option<Line> {
    let v: Value = serde_json::from_slice(stored).ok()?;
    let line = v.get("msg")?.as_str()?.to_owned();
    let text = |k: &str, default: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    Some(Line {
        ts: text("ts", ""),
        stream: text("level", "stdout"),
        line,
    })
}

/// One place a reader may stand: a step's log, or the end of a job that can still gain steps
/// (`key` is `None` there: nothing to read, and the reader stops without moving its cursor).
#[derive(Debug, Clone)]
pub struct Stop {
    pub job: String,
    /// The job's position in the run (creation order).
    pub job_pos: usize,
    pub step: i64,
    pub key: Option<String>,
    /// The step's log can no longer grow.
    pub settled: bool,
}

/// The answer before rendering.
#[derive(Debug)]
pub struct Page {
    pub lines: Vec<(String, i64, Line)>,
    pub cursor: Cursor,
    pub complete: bool,
}

/// What a fetch of one log found: stored lines (JSON lines) beginning at line `base` of the log.
/// A fetch asked for lines from `start` may begin earlier (`base <= start`, e.g. a whole stored
/// object) and may stop early, but never skips a line between `start` and its end.
#[derive(Debug, Default)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub base: u64,
}

/// Walks `plan` from `cursor` (at `cursor_pos`, the cursor job's position; `None` = the start),
/// reading each log with `fetch(key, start, max)` (its lines from `start`, at least `max + 1`
/// of them when that many exist, so the walk can tell whether more follow) until `limit` lines
/// are gathered or a step that can still grow is reached. A job's setup log is read from its own
/// offset each time the walk is in that job, so its late lines are not lost while the job's
/// steps are read.
pub fn walk<E>(
    plan: &[Stop],
    cursor: &Cursor,
    cursor_pos: Option<usize>,
    limit: usize,
    run_terminal: bool,
    mut fetch: impl FnMut(&str, u64, usize) -> Result<Option<Fetched>, E>,
) -> Result<Page, E> {
    let mut page = Page {
        lines: Vec::new(),
        cursor: cursor.clone(),
        complete: run_terminal,
    };
    let mut cur = cursor.clone();
    let mut cur_pos = cursor_pos;
    for stop in plan {
        if cur_pos.is_some_and(|p| stop.job_pos < p) {
            continue;
        }
        if cur_pos != Some(stop.job_pos) {
            cur_pos = Some(stop.job_pos);
            cur = Cursor {
                job: stop.job.clone(),
                setup: 0,
                step: -1,
                offset: 0,
            };
        }
        let Some(key) = &stop.key else {
            // The end of a job that may still gain steps (or setup lines): wait here.
            page.cursor = cur;
            page.complete = false;
            return Ok(page);
        };
        let start = match stop.step {
            -1 => cur.setup,
            n if n < cur.step => continue,
            n if n == cur.step => cur.offset,
            _ => 0,
        };
        let remaining = limit - page.lines.len();
        if remaining == 0 {
            page.cursor = cur;
            page.complete = false;
            return Ok(page);
        }
        let settled = stop.settled || run_terminal;
        let got = fetch(key, start, remaining)?.unwrap_or_default();
        let read = read_lines(
            &got.bytes,
            start.saturating_sub(got.base),
            remaining,
            settled,
        );
        match stop.step {
            -1 => cur.setup = start + read.consumed,
            n => {
                cur.step = n;
                cur.offset = start + read.consumed;
            }
        }
        for line in read.lines {
            page.lines.push((stop.job.clone(), stop.step, line));
        }
        // A growing setup log does not hold its job's steps back; a growing step does.
        if !read.at_end || (!settled && stop.step != -1) {
            page.cursor = cur;
            page.complete = false;
            return Ok(page);
        }
        page.cursor = cur.clone();
    }
    Ok(page)
}

/// The request's filters, limit and cursor; every problem is reported at once.
struct Query {
    job: Option<String>,
    step: Option<i64>,
    after: Option<Cursor>,
    limit: usize,
}

fn query(pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut problems = Vec::new();
    let mut q = Query {
        job: None,
        step: None,
        after: None,
        limit: DEFAULT_LIMIT,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "job" | "step" | "after" if v.is_empty() => {}
            "job" => q.job = Some(v.clone()),
            "step" => match v.parse::<i64>() {
                Ok(n) if n >= -1 => q.step = Some(n),
                _ => problems.push((
                    "step".to_owned(),
                    format!("{v:?} is not a step index (a whole number, -1 for the setup log)"),
                )),
            },
            "after" => match Cursor::parse(v) {
                Some(c) => q.after = Some(c),
                None => problems.push((
                    "after".to_owned(),
                    format!("{v:?} is not a cursor from this route (pass back the \"cursor\" of an earlier answer)"),
                )),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                _ => problems.push((
                    "limit".to_owned(),
                    format!("{v:?} is not a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
            _ => {}
        }
    }
    match problems.is_empty() {
        true => Ok(q),
        false => Err(ApiError::Validation(problems)),
    }
}

/// The steps of `jobs` (as `GET /runs/:runId` shows them, in creation order) to read, filtered.
fn plan(run_id: &str, run_terminal: bool, jobs: &[Value], q: &Query) -> Vec<Stop> {
    let mut plan = Vec::new();
    for (job_pos, job) in jobs.iter().enumerate() {
        let name = job["name"].as_str().unwrap_or_default();
        if q.job.as_deref().is_some_and(|j| j != name) {
            continue;
        }
        let job_done = run_terminal
            || job["status"]
                .as_str()
                .and_then(JobStatus::parse)
                .is_some_and(JobStatus::is_terminal);
        let steps = job["steps"].as_array().cloned().unwrap_or_default();
        // The setup log takes the job's own lines from start to end (agent/logs.rs compacts it
        // when the job ends), so it is settled only with the job; `walk` reads past it.
        let mut stops = vec![Stop {
            job: name.to_owned(),
            job_pos,
            step: -1,
            key: Some(keys::step_log(run_id, name, -1)),
            settled: job_done,
        }];
        for s in &steps {
            let index = s["index"].as_i64().unwrap_or(0);
            let key = match s["logPath"].as_str() {
                Some(p) if !p.is_empty() => p.to_owned(),
                _ => keys::step_log(run_id, name, index),
            };
            let settled = job_done || s["status"].as_str().is_some_and(step_is_terminal);
            stops.push(Stop {
                job: name.to_owned(),
                job_pos,
                step: index,
                key: Some(key),
                settled,
            });
        }
        stops.sort_by_key(|s| s.step);
        stops.retain(|s| q.step.is_none_or(|n| n == s.step));
        plan.extend(stops);
        if !job_done {
            plan.push(Stop {
                job: name.to_owned(),
                job_pos,
                step: i64::MAX,
                key: None,
                settled: false,
            });
        }
    }
    plan
}

pub fn read(app: &RunCtx, caller: &Caller, req: &Request, run_id: &str) -> ApiResult {
    caller.require(Permission::ContextRead)?;
    let loaded = app.pool.with_retry(|c| views::show_run(c, run_id))?;
    let (run, mut jobs, steps) = loaded.ok_or_else(|| not_found("Run"))?;
    caller.require_key(run["routingKey"].as_str().unwrap_or(""))?;
    let q = query(&req.query_pairs())?;
    let run_id = run["runId"].as_str().unwrap_or(run_id).to_owned();
    let status = run["status"].as_str().unwrap_or_default().to_owned();
    let run_terminal = TERMINAL_RUN.contains(&status.as_str());
    for (job_id, step) in steps {
        if let Some(job) = jobs
            .iter_mut()
            .find(|j| j["jobId"].as_str() == Some(job_id.as_str()))
        {
            match job["steps"].as_array_mut() {
                Some(list) => list.push(step),
                None => job["steps"] = Value::Array(vec![step]),
            }
        }
    }
    let names: Vec<&str> = jobs.iter().filter_map(|j| j["name"].as_str()).collect();
    if let Some(job) = &q.job {
        if !names.contains(&job.as_str()) {
            return Err(ApiError::Validation(vec![(
                "job".into(),
                format!(
                    "{job:?} is not a job of this run (jobs: {})",
                    names.join(", ")
                ),
            )]));
        }
    }
    let cursor = q.after.clone().unwrap_or_else(Cursor::start);
    let cursor_pos = match cursor.job.as_str() {
        "" => None,
        job => Some(names.iter().position(|n| *n == job).ok_or_else(|| {
            ApiError::Validation(vec![(
                "after".into(),
                format!("the cursor names job {job:?}, which is not a job of this run"),
            )])
        })?),
    };
    let plan = plan(&run_id, run_terminal, &jobs, &q);
    // Each step's log: its stored object, then its lines still in the table.
    let ids: Vec<(&str, &str)> = jobs
        .iter()
        .filter_map(|j| Some((j["name"].as_str()?, j["jobId"].as_str()?)))
        .collect();
    let places: Vec<(String, String, i64)> = plan
        .iter()
        .filter_map(|s| {
            let id = ids.iter().find(|(n, _)| *n == s.job)?.1;
            Some((s.key.clone()?, id.to_owned(), s.step))
        })
        .collect();
    let storage = app.storage.as_deref();
    let page = walk(
        &plan,
        &cursor,
        cursor_pos,
        q.limit,
        run_terminal,
        |key, start, max| {
            let object = || match storage {
                Some(st) => st
                    .get(Area::Logs, key)
                    .map(Option::unwrap_or_default)
                    .map_err(|e| e.to_string()),
                None => Ok(Vec::new()),
            };
            let Some((_, job_id, step)) = places.iter().find(|p| p.0 == key) else {
                return object().map(|bytes| Some(Fetched { bytes, base: 0 }));
            };
            fetch_step(app.pool, object, job_id, *step, start, max).map(Some)
        },
    )
    .map_err(|e| {
        log::warn!("reading the logs of run {run_id}: {e}");
        ApiError::Status(503, "Log storage unavailable, try again".into())
    })?;
    let lines: Vec<Value> = page
        .lines
        .into_iter()
        .map(|(job, step, l)| {
            json!({ "ts": l.ts, "job": job, "step": step, "stream": l.stream, "line": l.line })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "lines": lines,
            "cursor": page.cursor.encode(),
            "complete": page.complete,
            "stored": storage.is_some(),
            "runStatus": status,
        }),
    ))
}

/// A step's lines from `start` on: its stored object (if `start` falls inside it), then at most
/// `max + 1` of its lines still in the table, so a reader far into a long live step reads what is
/// new, not the whole step again.
fn fetch_step(
    pool: &Pool,
    object: impl Fn() -> Result<Vec<u8>, String>,
    job_id: &str,
    step: i64,
    start: u64,
    max: usize,
) -> Result<Fetched, String> {
    let want = i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1);
    let start = i64::try_from(start).unwrap_or(i64::MAX);
    // The last line in the table before the object is read: if a compaction moves lines between
    // the two reads below, fewer lines than that are seen, and the object (which compaction
    // writes before it deletes the rows) is read again.
    let last = pool
        .with_retry(|c| last_seq(c, job_id, step))
        .map_err(|e| e.to_string())?;
    let mut tries = 0;
    loop {
        let object = object()?;
        let stored = count_lines(&object);
        let from = stored.max(start);
        let rows = pool
            .with_retry(|c| lines_from(c, job_id, step, from, want))
            .map_err(|e| e.to_string())?;
        let (more, _) = splice(from, &rows, true);
        let taken = count_lines(&more);
        let mut got = if start < stored {
            Fetched {
                bytes: object,
                base: 0,
            }
        } else {
            Fetched {
                bytes: Vec::new(),
                base: from as u64,
            }
        };
        got.bytes.extend(more);
        tries += 1;
        if tries >= 3 || taken >= want || !missed(last, from + taken) {
            return Ok(got);
        }
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
