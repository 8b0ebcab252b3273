//! `kici-admin source install-hook`: a `post-receive` hook in a local source's repository that
//! runs `source trigger-local` for every pushed ref, so a `git push` into it starts runs. The
//! hook calls this kici-admin binary by absolute path with the admin URL of this invocation;
//! the admin token is kept out of the script, in `kici-admin.env` next to it (mode 0600,
//! readable by the repository's owner only), or left to the pusher's `KICI_ADMIN_TOKEN`.

use crate::cli::output::outln;
use argh::FromArgs;

use super::{
    client::AdminClient,
    local_repo::{self, HookSettings},
    orchestrator::files,
    source_local::{local_path, local_source},
    Globals,
};
use crate::Error;

/// Install a post-receive hook in a repository of a local source, so that every git push into
/// it runs kici-admin source trigger-local. The hook calls this kici-admin binary with the
/// current admin URL; the admin token goes into kici-admin.env next to the hook (mode 0600),
/// unless --no-token-file.
#[derive(FromArgs)]
#[argh(subcommand, name = "install-hook")]
pub struct InstallHookCmd {
    /// the source's ID (or its routing key generic:<org>:<id>)
    #[argh(positional)]
    pub id: String,
    /// which repository, as owner/name (default: the only one in the source's folder)
    #[argh(option)]
    pub repo_full_name: Option<String>,
    /// replace an existing post-receive hook (kept as post-receive.kici-backup)
    #[argh(switch)]
    pub force: bool,
    /// do not store the admin token: the pusher's environment must then set KICI_ADMIN_TOKEN
    #[argh(switch)]
    pub no_token_file: bool,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
}

pub fn install_hook(cmd: InstallHookCmd, globals: &Globals) -> Result<(), Error> {
    let client = AdminClient::from_globals(globals)?;
    let (id, row) = local_source(&client, &cmd.id)?;
    let repo = local_repo::pick_repository(&local_path(&id, &row)?, cmd.repo_full_name.as_deref())?;
    let hooks = local_repo::git(&repo.path, &["rev-parse", "--git-path", "hooks"])
        .map(|p| repo.path.join(p))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot find the hooks folder of {}: {e}",
                repo.path.display()
            ))
        })?;
    std::fs::create_dir_all(&hooks)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", hooks.display())))?;
    let hook = hooks.join("post-receive");
    if let Ok(existing) = std::fs::read_to_string(&hook) {
        let ours = existing.contains(&local_repo::hook_marker(&id));
        if !ours && !cmd.force {
            return Err(Error::Usage(format!(
                "{} already exists and was not written for source {id}: merge the two by hand, \
                 or pass --force to replace it (the old one is kept as post-receive.kici-backup)",
                hook.display()
            )));
        }
        if !ours {
            files::write_if_changed(&hooks.join("post-receive.kici-backup"), &existing, 0o755)?;
        }
    }
    let kici_admin = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::Usage(format!("cannot tell where kici-admin is installed: {e}")))?;
    let token_file = hooks.join("kici-admin.env");
    let token = if cmd.no_token_file {
        None
    } else {
        // The token this command itself used: --token, KICI_ADMIN_TOKEN or the local instance's.
        Some(client.token().to_owned())
    };
    if let Some(token) = &token {
        files::write_if_changed(&token_file, &format!("KICI_ADMIN_TOKEN={token}\n"), 0o600)?;
    } else if token_file.exists() {
        files::remove(&token_file)?;
    }
    let script = local_repo::hook_script(&HookSettings {
        source_id: &id,
        full_name: &repo.full_name,
        kici_admin: &kici_admin,
        admin_url: client.base_url(),
        token_file: token.as_ref().map(|_| token_file.as_path()),
    });
    files::write_if_changed(&hook, &script, 0o755)?;
    let bare = local_repo::git(&repo.path, &["rev-parse", "--is-bare-repository"]);
    let deny = local_repo::git(&repo.path, &["config", "receive.denyCurrentBranch"]);
    let push_refused = bare.as_deref() == Ok("false") && deny.as_deref() != Ok("updateInstead");
    if cmd.json {
        crate::cli::output::print_json(&serde_json::json!({
            "hook": hook,
            "repository": repo.full_name,
            "repositoryPath": repo.path,
            "adminUrl": client.base_url(),
            "tokenFile": token.as_ref().map(|_| &token_file),
            "checkedOutBranchRefusesPushes": push_refused,
        }));
        return Ok(());
    }
    outln!("Hook installed: {}", hook.display());
    outln!(
        "  Repository:   {} ({})",
        repo.full_name,
        repo.path.display()
    );
    outln!("  Admin URL:    {}", client.base_url());
    match token {
        Some(_) => outln!("  Token file:   {} (mode 0600)", token_file.display()),
        None => outln!("  Token:        $KICI_ADMIN_TOKEN of whoever pushes"),
    }
    if push_refused {
        outln!(
            "  ↳ git refuses pushes to the branch checked out in a working tree; to push into it:\n    \
             git -C {} config receive.denyCurrentBranch updateInstead",
            repo.path.display()
        );
    }
    Ok(())
}
