//! Prometheus metrics (docs/metrics.md): the catalog of every metric the daemon exposes on
//! `GET /metrics`, the hooks call sites use to count (`hooks`), what is read at scrape time
//! (`collect`), who may scrape (`access`, pure), and the text format (`text`, written by hand).
//!
//! Why by hand and not a crate: the exposition format is a few escaping rules and one line per
//! sample; the well-kept crates either pull an async-friendly registry with derive macros and
//! encoders we would use a tenth of (`prometheus-client`) or a global registry with protobuf
//! support (`prometheus`). Ours is ~300 lines of atomics and string building, and its hot path
//! (an increment) allocates nothing.
//!
//! Labels are fixed and few: a kind, a status, an outcome, a thread name. Never a secret, a
//! delivery id, a run or job id, a repository or an organisation: those would make every
//! delivery a new series (and some are private). A family caps its series anyway
//! (`registry::MAX_SERIES`).
//!
//! The catalog is one process-wide value ([`get`]): counters are counted where things happen,
//! deep in modules that have no handle on the `App`, and a daemon is one process.

pub mod access;
pub mod collect;
pub mod hooks;
pub mod registry;
pub mod text;

use std::sync::{LazyLock, RwLock};

pub use registry::{Counter, Family, Gauge, Histogram, Mirrored, Render};

/// Seconds buckets for database commits and short waits.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Deliveries per group commit.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];
/// Trigger matching of one delivery against every workflow of its lock file.
pub const MATCH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// From a job becoming dispatchable to an agent claiming it.
pub const DISPATCH_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family<Counter> {
    Family::new(name, help, labels, Counter::default)
}

fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family<Gauge> {
    Family::new(name, help, labels, Gauge::default)
}

