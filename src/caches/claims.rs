//! The durable claims on builds, and which jobs started from cache (migration 0009;
//! docs/caches.md, "The build job"). All SQL of the caches is here.
//!
//! A claim row per build key says which job builds it. A run that needs the same tarballs while
//! the claim is `building` waits: its own `__build__` job is recorded as a waiter and ended with
//! the building job's outcome. The row lock on the claim orders joins and resolution, so a waiter
//! is either seen by the resolution or sees its result.

use postgres::Client;

use crate::db::DbError;

/// A claim left `building` this long by a job that is not live any more (its run was never
/// created, or ended without the resolution) can be taken over.
const STALE_CLAIM_SECS: i64 = 300;

/// Claims the build of `build_key` for `job_id` of `run_id`: true when this run builds it, false
/// when another job is building it now.
pub fn claim(
    client: &mut Client,
    build_key: &str,
    run_id: &str,
    job_id: &str,
) -> Result<bool, DbError> {
    let row = client
        .query_opt(
            "INSERT INTO cache_builds (build_key, run_id, job_id)
             VALUES ($1, $2::text::uuid, $3::text::uuid)
             ON CONFLICT (build_key) DO UPDATE
                SET run_id = EXCLUDED.run_id, job_id = EXCLUDED.job_id, status = 'building',
                    reason = NULL, created_at = now(), finished_at = NULL
              WHERE cache_builds.status <> 'building'
                 OR (cache_builds.created_at < now() - make_interval(secs => $4)
                     AND NOT EXISTS (SELECT 1 FROM execution_jobs j
                                      WHERE j.job_id = cache_builds.job_id
                                        AND j.status IN ('pending', 'queued', 'running')))
             RETURNING job_id::text",
            &[&build_key, &run_id, &job_id, &(STALE_CLAIM_SECS as f64)],
        )
        .map_err(DbError::query("claiming a cache build"))?;
    Ok(row.is_some())
}

/// How a build ended, for a run that joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Still building: the waiter is recorded and ends when the build does.
    Waiting,
    Built,
    Failed(String),
}

/// Records `job_id` (a waiting run's own `__build__` job) as a waiter on `build_key`, unless the
/// build ended meanwhile (then how).
pub fn join(
    client: &mut Client,
    build_key: &str,
    run_id: &str,
    job_id: &str,
) -> Result<Joined, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("joining a cache build"))?;
    let row = tx
        .query_opt(
            "SELECT status, coalesce(reason, '') FROM cache_builds WHERE build_key = $1 FOR UPDATE",
            &[&build_key],
        )
        .map_err(DbError::query("joining a cache build"))?;
    let joined = match row {
        Some(r) if r.get::<_, String>(0) == "building" => {
            tx.execute(
                "INSERT INTO cache_build_waiters (build_key, run_id, job_id)
                 VALUES ($1, $2::text::uuid, $3::text::uuid) ON CONFLICT DO NOTHING",
                &[&build_key, &run_id, &job_id],
            )
            .map_err(DbError::query("joining a cache build"))?;
            Joined::Waiting
        }
        Some(r) if r.get::<_, String>(0) == "failed" => Joined::Failed(r.get(1)),
        _ => Joined::Built,
    };
    tx.commit()
        .map_err(DbError::query("joining a cache build"))?;
    Ok(joined)
}

/// A waiting run's build job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub run_id: String,
    pub job_id: String,
}

/// Ends the build `job_id` was building (`built`, or `failed` with `reason`), handing back the
/// jobs that waited for it (now removed). Nothing when `job_id` builds nothing.
pub fn resolve(
    client: &mut Client,
    job_id: &str,
    built: bool,
    reason: Option<&str>,
) -> Result<Vec<Waiter>, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("resolving a cache build"))?;
    let status = if built { "built" } else { "failed" };
    let key = tx
        .query_opt(
            "UPDATE cache_builds SET status = $2, reason = $3, finished_at = now()
              WHERE job_id = $1::text::uuid AND status = 'building' RETURNING build_key",
            &[&job_id, &status, &reason],
        )
        .map_err(DbError::query("resolving a cache build"))?;
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let key: String = key.get(0);
    let waiters = tx
        .query(
            "DELETE FROM cache_build_waiters WHERE build_key = $1
             RETURNING run_id::text, job_id::text",
            &[&key],
        )
        .map_err(DbError::query("resolving a cache build"))?
        .iter()
        .map(|r| Waiter {
            run_id: r.get(0),
            job_id: r.get(1),
        })
        .collect();
    tx.commit()
        .map_err(DbError::query("resolving a cache build"))?;
    Ok(waiters)
}

/// A job's recorded error, for the reason a failed build gives its waiters.
pub fn job_error(client: &mut Client, job_id: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT error_message FROM execution_jobs WHERE job_id = $1::text::uuid",
            &[&job_id],
        )
        .map_err(DbError::query("reading a build job"))?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Records whether a job's dispatch carried a tarball URL (`kind`: `source` or `deps`).
pub fn record_use(
    client: &mut Client,
    job_id: &str,
    uses: &[(&str, &str, bool)],
) -> Result<(), DbError> {
    for (kind, key, hit) in uses {
        client
            .execute(
                "INSERT INTO job_cache_use (job_id, kind, cache_key, hit)
                 VALUES ($1::text::uuid, $2, $3, $4)
                 ON CONFLICT (job_id, kind) DO UPDATE
                    SET cache_key = EXCLUDED.cache_key, hit = EXCLUDED.hit, at = now()",
                &[&job_id, kind, key, hit],
            )
            .map_err(DbError::query("recording a job's cache use"))?;
    }
    Ok(())
}
