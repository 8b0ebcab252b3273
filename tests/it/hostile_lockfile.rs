//! Hostile lock files against the real daemon and PostgreSQL, through a local source (the lock
//! file is read from a git working tree made by the test): a glob nested 20,000 levels deep, a
//! matrix of 10^8 jobs, and one over each other bound of `src/pipeline/limits.rs`. Each must end
//! as a failed run whose reason names the bound and the value, with the delivery terminal — and
//! the daemon must stay up and keep processing.

use crate::support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{daemon::*, git::git_ok, pg::PgCluster};

const OWNER: &str = "4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f";

/// Set low so the test also shows the variable reaches the pipeline.
const MAX_JOBS: &str = "100";

struct Setup {
    d: Daemon,
    url: String,
    pg: &'static PgCluster,
    db: String,
    repo: PathBuf,
    source: String,
}

fn setup(tag: &str) -> Setup {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_MAX_JOBS_PER_RUN".into(), MAX_JOBS.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    let dir = std::env::temp_dir().join(format!("kici-hostile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = dir.join("repos");
    let repo = base.join("acme/app");
    std::fs::create_dir_all(repo.join(".kici")).unwrap();
    git_ok(&repo, &["init", "-q", "-b", "main"]);
    let mut s = Setup {
        url: format!("http://{}", d.addr),
        d,
        pg,
        db,
        repo,
        source: String::new(),
    };
    s.commit_lock(&lock(vec![workflow(
        "ci",
        "main",
        vec![job("build", json!({}))],
    )]));
    let base = base.display().to_string();
    let out = s.ok(&["source", "add", "local", "--org", "acme", "--path", &base]);
    s.source = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("ID:"))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no source id in {out}"));
    s
}

fn lock(workflows: Vec<Value>) -> String {
    json!({"schemaVersion": 29, "source": {"file": "kici.ts", "export": "default"},
           "workflows": workflows})
    .to_string()
}

fn workflow(name: &str, branch_glob: &str, jobs: Vec<Value>) -> Value {
    json!({"name": name, "contentHash": "h",
           "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": branch_glob}],
                         "paths": []}],
           "jobs": jobs})
}

fn job(name: &str, extra: Value) -> Value {
    let mut j = json!({"_type": "static", "name": name,
                       "runsOn": [{"kind": "exact", "value": "linux"}], "needs": [], "steps": []});
    if let (Some(j), Some(extra)) = (j.as_object_mut(), extra.as_object()) {
        j.extend(extra.clone());
    }
    j
}

/// A job with `dims` matrix dimensions of `values` values each.
fn matrix_job(name: &str, dims: usize, values: usize) -> Value {
    let dim: Vec<String> = (0..values).map(|v| format!("v{v}")).collect();
    let values: serde_json::Map<String, Value> =
        (0..dims).map(|d| (format!("d{d}"), json!(dim))).collect();
    job(
        name,
        json!({"matrix": {"_type": "static", "values": values}}),
    )
}

/// What the pipeline recorded for one delivery.
struct Outcome {
    status: String,
    error: String,
    /// `(run id, status, failure reason)` of each run the delivery created.
    runs: Vec<(String, String, String)>,
}

impl Setup {
    fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--url", &self.url, "--token", OWNER];
        all.extend_from_slice(args);
        let out = cli(&all, &[]);
        assert!(
            out.status.success(),
            "kici-admin {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn sql(&self, q: &str) -> String {
        self.pg.psql(&self.db, q)
    }

    /// Writes the lock file into the working tree and commits it; returns the new HEAD.
    fn commit_lock(&self, text: &str) -> String {
        write(&self.repo.join(".kici/kici.lock.json"), text);
        git_ok(&self.repo, &["add", "."]);
        git_ok(
            &self.repo,
            &["commit", "-q", "--allow-empty", "-m", "lock file"],
        );
        git_ok(&self.repo, &["rev-parse", "HEAD"])
    }

