//! `kici-admin environment create|list|show|bind|unbind|delete` (docs/secrets.md, "Commands"):
//! environments of an org, the scopes they are bound to, and whether jobs of untrusted events
//! (fork pull requests) may use them.

use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, show},
    secret::confirm,
    Globals,
};
use crate::Error;

/// Manage environments: named sets of secret scopes (through bindings) and variables.
#[derive(FromArgs)]
#[argh(subcommand, name = "environment")]
pub struct EnvironmentCmd {
    #[argh(subcommand)]
    pub command: EnvironmentSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum EnvironmentSub {
    Create(CreateCmd),
    List(ListCmd),
    Show(ShowCmd),
    Bind(BindCmd),
    Unbind(UnbindCmd),
    Delete(DeleteCmd),
}

/// Create an environment, or change the given settings of an existing one.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct CreateCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// the environment's name (what a job's `environment` names)
    #[argh(option)]
    pub name: String,
    /// fixed (default) or glob: a glob environment serves every name --glob-pattern matches
    #[argh(option, long = "type")]
    pub kind: Option<String>,
    /// with --type glob: e.g. preview-*
    #[argh(option)]
    pub glob_pattern: Option<String>,
    /// let jobs of untrusted events (fork pull requests) receive its secrets and variables
    #[argh(switch)]
    pub allow_untrusted: bool,
    /// withhold its secrets and variables from untrusted events again (the default)
    #[argh(switch)]
    pub deny_untrusted: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// List the environments of an org with their bindings.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// also list the secret key names of the scopes each one is bound to exactly
    #[argh(switch)]
    pub include_secrets: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Show one environment: settings, bindings and variables.
#[derive(FromArgs)]
#[argh(subcommand, name = "show")]
pub struct ShowCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// the environment's name
    #[argh(option)]
    pub name: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Bind an environment to a secret scope (exact, e.g. aws/prod, or a glob, e.g. aws/prod/**).
#[derive(FromArgs)]
#[argh(subcommand, name = "bind")]
pub struct BindCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// the environment's name
    #[argh(option)]
    pub name: String,
    /// the scope or scope glob
    #[argh(option)]
    pub scope: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Remove a binding.
#[derive(FromArgs)]
#[argh(subcommand, name = "unbind")]
pub struct UnbindCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// the environment's name
    #[argh(option)]
    pub name: String,
    /// the scope pattern, as bound
    #[argh(option)]
    pub scope: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Delete an environment with its bindings and variables (asks first unless --yes).
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
pub struct DeleteCmd {
    /// the org id
    #[argh(option)]
    pub org: String,
    /// the environment's name
    #[argh(option)]
    pub name: String,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: EnvironmentCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        EnvironmentSub::Create(c) => create(c, globals),
        EnvironmentSub::List(c) => {
            let mut route = format!("/environments?orgId={}", encode_component(&c.org));
            if c.include_secrets {
                route.push_str("&includeSecrets=true");
            }
            let answer = AdminClient::from_globals(globals)?.get(&route)?;
            let envs = array_of(&answer, "environments", "GET /environments")?;
            show(&answer, c.json, |_| env_table(&envs));
            Ok(())
        }
        EnvironmentSub::Show(c) => {
            let route = format!(
                "/environments/{}?orgId={}",
                encode_component(&c.name),
                encode_component(&c.org)
            );
            let answer = AdminClient::from_globals(globals)?.get(&route)?;
            show(&answer, c.json, env_details);
            Ok(())
        }
        EnvironmentSub::Bind(c) => {
            let route = format!("/environments/{}/bind", encode_component(&c.name));
            let body = json!({ "orgId": c.org, "scopePattern": c.scope, "hostPattern": "**" });
            let answer = AdminClient::from_globals(globals)?.post(&route, &body)?;
            show(&answer, c.json, |a| {
                if a["created"] == json!(false) {
                    format!(
                        "Environment '{}' was already bound to '{}'.",
                        c.name, c.scope
                    )
                } else {
                    format!("Environment '{}' bound to scope '{}'.", c.name, c.scope)
                }
            });
            Ok(())
        }
        EnvironmentSub::Unbind(c) => {
            let route = format!("/environments/{}/unbind", encode_component(&c.name));
            let body = json!({ "orgId": c.org, "scopePattern": c.scope });
            let answer = AdminClient::from_globals(globals)?.post(&route, &body)?;
            show(&answer, c.json, |_| {
                format!("Environment '{}' unbound from '{}'.", c.name, c.scope)
            });
            Ok(())
        }
        EnvironmentSub::Delete(c) => {
            let client = AdminClient::from_globals(globals)?;
            confirm(
                &format!(
                    "Delete environment '{}' of org {} with its bindings and variables?",
                    c.name, c.org
                ),
                c.yes,
            )?;
            let route = format!(
                "/environments/{}?orgId={}",
                encode_component(&c.name),
                encode_component(&c.org)
            );
            let answer = client.delete(&route)?;
            show(&answer, c.json, |_| {
                format!("Environment '{}' deleted from org {}.", c.name, c.org)
            });
            Ok(())
        }
    }
}

fn create(c: CreateCmd, globals: &Globals) -> Result<(), Error> {
    if c.allow_untrusted && c.deny_untrusted {
        return Err(Error::Usage(
            "--allow-untrusted and --deny-untrusted contradict each other: give one".into(),
        ));
    }
    let mut body = json!({ "orgId": c.org, "name": c.name });
    if let Some(kind) = &c.kind {
        if kind != "fixed" && kind != "glob" {
            return Err(Error::Usage(format!(
                "--type must be fixed or glob, got {kind:?}"
            )));
        }
        body["type"] = json!(kind);
    }
    if let Some(p) = &c.glob_pattern {
        body["globPattern"] = json!(p);
        if c.kind.is_none() {
            body["type"] = json!("glob");
        }
    }
    if c.allow_untrusted || c.deny_untrusted {
        body["allowUntrusted"] = json!(c.allow_untrusted);
    }
    let answer = AdminClient::from_globals(globals)?.post("/environments", &body)?;
    show(&answer, c.json, |a| {
        let verb = if a["created"] == json!(true) {
            "created"
        } else {
            "updated"
        };
        format!(
            "Environment '{}' {verb} for org {} (id {}).",
            c.name,
            c.org,
            field(a, "envId")
        )
    });
    Ok(())
}

fn yes_no(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

fn patterns(bindings: &Value) -> String {
    let list: Vec<&str> = bindings
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["scope_pattern"].as_str())
        .collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(", ")
    }
}

/// `Name | Type | Untrusted | Enabled | Bindings`, one row per environment.
pub fn env_table(envs: &[Value]) -> String {
    if envs.is_empty() {
        return "No environments found.".to_owned();
    }
    let header = "Name | Type | Untrusted | Enabled | Bindings";
    let mut lines = vec![header.to_owned(), "-".repeat(header.len())];
    for e in envs {
        let kind = match e["glob_pattern"].as_str() {
            Some(p) => format!("glob {p}"),
            None => field(e, "type"),
        };
        let mut row = format!(
            "{} | {kind} | {} | {} | {}",
            field(e, "name"),
            yes_no(&e["allow_untrusted"]),
            yes_no(&e["enabled"]),
            patterns(&e["bindings"])
        );
        if let Some(keys) = e["secret_keys"].as_array() {
            let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
            row.push_str(&format!(" | keys: {}", keys.join(", ")));
        }
        lines.push(row);
    }
    lines.join("\n")
}

/// `environment show`: settings, then bindings and variables.
pub fn env_details(answer: &Value) -> String {
    let e = &answer["environment"];
    let mut lines = vec![
        format!("Environment: {} ({})", field(e, "name"), field(e, "type")),
        format!("Org: {}", field(e, "org_id")),
        format!("ID: {}", field(e, "id")),
    ];
    if let Some(p) = e["glob_pattern"].as_str() {
        lines.push(format!("Glob pattern: {p}"));
    }
    lines.push(format!(
        "Untrusted events (fork pull requests): {}",
        if e["allow_untrusted"].as_bool() == Some(true) {
            "allowed"
        } else {
            "no secrets or variables"
        }
    ));
    lines.push(format!("Enabled: {}", yes_no(&e["enabled"])));
    lines.push("Bindings:".to_owned());
    let bindings = answer["bindings"].as_array().cloned().unwrap_or_default();
    if bindings.is_empty() {
        lines.push("  (none)".to_owned());
    }
    for b in &bindings {
        lines.push(format!("  - {}", field(b, "scope_pattern")));
    }
    lines.push("Variables:".to_owned());
    let vars = answer["variables"].as_array().cloned().unwrap_or_default();
    if vars.is_empty() {
        lines.push("  (none)".to_owned());
    }
    for v in &vars {
        let locked = if v["locked"].as_bool() == Some(true) {
            " (locked)"
        } else {
            ""
        };
        lines.push(format!(
            "  {}={}{locked}",
            field(v, "key"),
            field(v, "value")
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_details() {
        assert_eq!(env_table(&[]), "No environments found.");
        let envs = [
            json!({"name": "preview", "type": "glob", "glob_pattern": "preview-*", "allow_untrusted": true,
                   "enabled": true, "bindings": []}),
            json!({"name": "prod", "type": "fixed", "glob_pattern": null, "allow_untrusted": false,
                   "enabled": true, "bindings": [{"scope_pattern": "aws/prod"}, {"scope_pattern": "shared/**"}],
                   "secret_keys": ["DB"]}),
        ];
        let header = "Name | Type | Untrusted | Enabled | Bindings";
        assert_eq!(
            env_table(&envs),
            format!("{header}\n{}\n", "-".repeat(header.len()))
                + "preview | glob preview-* | yes | yes | -\n\
                   prod | fixed | no | yes | aws/prod, shared/** | keys: DB"
        );
        let shown = env_details(&json!({
            "environment": {"name": "prod", "type": "fixed", "org_id": "acme", "id": "e1",
                            "allow_untrusted": false, "enabled": true},
            "bindings": [{"scope_pattern": "aws/prod"}],
            "variables": [{"key": "REGION", "value": "eu", "locked": true}],
        }));
        assert_eq!(
            shown,
            "Environment: prod (fixed)\nOrg: acme\nID: e1\n\
             Untrusted events (fork pull requests): no secrets or variables\nEnabled: yes\n\
             Bindings:\n  - aws/prod\nVariables:\n  REGION=eu (locked)"
        );
    }
}
