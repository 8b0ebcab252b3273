//! Secrets at dispatch (docs/secrets.md, "Resolution at dispatch"): when a claimed job's
//! `job.dispatch` frame is built, its org's snapshot is read in one query, `super::resolve`
//! decides, the winning values are opened, and the frame gets `secrets` (top level) and
//! `environment`, `environmentVars`, `jobEnv` (in `jobConfig`), every empty one left out
//! (docs/agent-protocol.md, "Job dispatch"). Values live only in that frame: the queue row keeps
//! the declared environment names (under [`REQUEST_KEY`]), the job row the names of what was
//! resolved or withheld, the audit log one `resolve` row per layer, all written by one statement.

use std::{collections::BTreeMap, sync::LazyLock};

use postgres::GenericClient;
use serde_json::{json, Map, Value};

use super::resolve::{self, Binding, Catalogue, EnvRecord, Plan, SecretName};
use crate::{
    crypto::{aad, SecretBox},
    db::{DbError, Pool, PooledClient},
    runs::store::queue::Claimed,
};

/// Where the planner stores a job's declared environments in its dispatch body (removed from the
/// frame sent): `{"environments": ["prod", …]}`.
pub const REQUEST_KEY: &str = "secretsRequest";

/// Why a claimed job cannot be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Try again later (the database failed): the job goes back to the queue.
    Retry(String),
    /// The job fails with this reason instead of running without what it asked for.
    Fail(String),
}

/// Completes a claimed job's frame (`JobSecrets::attach`). Without a resolver (a hub outside
/// the daemon), only `jobEnv` is added, and a job that declares environments fails.
pub fn attach(
    secrets: Option<&JobSecrets>,
    pool: &Pool,
    job: &Claimed,
    frame: &mut Value,
) -> Result<(), Refusal> {
    match secrets {
        Some(s) => s.attach(pool, job, frame),
        None => {
            let request = frame.as_object_mut().and_then(|o| o.remove(REQUEST_KEY));
            if request.is_some_and(|r| r["environments"].as_array().is_some_and(|l| !l.is_empty()))
            {
                return Err(Refusal::Fail(
                    "the job declares environments, and this orchestrator resolves no secrets"
                        .into(),
                ));
            }
            let job_env = resolve::job_env(frame["jobConfig"].get("env"));
            fill(frame, &Plan::default(), Map::new(), job_env);
            Ok(())
        }
    }
}

/// What opens the values; one per daemon (`Hub::set_job_secrets`).
pub struct JobSecrets {
    secrets: SecretBox,
    /// Who resolves, in the audit log (`user_id`): `orchestrator:<instance id>`.
    actor: String,
}

impl JobSecrets {
    pub fn new(secrets: SecretBox, instance_id: &str) -> JobSecrets {
        JobSecrets {
            secrets,
            actor: format!("orchestrator:{instance_id}"),
        }
    }

