//! What is read at scrape time rather than counted: the dispatch queue (one query on the
//! database, served by the queue's partial indexes), the pool, connected agents and their slots,
//! the Platform link's state, the supervisor's restarts, and the process itself (`/proc/self`).
//! The parsers of `/proc` are pure and tested on sample text.

use std::time::Instant;

use super::{get, Metrics};
use crate::{app::App, db::DbError, platform::Phase};

/// Brings every scrape-time gauge up to date.
pub fn refresh(app: &App) {
    let m = get();
    queue(app, m);
    let (in_use, idle, waiting, _) = app.pool.stats();
    m.db_pool_connections.set(&["in_use"], in_use as f64);
    m.db_pool_connections.set(&["idle"], idle as f64);
    m.db_pool_waiting.set(&[], waiting as f64);
    let (agents, free, busy) = app.agents.slots();
    m.agents_connected.set(&[], agents as f64);
    m.agent_slots.set(&["free"], free as f64);
    m.agent_slots.set(&["busy"], busy as f64);
    if let Some(link) = &app.platform {
        let now = link.state().phase;
        for phase in [Phase::Connecting, Phase::Authenticated, Phase::Disconnected] {
            let on = if phase == now { 1.0 } else { 0.0 };
            m.platform_link_state.set(&[phase.as_str()], on);
        }
    }
    threads(m);
    process(m, app.started);
}

/// Queue depth by status and the oldest dispatchable job's age; `database_up` says whether the
/// query worked (the gauges keep their last values when it did not).
fn queue(app: &App, m: &Metrics) {
    let read = app.pool.with_retry(|c| {
        c.query_one(
            "SELECT (SELECT count(*) FROM dispatch_queue WHERE status = 'pending'),
                    (SELECT count(*) FROM dispatch_queue WHERE status = 'dispatched'),
                    (SELECT count(*) FROM dispatch_queue WHERE status = 'recovering'),
                    (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
                       FROM dispatch_queue WHERE status = 'pending')",
            &[],
        )
        .map_err(DbError::query("reading the dispatch queue for /metrics"))
    });
    match read {
        Ok(row) => {
            for (i, status) in ["pending", "dispatched", "recovering"].iter().enumerate() {
                m.queue_jobs.set(&[status], row.get::<_, i64>(i) as f64);
            }
            m.queue_oldest_pending
                .set(&[], row.get::<_, f64>(3).max(0.0));
            m.database_up.set(&[], 1.0);
        }
        Err(e) => {
            log::debug!("/metrics: {e}");
            m.database_up.set(&[], 0.0);
        }
    }
}

/// The supervisor's view (src/supervise.rs): restarts and whether each thread keeps failing.
fn threads(m: &Metrics) {
    if let serde_json::Value::Object(threads) = crate::supervise::report() {
        for (name, t) in &threads {
            let restarts = t["restarts"].as_f64().unwrap_or(0.0);
            m.thread_restarts.set(&[name], restarts);
            let failing = if t["failing"] == true { 1.0 } else { 0.0 };
            m.thread_failing.set(&[name], failing);
        }
    }
}

fn process(m: &Metrics, started: Instant) {
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| resident_pages(&s))
    {
        m.resident_memory.set(&[], (pages * page) as f64);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        m.open_fds.set(&[], dir.count() as f64);
    }
    if let Some(max) = max_fds() {
        m.max_fds.set(&[], max as f64);
    }
    let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100).max(1);
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_ticks(&s))
    {
        m.cpu_seconds.set(&[], cpu as f64 / ticks as f64);
    }
    let up = started.elapsed().as_secs_f64();
    m.uptime.set(&[], up);
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    m.start_time.set(&[], (now - up).floor());
    m.build_info
        .set(&[env!("CARGO_PKG_VERSION"), env!("KICI_BUILD_COMMIT")], 1.0);
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed to it.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// The resident set in pages: the second field of `/proc/self/statm`.
pub fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time in clock ticks: fields 14 and 15 of `/proc/self/stat`, counted
/// after the command name (which is in parentheses and may hold spaces).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(resident_pages("12345 678 90 1 0 2 0\n"), Some(678));
        assert_eq!(resident_pages(""), None);
        let stat = "4242 (kici admin) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 12 0 \
                    99 1000 200 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("1 (x) S"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks(&stat).is_some());
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        assert!(resident_pages(&statm).unwrap() > 0);
    }
}
