//! Local repositories for `source trigger-local` and `source install-hook`: finding
//! `<base>/<owner>/<name>` repositories under a local source's folder, reading a commit with `git`,
//! the GitHub-shaped event the local provider normalizes (docs/architecture.md, "Event
//! normalization": the event type comes from `X-Event-Type`, the branch from `payload.ref`), and
//! the `post-receive` hook script. Building the event and the script is pure; only `git` and the
//! folder walk do I/O.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

use crate::Error;

/// Git's "no object" id, sent as `before` when the previous commit is unknown.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A repository folder `<base>/<owner>/<name>` (a bare `<name>.git` is named `owner/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFolder {
    pub full_name: String,
    pub path: PathBuf,
}

/// A working tree (`.git` folder or file) or a bare repository (`HEAD`, `objects`, `refs`).
fn is_repository(dir: &Path) -> bool {
    dir.join(".git").exists()
        || (dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir())
}

fn sorted_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Every `<owner>/<name>` repository under `base`, sorted by name.
pub fn list_repositories(base: &Path) -> Result<Vec<RepoFolder>, String> {
    let mut repos = Vec::new();
    for (owner, owner_dir) in sorted_dirs(base)? {
        if is_repository(&owner_dir) {
            continue;
        }
        for (name, path) in sorted_dirs(&owner_dir)? {
            if is_repository(&path) {
                let name = name.strip_suffix(".git").unwrap_or(&name).to_owned();
                let full_name = format!("{owner}/{name}");
                // A folder name the orchestrator would refuse (a newline, say) is not offered.
                if crate::sources::local_path::check_full_name(&full_name).is_err() {
                    continue;
                }
                repos.push(RepoFolder { full_name, path });
            }
        }
    }
    Ok(repos)
}

/// The repository `wanted` (`owner/name`), else the only one under `base`.
pub fn pick_repository(base: &Path, wanted: Option<&str>) -> Result<RepoFolder, Error> {
    if !base.is_dir() {
        return Err(Error::Usage(format!(
            "the source's folder {} does not exist or is not a folder: create it, or point the \
             source elsewhere with kici-admin source update-local <id> --path <dir>",
            base.display()
        )));
    }
    if let Some(wanted) = wanted {
        let (owner, name) = crate::sources::local_path::check_full_name(wanted).map_err(|e| {
            Error::Usage(format!(
                "--repo-full-name must be owner/name (e.g. acme/app): {e}"
            ))
        })?;
        for candidate in [name.to_owned(), format!("{name}.git")] {
            let path = base.join(owner).join(&candidate);
            if is_repository(&path) {
                return Ok(RepoFolder {
                    full_name: wanted.to_owned(),
                    path,
                });
            }
        }
        return Err(Error::Usage(format!(
            "no git repository {wanted} under {}: expected {} (a working tree or a bare \
             repository){}",
            base.display(),
            base.join(owner).join(name).display(),
            found_list(base)
        )));
    }
    let mut repos = list_repositories(base).map_err(Error::Usage)?;
    match repos.len() {
        1 => Ok(repos.remove(0)),
        0 => {
            let hint = if is_repository(base) {
                format!(
                    " ({} is itself a repository: the source's folder must hold repositories \
                     as <owner>/<name>, e.g. its grandparent)",
                    base.display()
                )
            } else {
                String::new()
            };
            Err(Error::Usage(format!(
                "no git repository under {}: repositories go in <owner>/<name> folders, e.g. \
                 git init {}{hint}",
                base.display(),
                base.join("acme").join("app").display()
            )))
        }
        _ => Err(Error::Usage(format!(
            "{} repositories under {}: choose one with --repo-full-name{}",
            repos.len(),
            base.display(),
            found_list(base)
        ))),
    }
}

fn found_list(base: &Path) -> String {
    match list_repositories(base) {
        Ok(repos) if !repos.is_empty() => {
            let names: Vec<&str> = repos.iter().map(|r| r.full_name.as_str()).collect();
            format!(" (found: {})", names.join(", "))
        }
        _ => String::new(),
    }
}

/// Why a git command gave no answer: git could not be run at all (not installed, not on the
/// PATH), or it ran and failed (its stderr: no such ref, not a repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    NotRun(String),
    Failed(String),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::NotRun(e) => write!(
                f,
                "cannot run git ({e}): install git and make sure it is on the PATH"
            ),
            GitError::Failed(stderr) => f.write_str(stderr),
        }
    }
}

impl std::error::Error for GitError {}

