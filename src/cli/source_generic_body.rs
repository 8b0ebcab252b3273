//! The request bodies of the generic-source commands (docs/operations.md, "Admin CLI"), built from
//! the flags after secret resolution by pure functions, so every mapping rule has a unit test: the
//! secret goes into `verificationConfig` in the shape its method needs, numbers and comma lists are
//! checked, and only what was given is sent.

use serde_json::{json, Map, Value};

use super::source::NO_FIELDS;
use crate::Error;

const METHODS: &[&str] = &["hmac_sha256", "bearer_token", "ip_allowlist", "none"];
const PROVIDER_TYPES: &[&str] = &["generic", "local"];

/// The options `add generic` and `update-generic` share, with the secret already resolved.
pub(super) struct GenericFields<'a> {
    pub(super) name: Option<&'a str>,
    pub(super) verification: Option<&'a str>,
    pub(super) secret: Option<String>,
    pub(super) event_type_header: Option<&'a str>,
    pub(super) event_type_path: Option<&'a str>,
    pub(super) idempotency_key_header: Option<&'a str>,
    pub(super) idempotency_key_path: Option<&'a str>,
    pub(super) dedup_window: Option<u32>,
    pub(super) max_payload: Option<u32>,
    pub(super) allowed_events: Option<&'a str>,
    pub(super) strip_headers: Option<&'a str>,
    pub(super) rate_limit: Option<u32>,
    pub(super) provider_type: Option<&'a str>,
}

/// The `POST /generic-sources` body. `verificationMethod` is sent only when `--verification` was
/// given (the server defaults to hmac_sha256); a method that needs a secret without one is
/// refused here, where the message can say which flag to add.
pub(super) fn create_body(org: &str, f: &GenericFields) -> Result<Value, Error> {
    let mut body = Map::new();
    body.insert("orgId".into(), org.into());
    let method = checked_method(f.verification)?.unwrap_or("hmac_sha256");
    match (&f.secret, method) {
        (None, "hmac_sha256" | "bearer_token" | "ip_allowlist") => {
            let default = if f.verification.is_none() {
                " (the default; pass --verification none for unverified webhooks)"
            } else {
                ""
            };
            return Err(Error::Usage(format!(
                "verification {method}{default} needs {}: pass --secret <value|@path>, --from-env VAR or --stdin",
                what_secret(method)
            )));
        }
        (Some(secret), _) => {
            body.insert(
                "verificationConfig".into(),
                verification_config(method, secret)?,
            );
        }
        (None, _) => {}
    }
    common_fields(f, &mut body)?;
    Ok(Value::Object(body))
}

/// The `PATCH /generic-sources/<id>` body: only what was given; nothing given is refused.
pub(super) fn update_body(f: &GenericFields, clear_git_config: bool) -> Result<Value, Error> {
    let mut body = Map::new();
    let method = checked_method(f.verification)?;
    if let Some(secret) = &f.secret {
        let method = method.ok_or_else(|| {
            Error::Usage(
                "--verification is required when updating --secret (needed to format the config correctly)"
                    .into(),
            )
        })?;
        body.insert(
            "verificationConfig".into(),
            verification_config(method, secret)?,
        );
    }
    common_fields(f, &mut body)?;
    if clear_git_config {
        body.insert("gitConfig".into(), Value::Null);
    }
    if body.is_empty() {
        return Err(Error::Usage(NO_FIELDS.into()));
    }
    Ok(Value::Object(body))
}

fn checked_method(method: Option<&str>) -> Result<Option<&str>, Error> {
    match method {
        Some(m) if !METHODS.contains(&m) => Err(Error::Usage(format!(
            "--verification must be one of {}, got {m:?}",
            METHODS.join(", ")
        ))),
        other => Ok(other),
    }
}

fn what_secret(method: &str) -> &'static str {
    match method {
        "bearer_token" => "the bearer token",
        "ip_allowlist" => "the allowed IPs (comma-separated)",
        _ => "the HMAC secret",
    }
}

/// The secret in the shape the server expects for `method` (docs/operations.md, "Admin API and
/// tokens").
fn verification_config(method: &str, secret: &str) -> Result<Value, Error> {
    Ok(match method {
        "hmac_sha256" => json!({ "secret": secret }),
        "bearer_token" => json!({ "token": secret }),
        "ip_allowlist" => json!({ "allowlist": comma_list("--secret", secret)? }),
        _ => {
            return Err(Error::Usage(
                "--verification none takes no secret: drop --secret/--from-env/--stdin".into(),
            ))
        }
    })
}

