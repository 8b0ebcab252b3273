//! Generic webhook source commands (docs/operations.md, "Admin CLI"): `source add generic`, `get`,
//! `update-generic`, `enable`, `disable`. The request bodies are built in
//! `source_generic_body.rs`, the printed text in `source_output.rs`.
//!
//! argh has no way to share a block of options, so `AddGenericCmd` and `UpdateGenericCmd` list
//! the same fields; `GenericFields` gathers them for the one body builder.

use crate::cli::output::show_camel;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{encode_component, AdminClient, ApiError},
    output::field,
    secret_input::{self, PrimarySecret, ProcessReaders, SecretReaders},
    source_generic_body::{create_body, update_body, GenericFields},
    source_output, Globals,
};
use crate::Error;

/// Add a generic webhook source, received at POST /webhook/<org>/generic/<name>. Verification
/// defaults to hmac_sha256, which needs --secret (a value or @path), --from-env VAR or --stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "generic")]
pub struct AddGenericCmd {
    /// the org (customer ID) the source belongs to
    #[argh(option)]
    pub org: String,
    /// the source's name, unique in its org (the last part of its webhook URL)
    #[argh(option)]
    pub name: String,
    /// how webhooks are verified: hmac_sha256 (default), bearer_token, ip_allowlist or none
    #[argh(option)]
    pub verification: Option<String>,
    /// the HMAC secret, the bearer token, or the comma-separated allowed IPs: the value, or
    /// @path to read it from a file
    #[argh(option)]
    pub secret: Option<String>,
    /// read the secret from this environment variable
    #[argh(option)]
    pub from_env: Option<String>,
    /// read the secret from stdin
    #[argh(switch)]
    pub stdin: bool,
    /// header that carries the event type
    #[argh(option)]
    pub event_type_header: Option<String>,
    /// JSON path of the event type in the body, e.g. $.event.type
    #[argh(option)]
    pub event_type_path: Option<String>,
    /// header that carries the idempotency key
    #[argh(option)]
    pub idempotency_key_header: Option<String>,
    /// JSON path of the idempotency key in the body
    #[argh(option)]
    pub idempotency_key_path: Option<String>,
    /// seconds during which a repeated delivery is dropped (default 300)
    #[argh(option, from_str_fn(positive_int))]
    pub dedup_window: Option<u32>,
    /// largest accepted body in bytes (default 1048576)
    #[argh(option, from_str_fn(positive_int))]
    pub max_payload: Option<u32>,
    /// accept only these event types (comma-separated; default: all)
    #[argh(option)]
    pub allowed_events: Option<String>,
    /// headers dropped before the event is stored (comma-separated)
    #[argh(option)]
    pub strip_headers: Option<String>,
    /// requests per minute accepted (default 600)
    #[argh(option, from_str_fn(positive_int))]
    pub rate_limit: Option<u32>,
    /// provider implementation: generic (default) or local
    #[argh(option)]
    pub provider_type: Option<String>,
    /// print the created source as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Change a generic webhook source; only the options given change. A new --secret (a value or
/// @path; or --from-env VAR, --stdin) needs --verification to say what kind of secret it is.
#[derive(FromArgs)]
#[argh(subcommand, name = "update-generic")]
pub struct UpdateGenericCmd {
    /// the source's ID
    #[argh(positional)]
    pub id: String,
    /// a new name
    #[argh(option)]
    pub name: Option<String>,
    /// how webhooks are verified: hmac_sha256, bearer_token, ip_allowlist or none
    #[argh(option)]
    pub verification: Option<String>,
    /// the new HMAC secret, bearer token, or comma-separated allowed IPs: the value, or @path
    /// to read it from a file
    #[argh(option)]
    pub secret: Option<String>,
    /// read the new secret from this environment variable
    #[argh(option)]
    pub from_env: Option<String>,
    /// read the new secret from stdin
    #[argh(switch)]
    pub stdin: bool,
    /// header that carries the event type
    #[argh(option)]
    pub event_type_header: Option<String>,
    /// JSON path of the event type in the body
    #[argh(option)]
    pub event_type_path: Option<String>,
    /// header that carries the idempotency key
    #[argh(option)]
    pub idempotency_key_header: Option<String>,
    /// JSON path of the idempotency key in the body
    #[argh(option)]
    pub idempotency_key_path: Option<String>,
    /// seconds during which a repeated delivery is dropped
    #[argh(option, from_str_fn(positive_int))]
    pub dedup_window: Option<u32>,
    /// largest accepted body in bytes
    #[argh(option, from_str_fn(positive_int))]
    pub max_payload: Option<u32>,
    /// accept only these event types (comma-separated)
    #[argh(option)]
    pub allowed_events: Option<String>,
    /// headers dropped before the event is stored (comma-separated)
    #[argh(option)]
    pub strip_headers: Option<String>,
    /// requests per minute accepted
    #[argh(option, from_str_fn(positive_int))]
    pub rate_limit: Option<u32>,
    /// provider implementation: generic or local
    #[argh(option)]
    pub provider_type: Option<String>,
    /// remove the source's git configuration
    #[argh(switch)]
    pub clear_git_config: bool,
    /// print the updated source as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Show a generic webhook source.
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    /// the source's ID
    #[argh(positional)]
    pub id: String,
    /// include the verification secret or token (needs the secret.read permission)
    #[argh(switch)]
    pub show_secrets: bool,
    /// print the source as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Enable a generic webhook source.
#[derive(FromArgs)]
#[argh(subcommand, name = "enable")]
pub struct EnableCmd {
    /// the source's ID
    #[argh(positional)]
    pub id: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Disable a generic webhook source (its webhooks are refused until it is enabled again).
#[derive(FromArgs)]
#[argh(subcommand, name = "disable")]
pub struct DisableCmd {
    /// the source's ID
    #[argh(positional)]
    pub id: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// argh `from_str_fn` for the numeric options (Postgres `integer` columns, checked `> 0`);
/// argh's message names the option and the value.
fn positive_int(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if n > 0 && n <= i32::MAX as u32 => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {}", i32::MAX)),
    }
}

impl AddGenericCmd {
    pub(super) fn fields(&self, readers: &dyn SecretReaders) -> Result<GenericFields<'_>, Error> {
        let secret = PrimarySecret::verification_secret(
            self.secret.as_deref(),
            self.from_env.as_deref(),
            self.stdin,
        );
        Ok(GenericFields {
            name: Some(&self.name),
            verification: self.verification.as_deref(),
            secret: secret_input::primary(&secret, readers)?,
            event_type_header: self.event_type_header.as_deref(),
            event_type_path: self.event_type_path.as_deref(),
            idempotency_key_header: self.idempotency_key_header.as_deref(),
            idempotency_key_path: self.idempotency_key_path.as_deref(),
            dedup_window: self.dedup_window,
            max_payload: self.max_payload,
            allowed_events: self.allowed_events.as_deref(),
            strip_headers: self.strip_headers.as_deref(),
            rate_limit: self.rate_limit,
            provider_type: self.provider_type.as_deref(),
        })
    }
}

impl UpdateGenericCmd {
    pub(super) fn fields(&self, readers: &dyn SecretReaders) -> Result<GenericFields<'_>, Error> {
        let secret = PrimarySecret::verification_secret(
            self.secret.as_deref(),
            self.from_env.as_deref(),
            self.stdin,
        );
        Ok(GenericFields {
            name: self.name.as_deref(),
            verification: self.verification.as_deref(),
            secret: secret_input::primary(&secret, readers)?,
            event_type_header: self.event_type_header.as_deref(),
            event_type_path: self.event_type_path.as_deref(),
            idempotency_key_header: self.idempotency_key_header.as_deref(),
            idempotency_key_path: self.idempotency_key_path.as_deref(),
            dedup_window: self.dedup_window,
            max_payload: self.max_payload,
            allowed_events: self.allowed_events.as_deref(),
            strip_headers: self.strip_headers.as_deref(),
            rate_limit: self.rate_limit,
            provider_type: self.provider_type.as_deref(),
        })
    }
}

/// Generic sources are addressed by ID; a routing key (`github:1`, `generic:org:id`) here is a
/// mix-up the server would only answer with "malformed value".
pub(super) fn reject_routing_key(id: &str) -> Result<(), Error> {
    if id.contains(':') {
        return Err(Error::Usage(format!(
            "\"{id}\" is a routing key, but this command takes a generic source's ID \
             (the first column of kici-admin source list --org <orgId>)"
        )));
    }
    Ok(())
}

/// The row in a `{"source": <row>}` answer.
fn source_row(answer: Value, route: &str) -> Result<Value, ApiError> {
    match answer {
        Value::Object(mut m) if m.get("source").is_some_and(Value::is_object) => {
            Ok(m.remove("source").unwrap_or_default())
        }
        other => Err(ApiError::BadResponse {
            route: route.to_owned(),
            reason: format!("no \"source\" object in {other}"),
        }),
    }
}

/// The row with `webhookUrl`: where the sender must post, `<orchestrator URL>/webhook/<org>/
/// generic/<name>` as this CLI reaches the orchestrator (behind a proxy, the public base URL
/// replaces it).
pub fn with_webhook_url(mut row: Value, client: &AdminClient) -> Value {
    let url = webhook_url(
        client.base_url(),
        &super::output::field(&row, "customer_id"),
        &super::output::field(&row, "name"),
    );
    if let Value::Object(map) = &mut row {
        map.insert("webhookUrl".into(), url.into());
    }
    row
}

/// `<base>/webhook/<org>/generic/<name>`, each part percent-encoded.
pub fn webhook_url(base: &str, org: &str, name: &str) -> String {
    format!(
        "{base}/webhook/{}/generic/{}",
        encode_component(org),
        encode_component(name)
    )
}

pub fn add(cmd: AddGenericCmd, globals: &Globals) -> Result<(), Error> {
    let body = create_body(&cmd.org, &cmd.fields(&ProcessReaders)?)?;
    let client = AdminClient::from_globals(globals)?;
    let answer = client.post("/generic-sources", &body)?;
    let row = with_webhook_url(source_row(answer, "POST /generic-sources")?, &client);
    show_camel(&row, cmd.json, source_output::generic_created);
    Ok(())
}

pub fn get(cmd: GetCmd, globals: &Globals) -> Result<(), Error> {
    reject_routing_key(&cmd.id)?;
    let mut route = format!("/generic-sources/{}", encode_component(&cmd.id));
    if cmd.show_secrets {
        route.push_str("?includeSecrets=true");
    }
    let client = AdminClient::from_globals(globals)?;
    let row = with_webhook_url(source_row(client.get(&route)?, &route)?, &client);
    show_camel(&row, cmd.json, |r| {
        source_output::generic_source(r, cmd.show_secrets)
    });
    Ok(())
}

pub fn update(cmd: UpdateGenericCmd, globals: &Globals) -> Result<(), Error> {
    reject_routing_key(&cmd.id)?;
    let body = update_body(&cmd.fields(&ProcessReaders)?, cmd.clear_git_config)?;
    let route = format!("/generic-sources/{}", encode_component(&cmd.id));
    let row = source_row(
        AdminClient::from_globals(globals)?.patch(&route, &body)?,
        &route,
    )?;
    show_camel(&row, cmd.json, |r| {
        format!(
            "Generic source updated: {} ({})",
            field(r, "id"),
            field(r, "name")
        )
    });
    Ok(())
}

pub fn set_enabled(id: &str, enabled: bool, json: bool, globals: &Globals) -> Result<(), Error> {
    reject_routing_key(id)?;
    let verb = if enabled { "enable" } else { "disable" };
    let route = format!("/generic-sources/{}/{verb}", encode_component(id));
    let answer = AdminClient::from_globals(globals)?.post(&route, &json!({}))?;
    show_camel(&answer, json, |_| format!("Generic source {verb}d: {id}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &[&str] = &["--org", "my-org", "--name", "n"];

    #[test]
    fn numbers_are_checked_by_argh_with_the_flag_named() {
        for bad in ["abc", "0", "-5", "2147483648", "1.5"] {
            let early =
                AddGenericCmd::from_args(&["generic"], &[BASE, &["--rate-limit", bad]].concat())
                    .err()
                    .expect("refused");
            assert!(
                early.output.contains("--rate-limit") && early.output.contains("whole number"),
                "{bad}: {}",
                early.output
            );
        }
        assert_eq!(positive_int("2147483647"), Ok(2147483647));
    }

    #[test]
    fn routing_keys_are_not_ids() {
        assert!(reject_routing_key("6f1c0000-0000-0000-0000-000000000000").is_ok());
        let m = reject_routing_key("github:1").unwrap_err().to_string();
        assert!(m.starts_with("\"github:1\" is a routing key"), "{m}");
    }

    #[test]
    fn rows_are_taken_out_of_the_source_envelope() {
        let row = source_row(json!({"source": {"id": "x"}}), "r").unwrap();
        assert_eq!(row, json!({"id": "x"}));
        assert!(source_row(json!({"sources": []}), "r").is_err());
    }
}
