//! The runs' database side: every statement on `execution_runs`, `execution_jobs`,
//! `execution_steps`, `execution_job_needs` and `dispatch_queue` (migrations/0002_execution.sql).
//! `queue` is the job queue with its atomic claim, `jobs` what agents report about jobs and
//! steps, `runs` run creation, run ends and the `needs` graph, `views` the rows read back as
//! JSON (the Platform's status frames, the admin API). The decisions (which state follows,
//! which downstream job runs, how a run ends) are `super::lifecycle`'s and `super::state`'s.
//!
//! Rows are read with `try_get` (a NULL or a changed column type is a [`DbError`], never a
//! panic), and ids are bound as text and cast on the parameter (`$1::text::uuid`), so lookups
//! use the uuid indexes.

pub mod jobs;
pub mod queue;
pub mod runs;
pub mod views;

use postgres::{types::FromSql, Row};

use crate::db::{DbError, Pool};

/// Column `idx` of `row`, or a [`DbError`] naming `context` (a NULL in a non-`Option` column,
/// or a type that changed under us).
pub(crate) fn col<'a, T: FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    context: &'static str,
) -> Result<T, DbError> {
    row.try_get(idx).map_err(DbError::query(context))
}

/// Runs `f` once on a pooled connection, never again: for statements that are not safe to
/// repeat (a claim or a requeue whose commit was lost with the connection would act twice).
pub fn once<T>(
    pool: &Pool,
    f: impl FnOnce(&mut crate::db::PooledClient) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut conn = pool.get()?;
    f(&mut conn)
}

/// Whether `s` is a UUID in its text form (so casting it in SQL cannot fail).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids() {
        assert!(super::is_uuid("0b9c1f6e-3c1d-4f4e-9f51-6a0c1d2e3f40"));
        assert!(super::is_uuid("0B9C1F6E-3C1D-4F4E-9F51-6A0C1D2E3F40"));
        assert!(!super::is_uuid("0b9c1f6e-3c1d-4f4e-9f51-6a0c1d2e3f4"));
        assert!(!super::is_uuid("0b9c1f6e+3c1d-4f4e-9f51-6a0c1d2e3f40"));
        assert!(!super::is_uuid("' OR 1=1 --"));
    }
}