/// Everything but verification, camelCased, each only when given.
fn common_fields(f: &GenericFields, body: &mut Map<String, Value>) -> Result<(), Error> {
    if let Some(method) = f.verification {
        body.insert("verificationMethod".into(), method.into());
    }
    let texts = [
        ("name", f.name),
        ("eventTypeHeader", f.event_type_header),
        ("eventTypePath", f.event_type_path),
        ("idempotencyKeyHeader", f.idempotency_key_header),
        ("idempotencyKeyPath", f.idempotency_key_path),
    ];
    for (key, value) in texts {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            body.insert(key.into(), v.into());
        }
    }
    let numbers = [
        ("dedupWindowSeconds", f.dedup_window),
        ("maxPayloadBytes", f.max_payload),
        ("rateLimitRpm", f.rate_limit),
    ];
    for (key, value) in numbers {
        if let Some(n) = value {
            body.insert(key.into(), n.into());
        }
    }
    if let Some(raw) = f.allowed_events {
        body.insert(
            "allowedEvents".into(),
            comma_list("--allowed-events", raw)?.into(),
        );
    }
    if let Some(raw) = f.strip_headers {
        body.insert(
            "stripHeaders".into(),
            comma_list("--strip-headers", raw)?.into(),
        );
    }
    if let Some(kind) = f.provider_type {
        if !PROVIDER_TYPES.contains(&kind) {
            return Err(Error::Usage(format!(
                "--provider-type must be generic or local, got {kind:?}"
            )));
        }
        body.insert("providerType".into(), kind.into());
    }
    Ok(())
}

