//! `kici-admin variable list|set|delete <orgId> <environment> [<key>]` (docs/secrets.md,
//! "Commands"): an environment's plain variables, which jobs get as environment variables. They
//! are not secret (shown by `list`, not masked in logs); put credentials in `secret set`.

use argh::FromArgs;
use serde_json::json;

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{field, show},
    value_input::{self, ValueFlags},
    Globals,
};
use crate::Error;

/// Manage the plain (not secret) variables of an environment.
#[derive(FromArgs)]
#[argh(subcommand, name = "variable")]
pub struct VariableCmd {
    #[argh(subcommand)]
    pub command: VariableSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum VariableSub {
    List(ListCmd),
    Set(SetCmd),
    Delete(DeleteCmd),
}

/// List an environment's variables with their values.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// the environment's name
    #[argh(positional)]
    pub environment: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Set a variable; the value comes from --value, --from-env, --from-file, the prompt or stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
pub struct SetCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// the environment's name
    #[argh(positional)]
    pub environment: String,
    /// the variable's name (an environment variable name, e.g. REGION)
    #[argh(positional)]
    pub key: String,
    /// the value itself
    #[argh(option)]
    pub value: Option<String>,
    /// read the value from this environment variable
    #[argh(option)]
    pub from_env: Option<String>,
    /// read the value from this file (one trailing newline removed)
    #[argh(option)]
    pub from_file: Option<String>,
    /// keep the file's trailing newline
    #[argh(switch)]
    pub no_trim: bool,
    /// type the value at a prompt (needs a terminal)
    #[argh(switch)]
    pub prompt: bool,
    /// read the value from standard input
    #[argh(switch)]
    pub from_stdin: bool,
    /// mark the variable locked
    #[argh(switch)]
    pub locked: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Delete a variable.
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
pub struct DeleteCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// the environment's name
    #[argh(positional)]
    pub environment: String,
    /// the variable's name
    #[argh(positional)]
    pub key: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

fn route(org: &str, env: &str, key: Option<&str>) -> String {
    let key = key
        .map(|k| format!("/{}", encode_component(k)))
        .unwrap_or_default();
    format!(
        "/environments/{}/variables{key}?orgId={}",
        encode_component(env),
        encode_component(org)
    )
}

pub fn run(cmd: VariableCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        VariableSub::List(c) => {
            let answer =
                AdminClient::from_globals(globals)?.get(&route(&c.org, &c.environment, None))?;
            let vars = array_of(&answer, "variables", "GET /environments/:name/variables")?;
            show(&answer, c.json, |_| {
                if vars.is_empty() {
                    return "No variables found.".to_owned();
                }
                let lines: Vec<String> = vars
                    .iter()
                    .map(|v| {
                        let locked = if v["locked"] == json!(true) {
                            " (locked)"
                        } else {
                            ""
                        };
                        format!("  {}={}{locked}", field(v, "key"), field(v, "value"))
                    })
                    .collect();
                lines.join("\n")
            });
            Ok(())
        }
        VariableSub::Set(c) => {
            let flags = ValueFlags {
                value: c.value.as_deref(),
                from_env: c.from_env.as_deref(),
                from_file: c.from_file.as_deref(),
                prompt: c.prompt,
                from_stdin: c.from_stdin,
                no_trim: c.no_trim,
            };
            let read = value_input::read_in_process(&flags, "variable", false)?;
            let mut body = json!({ "value": read.value });
            if c.locked {
                body["locked"] = json!(true);
            }
            let answer = AdminClient::from_globals(globals)?
                .put(&route(&c.org, &c.environment, Some(&c.key)), &body)?;
            show(&answer, c.json, |_| {
                format!(
                    "Variable '{}' set in environment '{}' for org {}.",
                    c.key, c.environment, c.org
                )
            });
            Ok(())
        }
        VariableSub::Delete(c) => {
            let answer = AdminClient::from_globals(globals)?.delete(&route(
                &c.org,
                &c.environment,
                Some(&c.key),
            ))?;
            show(&answer, c.json, |_| {
                format!(
                    "Variable '{}' deleted from environment '{}' for org {}.",
                    c.key, c.environment, c.org
                )
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_encode_every_part() {
        assert_eq!(
            super::route("acme", "pre view", Some("A")),
            "/environments/pre%20view/variables/A?orgId=acme"
        );
        assert_eq!(
            super::route("a/b", "prod", None),
            "/environments/prod/variables?orgId=a%2Fb"
        );
    }
}
