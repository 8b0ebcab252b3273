//! Local repository sources (docs/operations.md, "Admin API and tokens"): `source add local`,
//! `update-local`, `trigger-local`, `install-hook`, and what `remove --local` needs. A local
//! source is a generic source with `providerType: "local"` and `gitConfig.localPath`, a folder
//! holding repositories as `<owner>/<name>`; its webhook route takes GitHub-shaped events with
//! an `X-Event-Type` header and no signature (`verificationMethod: "none"`), so it is meant for
//! an orchestrator listening on loopback or a trusted network. Finding repositories, reading
//! commits and building events and the hook script are in `local_repo.rs`; `install-hook` is
//! in `source_local_hook.rs`.

use crate::cli::output::outln;
use crate::cli::output::print_json_camel;
use crate::cli::output::show_camel;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use argh::FromArgs;
use serde_json::{json, Map, Value};

use super::{
    client::{encode_component, error_message, AdminClient},
    local_repo::{self, EventKind, RepoFolder},
    output::{field, opt_field},
    source::NO_FIELDS,
    source_output, Globals,
};
use crate::Error;

/// Add a local repository source: --path is an absolute folder holding repositories as
/// <owner>/<name> (working trees or bare). Runs start with kici-admin source trigger-local or a
/// git push through source install-hook. Its webhook is not signed (verification none): keep
/// the orchestrator on loopback or a trusted network.
#[derive(FromArgs)]
#[argh(subcommand, name = "local")]
pub struct AddLocalCmd {
    /// the org (customer ID) the source belongs to
    #[argh(option)]
    pub org: String,
    /// absolute path of the folder holding <owner>/<name> repositories
    #[argh(option)]
    pub path: String,
    /// the source's name, unique in its org (default: the folder's name)
    #[argh(option)]
    pub name: Option<String>,
    /// where agents clone from, as <base>/<owner>/<name> (default: file://<path>/<owner>/<name>)
    #[argh(option)]
    pub clone_url_base: Option<String>,
    /// print the created source as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Change a local repository source's folder, clone URL base or name.
#[derive(FromArgs)]
#[argh(subcommand, name = "update-local")]
pub struct UpdateLocalCmd {
    /// the source's ID (or its routing key generic:<org>:<id>)
    #[argh(positional)]
    pub id: String,
    /// a new absolute path of the folder holding <owner>/<name> repositories
    #[argh(option)]
    pub path: Option<String>,
    /// a new clone URL base; an empty value goes back to file://<path>
    #[argh(option)]
    pub clone_url_base: Option<String>,
    /// a new name
    #[argh(option)]
    pub name: Option<String>,
    /// print the updated source as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Send a GitHub-shaped event for a repository of a local source, as a push would: its HEAD
/// (branch and commit) unless --ref or --sha say otherwise.
#[derive(FromArgs)]
#[argh(subcommand, name = "trigger-local")]
pub struct TriggerLocalCmd {
    /// the source's ID (or its routing key generic:<org>:<id>)
    #[argh(positional)]
    pub id: String,
    /// the event: push (default) or pull_request
    #[argh(option, default = "String::from(\"push\")")]
    pub event: String,
    /// the branch (main) or full ref (refs/tags/v1) pushed (default: the branch HEAD is on)
    #[argh(option, long = "ref")]
    pub git_ref: Option<String>,
    /// the commit (default: the tip of --ref, else HEAD)
    #[argh(option)]
    pub sha: Option<String>,
    /// the ref's previous commit, for push events (default: forty zeros, "unknown")
    #[argh(option)]
    pub before: Option<String>,
    /// the pull request's target branch (default: the branch HEAD is on)
    #[argh(option)]
    pub base: Option<String>,
    /// which repository, as owner/name (default: the only one in the source's folder)
    #[argh(option)]
    pub repo_full_name: Option<String>,
    /// print the orchestrator's JSON answer
    #[argh(switch)]
    pub json: bool,
}

/// An absolute folder that exists, without trailing slashes.
fn checked_folder(raw: &str) -> Result<String, Error> {
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(Error::Usage(format!(
            "--path must be an absolute path, got {raw:?} (e.g. {})",
            std::env::current_dir()
                .map(|d| d.join(raw).display().to_string())
                .unwrap_or_else(|_| format!("/srv/repos/{raw}"))
        )));
    }
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "--path {raw:?} does not exist or is not a folder: create it (mkdir -p {raw}) and put \
             repositories in it as <owner>/<name>"
        )));
    }
    let trimmed = raw.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