/// Runs `git -C <repo> <args>` and returns its trimmed stdout. Variables a hook inherits from
/// the receiving git (`GIT_DIR` is `.` in a bare repository) are dropped so they cannot point
/// this call at another repository.
pub fn git(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).args(args);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_PREFIX",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_QUARANTINE_PATH",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|e| GitError::NotRun(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(GitError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// The commit an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full ref, e.g. `refs/heads/main` or `refs/tags/v1`.
    pub git_ref: String,
    pub sha: String,
    /// The commit's subject line.
    pub message: String,
    /// The branch HEAD points at (GitHub's `default_branch`).
    pub default_branch: String,
}

/// `main` → `refs/heads/main`; full refs stay as they are.
pub fn full_ref(r: &str) -> String {
    if r.starts_with("refs/") {
        r.to_owned()
    } else {
        format!("refs/heads/{r}")
    }
}

/// HEAD of `repo` (its branch and commit), with `--ref`/`--sha` taking precedence.
pub fn read_commit(repo: &Path, git_ref: Option<&str>, sha: Option<&str>) -> Result<Commit, Error> {
    let where_ = repo.display();
    // No branch (detached HEAD) is the operator's to fix; no git at all is said as such.
    let head_branch = match git(repo, &["symbolic-ref", "-q", "HEAD"]) {
        Ok(b) => Some(b),
        Err(e @ GitError::NotRun(_)) => return Err(Error::Usage(e.to_string())),
        Err(GitError::Failed(_)) => None,
    };
    let git_ref_given = git_ref.is_some();
    let git_ref = match (git_ref, &head_branch) {
        (Some(r), _) => full_ref(r),
        (None, Some(b)) if !b.is_empty() => b.clone(),
        _ => {
            return Err(Error::Usage(format!(
            "HEAD is detached in {where_}: say which branch the commit is on with --ref <branch>"
        )))
        }
    };
    // The commit: --sha, else the tip of --ref, else HEAD.
    let target = match (sha, git_ref_given) {
        (Some(s), _) => s.to_owned(),
        (None, true) => git_ref.clone(),
        (None, false) => "HEAD".to_owned(),
    };
    let sha = git(repo, &["rev-parse", "--verify", "-q", &format!("{target}^{{commit}}")])
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::Usage(if target == "HEAD" {
                format!("{where_} has no commit yet on {git_ref}: commit something first")
            } else {
                format!(
                    "no commit {target:?} in {where_}: check --sha/--ref (git -C {where_} log shows the commits)"
                )
            })
        })?;
    let message = git(repo, &["log", "-1", "--format=%s", &sha]).unwrap_or_default();
    let branch_of = |r: &str| r.strip_prefix("refs/heads/").map(str::to_owned);
    let default_branch = head_branch
        .as_deref()
        .and_then(branch_of)
        .or_else(|| branch_of(&git_ref))
        .unwrap_or_else(|| "main".to_owned());
    Ok(Commit {
        git_ref,
        sha,
        message,
        default_branch,
    })
}

/// The event types `trigger-local` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Push,
    PullRequest,
}

impl EventKind {
    pub fn parse(s: &str) -> Result<EventKind, Error> {
        match s {
            "push" => Ok(EventKind::Push),
            "pull_request" => Ok(EventKind::PullRequest),
            other => Err(Error::Usage(format!(
                "--event must be push or pull_request, got {other:?}"
            ))),
        }
    }

    /// The `X-Event-Type` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::PullRequest => "pull_request",
        }
    }
}

/// A GitHub-shaped event body. For a pull request, `base` is the target branch and its commit;
/// the top-level `ref` names that target branch too, because the local provider takes the
/// branch to match from `payload.ref` (GitHub matches pull requests on their base branch).
pub fn event_body(
    kind: EventKind,
    repo: &RepoFolder,
    commit: &Commit,
    before: &str,
    base: Option<(&str, &str)>,
) -> Value {
    let (owner, name) = repo
        .full_name
        .split_once('/')
        .unwrap_or(("local", &repo.full_name));
    let repository = json!({
        "full_name": repo.full_name,
        "name": name,
        "owner": { "login": owner },
        "default_branch": commit.default_branch,
    });
    let sender = json!({ "login": "local", "id": 0 });
    let local = json!({ "path": repo.path.display().to_string() });
    match kind {
        EventKind::Push => json!({
            "ref": commit.git_ref,
            "before": before,
            "after": commit.sha,
            "repository": repository,
            "head_commit": { "id": commit.sha, "message": commit.message },
            "sender": sender,
            "local": local,
        }),
        EventKind::PullRequest => {
            let head = commit
                .git_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(&commit.git_ref);
            let (base_ref, base_sha) = base.unwrap_or((commit.default_branch.as_str(), ""));
            let side = |r: &str, sha: &str| json!({ "ref": r, "sha": sha, "repo": { "full_name": repo.full_name } });
            json!({
                "action": "synchronize",
                "number": 0,
                "ref": full_ref(base_ref),
                "pull_request": {
                    "number": 0,
                    "title": commit.message,
                    "head": side(head, &commit.sha),
                    "base": side(base_ref, base_sha),
                },
                "repository": repository,
                "sender": sender,
                "local": local,
            })
        }
    }
}

