//! `kici-admin secret scopes|list|set|delete` (docs/secrets.md, "Commands"): workflow secrets
//! through the admin API, with the reference CLI's arguments and lines. No command ever prints a
//! value; `set` reads it as `value_input` decides.

use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::{array_of, encode_component, AdminClient},
    output::{outln, print_json, show},
    value_input::{self, ProcessTerminal, Terminal, ValueFlags},
    Globals,
};
use crate::{secrets::ORG_WIDE_SCOPE, Error};

/// Manage workflow secrets (values are write-only: no command shows one).
#[derive(FromArgs)]
#[argh(subcommand, name = "secret")]
pub struct SecretCmd {
    #[argh(subcommand)]
    pub command: SecretSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum SecretSub {
    Scopes(ScopesCmd),
    List(ListCmd),
    Set(SetCmd),
    Delete(DeleteCmd),
    Purge(PurgeCmd),
}

/// List the secret scopes of an org (`__org__` holds its org-wide secrets).
#[derive(FromArgs)]
#[argh(subcommand, name = "scopes")]
pub struct ScopesCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// List the key names of one scope (never the values).
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// the scope, e.g. aws/prod or __org__
    #[argh(positional)]
    pub scope: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Set a secret: `secret set <orgId> <scope> <key>`, or `--org O --environment E --key K`
/// (scope := the environment's name; binds nothing), or `--org O --org-wide --key K`. The value
/// is typed at a prompt without echo, or read from standard input when it is not a terminal.
#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
pub struct SetCmd {
    /// org id, scope and key (or use --org, --key and --environment or --org-wide)
    #[argh(positional)]
    pub args: Vec<String>,
    /// the org id (with --environment or --org-wide, and --key)
    #[argh(option)]
    pub org: Option<String>,
    /// use the scope named like this environment
    #[argh(option)]
    pub environment: Option<String>,
    /// an org-wide secret: every job of the org gets it (scope __org__)
    #[argh(switch)]
    pub org_wide: bool,
    /// the secret's key (with --org)
    #[argh(option)]
    pub key: Option<String>,
    /// the value itself (lands in shell history: prefer the other modes)
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
    /// type the value at a prompt without echo (needs a terminal)
    #[argh(switch)]
    pub prompt: bool,
    /// read the value from standard input (one trailing newline removed)
    #[argh(switch)]
    pub from_stdin: bool,
    /// write only if the value's SHA-256 is this (64 hex characters)
    #[argh(option)]
    pub confirm_fingerprint: Option<String>,
    /// show what would be set (length, source, SHA-256) and write nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Delete a secret (asks first unless --yes).
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
pub struct DeleteCmd {
    /// the org id
    #[argh(positional)]
    pub org: String,
    /// the scope
    #[argh(positional)]
    pub scope: String,
    /// the key
    #[argh(positional)]
    pub key: String,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Delete every workflow secret of an org (--org) or of every org (owner token). Source
/// credentials are never touched. Asks to type the org (or __ALL__) unless --yes.
#[derive(FromArgs)]
#[argh(subcommand, name = "purge")]
pub struct PurgeCmd {
    /// required: purging cannot be undone
    #[argh(switch)]
    pub confirm: bool,
    /// only this org (default: every org)
    #[argh(option)]
    pub org: Option<String>,
    /// do not ask to type the org
    #[argh(switch)]
    pub yes: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// What `purge` must be told to type: the org, or `__ALL__` for every org.
const ALL_ORGS: &str = "__ALL__";

pub fn run(cmd: SecretCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        SecretSub::Scopes(c) => {
            let route = format!("/secrets/scopes?orgId={}", encode_component(&c.org));
            let answer = AdminClient::from_globals(globals)?.get(&route)?;
            let scopes = array_of(&answer, "scopes", "GET /secrets/scopes")?;
            print_list(&answer, c.json, &scopes, "No scopes found.");
            Ok(())
        }
        SecretSub::List(c) => {
            let route = format!(
                "/secrets/keys?orgId={}&scope={}",
                encode_component(&c.org),
                encode_component(&c.scope)
            );
            let answer = AdminClient::from_globals(globals)?.get(&route)?;
            let keys = array_of(&answer, "keys", "GET /secrets/keys")?;
            print_list(&answer, c.json, &keys, "No secrets found in this scope.");
            Ok(())
        }
        SecretSub::Set(c) => set(c, globals),
        SecretSub::Delete(c) => delete(c, globals),
        SecretSub::Purge(c) => purge(c, globals),
    }
}

fn print_list(answer: &Value, json: bool, items: &[Value], empty: &str) {
    show(answer, json, |_| bullet_list(items, empty));
}

/// `  - item` lines, or `empty`.
pub fn bullet_list(items: &[Value], empty: &str) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    let lines: Vec<String> = items
        .iter()
        .map(|v| format!("  - {}", v.as_str().unwrap_or_default()))
        .collect();
    lines.join("\n")
}

/// (org, scope, key) from the positional form or the flag form, never both.
pub fn target(c: &SetCmd) -> Result<(String, String, String), Error> {
    let flags = c.org.is_some() || c.environment.is_some() || c.org_wide || c.key.is_some();
    match (c.args.as_slice(), flags) {
        ([org, scope, key], false) => Ok((org.clone(), scope.clone(), key.clone())),
        ([], true) => {
            let scope = match (&c.environment, c.org_wide) {
                (Some(env), false) => env.clone(),
                (None, true) => ORG_WIDE_SCOPE.to_owned(),
                _ => {
                    return Err(Error::Usage(
                        "give exactly one of --environment <name> and --org-wide".into(),
                    ))
                }
            };
            match (&c.org, &c.key) {
                (Some(org), Some(key)) => Ok((org.clone(), scope, key.clone())),
                _ => Err(Error::Usage(
                    "--org and --key are required with --environment or --org-wide".into(),
                )),
            }
        }
        (_, true) => Err(Error::Usage(
            "use either <orgId> <scope> <key> or --org/--environment/--org-wide/--key, not both".into(),
        )),
        _ => Err(Error::Usage(
            "secret set needs <orgId> <scope> <key> (or --org, --key and --environment or --org-wide)".into(),
        )),
    }
}

fn set(c: SetCmd, globals: &Globals) -> Result<(), Error> {
    let (org, scope, key) = target(&c)?;
    let flags = ValueFlags {
        value: c.value.as_deref(),
        from_env: c.from_env.as_deref(),
        from_file: c.from_file.as_deref(),
        prompt: c.prompt,
        from_stdin: c.from_stdin,
        no_trim: c.no_trim,
    };
    let read = value_input::read_in_process(&flags, "secret", true)?;
    if let Some(expected) = &c.confirm_fingerprint {
        value_input::confirm_fingerprint(&read.value, expected)?;
    }
    if c.dry_run {
        let chars = read.value.chars().count();
        let sha = value_input::fingerprint(&read.value);
        if c.json {
            print_json(&json!({
                "dryRun": true, "orgId": org, "scope": scope, "key": key,
                "chars": chars, "source": read.source.name(), "sha256": sha,
            }));
        } else {
            outln!(
                "[dry-run] would set secret '{key}' in scope '{scope}' for org {org} ({chars} chars, source={}, sha256={sha})",
                read.source.name()
            );
        }
        return Ok(());
    }
    let route = format!(
        "/secrets/{}/{}/{}",
        encode_component(&org),
        encode_component(&scope),
        encode_component(&key)
    );
    let answer =
        AdminClient::from_globals(globals)?.put(&route, &json!({ "value": read.value }))?;
    show(&answer, c.json, |_| {
        format!("Secret '{key}' set in scope '{scope}' for org {org}.")
    });
    Ok(())
}

/// Asks `question` on stderr unless `yes`; refuses without a terminal to ask on.
pub fn confirm(question: &str, yes: bool) -> Result<(), Error> {
    confirm_with(question, yes, &ProcessTerminal, |q| {
        use crate::service::wizard::Console;
        super::orchestrator::console::ProcessConsole::new()
            .ask(q)
            .ok()
            .flatten()
    })
}

fn confirm_with(
    question: &str,
    yes: bool,
    term: &dyn Terminal,
    ask: impl FnOnce(&str) -> Option<String>,
) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !term.stdin_is_tty() {
        return Err(Error::Usage(
            "standard input is not a terminal, so nothing can be confirmed: add --yes".into(),
        ));
    }
    let answer = ask(&format!("{question} [y/N] ")).unwrap_or_default();
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Error::Usage("Aborted: nothing was deleted.".into()))
    }
}

