//! `kici-admin agent-token create|list|revoke` and `kici-admin agent register` (the reference's
//! name for creating one): tokens agents authenticate with on `/ws` (`KICI_AGENT_TOKEN`).

use crate::cli::output::outln;
use crate::cli::output::print_json_camel;
use crate::cli::output::show_camel;
use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, opt_field},
    Globals,
};
use crate::Error;

/// Manage agent tokens (needs an owner token).
#[derive(FromArgs)]
#[argh(subcommand, name = "agent-token")]
pub struct AgentTokenCmd {
    #[argh(subcommand)]
    pub command: AgentTokenSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AgentTokenSub {
    Create(CreateCmd),
    List(ListCmd),
    Revoke(RevokeCmd),
}

/// Agents (the reference's `agent register` creates an agent token).
#[derive(FromArgs)]
#[argh(subcommand, name = "agent")]
pub struct AgentCmd {
    #[argh(subcommand)]
    pub command: AgentSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AgentSub {
    Register(RegisterCmd),
}

/// Create an agent token (same as agent-token create); printed once.
#[derive(FromArgs)]
#[argh(subcommand, name = "register")]
pub struct RegisterCmd {
    #[argh(option)]
    /// restrict the labels the agent may advertise (repeatable; kici:os:, kici:arch: and
    /// kici:host: labels are always allowed; agents also advertise kici:role:builder and
    /// kici:role:init-runner, so list those too)
    pub label: Vec<String>,
    /// taint: the agent only runs jobs whose runsOn asks for all of these (repeatable)
    #[argh(option)]
    pub mandatory_label: Vec<String>,
    /// what the token is for
    #[argh(option)]
    pub description: Option<String>,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Create an agent token; it is printed once and cannot be shown again.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    #[argh(option)]
    /// restrict the labels the agent may advertise (repeatable; kici:os:, kici:arch: and
    /// kici:host: labels are always allowed; agents also advertise kici:role:builder and
    /// kici:role:init-runner, so list those too)
    pub label: Vec<String>,
    /// taint: the agent only runs jobs whose runsOn asks for all of these (repeatable)
    #[argh(option)]
    pub mandatory_label: Vec<String>,
    /// what the token is for
    #[argh(option)]
    pub description: Option<String>,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// List agent tokens, newest first (never the token itself: its prefix).
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Revoke an agent token by ID or prefix; agents using it can no longer connect.
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
pub struct RevokeCmd {
    /// the token's ID or its prefix (kat_…, from agent-token list)
    #[argh(positional)]
    pub id: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: AgentTokenCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        AgentTokenSub::Create(c) => {
            create(c.label, c.mandatory_label, c.description, c.json, globals)
        }
        AgentTokenSub::List(c) => list(c, globals),
        AgentTokenSub::Revoke(c) => revoke(c, globals),
    }
}

pub fn run_agent(cmd: AgentCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        AgentSub::Register(c) => create(c.label, c.mandatory_label, c.description, c.json, globals),
    }
}

fn create(
    labels: Vec<String>,
    mandatory: Vec<String>,
    description: Option<String>,
    json_out: bool,
    globals: &Globals,
) -> Result<(), Error> {
    let mut body = json!({ "mandatoryLabels": mandatory });
    if !labels.is_empty() {
        body["labels"] = json!(labels);
    }
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        body["description"] = json!(d);
    }
    let answer = AdminClient::from_globals(globals)?.post("/agent-tokens", &body)?;
    show_camel(&answer, json_out, created);
    Ok(())
}

fn created(answer: &Value) -> String {
    format!(
        "Agent token created: {}\nToken ID: {}\nStart agents with KICI_AGENT_TOKEN set to it. Save it -- it will not be shown again.",
        field(answer, "token"),
        field(answer, "id")
    )
}

fn list(cmd: ListCmd, globals: &Globals) -> Result<(), Error> {
    let answer = AdminClient::from_globals(globals)?.get("/agent-tokens")?;
    if cmd.json {
        print_json_camel(&answer);
    } else {
        outln!(
            "{}",
            table(&array_of(&answer, "tokens", "GET /agent-tokens")?)
        );
    }
    Ok(())
}

fn revoke(cmd: RevokeCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!("/agent-tokens/{}", encode_component(&cmd.id));
    let answer = AdminClient::from_globals(globals)?.delete(&route)?;
    show_camel(&answer, cmd.json, |_| {
        format!("Agent token {} revoked.", cmd.id)
    });
    Ok(())
}

fn table(tokens: &[Value]) -> String {
    if tokens.is_empty() {
        return "No agent tokens found.".to_owned();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let cell = |key: &str| opt_field(t, key).unwrap_or_else(|| "-".to_owned());
            let list = |key: &str| match t.get(key).and_then(Value::as_array) {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                Some(_) => "-".into(),
                None => "any".into(),
            };
            let revoked = t.get("revoked").and_then(Value::as_bool).unwrap_or(false);
            vec![
                cell("id"),
                cell("prefix"),
                list("labels"),
                list("mandatoryLabels"),
                cell("createdAt"),
                cell("lastSeenAt"),
                revoked.to_string(),
            ]
        })
        .collect();
    crate::cli::output::table(
        &[
            "ID",
            "Prefix",
            "Labels",
            "Mandatory",
            "Created",
            "LastSeen",
            "Revoked",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table() {
        assert_eq!(table(&[]), "No agent tokens found.");
        let rows = [
            json!({"id": "u1", "prefix": "kat_0123abcd", "labels": null, "mandatoryLabels": ["gpu"],
                           "createdAt": "2026-11-28T00:00:00.000Z", "lastSeenAt": null, "revoked": false}),
        ];
        let t = table(&rows);
        assert!(
            t.ends_with(
                "u1  kat_0123abcd  any     gpu        2026-11-28T00:00:00.000Z  -         false"
            ),
            "{t}"
        );
    }
}