/// The first line of a hook this command wrote for source `id`.
pub fn hook_marker(id: &str) -> String {
    format!("# kici-admin post-receive hook for local source {id}")
}

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the hook needs to call `trigger-local` for each pushed ref.
pub struct HookSettings<'a> {
    pub source_id: &'a str,
    pub full_name: &'a str,
    pub kici_admin: &'a Path,
    pub admin_url: &'a str,
    /// A file holding `KICI_ADMIN_TOKEN=<token>` (mode 0600); without it, the pusher's
    /// environment must carry KICI_ADMIN_TOKEN.
    pub token_file: Option<&'a Path>,
}

/// The `post-receive` script: for each `<old> <new> <ref>` line on stdin, except deleted refs
/// (a new id of all zeros, SHA-1 or SHA-256), send the event. It never fails the push (git
/// has already updated the refs); failures are shown to the pusher as `remote:` lines.
pub fn hook_script(s: &HookSettings<'_>) -> String {
    let token = match s.token_file {
        Some(f) => format!(
            "token_file={}\n\
             if [ -r \"$token_file\" ]; then\n\
             \x20 KICI_ADMIN_TOKEN=$(sed -n 's/^KICI_ADMIN_TOKEN=//p' \"$token_file\")\n\
             \x20 export KICI_ADMIN_TOKEN\n\
             fi\n",
            shell_quote(&f.display().to_string())
        ),
        None => "# The admin token comes from $KICI_ADMIN_TOKEN in the pusher's environment.\n"
            .to_owned(),
    };
    format!(
        "#!/bin/sh\n\
         {marker} ({full_name}).\n\
         # Written by kici-admin source install-hook; run that again rather than editing this.\n\
         KICI_ADMIN_URL={url}\n\
         export KICI_ADMIN_URL\n\
         {token}\
         while read -r old new ref; do\n\
         \x20 case \"$new\" in *[!0]*) ;; *) continue ;; esac\n\
         \x20 {bin} source trigger-local {id} --repo-full-name {repo} --ref \"$ref\" --sha \"$new\" --before \"$old\" \\\n\
         \x20   || echo \"kici: no run was triggered for $ref (see the error above)\" >&2\n\
         done\n\
         exit 0\n",
        marker = hook_marker(s.source_id),
        // A comment line: a newline in the name would end it and start a command.
        full_name = s.full_name.replace(|c: char| c.is_control(), "?"),
        url = shell_quote(s.admin_url),
        bin = shell_quote(&s.kici_admin.display().to_string()),
        id = shell_quote(s.source_id),
        repo = shell_quote(s.full_name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoFolder {
        RepoFolder {
            full_name: "acme/app".into(),
            path: "/srv/repos/acme/app".into(),
        }
    }

    fn commit() -> Commit {
        Commit {
            git_ref: "refs/heads/feature".into(),
            sha: "a".repeat(40),
            message: "Add CI".into(),
            default_branch: "main".into(),
        }
    }

    #[test]
    fn git_errors_say_whether_git_ran() {
        let dir = std::env::temp_dir().join(format!("kici-no-repo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Outside any repository git runs and fails (when git is installed at all).
        match git(&dir, &["rev-parse", "--git-dir"]) {
            Err(GitError::Failed(stderr)) => assert!(!stderr.is_empty()),
            Err(GitError::NotRun(_)) => {}
            Ok(out) => assert!(!out.is_empty(), "{out}"),
        }
        let _ = std::fs::remove_dir(&dir);
        let e = GitError::NotRun("No such file or directory (os error 2)".into());
        assert_eq!(
            e.to_string(),
            "cannot run git (No such file or directory (os error 2)): install git and make sure \
             it is on the PATH"
        );
        assert_eq!(GitError::Failed("fatal: x".into()).to_string(), "fatal: x");
    }

    #[test]
    fn push_event_is_github_shaped() {
        let body = event_body(EventKind::Push, &repo(), &commit(), ZERO_SHA, None);
        assert_eq!(
            body,
            json!({
                "ref": "refs/heads/feature", "before": ZERO_SHA, "after": "a".repeat(40),
                "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"},
                               "default_branch": "main"},
                "head_commit": {"id": "a".repeat(40), "message": "Add CI"},
                "sender": {"login": "local", "id": 0},
                "local": {"path": "/srv/repos/acme/app"}
            })
        );
    }

    #[test]
    fn pull_request_targets_its_base_branch() {
        let body = event_body(
            EventKind::PullRequest,
            &repo(),
            &commit(),
            ZERO_SHA,
            Some(("main", "bbbb")),
        );
        assert_eq!(body["action"], "synchronize");
        assert_eq!(body["ref"], "refs/heads/main");
        assert_eq!(body["pull_request"]["head"]["ref"], "feature");
        assert_eq!(body["pull_request"]["head"]["sha"], "a".repeat(40));
        assert_eq!(body["pull_request"]["base"]["ref"], "main");
        assert_eq!(body["pull_request"]["base"]["sha"], "bbbb");
        assert_eq!(
            body["pull_request"]["base"]["repo"]["full_name"],
            "acme/app"
        );
        assert!(EventKind::parse("tag").is_err());
    }

    #[test]
    fn refs_and_quoting() {
        assert_eq!(full_ref("main"), "refs/heads/main");
        assert_eq!(full_ref("refs/tags/v1"), "refs/tags/v1");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_newline_in_the_repository_name_cannot_inject_a_command() {
        let script = hook_script(&HookSettings {
            source_id: "6f1c",
            full_name: "acme/app\ntouch /tmp/pwned\n#",
            kici_admin: Path::new("/k"),
            admin_url: "http://h",
            token_file: None,
        });
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines[1],
            "# kici-admin post-receive hook for local source 6f1c (acme/app?touch /tmp/pwned?#)."
        );
        assert!(lines[2].starts_with("# Written by kici-admin"), "{script}");
        // Such a name never gets this far: pick_repository refuses it.
        let err = pick_repository(Path::new("/"), Some("acme/app\ntouch pwned"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("control character"), "{err}");
    }

    #[test]
    fn hook_script_calls_trigger_local_per_ref() {
        let script = hook_script(&HookSettings {
            source_id: "6f1c",
            full_name: "acme/app",
            kici_admin: Path::new("/usr/local/bin/kici-admin"),
            admin_url: "http://127.0.0.1:4000",
            token_file: Some(Path::new("/srv/repos/acme/app/.git/hooks/kici-admin.env")),
        });
        assert!(script.starts_with(
            "#!/bin/sh\n# kici-admin post-receive hook for local source 6f1c (acme/app).\n"
        ));
        assert!(script.contains("KICI_ADMIN_URL='http://127.0.0.1:4000'\nexport KICI_ADMIN_URL\n"));
        assert!(script.contains("token_file='/srv/repos/acme/app/.git/hooks/kici-admin.env'\n"));
        assert!(script.contains(
            "  '/usr/local/bin/kici-admin' source trigger-local '6f1c' --repo-full-name 'acme/app' \
             --ref \"$ref\" --sha \"$new\" --before \"$old\""
        ));
        assert!(!script.contains("KICI_ADMIN_TOKEN=") || script.contains("sed -n"));
        let without = hook_script(&HookSettings {
            token_file: None,
            source_id: "6f1c",
            full_name: "acme/app",
            kici_admin: Path::new("/k"),
            admin_url: "http://h",
        });
        assert!(without.contains("from $KICI_ADMIN_TOKEN in the pusher's environment"));
    }

    #[test]
    fn repositories_are_found_as_owner_and_name() {
        let base = std::env::temp_dir().join(format!("kici-local-repo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("acme/app/.git")).unwrap();
        for d in ["objects", "refs"] {
            std::fs::create_dir_all(base.join("acme/lib.git").join(d)).unwrap();
        }
        std::fs::write(base.join("acme/lib.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(base.join("acme/notes")).unwrap();
        std::fs::create_dir_all(base.join(".hidden/x/.git")).unwrap();
        let names: Vec<String> = list_repositories(&base)
            .unwrap()
            .into_iter()
            .map(|r| r.full_name)
            .collect();
        assert_eq!(names, ["acme/app", "acme/lib"]);
        let many = pick_repository(&base, None).unwrap_err().to_string();
        assert!(
            many.starts_with("2 repositories under ")
                && many.ends_with("choose one with --repo-full-name (found: acme/app, acme/lib)"),
            "{many}"
        );
        let lib = pick_repository(&base, Some("acme/lib")).unwrap();
        assert_eq!(lib.path, base.join("acme/lib.git"));
        let missing = pick_repository(&base, Some("acme/web"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("no git repository acme/web under "),
            "{missing}"
        );
        let bad = pick_repository(&base, Some("web")).unwrap_err().to_string();
        assert_eq!(
            bad,
            "--repo-full-name must be owner/name (e.g. acme/app): repository name \"web\" is not owner/name (e.g. acme/app)"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
