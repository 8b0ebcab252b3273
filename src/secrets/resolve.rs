//! Which secrets and variables a job receives when it is dispatched (docs/secrets.md,
//! "Resolution at dispatch"), decided from the job's declared environments, its trust and a
//! snapshot of its org's environments, bindings, variables and secret names. Pure code: no I/O,
//! no decryption. The caller (`super::dispatch`) loads the snapshot, opens only the winning
//! values and puts them in the `job.dispatch` frame.
//!
//! The rules, lowest precedence first:
//! 1. org-wide secrets (scope [`ORG_WIDE_SCOPE`]);
//! 2. each declared environment in declared order, a later one overriding an earlier one; inside
//!    one environment, for each key the secret of the deepest matching scope wins (ties: the
//!    scope that sorts first), so `aws/prod/db` beats `aws/prod` beats `aws`.
//!
//! A declared name resolves to the environment of that exact name, else to the first glob
//! environment (in name order) whose pattern matches it. A job of an untrusted event gets no
//! org-wide secrets and nothing from environments without `allow_untrusted`; what it would have
//! received is reported as withheld, by name only.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::pipeline::glob::Glob;

use super::names::EMPTY_SENTINEL_KEY;
pub use super::names::ORG_WIDE_SCOPE;
/// The audit context of the org-wide layer.
pub const ORG_WIDE_CONTEXT: &str = "__org__";
/// How many environments one job may declare.
pub const MAX_ENVIRONMENTS: usize = 32;

/// An environment of the org, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvRecord {
    pub name: String,
    /// A glob environment's pattern (it stands for every declared name it matches).
    pub glob: Option<String>,
    pub allow_untrusted: bool,
    pub enabled: bool,
    pub bindings: Vec<Binding>,
    pub variables: BTreeMap<String, String>,
}

/// `environment → scope pattern`; host patterns other than `**` only apply to per-host jobs,
/// which this orchestrator does not run, so such bindings resolve nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub scope_pattern: String,
    pub host_pattern: String,
}

/// A stored secret's name (the value stays sealed until it wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    pub scope: String,
    pub key: String,
}

/// What the org has, as far as one job's resolution needs.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// The org's id (named in error messages).
    pub org: String,
    /// Exact-name records of the declared names and every glob record, globs in name order.
    pub environments: Vec<EnvRecord>,
    pub secrets: Vec<SecretName>,
}

/// Whether the job runs code whose author may not see the org's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    Trusted,
    /// Why not (shown by `runs show`).
    Untrusted(String),
}

/// A declared environment and the record it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub declared: String,
    /// The record's name (differs from `declared` for a glob environment).
    pub record: String,
    /// Whether its secrets and variables were delivered.
    pub delivered: bool,
}

/// One layer of the final map, for the audit log: which keys it contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The declared environment name, or [`ORG_WIDE_CONTEXT`].
    pub context: String,
    /// key → index into [`Catalogue::secrets`].
    pub secrets: BTreeMap<String, usize>,
}

/// What was not delivered, and why (names only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub reason: String,
    /// Declared environments whose secrets and variables were withheld.
    pub environments: Vec<String>,
    /// Whether org-wide secrets were withheld.
    pub org_wide: bool,
    /// The keys the job would have received, sorted.
    pub keys: Vec<String>,
}

/// The outcome for one job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The primary (first declared) environment: `jobConfig.environment`.
    pub environment: Option<String>,
    pub environments: Vec<Matched>,
    /// The final map: key → index into [`Catalogue::secrets`] of the value to open.
    pub secrets: BTreeMap<String, usize>,
    /// Delivered layers, lowest first (empty ones left out).
    pub layers: Vec<Layer>,
    /// `jobConfig.environmentVars`.
    pub variables: BTreeMap<String, String>,
    pub withheld: Option<Withheld>,
}

