//! `secret_audit_log`: who did what to which secret, never a value (docs/secrets.md, "Audit").
//! Admin changes name the token (its id, and its label and role as they were at the time);
//! resolutions at dispatch name the run and job.

use postgres::GenericClient;
use serde_json::{json, Value};

use crate::db::{DbError, ISO};

/// Who acted.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// An admin token, by id; its label and role are copied from `admin_tokens`.
    Token(&'a str),
    /// The orchestrator itself (resolution at dispatch), by its `user_id`
    /// (`orchestrator:<instance>`); recorded with the label `orchestrator` and the role `system`.
    Orchestrator(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
}

/// One audit row. `context` is the scope (set/delete), the environment name (resolve) or `*`
/// (rotate).
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub action: &'a str,
    pub actor: Actor<'a>,
    pub org: Option<&'a str>,
    pub context: &'a str,
    pub routing_key: Option<&'a str>,
    /// Key names only.
    pub keys: &'a [String],
    pub outcome: Outcome,
    pub run_id: Option<&'a str>,
    pub job_id: Option<&'a str>,
    pub metadata: Value,
}

/// Actions this build writes.
pub const SET_SECRET: &str = "setSecret";
pub const DELETE_SECRET: &str = "deleteSecret";
pub const ROTATE_KEY: &str = "rotateKey";
pub const RESOLVE: &str = "resolve";

pub fn record(c: &mut impl GenericClient, e: &AuditEntry) -> Result<(), DbError> {
    let keys = json!(e.keys);
    let outcome = match e.outcome {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
    };
    let (user, token) = match e.actor {
        Actor::Token(id) => (id, Some(id)),
        Actor::Orchestrator(id) => (id, None),
    };
    // A token's label and role are copied here so a later relabel or revoke does not rewrite
    // history.
    c.execute(
        "INSERT INTO secret_audit_log (action, org_id, context_name, routing_key, secret_keys,
             outcome, run_id, job_id, user_id, token_label, role, metadata)
         SELECT $1, $2, $3, $4, $5, $6, $7::text::uuid, $8::text::uuid, $9,
                CASE WHEN $11::text IS NULL THEN 'orchestrator' ELSE t.label END,
                CASE WHEN $11::text IS NULL THEN 'system' ELSE t.role END, $10
         FROM (SELECT 1) one
         LEFT JOIN admin_tokens t ON t.id::text = $11",
        &[
            &e.action,
            &e.org,
            &e.context,
            &e.routing_key,
            &keys,
            &outcome,
            &e.run_id,
            &e.job_id,
            &user,
            &e.metadata,
            &token,
        ],
    )
    .map_err(DbError::query("writing the secret audit log"))?;
    Ok(())
}

/// Filters of `GET /audit`; every one optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub org: Option<String>,
    pub action: Option<String>,
    pub context: Option<String>,
    pub routing_key: Option<String>,
    /// Timestamps PostgreSQL reads (`2026-12-01T00:00:00Z`); `since` inclusive, `until` not.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Default and largest page of `GET /audit`.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// Rows newest first, with the column names as JSON keys (the reference's row shape).
pub fn query(c: &mut impl GenericClient, q: &AuditQuery) -> Result<Vec<Value>, DbError> {
    const CONTEXT: &str = "reading the secret audit log";
    let sql = format!(
        "SELECT json_build_object(
             'id', id, 'timestamp', to_char(timestamp AT TIME ZONE 'UTC', {ISO}),
             'action', action, 'org_id', org_id, 'context_name', context_name,
             'routing_key', routing_key, 'secret_keys', secret_keys, 'outcome', outcome,
             'run_id', run_id, 'job_id', job_id, 'user_id', user_id,
             'token_label', token_label, 'role', role, 'metadata', metadata)
         FROM secret_audit_log
         WHERE ($1::text IS NULL OR org_id = $1)
           AND ($2::text IS NULL OR action = $2)
           AND ($3::text IS NULL OR context_name = $3)
           AND ($4::text IS NULL OR routing_key = $4)
           AND ($5::text IS NULL OR timestamp >= $5::text::timestamptz)
           AND ($6::text IS NULL OR timestamp < $6::text::timestamptz)
         ORDER BY timestamp DESC, id DESC
         LIMIT $7 OFFSET $8"
    );
    let rows = c
        .query(
            &sql,
            &[
                &q.org,
                &q.action,
                &q.context,
                &q.routing_key,
                &q.since,
                &q.until,
                &q.limit,
                &q.offset,
            ],
        )
        .map_err(DbError::query(CONTEXT))?;
    DbError::first_column(&rows, CONTEXT)
}