    /// Completes `frame` (built from `job`'s stored body) with the job's secrets, environment
    /// and variables, recording what was resolved or withheld.
    pub fn attach(&self, pool: &Pool, job: &Claimed, frame: &mut Value) -> Result<(), Refusal> {
        let request = frame
            .as_object_mut()
            .and_then(|o| o.remove(REQUEST_KEY))
            .unwrap_or(Value::Null);
        let declared: Vec<String> = request["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let config = &frame["jobConfig"];
        let trust = resolve::trust_of(&config["event"]);
        let job_env = resolve::job_env(config.get("env"));
        // Nothing to read when the job declares no environment and its org had no org-wide
        // secrets at the claim (which read that in the same statement).
        let snapshot = if declared.is_empty() && !job.org_secrets {
            Snapshot::default()
        } else {
            pool.with_retry_pooled(|c| load(c, &job.id, &declared))
                .map_err(|e| Refusal::Retry(format!("reading the job's secrets failed: {e}")))?
        };
        let plan = resolve::resolve(&declared, &trust, &snapshot.catalogue)
            .map_err(|e| Refusal::Fail(e.to_string()))?;
        let values = self.open(&snapshot, &plan)?;
        if !plan.environments.is_empty() || !plan.layers.is_empty() || plan.withheld.is_some() {
            pool.with_retry(|c| record(c, job, &snapshot, &plan, &self.actor))
                .map_err(|e| Refusal::Retry(format!("recording the job's secrets failed: {e}")))?;
        }
        fill(frame, &plan, values, job_env);
        Ok(())
    }

    /// The winners' plaintexts; one that cannot be opened fails the job, naming it.
    fn open(&self, snapshot: &Snapshot, plan: &Plan) -> Result<Map<String, Value>, Refusal> {
        let mut out = Map::new();
        for (key, &i) in &plan.secrets {
            let name = &snapshot.catalogue.secrets[i];
            let sealed = &snapshot.sealed[i];
            let opened = self
                .secrets
                .open(sealed, &aad(&snapshot.org, &name.scope, &name.key))
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some(value) = opened else {
                return Err(Refusal::Fail(format!(
                    "the secret {key:?} (org {:?}, scope {:?}) cannot be decrypted with \
                     KICI_SECRET_KEY (nor KICI_SECRET_KEY_OLD); set KICI_SECRET_KEY_OLD to the \
                     key it was stored with, or set the secret again with `kici-admin secret set`",
                    snapshot.org, name.scope
                )));
            };
            out.insert(key.clone(), Value::String(value));
        }
        Ok(out)
    }
}

/// The frame fields, each only when not empty.
fn fill(
    frame: &mut Value,
    plan: &Plan,
    secrets: Map<String, Value>,
    job_env: BTreeMap<String, String>,
) {
    if !secrets.is_empty() {
        frame["secrets"] = Value::Object(secrets);
    }
    let Some(config) = frame.get_mut("jobConfig").and_then(Value::as_object_mut) else {
        return;
    };
    // The agent reads secrets only from the top level; never leave any in jobConfig.
    config.remove("secrets");
    if let Some(env) = &plan.environment {
        config.insert("environment".into(), json!(env));
    }
    if !plan.variables.is_empty() {
        config.insert("environmentVars".into(), json!(plan.variables));
    }
    if !job_env.is_empty() {
        config.insert("jobEnv".into(), json!(job_env));
    }
}

/// The org's snapshot for one job, with the sealed values beside the names.
#[derive(Default)]
struct Snapshot {
    org: String,
    routing_key: Option<String>,
    catalogue: Catalogue,
    /// Parallel to `catalogue.secrets`.
    sealed: Vec<String>,
}

const LOADING: &str = "reading a job's environments and secrets";

/// The snapshot query (see [`load`]); `$1` the job id, `$2` its declared names, `$3` the
/// org-wide scope.
static LOAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH q AS (SELECT routing_key FROM dispatch_queue WHERE id = $1::text::uuid),
                  o AS (SELECT {org} AS org)
             SELECT o.org, (SELECT routing_key FROM q),
               (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'name', e.name, 'glob', e.glob_pattern, 'allowUntrusted', e.allow_untrusted,
                    'enabled', e.enabled,
                    'bindings', (SELECT COALESCE(jsonb_agg(jsonb_build_array(b.scope_pattern, b.host_pattern)
                                   ORDER BY b.scope_pattern, b.host_pattern), '[]'::jsonb)
                                 FROM environment_bindings b WHERE b.environment_id = e.id),
                    'variables', (SELECT COALESCE(jsonb_object_agg(v.key, v.value), '{{}}'::jsonb)
                                  FROM environment_variables v WHERE v.environment_id = e.id))
                  ORDER BY e.name), '[]'::jsonb)
                  FROM environments e
                 WHERE cardinality($2::text[]) > 0 AND e.org_id = o.org
                   AND (e.name = ANY($2::text[]) OR e.type = 'glob')),
               (SELECT COALESCE(jsonb_agg(jsonb_build_array(s.scope, s.key, s.encrypted_value)
                  ORDER BY s.scope, s.key), '[]'::jsonb)
                  FROM scoped_secrets s
                 WHERE s.org_id = o.org AND s.key <> '__empty__'
                   AND (s.scope = $3 OR (cardinality($2::text[]) > 0 AND s.scope NOT LIKE '\\_\\_%')))
             FROM o",
        org = org_sql("(SELECT routing_key FROM q)"),
    )
});

/// SQL: the org of the routing key in `routing_key` (an SQL expression) — its source's customer
/// id, `__default__` for a source without one (or none).
fn org_sql(routing_key: &str) -> String {
    format!(
        "COALESCE((SELECT s.customer_id::text FROM sources s WHERE s.routing_key = {routing_key}),
                  (SELECT g.customer_id::text FROM generic_webhook_sources g WHERE g.routing_key = {routing_key}),
                  '__default__')"
    )
}

