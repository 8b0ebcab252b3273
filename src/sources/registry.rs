//! The in-memory source registry: every enabled, live source with its decrypted secret, as an
//! immutable snapshot behind an `Arc` that request threads read without locking for long, and
//! that changes are applied to by building a new snapshot and swapping it in.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use postgres::Client;
use serde_json::Value;

use super::verify::Verification;
use crate::{
    crypto::SecretBox,
    db::{generic, secrets, sources, DbError},
};

#[derive(Debug, Clone)]
pub struct GenericSource {
    pub id: String,
    pub org: String,
    pub name: String,
    pub routing_key: String,
    pub verification: Verification,
    pub event_type_header: Option<String>,
    pub event_type_path: Option<String>,
    pub idempotency_key_header: Option<String>,
    pub idempotency_key_path: Option<String>,
    pub dedup_window_seconds: i32,
    pub max_payload_bytes: i32,
    pub allowed_events: Option<Vec<String>>,
    pub rate_limit_rpm: i32,
    /// `local` sources need a JSON body and `x-event-type` (docs/operations.md, "Webhook intake
    /// and dedup").
    pub local: bool,
    /// A local source's folder (`gitConfig.localPath`): repositories named by its webhooks must
    /// resolve inside it (`sources::local_path`).
    pub local_path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GitHubSource {
    pub id: String,
    pub routing_key: String,
    pub name: String,
    pub customer_id: String,
    /// `None` when no secret is stored or it does not decrypt: webhooks get 500 misconfigured.
    pub webhook_secret: Option<String>,
}

/// One consistent view of all sources.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    generic: HashMap<(String, String), Arc<GenericSource>>,
    generic_names: HashMap<String, (String, String)>,
    github: HashMap<String, Arc<GitHubSource>>,
}

impl Snapshot {
    pub fn generic(&self, org: &str, name: &str) -> Option<&Arc<GenericSource>> {
        self.generic.get(&(org.to_owned(), name.to_owned()))
    }

    pub fn github(&self, routing_key: &str) -> Option<&Arc<GitHubSource>> {
        self.github.get(routing_key)
    }

    /// A generic source by its routing key (`generic:<org>:<id>`), as relayed deliveries name it.
    pub fn generic_by_key(&self, routing_key: &str) -> Option<&Arc<GenericSource>> {
        self.generic_names
            .get(routing_key)
            .and_then(|key| self.generic.get(key))
    }

    /// Every source as `(routing key, kind, name, local)`, sorted by routing key.
    pub fn listing(&self) -> Vec<(String, Kind, String, bool)> {
        let mut out: Vec<(String, Kind, String, bool)> = self
            .github
            .iter()
            .map(|(k, s)| (k.clone(), Kind::GitHub, s.name.clone(), false))
            .chain(self.generic.values().map(|s| {
                (
                    s.routing_key.clone(),
                    Kind::Generic,
                    s.name.clone(),
                    s.local,
                )
            }))
            .collect();
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.generic.len() + self.github.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put_generic(&mut self, routing_key: &str, source: Option<GenericSource>) {
        if let Some(old) = self.generic_names.remove(routing_key) {
            self.generic.remove(&old);
        }
        if let Some(s) = source {
            let key = (s.org.clone(), s.name.clone());
            self.generic_names
                .insert(routing_key.to_owned(), key.clone());
            self.generic.insert(key, Arc::new(s));
        }
    }

    fn put_github(&mut self, routing_key: &str, source: Option<GitHubSource>) {
        match source {
            Some(s) => self.github.insert(routing_key.to_owned(), Arc::new(s)),
            None => self.github.remove(routing_key),
        };
    }
}

/// Which table a change notification came from (its NOTIFY channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    GitHub,
    Generic,
}

impl Kind {
    pub fn from_channel(channel: &str) -> Option<Kind> {
        match channel {
            "sources_change" => Some(Kind::GitHub),
            "generic_sources_change" => Some(Kind::Generic),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct SourceRegistry {
    current: RwLock<Arc<Snapshot>>,
}

impl SourceRegistry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }

    /// Re-reads the given routing keys and swaps in a snapshot with them updated.
    pub fn refresh(
        &self,
        client: &mut Client,
        sbox: &SecretBox,
        keys: &[(Kind, String)],
    ) -> Result<(), DbError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut loaded = Vec::with_capacity(keys.len());
        for (kind, rk) in keys {
            loaded.push((*kind, rk.clone(), load(client, sbox, *kind, Some(rk))?));
        }
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        for (kind, rk, mut found) in loaded {
            match (kind, found.pop()) {
                (Kind::Generic, Some(Loaded::Generic(s))) => next.put_generic(&rk, Some(s)),
                (Kind::Generic, _) => next.put_generic(&rk, None),
                (Kind::GitHub, Some(Loaded::GitHub(s))) => next.put_github(&rk, Some(s)),
                (Kind::GitHub, _) => next.put_github(&rk, None),
            }
        }
        *guard = Arc::new(next);
        Ok(())
    }
}

