//! Local repository sources end to end: `kici-admin source add local`, `trigger-local`,
//! `install-hook` (then a real `git push`), `update-local` and `remove --local`, against a real
//! daemon and PostgreSQL, with git repositories made by the test.

use crate::support;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{
    daemon::*,
    git::{git, git_ok},
    pg::PgCluster,
    webhook,
};

const OWNER: &str = "3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e";

struct Setup {
    d: Daemon,
    url: String,
    pg: &'static PgCluster,
    db: String,
    dir: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let d = owner_daemon(&db, OWNER);
    let dir = std::env::temp_dir().join(format!("kici-local-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Setup {
        url: format!("http://{}", d.addr),
        d,
        pg,
        db,
        dir,
    }
}

/// `<base>/<owner>/<name>` with one commit holding `.kici/kici.lock.json`; returns its HEAD.
fn make_repo(base: &Path, full_name: &str) -> String {
    let repo = base.join(full_name);
    std::fs::create_dir_all(repo.join(".kici")).unwrap();
    git_ok(&repo, &["init", "-q", "-b", "main"]);
    // One workflow on pushes to main, so trigger-local and pushes create runs.
    std::fs::write(
        repo.join(".kici/kici.lock.json"),
        r##"{"schemaVersion":29,"source":{"file":".kici/workflows/ci.ts","export":"#default"},"workflows":[
            {"name":"ci","contentHash":"h","triggers":[{"_type":"push","branches":[{"type":"glob","pattern":"main"}],"paths":[]}],
             "jobs":[{"_type":"static","name":"build","runsOn":[{"kind":"exact","value":"linux"}],"needs":[],"steps":[]}]}]}"##,
    )
    .unwrap();
    git_ok(&repo, &["add", "."]);
    git_ok(&repo, &["commit", "-q", "-m", "Add the KiCI lock file"]);
    git_ok(&repo, &["rev-parse", "HEAD"])
}