fn delete(c: DeleteCmd, globals: &Globals) -> Result<(), Error> {
    let client = AdminClient::from_globals(globals)?;
    confirm(
        &format!(
            "Delete secret '{}' from scope '{}' for org {}?",
            c.key, c.scope, c.org
        ),
        c.yes,
    )?;
    let route = format!(
        "/secrets/{}/{}/{}",
        encode_component(&c.org),
        encode_component(&c.scope),
        encode_component(&c.key)
    );
    let answer = client.delete(&route)?;
    show(&answer, c.json, |a| {
        let line = format!(
            "Secret '{}' deleted from scope '{}' for org {}.",
            c.key, c.scope, c.org
        );
        match a.get("existed") {
            Some(Value::Bool(false)) => format!("{line} (It did not exist.)"),
            _ => line,
        }
    });
    Ok(())
}

fn purge(c: PurgeCmd, globals: &Globals) -> Result<(), Error> {
    if !c.confirm {
        return Err(Error::Usage(
            "secret purge deletes secrets for good: add --confirm".into(),
        ));
    }
    let target = c.org.clone().unwrap_or_else(|| ALL_ORGS.to_owned());
    let client = AdminClient::from_globals(globals)?;
    if !c.yes {
        if !ProcessTerminal.stdin_is_tty() {
            return Err(Error::Usage(
                "standard input is not a terminal, so nothing can be confirmed: add --yes".into(),
            ));
        }
        use crate::service::wizard::Console;
        let typed = super::orchestrator::console::ProcessConsole::new()
            .ask(&format!("Type {target} to delete its workflow secrets: "))
            .ok()
            .flatten()
            .unwrap_or_default();
        if typed.trim() != target {
            return Err(Error::Usage("Aborted: nothing was deleted.".into()));
        }
    }
    let body = match &c.org {
        Some(org) => json!({ "orgId": org }),
        None => json!({}),
    };
    let answer = client.post("/secrets/purge", &body)?;
    show(&answer, c.json, |a| {
        format!("secret purge: deleted={} ({target})", a["deleted"])
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_cmd(args: &[&str]) -> SetCmd {
        let mut full = vec!["set"];
        full.extend_from_slice(args);
        SetCmd::from_args(&["secret"], &full[1..]).expect("parses")
    }

    #[test]
    fn targets() {
        let t = |args: &[&str]| target(&set_cmd(args)).map_err(|e| e.to_string());
        assert_eq!(
            t(&["acme", "aws/prod", "DB"]),
            Ok(("acme".into(), "aws/prod".into(), "DB".into()))
        );
        assert_eq!(
            t(&["--org", "acme", "--environment", "prod", "--key", "K"]),
            Ok(("acme".into(), "prod".into(), "K".into()))
        );
        assert_eq!(
            t(&["--org", "acme", "--org-wide", "--key", "K"]),
            Ok(("acme".into(), "__org__".into(), "K".into()))
        );
        assert!(t(&["acme", "s", "k", "--org", "x"])
            .unwrap_err()
            .contains("not both"));
        assert!(t(&["--org", "a", "--key", "K"])
            .unwrap_err()
            .contains("exactly one"));
        assert!(t(&[
            "--org",
            "a",
            "--org-wide",
            "--environment",
            "e",
            "--key",
            "K"
        ])
        .is_err());
        assert!(t(&["--org-wide", "--key", "K"])
            .unwrap_err()
            .contains("--org and --key"));
        assert!(t(&["acme", "s"]).is_err());
    }

    #[test]
    fn lists_and_confirmation() {
        assert_eq!(bullet_list(&[], "No scopes found."), "No scopes found.");
        assert_eq!(
            bullet_list(&[json!("__org__"), json!("aws/prod")], "-"),
            "  - __org__\n  - aws/prod"
        );
        struct Tty(bool);
        impl Terminal for Tty {
            fn stdin_is_tty(&self) -> bool {
                self.0
            }
            fn read_hidden(&self, _: &str) -> std::io::Result<Option<String>> {
                Ok(None)
            }
        }
        assert!(confirm_with("q", true, &Tty(false), |_| None).is_ok());
        assert!(confirm_with("q", false, &Tty(false), |_| Some("y".into()))
            .unwrap_err()
            .to_string()
            .contains("--yes"));
        assert!(confirm_with("q", false, &Tty(true), |_| Some("Y\n".into())).is_ok());
        assert!(confirm_with("q", false, &Tty(true), |_| Some("no".into())).is_err());
        assert!(confirm_with("q", false, &Tty(true), |_| None).is_err());
    }
}
