//! `kici-admin source …` (docs/operations.md, "Admin CLI"): the command tree, the GitHub App source
//! commands, and `list` and `remove`, which cover both kinds of source. The generic-source commands
//! are in `source_generic.rs`; the printed text is built in `source_output.rs`.

use crate::cli::output::outln;
use crate::cli::output::print_json_camel;
use crate::cli::output::show_camel;
use std::io::{BufRead, Write};

use argh::FromArgs;
use serde_json::{json, Map, Value};

use super::{
    client::{array_of, encode_component, AdminClient, ApiError},
    output::opt_field,
    secret_input::{self, PrimarySecret, ProcessReaders, SecretReaders},
    source_generic, source_local, source_local_hook, source_output, Globals,
};
use crate::Error;

/// Manage webhook sources: GitHub Apps and generic webhooks.
#[derive(FromArgs)]
#[argh(subcommand, name = "source")]
pub struct SourceCmd {
    #[argh(subcommand)]
    pub command: SourceSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum SourceSub {
    Add(AddCmd),
    List(ListCmd),
    Get(source_generic::GetCmd),
    Update(UpdateCmd),
    UpdateGeneric(source_generic::UpdateGenericCmd),
    Enable(source_generic::EnableCmd),
    Disable(source_generic::DisableCmd),
    Remove(RemoveCmd),
    GetWebhookSecret(GetWebhookSecretCmd),
    UpdateLocal(source_local::UpdateLocalCmd),
    TriggerLocal(source_local::TriggerLocalCmd),
    InstallHook(source_local_hook::InstallHookCmd),
}

/// Add a webhook source.
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
pub struct AddCmd {
    #[argh(subcommand)]
    pub command: AddSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum AddSub {
    Github(AddGithubCmd),
    Generic(source_generic::AddGenericCmd),
    Local(source_local::AddLocalCmd),
}

/// Add a GitHub App source (routing key github:<app id>). The orchestrator checks the
/// credentials with GitHub and stores the App's own name. Secrets take a value or @path; the
/// private key may instead come from --from-env VAR or --stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "github")]
pub struct AddGithubCmd {
    /// a name for the source (GitHub's name for the App is what gets stored)
    #[argh(option)]
    pub name: String,
    /// the GitHub App ID (a number)
    #[argh(option)]
    pub app_id: String,
    /// the App's private key (PEM): the value, or @path to read it from a file
    #[argh(option)]
    pub private_key: Option<String>,
    /// the App's webhook secret: the value, or @path to read it from a file
    #[argh(option)]
    pub webhook_secret: Option<String>,
    /// read the private key from this environment variable
    #[argh(option)]
    pub from_env: Option<String>,
    /// read the private key from stdin
    #[argh(switch)]
    pub stdin: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// List sources: GitHub App sources, and the generic sources of one org with --org.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct ListCmd {
    /// also list this org's generic sources
    #[argh(option)]
    pub org: Option<String>,
    /// include soft-deleted generic sources (needs --org)
    #[argh(switch)]
    pub include_deleted: bool,
    /// print {"github": [...], "generic": [...]} as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Update a GitHub App source: rename it, rotate its private key or webhook secret, or move it
/// to another org. Secrets take a value or @path; the private key may instead come from
/// --from-env VAR or --stdin.
#[derive(FromArgs)]
#[argh(subcommand, name = "update")]
pub struct UpdateCmd {
    /// the source's routing key, e.g. github:12345
    #[argh(positional)]
    pub routing_key: String,
    /// a new name
    #[argh(option)]
    pub name: Option<String>,
    /// a new private key (PEM): the value, or @path to read it from a file
    #[argh(option)]
    pub private_key: Option<String>,
    /// a new webhook secret: the value, or @path to read it from a file
    #[argh(option)]
    pub webhook_secret: Option<String>,
    /// read the new private key from this environment variable
    #[argh(option)]
    pub from_env: Option<String>,
    /// read the new private key from stdin
    #[argh(switch)]
    pub stdin: bool,
    /// the org (customer ID) the source belongs to, for secret and environment scoping
    #[argh(option)]
    pub customer_id: Option<String>,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Remove a source: a GitHub App source by routing key, a generic source by ID with --generic,
/// or a local source by ID or routing key with --local (generic and local sources are
/// soft-deleted, or deleted for good with --hard). Asks first unless --yes.
#[derive(FromArgs)]
#[argh(subcommand, name = "remove")]
pub struct RemoveCmd {
    /// the routing key (GitHub App source) or the ID (generic source, with --generic)
    #[argh(positional)]
    pub key: String,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
    /// the key is a generic source's ID
    #[argh(switch)]
    pub generic: bool,
    /// the key is a local source's ID or routing key (generic:<org>:<id>)
    #[argh(switch)]
    pub local: bool,
    /// delete the generic or local source for good instead of soft-deleting it (needs
    /// --generic or --local)
    #[argh(switch)]
    pub hard: bool,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// Print a GitHub App source's webhook secret (to paste into the App's settings).
#[derive(FromArgs)]
#[argh(subcommand, name = "get-webhook-secret")]
pub struct GetWebhookSecretCmd {
    /// the source's routing key, e.g. github:12345
    #[argh(positional)]
    pub routing_key: String,
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: SourceCmd, globals: &Globals) -> Result<(), Error> {
    match cmd.command {
        SourceSub::Add(AddCmd {
            command: AddSub::Github(c),
        }) => add_github(c, globals),
        SourceSub::Add(AddCmd {
            command: AddSub::Generic(c),
        }) => source_generic::add(c, globals),
        SourceSub::Add(AddCmd {
            command: AddSub::Local(c),
        }) => source_local::add(c, globals),
        SourceSub::List(c) => list(c, globals),
        SourceSub::Get(c) => source_generic::get(c, globals),
        SourceSub::Update(c) => update(c, globals),
        SourceSub::UpdateGeneric(c) => source_generic::update(c, globals),
        SourceSub::Enable(c) => source_generic::set_enabled(&c.id, true, c.json, globals),
        SourceSub::Disable(c) => source_generic::set_enabled(&c.id, false, c.json, globals),
        SourceSub::Remove(c) => remove(c, globals),
        SourceSub::GetWebhookSecret(c) => get_webhook_secret(c, globals),
        SourceSub::UpdateLocal(c) => source_local::update(c, globals),
        SourceSub::TriggerLocal(c) => source_local::trigger(c, globals),
        SourceSub::InstallHook(c) => source_local_hook::install_hook(c, globals),
    }
}

/// The error of an update given nothing to change (the reference CLI's wording, kept).
pub(super) const NO_FIELDS: &str = "no fields to update. Provide at least one option.";

fn add_github(cmd: AddGithubCmd, globals: &Globals) -> Result<(), Error> {
    if cmd.app_id.is_empty() || !cmd.app_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Usage(format!(
            "--app-id must be the GitHub App's numeric ID (e.g. 12345, on the App's settings page), got {:?}",
            cmd.app_id
        )));
    }
    let readers = ProcessReaders;
    let key = secret_input::primary(
        &PrimarySecret::private_key(
            cmd.private_key.as_deref(),
            cmd.from_env.as_deref(),
            cmd.stdin,
        ),
        &readers,
    )?
    .ok_or_else(|| {
        Error::Usage("Private key is required (--private-key, --stdin, or --from-env)".into())
    })?;
    let mut body = json!({
        "provider": "github",
        "name": cmd.name,
        "appId": cmd.app_id,
        "privateKey": key,
    });
    if let Some(raw) = &cmd.webhook_secret {
        body["webhookSecret"] = secret_input::flag_value("--webhook-secret", raw, &readers)?.into();
    }
    let answer = AdminClient::from_globals(globals)?.post("/sources", &body)?;
    show_camel(&answer, cmd.json, source_output::github_added);
    Ok(())
}

fn list(cmd: ListCmd, globals: &Globals) -> Result<(), Error> {
    if cmd.include_deleted && cmd.org.is_none() {
        return Err(Error::Usage(
            "--include-deleted applies to generic sources, which are listed per org: add --org <orgId>"
                .into(),
        ));
    }
    let client = AdminClient::from_globals(globals)?;
    let github = array_of(&client.get("/sources")?, "sources", "GET /sources")?;
    let generic = match &cmd.org {
        Some(org) => {
            let mut route = format!("/generic-sources?orgId={}", encode_component(org));
            if cmd.include_deleted {
                route.push_str("&includeDeleted=true");
            }
            array_of(&client.get(&route)?, "sources", "GET /generic-sources")?
        }
        None => Vec::new(),
    };
    if cmd.json {
        print_json_camel(&json!({ "github": github, "generic": generic }));
    } else {
        outln!(
            "{}",
            source_output::source_list(&github, &generic, cmd.org.is_some())
        );
    }
    Ok(())
}

fn update(cmd: UpdateCmd, globals: &Globals) -> Result<(), Error> {
    let body = github_update_body(&cmd, &ProcessReaders)?;
    let route = format!("/sources/{}", encode_component(&cmd.routing_key));
    let answer = AdminClient::from_globals(globals)?.patch(&route, &body)?;
    show_camel(&answer, cmd.json, |a| {
        let key = opt_field(a, "routingKey").unwrap_or_else(|| cmd.routing_key.clone());
        format!("Source updated: {key}")
    });
    Ok(())
}

/// The PATCH body: only the fields given. An empty update is refused rather than sent.
fn github_update_body(cmd: &UpdateCmd, readers: &dyn SecretReaders) -> Result<Value, Error> {
    let mut body = Map::new();
    if let Some(name) = cmd.name.as_ref().filter(|n| !n.is_empty()) {
        body.insert("name".into(), name.clone().into());
    }
    let key = PrimarySecret::private_key(
        cmd.private_key.as_deref(),
        cmd.from_env.as_deref(),
        cmd.stdin,
    );
    if let Some(key) = secret_input::primary(&key, readers)? {
        body.insert("privateKey".into(), key.into());
    }
    if let Some(raw) = &cmd.webhook_secret {
        let secret = secret_input::flag_value("--webhook-secret", raw, readers)?;
        body.insert("webhookSecret".into(), secret.into());
    }
    if let Some(org) = cmd.customer_id.as_ref().filter(|o| !o.is_empty()) {
        body.insert("customerId".into(), org.clone().into());
    }
    if body.is_empty() {
        return Err(Error::Usage(NO_FIELDS.into()));
    }
    Ok(Value::Object(body))
}

fn remove(cmd: RemoveCmd, globals: &Globals) -> Result<(), Error> {
    if cmd.hard && !cmd.generic && !cmd.local {
        return Err(Error::Usage(
            "--hard applies to generic and local sources only: add --generic or --local (a GitHub App source is always removed for good)"
                .into(),
        ));
    }
    if cmd.generic && !cmd.local {
        source_generic::reject_routing_key(&cmd.key)?;
    }
    // Token and URL first, so a missing token is not reported after the user said yes.
    let client = AdminClient::from_globals(globals)?;
    // A local source is a generic source: the same route, once its ID is known.
    let generic_id = match (cmd.local, cmd.generic) {
        (true, _) => Some(source_local::local_source(&client, &cmd.key)?.0),
        (false, true) => Some(cmd.key.clone()),
        (false, false) => None,
    };
    if !cmd.yes {
        let prompt = format!("Remove source \"{}\"? (y/N) ", cmd.key);
        let confirmed = confirm(
            &prompt,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout(),
        )
        .map_err(|e| Error::Usage(format!("cannot read the confirmation: {e}")))?;
        if !confirmed {
            outln!("Cancelled.");
            return Ok(());
        }
    }
    if let Some(id) = generic_id {
        let mut route = format!("/generic-sources/{}", encode_component(&id));
        if cmd.hard {
            route.push_str("?hard=true");
        }
        let answer = client.delete(&route)?;
        show_camel(&answer, cmd.json, |a| {
            let hard = a.get("hard").and_then(Value::as_bool).unwrap_or(cmd.hard);
            let how = if hard {
                "permanently deleted"
            } else {
                "soft-deleted"
            };
            format!("Generic source {how}: {id}")
        });
        return Ok(());
    }
    let route = format!("/sources/{}", encode_component(&cmd.key));
    let answer = client.delete(&route).map_err(|e| match e {
        ApiError::Status { status: 404, .. } if !cmd.key.contains(':') => Error::Usage(format!(
            "{e}\n(\"{}\" is not a routing key such as github:12345; to remove a generic source by ID, add --generic)",
            cmd.key
        )),
        e => e.into(),
    })?;
    show_camel(&answer, cmd.json, |_| {
        format!("Source removed: {}", cmd.key)
    });
    Ok(())
}

/// Writes `prompt`, reads one line: only `y` or `Y` confirms. End of input is a no (after a
/// line break, so what follows does not run on after the prompt).
pub(super) fn confirm(
    prompt: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    if !line.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(matches!(line.trim(), "y" | "Y"))
}

fn get_webhook_secret(cmd: GetWebhookSecretCmd, globals: &Globals) -> Result<(), Error> {
    let route = format!(
        "/sources/{}/webhook-secret",
        encode_component(&cmd.routing_key)
    );
    let answer = AdminClient::from_globals(globals)?.get(&route)?;
    if cmd.json {
        print_json_camel(&answer);
        return Ok(());
    }
    match opt_field(&answer, "webhookSecret") {
        Some(secret) => {
            outln!("{secret}");
            Ok(())
        }
        None => Err(Error::Usage(no_webhook_secret(&cmd.routing_key))),
    }
}

fn no_webhook_secret(routing_key: &str) -> String {
    format!(
        "No webhook secret configured for source \"{routing_key}\".\n\
         Set one with: kici-admin source update {routing_key} --webhook-secret <secret>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct NoInput;

    impl SecretReaders for NoInput {
        fn read_file(&self, _: &str) -> std::io::Result<String> {
            Ok("-----BEGIN KEY-----\nabc\n-----END KEY-----\n".into())
        }
        fn env_var(&self, _: &str) -> Option<String> {
            None
        }
        fn read_stdin(&self) -> std::io::Result<String> {
            panic!("stdin must not be read")
        }
    }

    fn update_cmd(args: &[&str]) -> UpdateCmd {
        let mut all = vec!["github:12345"];
        all.extend_from_slice(args);
        UpdateCmd::from_args(&["update"], &all).expect("parses")
    }

    #[test]
    fn update_sends_only_what_was_given() {
        let body = github_update_body(&update_cmd(&["--webhook-secret", "new-secret"]), &NoInput);
        assert_eq!(body.unwrap(), json!({"webhookSecret": "new-secret"}));
        let body = github_update_body(
            &update_cmd(&[
                "--private-key",
                "@/new.pem",
                "--name",
                "n",
                "--customer-id",
                "acme",
            ]),
            &NoInput,
        );
        assert_eq!(
            body.unwrap(),
            json!({"name": "n", "customerId": "acme",
                   "privateKey": "-----BEGIN KEY-----\nabc\n-----END KEY-----"})
        );
    }

    #[test]
    fn empty_update_is_refused() {
        let e = github_update_body(&update_cmd(&[]), &NoInput).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no fields to update. Provide at least one option."
        );
    }

    #[test]
    fn only_y_confirms_and_the_prompt_is_exact() {
        for (answer, expected) in [
            ("y\n", true),
            ("Y\r\n", true),
            ("yes\n", false),
            ("\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let got = confirm(
                "Remove source \"github:1\"? (y/N) ",
                &mut Cursor::new(answer),
                &mut out,
            );
            assert_eq!(got.unwrap(), expected, "{answer:?}");
            let line_break = if answer.is_empty() { "\n" } else { "" };
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("Remove source \"github:1\"? (y/N) {line_break}")
            );
        }
    }

    #[test]
    fn missing_webhook_secret_message() {
        assert_eq!(
            no_webhook_secret("github:1"),
            "No webhook secret configured for source \"github:1\".\n\
             Set one with: kici-admin source update github:1 --webhook-secret <secret>"
        );
    }
}
