//! `kici-admin orchestrator install | start | status | stop | uninstall` on the real binary,
//! without systemd: the wizard fed over a pipe against a real PostgreSQL and a fake GitHub that
//! checks the App JWT, the detached daemon's lifecycle, and the systemd unit checked by
//! `systemd-analyze` where it exists.

use crate::support;

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

use serde_json::Value;
use support::{daemon::*, fake_github::*, pg::PgCluster};

/// A fresh folder holding the instance folder and KICI_CONFIG_ROOT (so nothing lands in ~).
/// Dropping it stops whatever `start` left running, then removes the folder.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "kici-install-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Sandbox { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.join("instance")
    }

    fn dir_arg(&self) -> String {
        self.dir().display().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "KICI_CONFIG_ROOT".into(),
            self.root.join("config").display().to_string(),
        )]
    }

    /// `kici-admin orchestrator <args> --instance-dir <dir>`.
    fn orch(&self, args: &[&str]) -> Output {
        let mut all = vec!["orchestrator"];
        all.extend_from_slice(args);
        let dir = self.dir_arg();
        all.extend(["--instance-dir", dir.as_str()]);
        cli(&all, &self.env())
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.orch(args);
        assert!(
            out.status.success(),
            "orchestrator {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn env_file(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.env"))
    }

    fn env_var(&self, name: &str, key: &str) -> String {
        let text = std::fs::read_to_string(self.env_file(name)).unwrap();
        let prefix = format!("{key}=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{key} not in the env file:\n{text}"))
            .to_owned()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.dir().exists() {
            let _ = self.orch(&["stop", "--timeout", "5"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn wizard_over_a_pipe_installs_an_instance_that_starts_and_lists_its_github_source() {
    let s = Sandbox::new("wizard");
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(4242, "Main Org App", "main-org-app", public_der);
    std::fs::write(s.root.join("app.pem"), &key_pem).unwrap();
    let db = PgCluster::shared().create_database();
    let port = free_port();
    let pem = s.root.join("app.pem").display().to_string();
    // One answer per line: mode, a database that refuses (asked again), the real one, port,
    // secret key and admin token generated, filesystem storage in the default folder, then
    // the GitHub App source.
    let answers = format!(
        "independent\npostgresql://postgres@127.0.0.1:1/nope\n{db}\n{port}\n\n\nfilesystem\n\ny\nmain-org\n4242\n{pem}\nwhsec-1\n"
    );
    let dir = s.dir_arg();
    let args = [
        "orchestrator",
        "install",
        "--wizard",
        "--name",
        "ci",
        "--instance-dir",
        &dir,
        "--bind-address",
        "127.0.0.1",
        "--github-api-url",
        &gh.url,
    ];
    let out = cli_with_stdin(&args, &s.env(), &answers);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "install --wizard failed:\n{o}{e}");
    assert!(e.contains("Cannot connect: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:1/nope"), "{e}");
    assert!(e.contains("Connected: PostgreSQL 1"), "{e}");
    assert!(
        o.contains("GitHub source: github:4242 (Main Org App) added"),
        "{o}"
    );
    assert_eq!(gh.requests(), 1, "the App was validated with GitHub once");

    let env_file = s.env_file("ci");
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the env file holds secrets");
    assert_eq!(s.env_var("ci", "KICI_MODE"), "independent");
    assert_eq!(s.env_var("ci", "KICI_PORT"), port.to_string());
    assert_eq!(s.env_var("ci", "KICI_STORAGE_TYPE"), "filesystem");
    assert_eq!(
        s.env_var("ci", "KICI_STORAGE_FS_PATH"),
        s.dir().join("data/storage").display().to_string()
    );
    let token = s.env_var("ci", "KICI_BOOTSTRAP_ADMIN_TOKEN");
    let key = s.env_var("ci", "KICI_SECRET_KEY");
    assert_eq!((token.len(), key.len()), (64, 64));
    for secret in [&token, &key, &"whsec-1".to_owned()] {
        assert!(
            !o.contains(secret.as_str()) && !e.contains(secret.as_str()),
            "a secret was printed:\n{o}{e}"
        );
    }
    let manifest = json(&std::fs::read_to_string(s.dir().join(".kici-orchestrator.json")).unwrap());
    assert_eq!(manifest["envFilePath"], env_file.display().to_string());
    assert_eq!(manifest["platform"], "process");

    let started = s.ok(&["start", "--timeout", "30"]);
    assert!(
        started.contains("Orchestrator \"ci\" started (pid "),
        "{started}"
    );
    let status = json(&s.ok(&["status", "--json"]));
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["port"], port, "{status}");

    // The admin CLI finds the instance's URL from its folder; the token is the one in the env file.
    let out = cli(
        &["source", "list", "--instance-dir", &dir, "--token", &token],
        &[],
    );
    let listed = stdout(&out);
    assert!(out.status.success(), "{listed}{}", stderr(&out));
    assert!(
        listed.contains("github:4242") && listed.contains("Main Org App"),
        "{listed}"
    );

    // restart: a new process, ready again; logs: the daemon's own lines from the log file.
    let old_pid = status["pid"].clone();
    let restarted = s.ok(&["restart"]);
    assert!(
        restarted.contains("stopped (pid ") && restarted.contains("started (pid "),
        "{restarted}"
    );
    let status = json(&s.ok(&["status", "--json"]));
    assert_eq!(
        (status["running"].clone(), status["ready"].clone()),
        (true.into(), true.into())
    );
    assert_ne!(status["pid"], old_pid, "restart kept the old process");
    let logs = s.ok(&["logs", "-n", "50"]);
    assert!(logs.contains("Listening on http://127.0.0.1:"), "{logs}");
    assert!(!logs.contains(&token), "the admin token reached the log");

    // Idempotent: the same install again changes nothing and keeps the generated secrets.
    let before = std::fs::read_to_string(&env_file).unwrap();
    let again = s.ok(&[
        "install",
        "--name",
        "ci",
        "--github-app-id",
        "4242",
        "--github-private-key",
        &format!("@{pem}"),
    ]);
    assert!(
        again.contains("already installed with these settings: nothing changed"),
        "{again}"
    );
    assert!(again.contains("github:4242 exists already"), "{again}");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), before);
    // Other settings are refused without --force, naming what would change.
    let other_port = (port + 1).to_string();
    let out = s.orch(&["install", "--name", "ci", "--port", &other_port]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("KICI_PORT: {port} -> {other_port}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), before);

    let stopped = s.ok(&["stop"]);
    assert!(
        stopped.starts_with("Orchestrator \"ci\" stopped (pid "),
        "{stopped}"
    );
    let status = json(&s.ok(&["status", "--json"]));
    assert_eq!(status["running"], false, "{status}");
    assert!(!s.dir().join("ci.pid").exists());

    let out = s.ok(&["uninstall", "--yes"]);
    assert!(out.contains("was not touched"), "{out}");
    assert!(!env_file.exists() && !s.dir().join(".kici-orchestrator.json").exists());
}

#[test]
fn start_fails_fast_with_the_log_when_the_daemon_exits_and_stop_leaves_foreign_pids_alone() {
    let s = Sandbox::new("fail");
    let port = free_port().to_string();
    let dead_db = format!("postgresql://postgres@127.0.0.1:{}/kici", free_port());
    let out = s.ok(&[
        "install",
        "--mode",
        "independent",
        "--database-url",
        &dead_db,
        "--port",
        &port,
        "--bind-address",
        "127.0.0.1",
        "--storage-type",
        "none",
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["changed"], true);
    assert_eq!(report["adminToken"]["generated"], true);
    assert!(!out.contains(&s.env_var("kici-orchestrator", "KICI_BOOTSTRAP_ADMIN_TOKEN")));

    let began = std::time::Instant::now();
    let out = s.orch(&["start", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(
        e.starts_with(
            "Error: the orchestrator exited (exit status: 1) before it was ready. Last log lines:"
        ),
        "{e}"
    );
    assert!(
        e.contains("cannot connect to PostgreSQL"),
        "the daemon's own error is shown: {e}"
    );
    assert!(
        began.elapsed().as_secs() < 30,
        "start waited for the timeout instead of failing fast"
    );
    assert!(!s.dir().join("kici-orchestrator.pid").exists());

    // A pid file naming a live process that is not our daemon: stop must not signal it.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.id())).unwrap();
    let ticks = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    std::fs::write(
        s.dir().join("kici-orchestrator.pid"),
        format!("{}\n{ticks}\n", sleeper.id()),
    )
    .unwrap();
    let out = s.ok(&["stop"]);
    assert!(
        out.contains("is not running (removed a stale pid file)"),
        "{out}"
    );
    assert_eq!(
        sleeper.try_wait().unwrap(),
        None,
        "stop signalled a foreign process"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn install_refuses_conflicts_and_wizard_with_env_file() {
    let s = Sandbox::new("conflict");
    let env = s.root.join("given.env");
    std::fs::write(&env, "KICI_MODE=independent\nKICI_DATABASE_URL=postgresql://x@127.0.0.1/db\nKICI_LOG_LEVEL=debug\n").unwrap();
    let env_arg = env.display().to_string();
    let out = s.orch(&["install", "--wizard", "--env-file", &env_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: Cannot use --wizard with --env-file"),
        "{}",
        stderr(&out)
    );

    s.ok(&["install", "--name", "one", "--env-file", &env_arg]);
    assert_eq!(
        s.env_var("one", "KICI_LOG_LEVEL"),
        "debug",
        "unmanaged keys are kept"
    );
    assert_eq!(s.env_var("one", "KICI_PORT"), "4000");
    let out = s.orch(&[
        "install",
        "--name",
        "two",
        "--mode",
        "independent",
        "--database-url",
        "postgresql://x@h/db",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds the orchestrator instance \"one\", not \"two\""),
        "{}",
        stderr(&out)
    );
    let out = s.orch(&["install", "--name", "one", "--mode", "platform"]);
    assert!(
        stderr(&out).contains("KICI_PLATFORM_URL: is required when KICI_MODE is platform"),
        "{}",
        stderr(&out)
    );
}

/// The unit `install` writes, checked by systemd's own tools: `verify` (syntax, the binary
/// exists) and the `security` exposure score (target ≤ 2.0).
#[test]
fn the_unit_passes_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let s = Sandbox::new("unit");
    let env_file = s.root.join("orch.env");
    std::fs::write(&env_file, "KICI_MODE=independent\n").unwrap();
    let unit =
        kici_orchestrator::service::unit::render(&kici_orchestrator::service::unit::UnitParams {
            name: "kici-verify",
            binary: Path::new(BIN),
            env_file: &env_file,
            user: "root",
            read_write_paths: &[],
            header: &["test"],
        })
        .unwrap();
    let path = s.root.join("kici-verify.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let Some(score) = text
        .split("Overall exposure level for kici-verify.service: ")
        .nth(1)
    else {
        eprintln!("SKIPPED the exposure check: this systemd-analyze has no offline security mode:\n{text}");
        return;
    };
    let score: f64 = score.split_whitespace().next().unwrap().parse().unwrap();
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// Under systemd with WatchdogSec= the daemon pings the watchdog socket at half the interval.
#[test]
fn the_daemon_notifies_ready_and_pings_the_watchdog() {
    let s = Sandbox::new("notify");
    let socket_path = s.root.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let db = PgCluster::shared().create_database();
    let mut env = base_env(&db);
    env.push(("NOTIFY_SOCKET".into(), socket_path.display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "400000".into()));
    let _d = Daemon::start(&env);
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    while !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2) {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); got so far: {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}