enum Loaded {
    Generic(GenericSource),
    GitHub(GitHubSource),
}

/// Every source, for a full (re)sync.
pub fn load_all(client: &mut Client, sbox: &SecretBox) -> Result<Snapshot, DbError> {
    let mut snap = Snapshot::default();
    for kind in [Kind::Generic, Kind::GitHub] {
        for l in load(client, sbox, kind, None)? {
            match l {
                Loaded::Generic(s) => snap.put_generic(&s.routing_key.clone(), Some(s)),
                Loaded::GitHub(s) => snap.put_github(&s.routing_key.clone(), Some(s)),
            }
        }
    }
    Ok(snap)
}

/// Sources of one kind (one routing key, or all); only enabled, live generic sources.
fn load(
    client: &mut Client,
    sbox: &SecretBox,
    kind: Kind,
    routing_key: Option<&str>,
) -> Result<Vec<Loaded>, DbError> {
    match kind {
        Kind::Generic => {
            let rows = client
                .query(
                    "SELECT id::text, customer_id, name, routing_key, verification_method, verification_config,
                            event_type_header, event_type_path, idempotency_key_header, idempotency_key_path,
                            dedup_window_seconds, max_payload_bytes, allowed_events, rate_limit_rpm, provider_type,
                            coalesce(git_config->>'localPath', git_config->>'path')
                     FROM generic_webhook_sources
                     WHERE enabled AND deleted_at IS NULL AND ($1::text IS NULL OR routing_key = $1)",
                    &[&routing_key],
                )
                .map_err(DbError::query("loading generic sources"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let id: String = r.get(0);
                let method: String = r.get(4);
                let config: Value = r.get(5);
                let secret = match generic::secret(client, sbox, &id) {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!(
                            "generic source {}: {e}; its webhooks will be refused as misconfigured",
                            r.get::<_, String>(3)
                        );
                        None
                    }
                };
                let allowed: Option<Value> = r.get(12);
                out.push(Loaded::Generic(GenericSource {
                    verification: verification(&method, &config, secret),
                    id,
                    org: r.get(1),
                    name: r.get(2),
                    routing_key: r.get(3),
                    event_type_header: r.get(6),
                    event_type_path: r.get(7),
                    idempotency_key_header: r.get(8),
                    idempotency_key_path: r.get(9),
                    dedup_window_seconds: r.get(10),
                    max_payload_bytes: r.get(11),
                    allowed_events: allowed.and_then(|v| serde_json::from_value(v).ok()),
                    rate_limit_rpm: r.get(13),
                    local: r.get::<_, String>(14) == "local",
                    local_path: r.get(15),
                }));
            }
            Ok(out)
        }
        Kind::GitHub => {
            let rows = client
                .query(
                    "SELECT id::text, routing_key, name, customer_id FROM sources
                     WHERE provider = 'github' AND ($1::text IS NULL OR routing_key = $1)",
                    &[&routing_key],
                )
                .map_err(DbError::query("loading GitHub sources"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let id: String = r.get(0);
                let scope = secrets::github_scope(&id);
                let webhook_secret = secrets::get(client, sbox, &scope, sources::WEBHOOK_SECRET)
                    .unwrap_or_else(|e| {
                        log::error!(
                            "GitHub source {}: {e}; its webhooks will be refused as misconfigured",
                            r.get::<_, String>(1)
                        );
                        None
                    });
                out.push(Loaded::GitHub(GitHubSource {
                    id,
                    routing_key: r.get(1),
                    name: r.get(2),
                    customer_id: r.get(3),
                    webhook_secret,
                }));
            }
            Ok(out)
        }
    }
}

/// The verification of a stored source; anything unusable is `Misconfigured`, never `None`.
fn verification(method: &str, config: &Value, secret: Option<String>) -> Verification {
    let header = config
        .get("headerName")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (method, secret) {
        ("hmac_sha256", Some(secret)) => Verification::HmacSha256 { secret, header },
        ("bearer_token" | "api_key", Some(token)) => Verification::BearerToken { token, header },
        ("ip_allowlist", _) => match config.get("allowlist").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => Verification::IpAllowlist {
                allowlist: list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            },
            _ => Verification::Misconfigured,
        },
        ("none", _) => Verification::None,
        _ => Verification::Misconfigured,
    }
}