/// SQL: whether the org of `routing_key` (an SQL expression) has org-wide secrets, which every
/// job of the org receives; the queue's claim returns it ([`Claimed::org_secrets`]).
pub fn org_has_org_wide_sql(routing_key: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM scoped_secrets w WHERE w.org_id = {} AND w.scope = '{}'
                   AND w.key <> '{}')",
        org_sql(routing_key),
        resolve::ORG_WIDE_SCOPE,
        super::names::EMPTY_SENTINEL_KEY,
    )
}

/// One query: the job's org (its source's customer id, `__default__` without one), the records
/// of its declared names and every glob environment (in name order), and the org's secrets
/// (org-wide ones, plus every other non-internal scope when environments are declared).
fn load(c: &mut PooledClient, job_id: &str, declared: &[String]) -> Result<Snapshot, DbError> {
    // Prepared once per connection: one round trip per dispatch, and a plan PostgreSQL can keep.
    let statement = c.prepared(LOAD.as_str()).map_err(DbError::query(LOADING))?;
    let row = c
        .query_one(&statement, &[&job_id, &declared, &resolve::ORG_WIDE_SCOPE])
        .map_err(DbError::query(LOADING))?;
    let org: String = row.try_get(0).map_err(DbError::query(LOADING))?;
    let routing_key: Option<String> = row.try_get(1).map_err(DbError::query(LOADING))?;
    let envs: Value = row.try_get(2).map_err(DbError::query(LOADING))?;
    let secrets: Value = row.try_get(3).map_err(DbError::query(LOADING))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let environments = envs
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| EnvRecord {
            name: text(&e["name"]),
            glob: e["glob"].as_str().map(str::to_owned),
            allow_untrusted: e["allowUntrusted"].as_bool().unwrap_or(false),
            enabled: e["enabled"].as_bool().unwrap_or(true),
            bindings: e["bindings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| Binding {
                    scope_pattern: text(&b[0]),
                    host_pattern: text(&b[1]),
                })
                .collect(),
            variables: resolve::job_env(e.get("variables")),
        })
        .collect();
    let mut names = Vec::new();
    let mut sealed = Vec::new();
    for s in secrets.as_array().into_iter().flatten() {
        names.push(SecretName {
            scope: text(&s[0]),
            key: text(&s[1]),
        });
        sealed.push(text(&s[2]));
    }
    Ok(Snapshot {
        org: org.clone(),
        routing_key,
        catalogue: Catalogue {
            org,
            environments,
            secrets: names,
        },
        sealed,
    })
}

/// What `runs show` shows of a job's resolution (`execution_jobs.secrets_resolution`): names
/// only, never a value.
pub fn summary(plan: &Plan) -> Value {
    let mut v = json!({
        "environments": plan.environments.iter().map(|m| {
            let mut e = json!({"name": m.declared, "delivered": m.delivered});
            if m.record != m.declared {
                e["matched"] = json!(m.record);
            }
            e
        }).collect::<Vec<_>>(),
        "secrets": plan.secrets.keys().collect::<Vec<_>>(),
    });
    if let Some(w) = &plan.withheld {
        v["withheld"] = json!({
            "reason": w.reason,
            "environments": w.environments,
            "orgWide": w.org_wide,
            "secrets": w.keys,
        });
    }
    v
}

/// The audit rows of one resolution: one `resolve` row per delivered layer, one `denied` row
/// for what was withheld.
fn audit_rows(org: &str, plan: &Plan) -> Value {
    let mut rows: Vec<Value> = plan
        .layers
        .iter()
        .map(|l| {
            json!({"context": l.context, "keys": l.secrets.keys().collect::<Vec<_>>(),
                   "outcome": "allowed",
                   "metadata": {"orgId": org, "secretCount": l.secrets.len()}})
        })
        .collect();
    if let Some(w) = &plan.withheld {
        let context = if w.environments.is_empty() {
            resolve::ORG_WIDE_CONTEXT.to_owned()
        } else {
            w.environments.join(",")
        };
        rows.push(
            json!({"context": context, "keys": w.keys, "outcome": "denied",
            "metadata": {"orgId": org, "reason": w.reason, "environments": w.environments,
                         "orgWide": w.org_wide}}),
        );
    }
    Value::Array(rows)
}