impl Setup {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--url", &self.url, "--token", OWNER];
        all.extend_from_slice(args);
        cli(&all, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kici-admin {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Exit 1 and `Error: <message>`; returns the message.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "kici-admin {args:?} did not fail:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        let err = stderr(&out);
        err.trim()
            .strip_prefix("Error: ")
            .unwrap_or_else(|| panic!("no Error: prefix: {err}"))
            .to_owned()
    }

    fn sql(&self, q: &str) -> String {
        self.pg.psql(&self.db, q)
    }

    /// The event_log row (event|action|provider|routing_key|payload ref|payload after) of the
    /// delivery naming `sha`, waiting briefly for it.
    fn event_row(&self, sha: &str) -> String {
        let q = format!(
            "SELECT event, coalesce(action, ''), provider, routing_key,
                    convert_from(payload, 'UTF8')::jsonb ->> 'ref',
                    convert_from(payload, 'UTF8')::jsonb ->> 'after'
               FROM event_log WHERE delivery_id LIKE '%:local-{sha}-%' ORDER BY received_at"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let rows = self.sql(&q);
            if !rows.is_empty() || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The run the pipeline created for the delivery naming `sha` (waits for it).
    fn run_for(&self, sha: &str) -> String {
        let q = format!(
            "SELECT r.run_id FROM execution_runs r JOIN event_log e ON e.delivery_id = r.delivery_id
              WHERE e.delivery_id LIKE '%:local-{sha}-%' ORDER BY r.started_at DESC LIMIT 1"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = self.sql(&q).trim().to_owned();
            if !run.is_empty() {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "no run for the delivery of {sha}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn source(&self, id: &str) -> Value {
        let out = self.ok(&["source", "get", id, "--json"]);
        serde_json::from_str(&out).unwrap()
    }
}

#[test]
fn add_trigger_hook_update_remove() {
    let s = setup("main");
    let base = s.dir.join("repos");
    std::fs::create_dir_all(&base).unwrap();
    let base_str = base.display().to_string();
    let head = make_repo(&base, "acme/app");

    // add local: verification none, providerType local, gitConfig.localPath, named after the
    // folder.
    let out = s.ok(&[
        "source", "add", "local", "--org", "acme", "--path", &base_str,
    ]);
    assert!(
        out.starts_with("Generic source created:\n  ID:           "),
        "{out}"
    );
    assert!(out.contains("\n  Name:         repos\n"), "{out}");
    assert!(
        out.contains(&format!("\n  Folder:       {base_str}\n")),
        "{out}"
    );
    let id = added_source_id(&out);
    let row = s.source(&id);
    assert_eq!(row["providerType"], "local");
    assert_eq!(row["verificationMethod"], "none");
    assert_eq!(row["gitConfig"], json!({ "localPath": base_str }));
    assert!(s
        .ok(&["source", "list", "--org", "acme"])
        .contains(&format!("  {id}")));

    // trigger-local: HEAD of the only repository, as a push.
    let out = s.ok(&["source", "trigger-local", &id]);
    assert!(
        out.starts_with(&format!(
            "Event sent: push refs/heads/main @ {} (acme/app)\n",
            &head[..12]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("  Delivery ID:  generic:acme:{id}:local-{head}-")),
        "{out}"
    );
    assert_eq!(
        s.event_row(&head),
        format!("push||local|generic:acme:{id}|refs/heads/main|{head}")
    );

    // The pipeline read the lock file from the working tree and created a run.
    let run = s.run_for(&head);
    let shown: Value = serde_json::from_str(&s.ok(&["runs", "show", &run, "--json"])).unwrap();
    assert!(shown.to_string().contains("\"build\""), "{shown}");

    // A pull request event, as JSON.
    let out = s.ok(&[
        "source",
        "trigger-local",
        &id,
        "--event",
        "pull_request",
        "--json",
    ]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["accepted"], true, "{out}");
    let delivery = answer["deliveryId"].as_str().unwrap();
    let pr = s.sql(&format!(
        "SELECT event, action, convert_from(payload, 'UTF8')::jsonb #>> '{{pull_request,head,sha}}'
           FROM event_log WHERE delivery_id = '{delivery}'"
    ));
    assert_eq!(pr, format!("pull_request|synchronize|{head}"));

    // Errors name the value and the fix.
    let e = s.fails(&["source", "trigger-local", &id, "--ref", "nosuch"]);
    assert!(e.starts_with("no commit \"refs/heads/nosuch\" in "), "{e}");
    let e = s.fails(&["source", "trigger-local", &id, "--event", "tag"]);
    assert_eq!(e, "--event must be push or pull_request, got \"tag\"");
    let e = s.fails(&[
        "source",
        "trigger-local",
        &id,
        "--repo-full-name",
        "acme/web",
    ]);
    assert!(e.starts_with("no git repository acme/web under "), "{e}");
    assert!(e.ends_with("(found: acme/app)"), "{e}");

    // install-hook, then a real push from a clone triggers a run.
    let repo = base.join("acme/app");
    let out = s.ok(&["source", "install-hook", &id]);
    let hooks = repo.join(".git/hooks");
    assert!(
        out.starts_with(&format!(
            "Hook installed: {}\n",
            hooks.join("post-receive").display()
        )),
        "{out}"
    );
    assert!(
        out.contains("receive.denyCurrentBranch updateInstead"),
        "{out}"
    );
    let hook = std::fs::read_to_string(hooks.join("post-receive")).unwrap();
    assert!(
        !hook.contains(OWNER),
        "the token must not be in the hook:\n{hook}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&hooks.join("post-receive")), 0o755);
    assert_eq!(mode(&hooks.join("kici-admin.env")), 0o600);
    assert_eq!(
        std::fs::read_to_string(hooks.join("kici-admin.env")).unwrap(),
        format!("KICI_ADMIN_TOKEN={OWNER}\n")
    );
    git_ok(
        &repo,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    let work = s.dir.join("work");
    git_ok(
        &s.dir,
        &["clone", "-q", &repo.display().to_string(), "work"],
    );
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-q", "-m", "Say hello"]);
    let pushed = git_ok(&work, &["rev-parse", "HEAD"]);
    let out = git(&work, &["push", "-q", "origin", "main"]);
    assert!(out.status.success(), "push: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "remote: Event sent: push refs/heads/main @ {}",
            &pushed[..12]
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.event_row(&pushed),
        format!("push||local|generic:acme:{id}|refs/heads/main|{pushed}")
    );
    // The pushed commit is checked out (the local provider reads the working tree), and the
    // push created a run.
    assert!(repo.join("README.md").exists());
    s.run_for(&pushed);

    // Installing again is fine; a hook of someone else's is kept unless --force.
    s.ok(&["source", "install-hook", &id]);
    std::fs::write(hooks.join("post-receive"), "#!/bin/sh\necho mine\n").unwrap();
    let e = s.fails(&["source", "install-hook", &id]);
    assert!(
        e.ends_with(&format!(
            "already exists and was not written for source {id}: merge the two by hand, or pass \
             --force to replace it (the old one is kept as post-receive.kici-backup)"
        )),
        "{e}"
    );
    s.ok(&["source", "install-hook", &id, "--force", "--no-token-file"]);
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-receive.kici-backup")).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    assert!(!hooks.join("kici-admin.env").exists());

    // Two repositories: trigger-local must be told which.
    let lib_head = make_repo(&base, "acme/lib");
    let e = s.fails(&["source", "trigger-local", &id]);
    assert_eq!(
        e,
        format!("2 repositories under {base_str}: choose one with --repo-full-name (found: acme/app, acme/lib)")
    );
    s.ok(&[
        "source",
        "trigger-local",
        &id,
        "--repo-full-name",
        "acme/lib",
    ]);
    assert!(s.event_row(&lib_head).starts_with("push||local|"));

    // A bare repository (<name>.git) gets the hook in its own hooks folder; pushing to it
    // triggers a run for owner/name.
    git_ok(
        &base,
        &["init", "-q", "--bare", "-b", "main", "acme/site.git"],
    );
    let out = s.ok(&[
        "source",
        "install-hook",
        &id,
        "--repo-full-name",
        "acme/site",
    ]);
    let bare_hook = base.join("acme/site.git/hooks/post-receive");
    assert!(
        out.starts_with(&format!("Hook installed: {}\n", bare_hook.display())),
        "{out}"
    );
    assert!(!out.contains("denyCurrentBranch"), "{out}");
    std::fs::write(work.join("CHANGES.md"), "site\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-q", "-m", "Publish"]);
    let published = git_ok(&work, &["rev-parse", "HEAD"]);
    let site = base.join("acme/site.git").display().to_string();
    let out = git(&work, &["push", "-q", &site, "main"]);
    assert!(out.status.success(), "push: {}", stderr(&out));
    assert!(
        s.event_row(&published).starts_with(&format!(
            "push||local|generic:acme:{id}|refs/heads/main|{published}"
        )),
        "{}",
        stderr(&out)
    );
    let payload_repo = s.sql(&format!(
        "SELECT convert_from(payload, 'UTF8')::jsonb #>> '{{repository,full_name}}'
           FROM event_log WHERE delivery_id LIKE '%:local-{published}-%'"
    ));
    assert_eq!(payload_repo, "acme/site");

    // update-local keeps what it is not told to change.
    let out = s.ok(&[
        "source",
        "update-local",
        &id,
        "--clone-url-base",
        "ssh://git@ci.local/srv/repos/",
    ]);
    assert!(
        out.starts_with(&format!("Local source updated: {id} (repos)\n")),
        "{out}"
    );
    assert_eq!(
        s.source(&id)["gitConfig"],
        json!({ "localPath": base_str, "cloneUrlBase": "ssh://git@ci.local/srv/repos" })
    );
    let other = s.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    s.ok(&[
        "source",
        "update-local",
        &id,
        "--path",
        &other.display().to_string(),
        "--name",
        "mirror",
    ]);
    let row = s.source(&id);
    assert_eq!(row["name"], "mirror");
    assert_eq!(
        row["gitConfig"],
        json!({ "localPath": other.display().to_string(), "cloneUrlBase": "ssh://git@ci.local/srv/repos" })
    );
    s.ok(&["source", "update-local", &id, "--clone-url-base", ""]);
    assert_eq!(
        s.source(&id)["gitConfig"],
        json!({ "localPath": other.display().to_string() })
    );
    let e = s.fails(&["source", "update-local", &id, "--path", "relative/dir"]);
    assert!(
        e.starts_with("--path must be an absolute path, got \"relative/dir\""),
        "{e}"
    );
    let e = s.fails(&["source", "update-local", &id]);
    assert_eq!(e, "no fields to update. Provide at least one option.");
    // The new folder holds no repository.
    let e = s.fails(&["source", "trigger-local", &id]);
    assert!(
        e.starts_with(&format!(
            "no git repository under {}: repositories go in <owner>/<name> folders",
            other.display()
        )),
        "{e}"
    );

    // remove --local takes the routing key too; a generic webhook source is not a local one.
    let generic = webhook::generic_source(
        &s.d,
        OWNER,
        "acme",
        json!({"name": "hooks", "verificationMethod": "none"}),
    );
    let generic_id = generic["id"].as_str().unwrap();
    let e = s.fails(&["source", "remove", generic_id, "--local", "--yes"]);
    assert!(
        e.starts_with(&format!(
            "source {generic_id} (hooks) is a generic webhook source, not a local one"
        )),
        "{e}"
    );
    let out = s.ok(&[
        "source",
        "remove",
        &format!("generic:acme:{id}"),
        "--local",
        "--yes",
    ]);
    assert_eq!(out, format!("Generic source soft-deleted: {id}\n"));
    let e = s.fails(&["source", "trigger-local", &id]);
    assert_eq!(e, "HTTP 404: Source not found");
    assert_eq!(
        s.sql(&format!(
            "SELECT deleted_at IS NOT NULL FROM generic_webhook_sources WHERE id = '{id}'"
        )),
        "t"
    );
}

#[test]
fn add_local_checks_the_folder() {
    let s = setup("errors");
    let e = s.fails(&["source", "add", "local", "--org", "acme", "--path", "repos"]);
    assert!(
        e.starts_with("--path must be an absolute path, got \"repos\" (e.g. /"),
        "{e}"
    );
    let missing = s.dir.join("missing");
    let e = s.fails(&[
        "source",
        "add",
        "local",
        "--org",
        "acme",
        "--path",
        &missing.display().to_string(),
    ]);
    assert_eq!(
        e,
        format!(
            "--path {:?} does not exist or is not a folder: create it (mkdir -p {}) and put repositories in it as <owner>/<name>",
            missing.display().to_string(),
            missing.display()
        )
    );
    assert_eq!(s.sql("SELECT count(*) FROM generic_webhook_sources"), "0");

    // An empty folder is accepted (repositories may come later); --name and --json.
    let empty = s.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = s.ok(&[
        "source",
        "add",
        "local",
        "--org",
        "acme",
        "--path",
        &format!("{}/", empty.display()),
        "--name",
        "local-repos",
        "--clone-url-base",
        "file:///mnt/repos",
        "--json",
    ]);
    let row: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(row["name"], "local-repos");
    assert_eq!(
        row["gitConfig"],
        json!({ "localPath": empty.display().to_string(), "cloneUrlBase": "file:///mnt/repos" })
    );
    let id = row["id"].as_str().unwrap();
    let e = s.fails(&["source", "trigger-local", id]);
    assert!(e.starts_with("no git repository under "), "{e}");
    let e = s.fails(&["source", "install-hook", id]);
    assert!(e.starts_with("no git repository under "), "{e}");
    // A repository whose HEAD has no commit yet.
    git_ok(&empty, &["init", "-q", "-b", "main", "acme/new"]);
    let e = s.fails(&["source", "trigger-local", id]);
    assert!(
        e.ends_with("has no commit yet on refs/heads/main: commit something first"),
        "{e}"
    );
    // A name taken in the org.
    let e = s.fails(&[
        "source",
        "add",
        "local",
        "--org",
        "acme",
        "--path",
        &empty.display().to_string(),
        "--name",
        "local-repos",
    ]);
    assert!(e.starts_with("HTTP 409: "), "{e}");
    let out = s.ok(&["source", "remove", id, "--local", "--yes", "--hard"]);
    assert_eq!(out, format!("Generic source permanently deleted: {id}\n"));
}

#[test]
fn local_commands_have_help() {
    for args in [
        &["source", "add", "local", "--help"][..],
        &["source", "update-local", "--help"],
        &["source", "trigger-local", "--help"],
        &["source", "install-hook", "--help"],
        &["source", "remove", "--help"],
    ] {
        let out = cli(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Usage: kici-admin source"),
            "{}",
            stdout(&out)
        );
    }
    let help = stdout(&cli(&["source", "add", "local", "--help"], &[]));
    assert!(help.contains("verification none"), "{help}");
}

/// A local source's webhook is unsigned: the repository it names must be a folder inside the
/// source's localPath. `../`, absolute paths and symlinks leading out are refused with 400
/// before anything is recorded, so the lock file outside (with the attacker's steps) is never
/// read and no job points there. A scoped admin token cannot move the source's folder.
#[test]
fn repository_names_cannot_leave_the_source_folder() {
    let s = setup("escape");
    let base = s.dir.join("repos");
    std::fs::create_dir_all(&base).unwrap();
    make_repo(&base, "acme/app");
    // The attacker's repository, next to the source's folder, and a symlink to it inside.
    let outside = s.dir.join("outside");
    let evil_head = make_repo(&outside, "outside/evil");
    std::os::unix::fs::symlink(outside.join("outside/evil"), base.join("acme/evil")).unwrap();
    let base_str = base.display().to_string();
    let out = s.ok(&[
        "source", "add", "local", "--org", "acme", "--path", &base_str,
    ]);
    let id = added_source_id(&out);
    let name = s.source(&id)["name"].as_str().unwrap().to_owned();
    let route = format!("/webhook/acme/generic/{name}");
    let push = |body: Value| {
        webhook::post(
            &s.d,
            &route,
            &[
                ("Content-Type", "application/json"),
                ("X-Event-Type", "push"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let outside_abs = outside.join("outside/evil").display().to_string();
    for (full_name, why) in [
        ("../outside/evil", "the owner is . or .."),
        ("acme/../../outside/evil", "contains a slash"),
        (outside_abs.as_str(), "the owner is empty"),
        ("acme/evil", "leads outside the source's folder"),
        ("acme/app\nx", "control character"),
    ] {
        let r = push(json!({
            "ref": "refs/heads/main", "after": evil_head,
            "repository": {"full_name": full_name},
        }));
        let answer = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, 400, "{full_name:?}: {answer}");
        assert!(answer.contains(why), "{full_name:?}: {answer}");
    }
    // A good name still works, and is the only delivery recorded.
    let r = push(json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}}));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.sql("SELECT count(*) FROM event_log"), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.sql("SELECT count(*) FROM execution_runs") != "1" {
        assert!(Instant::now() < deadline, "no run for acme/app");
        std::thread::sleep(Duration::from_millis(50));
    }
    let urls = s.sql("SELECT dispatch->>'repoUrl' FROM dispatch_queue");
    assert!(!urls.contains("outside"), "{urls}");
    assert!(urls.contains("/acme/app"), "{urls}");

    // A repository inside the folder whose lock file is a symlink to the attacker's: the
    // delivery is accepted (the name is fine) and then refused by the pipeline, nothing read.
    std::fs::create_dir_all(base.join("acme/linked/.kici")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("outside/evil/.kici/kici.lock.json"),
        base.join("acme/linked/.kici/kici.lock.json"),
    )
    .unwrap();
    let r = push(json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/linked"}}));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let q = "SELECT status || ' ' || coalesce(error_message, '') FROM event_log \
             WHERE convert_from(payload, 'UTF8')::jsonb #>> '{repository,full_name}' = 'acme/linked'";
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let row = s.sql(q);
        if row.starts_with("failed") || Instant::now() > deadline {
            break row;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        row.starts_with("failed") && row.contains("leads outside the repository"),
        "{row}"
    );
    assert_eq!(s.sql("SELECT count(*) FROM execution_runs"), "1");

    // Moving the folder: not with a token scoped to the source, never to a relative path.
    let key = s.source(&id)["routingKey"].as_str().unwrap().to_owned();
    let scoped = s.ok(&[
        "token",
        "create",
        "scoped",
        "--role",
        "admin",
        "--routing-key",
        &key,
        "--json",
    ]);
    let scoped: Value = serde_json::from_str(&scoped).unwrap();
    let scoped = scoped["token"].as_str().unwrap().to_owned();
    let path = format!("/generic-sources/{id}");
    for change in [
        json!({"gitConfig": {"localPath": "/"}}),
        json!({"providerType": "generic"}),
    ] {
        let r = webhook::admin(&s.d, &scoped, "PATCH", &path, change.clone());
        assert_eq!(
            r.status,
            403,
            "{change}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(String::from_utf8_lossy(&r.body).contains("orchestrator-wide owner or admin"));
    }
    // Unchanged location fields are fine for the scoped token.
    let same = json!({"gitConfig": {"localPath": base_str}, "rateLimitRpm": 100});
    let r = webhook::admin(&s.d, &scoped, "PATCH", &path, same);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = webhook::admin(
        &s.d,
        OWNER,
        "PATCH",
        &path,
        json!({"gitConfig": {"localPath": "repos"}}),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("must be an absolute path"));
    assert_eq!(s.source(&id)["gitConfig"]["localPath"], base_str.as_str());
    let _ = std::fs::remove_dir_all(&s.dir);
}
