//! `kici-admin token create|list|revoke` (docs/operations.md, "Admin API and tokens"). The server
//! allows these to owner tokens without a routing-key restriction only.

use crate::cli::output::outln;
use crate::cli::output::print_json_camel;
use crate::cli::output::show_camel;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, opt_field, table},
    Globals,
};
use crate::Error;

const ROLES: &[&str] = &["owner", "admin", "auditor"];

/// Manage admin API tokens (needs an owner token).
#[derive(FromArgs)]
#[argh(subcommand, name = "token")]
pub struct TokenCmd {
    #[argh(subcommand)]
    pub command: TokenSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum TokenSub {
    Create(CreateCmd),
    List(ListCmd),
    Revoke(RevokeCmd),
}

/// Create an admin API token; it is printed once and cannot be shown again.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    /// what the token is for, e.g. ci-deploy
    #[argh(positional)]
    pub label: String,
    /// owner (everything), admin (everything but tokens and key rotation) or auditor (read-only)
    #[argh(option)]
    pub role: String,
    /// restrict the token to requests on this one source routing key, e.g. github:42
    #[argh(option)]
    pub routing_key: Option<String>,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// List admin API tokens, newest first, revoked ones included.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Revoke an admin API token.
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
pub struct RevokeCmd {
    /// the token's ID (from token list)
    #[argh(positional)]
    pub id: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: TokenCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        TokenSub::Create(c) => create(c, globals),
        TokenSub::List(c) => list(c, globals),
        TokenSub::Revoke(c) => revoke(c, globals),
    }
}

fn create(cmd: CreateCmd, globals: &Globals) -> Result<(), Error> {
    if !ROLES.contains(&cmd.role.as_str()) {
        return Err(Error::Usage(format!(
            "--role must be one of {}, got {:?}",
            ROLES.join(", "),
            cmd.role
        )));
    }
    let mut body = json!({ "label": cmd.label, "role": cmd.role });
    if let Some(key) = cmd.routing_key.filter(|k| !k.is_empty()) {
        body["routingKey"] = key.into();
    }
    let answer = AdminClient::from_globals(globals)?.post("/tokens", &body)?;
    show_camel(&answer, cmd.json, token_created);
    Ok(())
}

fn list(cmd: ListCmd, globals: &Globals) -> Result<(), Error> {
    let answer = AdminClient::from_globals(globals)?.get("/tokens")?;
    if cmd.json {
        print_json_camel(&answer);
    } else {
        outln!(
            "{}",
            token_table(&array_of(&answer, "tokens", "GET /tokens")?)
        );
    }
    Ok(())
}

fn revoke(cmd: RevokeCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/tokens/{}", encode_component(&cmd.id));
    let answer = AdminClient::from_globals(globals)?.delete(&route)?;
    show_camel(&answer, cmd.json, |_| format!("Token {} revoked.", cmd.id));
    Ok(())
}

fn token_created(answer: &Value) -> String {
    format!(
        "Token created: {}\nToken ID: {}\nSave this token -- it will not be shown again.",
        field(answer, "token"),
        field(answer, "id")
    )
}

/// The token table: aligned columns (as `source list`), `-` for what is unset.
pub fn token_table(tokens: &[Value]) -> String {
    if tokens.is_empty() {
        return "No tokens found.".to_owned();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let cell = |key: &str| opt_field(t, key).unwrap_or_else(|| "-".to_owned());
            let revoked = t.get("revoked").and_then(Value::as_bool).unwrap_or(false);
            vec![
                cell("id"),
                cell("label"),
                cell("role"),
                cell("routing_key"),
                cell("created_at"),
                cell("last_used_at"),
                revoked.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "Label",
            "Role",
            "RoutingKey",
            "Created",
            "LastUsed",
            "Revoked",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table() {
        assert_eq!(token_table(&[]), "No tokens found.");
    }

    #[test]
    fn table_rows_use_a_dash_for_null() {
        let tokens = [
            json!({"id": "a1", "label": "ci", "role": "admin", "routing_key": "github:1",
                   "created_at": "2026-11-28T01:57:00.123Z", "expires_at": null,
                   "last_used_at": "2026-11-28T02:00:00.000Z", "revoked": true}),
            json!({"id": "b2", "label": "bootstrap", "role": "owner", "routing_key": null,
                   "created_at": "2026-11-27T00:00:00.000Z", "expires_at": null,
                   "last_used_at": null, "revoked": false}),
        ];
        let text = token_table(&tokens);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("ID  Label      Role   RoutingKey  Created"));
        assert!(lines[3].starts_with("b2  bootstrap  owner  -           2026-11-27T00:00:00.000Z"));
        // Every column starts at the same offset on every line.
        let col = lines[0].find("Created").unwrap();
        assert!(lines[2..].iter().all(|l| l[col..].starts_with("2026-11-2")));
    }

    #[test]
    fn created_token_lines() {
        assert_eq!(
            token_created(&json!({"token": "ab12", "id": "u-1"})),
            "Token created: ab12\nToken ID: u-1\nSave this token -- it will not be shown again."
        );
    }
}
