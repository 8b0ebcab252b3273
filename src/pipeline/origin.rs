//! Where a delivery's lock file and clone come from (`Origin`): a GitHub repository read with an
//! installation token, or a local source's repository folder (confined to the source's
//! `localPath` by `sources::local_path`); and, for path filters, the files a push or pull
//! request changed.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::{
    cache::is_commit,
    event::{EventKind, NormalizedEvent, Provider},
    process::{db_err, Deps, PipelineError, Work, LOCK_PATH},
};
use crate::{db::DbError, github::repo, sources::local_path};

/// Where the lock file and the clone come from.
pub(super) enum Origin {
    GitHub {
        /// Reads the repository's contents (the lock file, compare).
        token: String,
        routing_key: String,
        installation_id: u64,
    },
    Local {
        /// The repository's folder, canonical and inside the source's `localPath`.
        repo: PathBuf,
        clone_url_base: Option<String>,
    },
    None,
}

pub(super) fn origin(
    deps: &Deps,
    work: &Work,
    event: &NormalizedEvent,
    generic_id: Option<&str>,
) -> Result<Origin, String> {
    match event.provider {
        Provider::Github => {
            let installation = event
                .installation_id
                .ok_or("the payload has no installation id")?;
            let repo_name = event
                .repo
                .as_deref()
                .ok_or("the payload names no repository")?;
            // Reading is all the pipeline does: contents:read on this one repository.
            let scope = repo::TokenScope::contents_read(repo_name);
            let token = deps.mint().token(&work.routing_key, installation, &scope)?;
            Ok(Origin::GitHub {
                token,
                routing_key: work.routing_key.clone(),
                installation_id: installation,
            })
        }
        Provider::Local => {
            let id = generic_id.ok_or("the local source is gone")?.to_owned();
            let config: Option<Value> = deps
                .pool
                .with_retry(|c| {
                    c.query_opt(
                        "SELECT git_config FROM generic_webhook_sources WHERE id = $1::text::uuid",
                        &[&id],
                    )
                    .map(|r| r.and_then(|r| r.get(0)))
                    .map_err(DbError::query("reading a local source"))
                })
                .map_err(db_err)?;
            let config = config.unwrap_or(Value::Null);
            let base = config["localPath"]
                .as_str()
                .or_else(|| config["path"].as_str())
                .ok_or("the local source has no localPath in its gitConfig")?;
            let name = event
                .repo
                .as_deref()
                .ok_or("the payload names no repository")?;
            // Checked again here (the webhook route checked it too): a delivery recorded before
            // this check existed, or a folder changed since, must not lead outside.
            let repo =
                local_path::resolve(Path::new(base), name).map_err(|e| format!("refused: {e}"))?;
            Ok(Origin::Local {
                repo,
                clone_url_base: config["cloneUrlBase"].as_str().map(str::to_owned),
            })
        }
        Provider::Generic => Ok(Origin::None),
    }
}

/// The lock file of a local repository, if any: it must stay inside the repository once
/// symlinks are followed, and is read only up to the lock-file size limit.
/// The lock file at the event's commit: from the GitHub Contents API (cached per commit, which
/// never changes) or a local repository's working tree; `None` when there is none.
pub(in crate::pipeline) fn read_lock(
    deps: &Deps,
    event: &NormalizedEvent,
    origin: &Origin,
) -> Result<Option<Vec<u8>>, PipelineError> {
    Ok(match origin {
        Origin::GitHub { token, .. } => {
            let repo_name = event
                .repo
                .clone()
                .ok_or(PipelineError::Payload("the payload names no repository"))?;
            let key = format!("github:{repo_name}@{}", event.sha);
            match deps.locks.get(&key) {
                Some(bytes) => Some(bytes.to_vec()),
                None => {
                    let fetched =
                        repo::file_at(&deps.github, token, &repo_name, LOCK_PATH, &event.sha)
                            .map_err(|e| PipelineError::Source(e.to_string()))?;
                    // Only commits are immutable: a branch name or HEAD is read again next time.
                    if let (Some(b), true) = (&fetched, is_commit(&event.sha)) {
                        deps.locks.put(key, b.clone());
                    }
                    fetched
                }
            }
        }
        Origin::Local { repo, .. } => read_local_lock(repo).map_err(PipelineError::Source)?,
        Origin::None => None,
    })
}

pub(super) fn read_local_lock(repo: &Path) -> Result<Option<Vec<u8>>, String> {
    let path = repo.join(LOCK_PATH);
    // `repo` is canonical: unless `.kici` or the file itself is a symlink, the path stays inside
    // it (two lstat calls instead of resolving every component on every delivery).
    let linked = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    let real = if linked(&repo.join(".kici")) || linked(&path) {
        let Ok(real) = path.canonicalize() else {
            return Ok(None);
        };
        if !real.starts_with(repo) {
            return Err(format!(
                "refused: {} leads outside the repository (to {}); nothing was read",
                path.display(),
                real.display()
            ));
        }
        real
    } else {
        path.clone()
    };
    let file = match std::fs::File::open(&real) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // One byte over the limit is enough for validation to refuse the file by its size.
    let limit = super::limits::LOCK_FILE_BYTES as u64 + 1;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(size.min(limit) as usize + 1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(bytes))
}

pub(super) fn changed_files(
    deps: &Deps,
    origin: &Origin,
    event: &NormalizedEvent,
    payload: &Value,
) -> Result<Vec<String>, String> {
    let Origin::GitHub {
        token,
        routing_key,
        installation_id,
    } = origin
    else {
        return Ok(Vec::new());
    };
    let repo_name = event.repo.as_deref().unwrap_or("");
    match event.kind {
        EventKind::PullRequest => {
            let n = event.pr_number.ok_or("no pull request number")?;
            // The PR files list needs pull_requests:read, which contents:read does not give.
            let scope = repo::TokenScope {
                repository: repo::repo_part(repo_name).to_owned(),
                permissions: [("pull_requests".to_owned(), "read".to_owned())].into(),
            };
            let token = deps.mint().token(routing_key, *installation_id, &scope)?;
            repo::pr_files(&deps.github, &token, repo_name, n).map_err(|e| e.to_string())
        }
        EventKind::Push | EventKind::Tag => {
            let before = payload["before"].as_str().unwrap_or("");
            let after = payload["after"].as_str().unwrap_or("");
            if before.is_empty() || before.chars().all(|c| c == '0') {
                // A new branch: the files of its head commit are what the push brought.
                let files = payload["head_commit"]
                    .as_object()
                    .map(|c| {
                        ["added", "modified", "removed"]
                            .iter()
                            .flat_map(|k| {
                                c.get(*k)
                                    .and_then(Value::as_array)
                                    .cloned()
                                    .unwrap_or_default()
                            })
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(files);
            }
            repo::compare_files(&deps.github, token, repo_name, before, after)
                .map_err(|e| e.to_string())
        }
        _ => Ok(Vec::new()),
    }
}