fn mirrored(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family<Mirrored> {
    Family::new(name, help, labels, Mirrored::default)
}

fn histogram(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> Family<Histogram> {
    Family::new(name, help, labels, move || Histogram::new(buckets))
}

/// Every metric, by what it measures. docs/metrics.md lists them with their labels.
pub struct Metrics {
    // Webhooks and intake.
    pub webhooks_received: Family<Counter>,
    pub webhook_verdicts: Family<Counter>,
    pub webhooks_answered: Family<Counter>,
    pub dedup_hits: Family<Counter>,
    pub ingest_commit_seconds: Family<Histogram>,
    pub ingest_batch_size: Family<Histogram>,
    pub ingest_commit_errors: Family<Counter>,
    // Pipeline.
    pub deliveries_processed: Family<Counter>,
    pub trigger_match_seconds: Family<Histogram>,
    // Runs and jobs (from run events).
    pub runs_created: Family<Counter>,
    pub runs_completed: Family<Counter>,
    pub jobs_completed: Family<Counter>,
    // Dispatch and agents.
    pub jobs_dispatched: Family<Counter>,
    pub dispatch_latency: Family<Histogram>,
    pub queue_jobs: Family<Gauge>,
    pub queue_oldest_pending: Family<Gauge>,
    pub agents_connected: Family<Gauge>,
    pub agent_slots: Family<Gauge>,
    pub log_lines_stored: Family<Counter>,
    pub log_bytes_stored: Family<Counter>,
    // Platform link.
    pub platform_link_state: Family<Gauge>,
    pub platform_reconnects: Family<Counter>,
    pub platform_relayed: Family<Counter>,
    // Database.
    pub listen_reconnects: Family<Counter>,
    pub database_up: Family<Gauge>,
    pub db_pool_connections: Family<Gauge>,
    pub db_pool_waiting: Family<Gauge>,
    pub db_errors: Family<Counter>,
    // Storage and GitHub.
    pub storage_requests: Family<Counter>,
    pub github_calls: Family<Counter>,
    pub github_rate_limit_remaining: Family<Gauge>,
    // Threads and process.
    pub thread_restarts: Family<Mirrored>,
    pub thread_failing: Family<Gauge>,
    pub resident_memory: Family<Gauge>,
    pub open_fds: Family<Gauge>,
    pub max_fds: Family<Gauge>,
    pub cpu_seconds: Family<Mirrored>,
    pub start_time: Family<Gauge>,
    pub uptime: Family<Gauge>,
    pub build_info: Family<Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            // The reference's name for the same count.
            webhooks_received: counter(
                "kici_webhooks_received_total",
                "Webhook deliveries that reached the intake (direct: body read; relayed: reassembled).",
                &["kind", "via"],
            ),
            webhook_verdicts: counter(
                "kici_orch_webhook_verdicts_total",
                "What the intake decided for each delivery.",
                &["kind", "via", "verdict"],
            ),
            webhooks_answered: counter(
                "kici_orch_webhooks_answered_total",
                "HTTP answers on the direct webhook routes, refusals before the body included.",
                &["kind", "status"],
            ),
            dedup_hits: counter(
                "kici_dedup_hits_total",
                "Deliveries answered as duplicates of one already recorded.",
                &["via"],
            ),
            ingest_commit_seconds: histogram(
                "kici_orch_ingest_commit_seconds",
                "Time of one group commit of deliveries to the event log.",
                &[],
                COMMIT_BUCKETS,
            ),
            ingest_batch_size: histogram(
                "kici_orch_ingest_batch_size",
                "Deliveries written by one group commit.",
                &[],
                BATCH_BUCKETS,
            ),
            ingest_commit_errors: counter(
                "kici_orch_ingest_commit_errors_total",
                "Group commits of deliveries that failed (their senders were answered 503).",
                &[],
            ),
            deliveries_processed: counter(
                "kici_orch_deliveries_processed_total",
                "Deliveries the pipeline finished, by outcome.",
                &["outcome"],
            ),
            trigger_match_seconds: histogram(
                "kici_orch_trigger_match_seconds",
                "Time to match one delivery against every workflow of its lock file.",
                &[],
                MATCH_BUCKETS,
            ),
            runs_created: counter(
                "kici_orch_runs_created_total",
                "Runs recorded.",
                &[],
            ),
            runs_completed: counter(
                "kici_orch_runs_completed_total",
                "Runs that ended, by conclusion.",
                &["conclusion"],
            ),
            jobs_completed: counter(
                "kici_orch_jobs_completed_total",
                "Jobs that ended, by conclusion.",
                &["conclusion"],
            ),
            jobs_dispatched: counter(
                "kici_orch_jobs_dispatched_total",
                "Jobs claimed for an agent by this orchestrator.",
                &[],
            ),
            dispatch_latency: histogram(
                "kici_orch_dispatch_latency_seconds",
                "From a job becoming dispatchable (pending) to an agent claiming it.",
                &[],
                DISPATCH_BUCKETS,
            ),
            queue_jobs: gauge(
                "kici_orch_dispatch_queue_jobs",
                "Jobs in the dispatch queue (all orchestrators on the database), by status.",
                &["status"],
            ),
            queue_oldest_pending: gauge(
                "kici_orch_dispatch_queue_oldest_pending_seconds",
                "Age of the oldest dispatchable job, 0 when none waits.",
                &[],
            ),
            agents_connected: gauge(
                "kici_orch_agents_connected",
                "Agents registered on this orchestrator.",
                &[],
            ),
            agent_slots: gauge(
                "kici_orch_agent_slots",
                "Job slots of the connected agents: free or busy.",
                &["state"],
            ),
            log_lines_stored: counter(
                "kici_orch_log_lines_stored_total",
                "Step log lines committed to the database.",
                &[],
            ),
            log_bytes_stored: counter(
                "kici_orch_log_bytes_stored_total",
                "Bytes of the step log lines committed to the database.",
                &[],
            ),
            platform_link_state: gauge(
                "kici_orch_platform_link_state",
                "1 for the Platform link's current state (connecting, connected, disconnected).",
                &["state"],
            ),
            platform_reconnects: counter(
                "kici_orch_platform_reconnects_total",
                "Times the Platform link was lost or refused and a reconnect was scheduled.",
                &[],
            ),
            platform_relayed: counter(
                "kici_orch_platform_relayed_total",
                "Relayed deliveries answered with a webhook.ack, by its result.",
                &["result"],
            ),
            listen_reconnects: counter(
                "kici_orch_listen_reconnects_total",
                "Times the LISTEN connection was lost and opened again.",
                &[],
            ),
            database_up: gauge(
                "kici_orch_database_up",
                "1 when the scrape's own database query succeeded.",
                &[],
            ),
            db_pool_connections: gauge(
                "kici_orch_db_pool_connections",
                "Pooled database connections: in use or idle (max is the pool size).",
                &["state"],
            ),
            db_pool_waiting: gauge(
                "kici_orch_db_pool_waiting",
                "Threads waiting for a pooled database connection.",
                &[],
            ),
            db_errors: counter(
                "kici_orch_db_errors_total",
                "Database connection failures and pool timeouts.",
                &["kind"],
            ),
            storage_requests: counter(
                "kici_orch_storage_requests_total",
                "S3 requests (the filesystem backend makes none), by operation and outcome.",
                &["operation", "outcome"],
            ),
            github_calls: counter(
                "kici_orch_github_api_calls_total",
                "GitHub REST API calls, by HTTP status (error: no answer).",
                &["status"],
            ),
            github_rate_limit_remaining: gauge(
                "kici_orch_github_rate_limit_remaining",
                "X-RateLimit-Remaining of the last GitHub answer, by X-RateLimit-Resource.",
                &["resource"],
            ),
            thread_restarts: mirrored(
                "kici_orch_thread_restarts_total",
                "Panics of a supervised thread (each followed by a restart).",
                &["thread"],
            ),
            thread_failing: gauge(
                "kici_orch_thread_failing",
                "1 while a supervised thread keeps panicking (/ready answers 503).",
                &["thread"],
            ),
            resident_memory: gauge(
                "process_resident_memory_bytes",
                "Resident memory of the process.",
                &[],
            ),
            open_fds: gauge("process_open_fds", "Open file descriptors.", &[]),
            max_fds: gauge("process_max_fds", "The open file descriptor limit.", &[]),
            cpu_seconds: mirrored(
                "process_cpu_seconds_total",
                "User and system CPU time of the process.",
                &[],
            ),
            start_time: gauge(
                "process_start_time_seconds",
                "When the process started, in seconds since the epoch.",
                &[],
            ),
            uptime: gauge(
                "kici_orch_uptime_seconds",
                "Seconds since the daemon started.",
                &[],
            ),
            build_info: gauge(
                "kici_orch_build_info",
                "Always 1; the labels name the build.",
                &["version", "commit"],
            ),
        }
    }

    /// Every family, in exposition order.
    fn all(&self) -> [&dyn Render; 40] {
        [
            &self.webhooks_received,
            &self.webhook_verdicts,
            &self.webhooks_answered,
            &self.dedup_hits,
            &self.ingest_commit_seconds,
            &self.ingest_batch_size,
            &self.ingest_commit_errors,
            &self.deliveries_processed,
            &self.trigger_match_seconds,
            &self.runs_created,
            &self.runs_completed,
            &self.jobs_completed,
            &self.jobs_dispatched,
            &self.dispatch_latency,
            &self.queue_jobs,
            &self.queue_oldest_pending,
            &self.agents_connected,
            &self.agent_slots,
            &self.log_lines_stored,
            &self.log_bytes_stored,
            &self.platform_link_state,
            &self.platform_reconnects,
            &self.platform_relayed,
            &self.listen_reconnects,
            &self.database_up,
            &self.db_pool_connections,
            &self.db_pool_waiting,
            &self.db_errors,
            &self.storage_requests,
            &self.github_calls,
            &self.github_rate_limit_remaining,
            &self.thread_restarts,
            &self.thread_failing,
            &self.resident_memory,
            &self.open_fds,
            &self.max_fds,
            &self.cpu_seconds,
            &self.start_time,
            &self.uptime,
            &self.build_info,
        ]
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Families other modules defined for themselves ([`register`]), rendered after the catalog.
static EXTRA: RwLock<Vec<&'static dyn Render>> = RwLock::new(Vec::new());

/// The process-wide catalog.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Adds a family a module keeps for itself (say a GitHub check reporter's
/// `kici_orch_github_checks_total{result}`), to be rendered with the others; call it once, e.g.
/// from a `LazyLock`:
///
/// ```
/// use std::sync::{LazyLock, RwLock};
/// use kici_orchestrator::metrics::{register, Counter, Family};
/// static CHECKS: LazyLock<&'static Family<Counter>> = LazyLock::new(|| {
///     register(Family::new("kici_orch_example_total", "Ex.", &["result"], Counter::default))
/// });
/// CHECKS.inc(&["ok"]);
/// ```
pub fn register<M: registry::Series + 'static>(family: Family<M>) -> &'static Family<M> {
    let family: &'static Family<M> = Box::leak(Box::new(family));
    EXTRA
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(family);
    family
}

/// The whole exposition: every family of the catalog, then the registered ones.
pub fn render() -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in get().all() {
        family.render(&mut out);
    }
    for family in EXTRA.read().unwrap_or_else(|p| p.into_inner()).iter() {
        family.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_written_once_with_its_help_and_type() {
        get().webhooks_received.inc(&["generic", "direct"]);
        let extra = register(Family::new(
            "kici_orch_test_extra_total",
            "x",
            &[],
            Counter::default,
        ));
        extra.add(&[], 2);
        let out = render();
        for family in [
            "kici_webhooks_received_total",
            "kici_dedup_hits_total",
            "kici_orch_dispatch_latency_seconds",
            "process_resident_memory_bytes",
            "kici_orch_test_extra_total",
        ] {
            assert_eq!(
                out.matches(&format!("# HELP {family} ")).count(),
                1,
                "{family}"
            );
            assert_eq!(
                out.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(out.contains("kici_orch_test_extra_total 2\n"));
        assert!(out.contains("kici_orch_dispatch_latency_seconds_bucket{le=\"+Inf\"} "));
        // No name is used twice.
        let mut types: Vec<&str> = out.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n);
    }
}