fn checked_clone_base(raw: &str) -> Result<String, Error> {
    if raw.chars().any(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "--clone-url-base {raw:?} contains spaces: give a URL such as ssh://git@host/srv/repos"
        )));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The row in a `{"source": <row>}` answer.
fn row_of(answer: Value, route: &str) -> Result<Value, Error> {
    match answer.get("source") {
        Some(row) if row.is_object() => Ok(row.clone()),
        _ => Err(Error::Api(format!(
            "unexpected answer from the admin API ({route}): no \"source\" object"
        ))),
    }
}

/// The source ID from an ID or a `generic:<org>:<id>` routing key.
fn source_id(key: &str) -> Result<String, Error> {
    match key
        .strip_prefix("generic:")
        .and_then(|r| r.rsplit_once(':'))
    {
        Some((_, id)) if !id.is_empty() => Ok(id.to_owned()),
        _ if key.contains(':') => Err(Error::Usage(format!(
            "\"{key}\" is neither a local source's ID nor its routing key generic:<org>:<id> \
             (see kici-admin source list --org <orgId>)"
        ))),
        _ => Ok(key.to_owned()),
    }
}

/// The live local source `key` names: its ID and row. A generic webhook source is refused
/// with the command that fits it.
pub fn local_source(client: &AdminClient, key: &str) -> Result<(String, Value), Error> {
    let id = source_id(key)?;
    let route = format!("/generic-sources/{}", encode_component(&id));
    let row = row_of(client.get(&route)?, &route)?;
    if field(&row, "provider_type") != "local" {
        return Err(Error::Usage(format!(
            "source {id} ({}) is a generic webhook source, not a local one: use the generic \
             commands for it (update-generic, remove --generic)",
            field(&row, "name")
        )));
    }
    Ok((id, row))
}

pub(super) fn local_path(id: &str, row: &Value) -> Result<PathBuf, Error> {
    opt_field(row.get("git_config").unwrap_or(&Value::Null), "localPath")
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Usage(format!(
                "local source {id} has no folder (gitConfig.localPath): set one with \
                 kici-admin source update-local {id} --path <dir>"
            ))
        })
}

/// `source add local`: the generic-source block plus where its repositories are.
fn created_text(row: &Value) -> String {
    let git = row.get("git_config").unwrap_or(&Value::Null);
    let id = field(row, "id");
    let mut lines = vec![
        source_output::generic_created(row),
        format!("  Provider:     {}", field(row, "provider_type")),
        format!("  Folder:       {}", field(git, "localPath")),
    ];
    if let Some(base) = opt_field(git, "cloneUrlBase") {
        lines.push(format!("  Clone base:   {base}"));
    }
    lines.push(format!(
        "  ↳ Repositories go in <folder>/<owner>/<name>. Start a run with: kici-admin source \
         trigger-local {id}\n  ↳ or on every git push, after: kici-admin source install-hook {id}"
    ));
    lines.join("\n")
}

pub fn add(cmd: AddLocalCmd, globals: &Globals) -> Result<(), Error> {
    let path = checked_folder(&cmd.path)?;
    let name = match &cmd.name {
        Some(n) if !n.is_empty() => n.clone(),
        _ => Path::new(&path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "cannot name the source after {path:?}: pass --name <name>"
                ))
            })?,
    };
    let mut git = json!({ "localPath": path });
    if let Some(base) = cmd.clone_url_base.as_deref().filter(|b| !b.is_empty()) {
        git["cloneUrlBase"] = checked_clone_base(base)?.into();
    }
    let body = json!({
        "orgId": cmd.org,
        "name": name,
        "providerType": "local",
        "verificationMethod": "none",
        "gitConfig": git,
    });
    let answer = AdminClient::from_globals(globals)?.post("/generic-sources", &body)?;
    let row = row_of(answer, "POST /generic-sources")?;
    show_camel(&row, cmd.json, created_text);
    Ok(())
}