/// Why a job cannot be given what it asks for: it fails instead of running without it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// No environment has this name and no glob environment matches it.
    Missing { org: String, name: String },
    /// The environment exists but is disabled.
    Disabled { name: String, record: String },
    /// More than [`MAX_ENVIRONMENTS`] declared.
    TooMany { count: usize },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Missing { org, name } => write!(
                f,
                "the job's environment {name:?} does not exist in its org {org:?} (no \
                 environment of that name and no glob environment matching it); create it with \
                 `kici-admin environment create --org {org} --name {name}` or remove it from \
                 the job"
            ),
            ResolveError::Disabled { name, record } if name == record => write!(
                f,
                "the job's environment {name:?} is disabled; enable it or remove it from the job"
            ),
            ResolveError::Disabled { name, record } => write!(
                f,
                "the job's environment {name:?} matches the glob environment {record:?}, which \
                 is disabled; enable it or remove {name:?} from the job"
            ),
            ResolveError::TooMany { count } => write!(
                f,
                "the job declares {count} environments, more than {MAX_ENVIRONMENTS}; declare \
                 fewer"
            ),
        }
    }
}

impl std::error::Error for ResolveError {}

/// The static environment names a lock-file job declares (`environments: [{value, dynamic}]`),
/// in order, duplicates dropped. Entries computed at run time are refused by lock-file
/// validation before a job is planned; here they are skipped.
pub fn declared_environments(environments: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in environments.and_then(Value::as_array).into_iter().flatten() {
        if entry.get("dynamic").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let name = match entry {
            Value::String(s) => s.as_str(),
            _ => entry.get("value").and_then(Value::as_str).unwrap_or(""),
        };
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// The job's static `env` (`jobConfig.jobEnv`): string values only.
pub fn job_env(env: Option<&Value>) -> BTreeMap<String, String> {
    env.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// The trust of a job, from its stored event (`jobConfig.event`): code from a fork's pull
/// request is untrusted, and so is a pull request whose head repository is gone (only a
/// deleted fork leaves no head repository behind) or that names no base repository: a pull
/// request is trusted only when its head and base are provably the same repository.
pub fn trust_of(event: &Value) -> Trust {
    let pr = &event["payload"]["pull_request"];
    let head = pr["head"]["repo"]["full_name"].as_str();
    let base = pr["base"]["repo"]["full_name"].as_str();
    if event["isForkPR"].as_bool() == Some(true) {
        return Trust::Untrusted(match head {
            Some(head) => format!("the job runs code from a pull request of the fork {head}"),
            None => "the job runs code from a fork's pull request".to_owned(),
        });
    }
    if pr.is_object() {
        match (head, base) {
            (Some(h), Some(b)) if h != b => {
                return Trust::Untrusted(format!(
                    "the job runs code from a pull request of the fork {h}"
                ))
            }
            (None, _) => {
                return Trust::Untrusted(
                    "the job runs code from a pull request whose head repository is gone (a \
                     deleted fork)"
                        .to_owned(),
                )
            }
            (Some(_), None) => {
                return Trust::Untrusted(
                    "the job runs code from a pull request that names no base repository, so \
                     it cannot be told from a fork's"
                        .to_owned(),
                )
            }
            _ => {}
        }
    }
    Trust::Trusted
}

/// How many `/`-separated segments a scope has: deeper scopes win inside one environment.
fn depth(scope: &str) -> usize {
    scope.split('/').count()
}

/// A binding usable for a job: any host, and no per-host substitution in the scope.
fn usable(b: &Binding) -> bool {
    (b.host_pattern.is_empty() || b.host_pattern == "**") && !b.scope_pattern.contains("${")
}

/// One environment's secrets: per key, the deepest matching scope (ties: the smaller scope).
fn environment_secrets(env: &EnvRecord, secrets: &[SecretName]) -> BTreeMap<String, usize> {
    let patterns: Vec<(&str, Option<Glob>)> = env
        .bindings
        .iter()
        .filter(|b| usable(b))
        .map(|b| (b.scope_pattern.as_str(), Glob::new(&b.scope_pattern).ok()))
        .collect();
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in secrets.iter().enumerate() {
        if s.scope == ORG_WIDE_SCOPE || s.scope.starts_with("__") || s.key == EMPTY_SENTINEL_KEY {
            continue;
        }
        let matched = patterns
            .iter()
            .any(|(p, glob)| *p == s.scope || glob.as_ref().is_some_and(|g| g.is_match(&s.scope)));
        if !matched {
            continue;
        }
        let better = match out.get(&s.key) {
            None => true,
            Some(&j) => {
                let held = &secrets[j].scope;
                (depth(&s.scope), std::cmp::Reverse(&s.scope))
                    > (depth(held), std::cmp::Reverse(held))
            }
        };
        if better {
            out.insert(s.key.clone(), i);
        }
    }
    out
}

/// The record a declared name resolves to: the record of that exact name (a glob environment's
/// own name included), else the first glob environment whose pattern matches.
fn find<'a>(catalogue: &'a Catalogue, name: &str) -> Option<&'a EnvRecord> {
    catalogue
        .environments
        .iter()
        .find(|e| e.name == name)
        .or_else(|| {
            catalogue.environments.iter().find(|e| {
                e.glob
                    .as_deref()
                    .is_some_and(|g| Glob::new(g).is_ok_and(|g| g.is_match(name)))
            })
        })
}

/// Resolves one job: every declared environment must exist and be enabled.
pub fn resolve(
    declared: &[String],
    trust: &Trust,
    catalogue: &Catalogue,
) -> Result<Plan, ResolveError> {
    if declared.len() > MAX_ENVIRONMENTS {
        return Err(ResolveError::TooMany {
            count: declared.len(),
        });
    }
    let untrusted = match trust {
        Trust::Trusted => None,
        Trust::Untrusted(why) => Some(why.as_str()),
    };
    let mut plan = Plan {
        environment: declared.first().cloned(),
        ..Plan::default()
    };
    let mut withheld_keys: Vec<String> = Vec::new();
    let mut withheld_envs: Vec<String> = Vec::new();
    let org_wide: BTreeMap<String, usize> = catalogue
        .secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.scope == ORG_WIDE_SCOPE && s.key != EMPTY_SENTINEL_KEY)
        .map(|(i, s)| (s.key.clone(), i))
        .collect();
    let mut layers: Vec<Layer> = Vec::new();
    if untrusted.is_some() {
        withheld_keys.extend(org_wide.keys().cloned());
    } else if !org_wide.is_empty() {
        layers.push(Layer {
            context: ORG_WIDE_CONTEXT.to_owned(),
            secrets: org_wide.clone(),
        });
    }
    for name in declared {
        let record = find(catalogue, name).ok_or_else(|| ResolveError::Missing {
            org: catalogue.org.clone(),
            name: name.clone(),
        })?;
        if !record.enabled {
            return Err(ResolveError::Disabled {
                name: name.clone(),
                record: record.name.clone(),
            });
        }
        let secrets = environment_secrets(record, &catalogue.secrets);
        let delivered = untrusted.is_none() || record.allow_untrusted;
        plan.environments.push(Matched {
            declared: name.clone(),
            record: record.name.clone(),
            delivered,
        });
        if !delivered {
            withheld_envs.push(name.clone());
            withheld_keys.extend(secrets.keys().cloned());
            continue;
        }
        for (k, v) in &record.variables {
            plan.variables.insert(k.clone(), v.clone());
        }
        if !secrets.is_empty() {
            layers.push(Layer {
                context: name.clone(),
                secrets,
            });
        }
    }
    for layer in &layers {
        for (k, &i) in &layer.secrets {
            plan.secrets.insert(k.clone(), i);
        }
    }
    plan.layers = layers;
    if let Some(reason) = untrusted {
        let org_wide_withheld = !org_wide.is_empty();
        if org_wide_withheld || !withheld_envs.is_empty() {
            withheld_keys.sort();
            withheld_keys.dedup();
            plan.withheld = Some(Withheld {
                reason: reason.to_owned(),
                environments: withheld_envs,
                org_wide: org_wide_withheld,
                keys: withheld_keys,
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