/// The job's row and the audit rows, in one statement.
fn record(
    c: &mut impl GenericClient,
    job: &Claimed,
    snapshot: &Snapshot,
    plan: &Plan,
    actor: &str,
) -> Result<(), DbError> {
    let names: Vec<&String> = plan.environments.iter().map(|m| &m.declared).collect();
    c.execute(
        "WITH j AS (UPDATE execution_jobs SET environments = $2, secrets_resolution = $3
                     WHERE job_id = $1::text::uuid RETURNING job_id)
         INSERT INTO secret_audit_log (action, org_id, context_name, routing_key, secret_keys,
                                       outcome, run_id, job_id, user_id, token_label, role, metadata)
         SELECT 'resolve', $4, r.context, $5, r.keys, r.outcome, $6::text::uuid, $1::text::uuid,
                $7, 'orchestrator', 'system', r.metadata
           FROM jsonb_to_recordset($8::jsonb) AS r(context text, keys jsonb, outcome text, metadata jsonb)",
        &[
            &job.id,
            &json!(names),
            &summary(plan),
            &snapshot.org,
            &snapshot.routing_key,
            &job.run_id,
            &actor,
            &audit_rows(&snapshot.org, plan),
        ],
    )
    .map_err(DbError::query("recording a job's secrets"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::resolve::Trust;

    #[test]
    fn the_frame_gets_each_field_where_the_agent_reads_it_and_no_empty_one() {
        let mut frame =
            json!({"type": "job.dispatch", "jobConfig": {"name": "ship", "secrets": {"X": "y"}}});
        let plan = Plan {
            environment: Some("prod".into()),
            variables: BTreeMap::from([("REGION".into(), "eu".into())]),
            ..Plan::default()
        };
        let mut secrets = Map::new();
        secrets.insert("DB".into(), json!("s3cr3t"));
        fill(
            &mut frame,
            &plan,
            secrets,
            BTreeMap::from([("LOG".into(), "debug".into())]),
        );
        assert_eq!(
            frame,
            json!({"type": "job.dispatch", "secrets": {"DB": "s3cr3t"},
                   "jobConfig": {"name": "ship", "environment": "prod",
                                 "environmentVars": {"REGION": "eu"}, "jobEnv": {"LOG": "debug"}}})
        );
        let mut bare = json!({"jobConfig": {"name": "b"}});
        fill(&mut bare, &Plan::default(), Map::new(), BTreeMap::new());
        assert_eq!(bare, json!({"jobConfig": {"name": "b"}}));
    }

    #[test]
    fn the_summary_and_the_audit_name_keys_never_values() {
        let cat = Catalogue {
            org: "acme".into(),
            environments: vec![EnvRecord {
                name: "prod".into(),
                enabled: true,
                bindings: vec![Binding {
                    scope_pattern: "aws/prod".into(),
                    host_pattern: "**".into(),
                }],
                ..EnvRecord::default()
            }],
            secrets: vec![
                SecretName {
                    scope: "aws/prod".into(),
                    key: "DB".into(),
                },
                SecretName {
                    scope: resolve::ORG_WIDE_SCOPE.into(),
                    key: "NPM".into(),
                },
            ],
        };
        let names = ["prod".to_owned()];
        let plan = resolve::resolve(&names, &Trust::Trusted, &cat).unwrap();
        assert_eq!(
            summary(&plan),
            json!({"environments": [{"name": "prod", "delivered": true}], "secrets": ["DB", "NPM"]})
        );
        let rows = audit_rows("acme", &plan);
        assert_eq!(rows[0]["context"], "__org__");
        assert_eq!(rows[0]["keys"], json!(["NPM"]));
        assert_eq!(rows[1]["context"], "prod");
        let fork = Trust::Untrusted("fork".into());
        let plan = resolve::resolve(&names, &fork, &cat).unwrap();
        let s = summary(&plan);
        assert_eq!(s["withheld"]["secrets"], json!(["DB", "NPM"]));
        assert_eq!(s["withheld"]["reason"], "fork");
        let rows = audit_rows("acme", &plan);
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["outcome"], "denied");
        assert_eq!(rows[0]["context"], "prod");
    }
}