pub fn update(cmd: UpdateLocalCmd, globals: &Globals) -> Result<(), Error> {
    if cmd.path.is_none() && cmd.clone_url_base.is_none() && cmd.name.is_none() {
        return Err(Error::Usage(NO_FIELDS.into()));
    }
    let path = cmd.path.as_deref().map(checked_folder).transpose()?;
    let client = AdminClient::from_globals(globals)?;
    let (id, row) = local_source(&client, &cmd.id)?;
    let mut body = Map::new();
    if path.is_some() || cmd.clone_url_base.is_some() {
        // PATCH replaces gitConfig whole: keep what is not being changed.
        let mut git = row
            .get("git_config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(p) = path {
            git.insert("localPath".into(), p.into());
        }
        match cmd.clone_url_base.as_deref() {
            Some("") => {
                git.remove("cloneUrlBase");
            }
            Some(base) => {
                git.insert("cloneUrlBase".into(), checked_clone_base(base)?.into());
            }
            None => {}
        }
        body.insert("gitConfig".into(), Value::Object(git));
    }
    if let Some(name) = cmd.name.as_ref().filter(|n| !n.is_empty()) {
        body.insert("name".into(), name.clone().into());
    }
    let route = format!("/generic-sources/{}", encode_component(&id));
    let row = row_of(client.patch(&route, &Value::Object(body))?, &route)?;
    show_camel(&row, cmd.json, |r| {
        let git = r.get("git_config").unwrap_or(&Value::Null);
        let mut text = format!(
            "Local source updated: {} ({})\n  Folder:       {}",
            field(r, "id"),
            field(r, "name"),
            field(git, "localPath")
        );
        if let Some(base) = opt_field(git, "cloneUrlBase") {
            text.push_str(&format!("\n  Clone base:   {base}"));
        }
        text
    });
    Ok(())
}

pub fn trigger(cmd: TriggerLocalCmd, globals: &Globals) -> Result<(), Error> {
    let kind = EventKind::parse(&cmd.event)?;
    let client = AdminClient::from_globals(globals)?;
    let (id, row) = local_source(&client, &cmd.id)?;
    if row.get("enabled") == Some(&Value::Bool(false)) {
        return Err(Error::Usage(format!(
            "local source {id} is disabled, so the orchestrator would refuse the event: \
             kici-admin source enable {id}"
        )));
    }
    let repo = local_repo::pick_repository(&local_path(&id, &row)?, cmd.repo_full_name.as_deref())?;
    let commit = local_repo::read_commit(&repo.path, cmd.git_ref.as_deref(), cmd.sha.as_deref())?;
    let base = match kind {
        EventKind::PullRequest => Some(pull_request_base(&repo, cmd.base.as_deref(), &commit)?),
        EventKind::Push => None,
    };
    let before = cmd.before.as_deref().unwrap_or(local_repo::ZERO_SHA);
    let body = local_repo::event_body(
        kind,
        &repo,
        &commit,
        before,
        base.as_ref().map(|(r, s)| (r.as_str(), s.as_str())),
    );
    let url = format!(
        "{}/webhook/{}/generic/{}",
        client.base_url(),
        encode_component(&field(&row, "customer_id")),
        encode_component(&field(&row, "name"))
    );
    let request_id = format!(
        "local-{}-{}",
        commit.sha,
        &crate::crypto::random_uuid()[..8]
    );
    let (status, answer) = post_event(&url, kind, &request_id, &body)?;
    if cmd.json {
        print_json_camel(&answer);
        return Ok(());
    }
    let what = format!(
        "{} {} @ {} ({})",
        kind.as_str(),
        commit.git_ref,
        commit.sha.get(..12).unwrap_or(&commit.sha),
        repo.full_name
    );
    let text = match (
        status,
        answer.get("duplicate"),
        opt_field(&answer, "status"),
    ) {
        (_, Some(Value::Bool(true)), _) => format!("Event already received (duplicate): {what}"),
        (_, _, Some(s)) if s == "filtered" => format!(
            "Event filtered by the source: {what}\n  Reason:       {}",
            field(&answer, "reason")
        ),
        _ => format!("Event sent: {what}"),
    };
    outln!("{text}");
    if let Some(delivery) = opt_field(&answer, "deliveryId") {
        outln!("  Delivery ID:  {delivery}");
        outln!("  ↳ See the runs it started with: kici-admin runs list");
    }
    Ok(())
}

/// The pull request's target branch and its commit (empty when that branch does not exist).
fn pull_request_base(
    repo: &RepoFolder,
    wanted: Option<&str>,
    commit: &local_repo::Commit,
) -> Result<(String, String), Error> {
    let branch = wanted.unwrap_or(&commit.default_branch);
    let branch = branch
        .strip_prefix("refs/heads/")
        .unwrap_or(branch)
        .to_owned();
    let sha = local_repo::git(
        &repo.path,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    );
    match (sha, wanted) {
        (Ok(sha), _) => Ok((branch, sha)),
        (Err(e @ local_repo::GitError::NotRun(_)), _) => Err(Error::Usage(e.to_string())),
        (Err(_), Some(_)) => Err(Error::Usage(format!(
            "--base {branch:?} is not a branch of {}: name the pull request's target branch",
            repo.path.display()
        ))),
        (Err(_), None) => Ok((branch, String::new())),
    }
}