/// `a, b,,c` → `["a", "b", "c"]`; a list with nothing in it is refused.
fn comma_list(flag: &str, raw: &str) -> Result<Vec<String>, Error> {
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(Error::Usage(format!(
            "{flag} needs at least one value (comma-separated), got {raw:?}"
        )));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{
        secret_input::SecretReaders,
        source_generic::{AddGenericCmd, UpdateGenericCmd},
    };
    use argh::FromArgs;

    struct Readers;

    impl SecretReaders for Readers {
        fn read_file(&self, path: &str) -> std::io::Result<String> {
            Ok(format!("secret-from-{path}\n"))
        }
        fn env_var(&self, name: &str) -> Option<String> {
            (name == "HOOK_SECRET").then(|| "from-env".to_owned())
        }
        fn read_stdin(&self) -> std::io::Result<String> {
            Ok("from-stdin\n".into())
        }
    }

    fn add_body(args: &[&str]) -> Result<Value, Error> {
        let cmd = AddGenericCmd::from_args(&["generic"], args).expect("parses");
        create_body(&cmd.org, &cmd.fields(&Readers)?)
    }

    fn update(args: &[&str]) -> Result<Value, Error> {
        let mut all = vec!["6f1c"];
        all.extend_from_slice(args);
        let cmd = UpdateGenericCmd::from_args(&["update-generic"], &all).expect("parses");
        update_body(&cmd.fields(&Readers)?, cmd.clear_git_config)
    }

    const BASE: &[&str] = &["--org", "my-org", "--name", "n"];

    fn with(extra: &[&'static str]) -> Vec<&'static str> {
        let mut all = BASE.to_vec();
        all.extend_from_slice(extra);
        all
    }

    #[test]
    fn guide_example_hmac_from_file() {
        let body = add_body(&with(&[
            "--verification",
            "hmac_sha256",
            "--secret",
            "@/path/to/webhook-secret.txt",
            "--event-type-header",
            "X-Event-Type",
            "--rate-limit",
            "120",
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({"orgId": "my-org", "name": "n", "verificationMethod": "hmac_sha256",
                   "verificationConfig": {"secret": "secret-from-/path/to/webhook-secret.txt"},
                   "eventTypeHeader": "X-Event-Type", "rateLimitRpm": 120})
        );
    }

    #[test]
    fn secret_mapping_per_method() {
        let bearer = add_body(&with(&[
            "--verification",
            "bearer_token",
            "--secret",
            "tok",
            "--event-type-path",
            "$.event.type",
        ]))
        .unwrap();
        assert_eq!(bearer["verificationConfig"], json!({"token": "tok"}));
        assert_eq!(bearer["eventTypePath"], "$.event.type");
        let ips = add_body(&with(&[
            "--verification",
            "ip_allowlist",
            "--secret",
            "10.0.0.1, 10.0.0.2,",
        ]))
        .unwrap();
        assert_eq!(
            ips["verificationConfig"],
            json!({"allowlist": ["10.0.0.1", "10.0.0.2"]})
        );
        let none = add_body(&with(&["--verification", "none"])).unwrap();
        assert_eq!(
            none,
            json!({"orgId": "my-org", "name": "n", "verificationMethod": "none"})
        );
        let default = add_body(&with(&["--from-env", "HOOK_SECRET"])).unwrap();
        assert_eq!(default["verificationConfig"], json!({"secret": "from-env"}));
        assert!(
            default.get("verificationMethod").is_none(),
            "sent only when --verification is given"
        );
        let piped = add_body(&with(&["--stdin", "--verification", "bearer_token"])).unwrap();
        assert_eq!(piped["verificationConfig"], json!({"token": "from-stdin"}));
    }

    #[test]
    fn every_other_field_and_list_splitting() {
        let body = add_body(&with(&[
            "--idempotency-key-header",
            "X-Id",
            "--idempotency-key-path",
            "$.id",
            "--dedup-window",
            "60",
            "--max-payload",
            "2048",
            "--allowed-events",
            "push, pr,,",
            "--strip-headers",
            "cookie",
            "--provider-type",
            "local",
            "--verification",
            "none",
        ]))
        .unwrap();
        assert_eq!(body["idempotencyKeyHeader"], "X-Id");
        assert_eq!(body["idempotencyKeyPath"], "$.id");
        assert_eq!(body["dedupWindowSeconds"], 60);
        assert_eq!(body["maxPayloadBytes"], 2048);
        assert_eq!(body["allowedEvents"], json!(["push", "pr"]));
        assert_eq!(body["stripHeaders"], json!(["cookie"]));
        assert_eq!(body["providerType"], "local");
    }

    #[test]
    fn refusals_name_the_flag() {
        let m = add_body(BASE).unwrap_err().to_string();
        assert!(
            m.starts_with("verification hmac_sha256 (the default;"),
            "{m}"
        );
        let m = add_body(&with(&["--verification", "bearer_token"]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("needs the bearer token"), "{m}");
        let m = add_body(&with(&["--verification", "sha1", "--secret", "x"]))
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with(
                "--verification must be one of hmac_sha256, bearer_token, ip_allowlist, none"
            ),
            "{m}"
        );
        let m = add_body(&with(&["--verification", "none", "--secret", "x"]))
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("--verification none takes no secret"), "{m}");
        let m = add_body(&with(&[
            "--verification",
            "none",
            "--allowed-events",
            " , ",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            m.starts_with("--allowed-events needs at least one value"),
            "{m}"
        );
        let m = add_body(&with(&[
            "--verification",
            "none",
            "--provider-type",
            "gitlab",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            m.starts_with("--provider-type must be generic or local"),
            "{m}"
        );
    }

    #[test]
    fn update_sends_only_what_was_given() {
        assert_eq!(
            update(&["--rate-limit", "300", "--name", "new-name"]).unwrap(),
            json!({"rateLimitRpm": 300, "name": "new-name"})
        );
        assert_eq!(
            update(&["--clear-git-config"]).unwrap(),
            json!({"gitConfig": null})
        );
        assert_eq!(
            update(&["--verification", "bearer_token", "--secret", "t"]).unwrap(),
            json!({"verificationMethod": "bearer_token", "verificationConfig": {"token": "t"}})
        );
        assert_eq!(
            update(&["--verification", "none"]).unwrap(),
            json!({"verificationMethod": "none"})
        );
    }

    #[test]
    fn update_refusals_are_the_spec_messages() {
        assert_eq!(
            update(&["--secret", "s"]).unwrap_err().to_string(),
            "--verification is required when updating --secret (needed to format the config correctly)"
        );
        assert_eq!(
            update(&[]).unwrap_err().to_string(),
            "no fields to update. Provide at least one option."
        );
    }
}