    /// Commits `text` as the lock file, triggers a push of it and waits until the pipeline is
    /// done with the delivery (neither `received` nor `processing`).
    fn deliver(&self, text: &str) -> Outcome {
        let head = self.commit_lock(text);
        self.ok(&["source", "trigger-local", &self.source]);
        let q = format!(
            "SELECT delivery_id, status, coalesce(error_message, '') FROM event_log
              WHERE delivery_id LIKE '%:local-{head}-%'"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let (delivery, status, error) = loop {
            let row = self.sql(&q);
            let parts: Vec<&str> = row.splitn(3, '|').collect();
            if let [delivery, status, error] = parts[..] {
                if status != "received" && status != "processing" {
                    break (delivery.to_owned(), status.to_owned(), error.to_owned());
                }
            }
            assert!(
                Instant::now() < deadline,
                "the delivery of {head} is not terminal: {row:?}\n{}",
                self.d.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let rows = self.sql(&format!(
            "SELECT run_id, status, coalesce(failure_reason, '') FROM execution_runs
              WHERE delivery_id = '{delivery}' ORDER BY workflow_name"
        ));
        let runs = rows
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let p: Vec<&str> = l.splitn(3, '|').collect();
                (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
            })
            .collect();
        Outcome {
            status,
            error,
            runs,
        }
    }

    /// The daemon is alive and ready.
    fn assert_up(&self) {
        self.d.wait_ready_status(200, Duration::from_secs(5));
    }

    /// `kici-admin runs show <id>` names `reason`.
    fn assert_shown(&self, run: &str, reason: &str) {
        let shown = self.ok(&["runs", "show", run]);
        assert!(shown.contains("failed"), "{shown}");
        assert!(
            shown.contains(reason),
            "runs show lacks {reason:?}:\n{shown}"
        );
    }

    fn jobs_of(&self, run: &str) -> (String, String) {
        let jobs = self.sql(&format!(
            "SELECT count(*) FROM execution_jobs WHERE run_id = '{run}'"
        ));
        let queued = self.sql(&format!(
            "SELECT count(*) FROM dispatch_queue WHERE run_id = '{run}'"
        ));
        (jobs, queued)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The single failed run of a refused lock file, with its reason.
fn refused(o: &Outcome) -> (&str, &str) {
    assert_eq!(o.runs.len(), 1, "one failed run: {:?}", o.runs);
    let (run, status, reason) = &o.runs[0];
    assert_eq!(status, "failed");
    (run, reason)
}

#[test]
fn a_glob_nested_twenty_thousand_levels_is_a_failed_run_and_the_daemon_goes_on() {
    let s = setup("glob");
    let deep = format!("{}main{}", "@(".repeat(20_000), ")".repeat(20_000));
    let text = lock(vec![workflow("ci", &deep, vec![job("build", json!({}))])]);
    assert!(
        text.len() > 40_000 && text.len() < 1 << 20,
        "{}",
        text.len()
    );
    let o = s.deliver(&text);
    s.assert_up();
    assert_eq!(o.status, "lockfile_corrupt", "{}", o.error);
    let expected = "branches: pattern \"@(@(@(";
    let limit = "the pattern nests 20000 levels deep, more than 32 (the limit on pattern nesting)";
    assert!(
        o.error.contains(expected) && o.error.contains(limit),
        "{}",
        o.error
    );
    assert!(
        o.error.len() < 600,
        "an excerpt, not the 40 KB pattern: {}",
        o.error
    );
    let (run, reason) = refused(&o);
    assert!(reason.contains(limit), "{reason}");
    s.assert_shown(run, limit);

    // The same nesting with braces, plain groups and negations: refused the same way.
    for (open, close) in [("{", ",b}"), ("(", ")"), ("!(", ")")] {
        let deep = format!("{}main{}", open.repeat(20_000), close.repeat(20_000));
        let o = s.deliver(&lock(vec![workflow("ci", &deep, vec![])]));
        assert_eq!(o.status, "lockfile_corrupt", "{open}: {}", o.error);
        assert!(
            o.error.contains("nests 20000 levels deep"),
            "{open}: {}",
            o.error
        );
    }
    s.assert_up();

    // A second, ordinary delivery still becomes a run with its job.
    let o = s.deliver(&lock(vec![workflow(
        "ci",
        "main",
        vec![job("build", json!({}))],
    )]));
    assert_eq!(o.status, "processed", "{}", o.error);
    assert_eq!(o.runs.len(), 1, "{:?}", o.runs);
    assert_eq!(s.jobs_of(&o.runs[0].0).0, "1");
}

#[test]
fn a_matrix_over_the_job_limit_is_a_failed_run_with_no_jobs() {
    let s = setup("matrix");
    // eight dimensions of ten values: 10^8 jobs asked for by a lock file of a few hundred bytes
    let text = lock(vec![workflow(
        "ci",
        "main",
        vec![matrix_job("build", 8, 10)],
    )]);
    let started = Instant::now();
    let o = s.deliver(&text);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused, not expanded"
    );
    s.assert_up();
    let limit = format!(
        "job \"build\": the matrix would create 100000000 jobs, more than KICI_MAX_JOBS_PER_RUN \
         ({MAX_JOBS})"
    );
    assert_eq!(o.status, "failed", "{}", o.error);
    assert!(o.error.contains(&limit), "{}", o.error);
    let (run, reason) = refused(&o);
    assert!(reason.contains(&limit), "{reason}");
    s.assert_shown(run, &limit);
    assert_eq!(s.jobs_of(run), ("0".to_owned(), "0".to_owned()));

    // At the configured limit exactly: 10 × 10 jobs are created.
    let o = s.deliver(&lock(vec![workflow(
        "ci",
        "main",
        vec![matrix_job("build", 2, 10)],
    )]));
    assert_eq!(o.status, "processed", "{}", o.error);
    assert_eq!(o.runs.len(), 1, "{:?}", o.runs);
    assert_eq!(s.jobs_of(&o.runs[0].0).0, "100");
}

#[test]
fn one_over_each_other_limit_is_a_failed_run_naming_it() {
    let s = setup("limits");
    let plain = || vec![job("build", json!({}))];
    let steps: Vec<Value> = (0..257).map(|i| json!({"name": format!("s{i}")})).collect();
    let long = format!("main{}", "a".repeat(1021));
    let cases = [
        (
            lock(
                (0..65)
                    .map(|i| workflow(&format!("wf{i}"), "main", plain()))
                    .collect(),
            ),
            "has 65 workflows, more than 64 (the limit on workflows per lock file)".to_owned(),
        ),
        (
            lock(vec![workflow(
                "ci",
                "main",
                vec![job("build", json!({"steps": steps}))],
            )]),
            "job \"build\" has 257 steps, more than 256 (the limit on steps per job)".to_owned(),
        ),
        (
            lock(vec![workflow("ci", &long, plain())]),
            "the pattern is 1025 bytes long, more than 1024 (the limit on pattern length)"
                .to_owned(),
        ),
        (
            format!(
                "{}{}",
                lock(vec![workflow("ci", "main", plain())]),
                " ".repeat(1 << 20)
            ),
            "more than 1048576 (the limit on lock-file size)".to_owned(),
        ),
        (
            format!(
                r#"{{"schemaVersion": 29, "x": {}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            "recursion limit exceeded".to_owned(),
        ),
    ];
    for (text, limit) in cases {
        let o = s.deliver(&text);
        assert_eq!(o.status, "lockfile_corrupt", "{limit}: {}", o.error);
        assert!(o.error.contains(&limit), "{limit}: {}", o.error);
        let (run, reason) = refused(&o);
        assert!(reason.contains(&limit), "{reason}");
        s.assert_shown(run, &limit);
    }
    s.assert_up();
}