/// POSTs the event to the source's webhook route; a non-2xx answer is an error naming the
/// orchestrator's reason.
fn post_event(
    url: &str,
    kind: EventKind,
    request_id: &str,
    body: &Value,
) -> Result<(u16, Value), Error> {
    // The pipeline may run before the answer: allow it time.
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let sent = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Event-Type", kind.as_str())
        .header("X-Request-ID", request_id)
        .send(body.to_string());
    let mut response = sent.map_err(|e| {
        Error::Api(format!(
            "cannot send the event to {url}: {e} (is the orchestrator running? set --url or KICI_ADMIN_URL)"
        ))
    })?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let reason = opt_field(&answer, "reason").unwrap_or_else(|| error_message(status, &text));
        return Err(Error::Api(format!(
            "the orchestrator refused the event (POST {url}): HTTP {status}: {reason}"
        )));
    }
    Ok((status, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_routing_keys() {
        assert_eq!(source_id("6f1c").unwrap(), "6f1c");
        assert_eq!(source_id("generic:acme:6f1c").unwrap(), "6f1c");
        assert_eq!(source_id("generic:a:b:6f1c").unwrap(), "6f1c");
        let e = source_id("github:1").unwrap_err().to_string();
        assert!(e.starts_with("\"github:1\" is neither"), "{e}");
    }

    #[test]
    fn folders_must_be_absolute_and_exist() {
        let e = checked_folder("repos").unwrap_err().to_string();
        assert!(
            e.starts_with("--path must be an absolute path, got \"repos\""),
            "{e}"
        );
        let e = checked_folder("/no/such/kici/dir").unwrap_err().to_string();
        assert!(
            e.starts_with("--path \"/no/such/kici/dir\" does not exist"),
            "{e}"
        );
        let tmp = std::env::temp_dir();
        let with_slash = format!("{}/", tmp.display());
        assert_eq!(
            checked_folder(&with_slash).unwrap(),
            tmp.display().to_string().trim_end_matches('/')
        );
        assert_eq!(checked_folder("/").unwrap(), "/");
        assert!(checked_clone_base("ssh://h/x y").is_err());
        assert_eq!(checked_clone_base("file:///srv/").unwrap(), "file:///srv");
    }

    #[test]
    fn created_text_adds_the_folder_and_next_steps() {
        let row = json!({"id": "6f1c", "name": "repos", "routing_key": "generic:acme:6f1c",
            "customer_id": "acme", "enabled": true, "provider_type": "local",
            "git_config": {"localPath": "/srv/repos"}});
        let text = created_text(&row);
        assert!(
            text.starts_with("Generic source created:\n  ID:           6f1c\n"),
            "{text}"
        );
        assert!(
            text.contains("  Provider:     local\n  Folder:       /srv/repos\n"),
            "{text}"
        );
        assert!(
            text.contains("kici-admin source trigger-local 6f1c"),
            "{text}"
        );
    }

    #[test]
    fn the_command_lines_parse() {
        let lines: &[&[&str]] = &[
            &[
                "source",
                "add",
                "local",
                "--org",
                "acme",
                "--path",
                "/srv/repos",
            ],
            &[
                "source",
                "add",
                "local",
                "--org=acme",
                "--path",
                "/r",
                "--name",
                "n",
                "--clone-url-base",
                "ssh://h/r",
                "--json",
            ],
            &[
                "source",
                "update-local",
                "id",
                "--path",
                "/r",
                "--clone-url-base",
                "",
            ],
            &[
                "source",
                "trigger-local",
                "id",
                "--event",
                "pull_request",
                "--ref",
                "main",
                "--sha",
                "abc",
                "--repo-full-name",
                "acme/app",
                "--base",
                "dev",
                "--json",
            ],
            &[
                "source",
                "install-hook",
                "id",
                "--repo-full-name",
                "acme/app",
                "--force",
                "--no-token-file",
            ],
            &[
                "source",
                "remove",
                "generic:acme:id",
                "--local",
                "--yes",
                "--hard",
            ],
            &[
                "runs", "list", "--status", "failed", "--limit", "5", "--json",
            ],
            &["runs", "show", "r", "--json"],
            &["runs", "cancel", "r", "--force"],
        ];
        for line in lines {
            let owned: Vec<String> = line.iter().map(|s| s.to_string()).collect();
            let args = super::super::normalize_args(&owned);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert!(
                super::super::TopLevel::from_args(&["kici-admin"], &refs).is_ok(),
                "does not parse: {line:?}"
            );
        }
    }
}
