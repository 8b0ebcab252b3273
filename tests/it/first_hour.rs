//! What a new operator runs first, run as they would: `scripts/quickstart.sh` (with the test's
//! binary and PostgreSQL), its printed "Try:" line verbatim, a large listing piped into
//! `head -1`, and `quickstart.sh --help` / `clean`.

use crate::support;

use std::{path::PathBuf, process::Command};

use support::{daemon::*, pg::PgCluster};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/quickstart.sh");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `bash -c <line>` with no KICI_* variables but `env`.
fn shell(line: &str, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(line);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KICI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("run bash")
}

struct Quickstart {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = shell(&format!("{SCRIPT} clean"), &self.env);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn quickstart_help_starts_nothing_and_unknown_arguments_are_refused() {
    let dir = std::env::temp_dir().join(format!("kici-qs-help-{}", std::process::id()));
    let env = [("KICI_QUICKSTART_DIR", dir.display().to_string())];
    for flag in ["--help", "-h"] {
        let out = shell(&format!("{SCRIPT} {flag}"), &env);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("Usage: scripts/quickstart.sh"));
    }
    let out = shell(&format!("{SCRIPT} --hepl"), &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown argument: --hepl"));
    assert!(!dir.exists(), "--help created {}", dir.display());
}

#[test]
fn quickstart_try_line_works_verbatim_and_a_closed_pipe_is_success() {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let dir = std::env::temp_dir().join(format!("kici-qs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let qs = Quickstart {
        env: vec![
            ("KICI_QUICKSTART_DIR", dir.display().to_string()),
            ("KICI_QUICKSTART_BIN", BIN.to_owned()),
            ("KICI_DATABASE_URL", db.clone()),
            ("KICI_PORT", free_port().to_string()),
        ],
        dir,
    };
    let out = shell(SCRIPT, &qs.env);
    let printed = stdout(&out);
    assert!(out.status.success(), "{printed}{}", stderr(&out));
    let try_line = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("Try:"))
        .unwrap_or_else(|| panic!("no Try: line in\n{printed}"))
        .trim()
        .to_owned();
    // Run from another folder, with no token in the environment: the line as printed.
    let out = shell(&format!("cd / && {try_line}"), &[]);
    assert!(out.status.success(), "{try_line}: {}", stderr(&out));
    assert!(stdout(&out).contains("hello"), "{}", stdout(&out));

    // More than 64 KiB of JSON into `head -1`: exit 0, no panic.
    let admin = format!("{BIN} --instance-dir {}", qs.dir.join("instance").display());
    let addr = {
        let out = shell(&format!("{admin} -v token list"), &[]);
        let err = stderr(&out);
        assert!(
            err.contains("admin token KICI_BOOTSTRAP_ADMIN_TOKEN from"),
            "-v does not say where the token came from: {err}"
        );
        let url = err
            .lines()
            .find_map(|l| l.strip_prefix("kici-admin: admin URL http://"))
            .and_then(|l| l.split(['/', ' ']).next())
            .expect("-v names the URL")
            .to_owned();
        url.parse().expect("host:port")
    };
    let env_text =
        std::fs::read_to_string(qs.dir.join("instance/kici-quickstart.env")).expect("env file");
    let token = env_text
        .lines()
        .find_map(|l| l.strip_prefix("KICI_BOOTSTRAP_ADMIN_TOKEN="))
        .expect("bootstrap token")
        .to_owned();
    for i in 0..300 {
        let body = format!(r#"{{"label":"bulk-token-number-{i:04}","role":"admin"}}"#);
        let r = request(
            addr,
            "POST",
            "/api/v1/admin/tokens",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert!(r.status < 300, "token {i}: {} {:?}", r.status, r.json());
    }
    let full = shell(&format!("{admin} token list --json"), &[]);
    assert!(full.stdout.len() > 64 * 1024, "{} bytes", full.stdout.len());
    for line in [
        format!("set -o pipefail; {admin} token list --json | head -1"),
        format!("set -o pipefail; {admin} token list | head -1"),
        format!("set -o pipefail; {admin} token list --json | true"),
    ] {
        let out = shell(&line, &[]);
        assert!(
            out.status.success(),
            "{line}: {:?} {}",
            out.status,
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }

    walk_json_outputs(&admin);

    // stop, then clean: nothing left behind.
    let out = shell(&format!("{SCRIPT} clean"), &qs.env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!qs.dir.exists());
}

#[test]
fn a_flood_of_refused_webhooks_logs_one_line_per_source_and_reason() {
    use support::webhook::{generic_source, post, sign};
    const OWNER: &str = "3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f";
    let pg = PgCluster::shared();
    let d = owner_daemon(&pg.create_database(), OWNER);
    generic_source(
        &d,
        OWNER,
        "acme",
        serde_json::json!({ "name": "stripe", "verificationConfig": { "secret": "whsec-flood" } }),
    );
    let body = br#"{"card":"4242-secret-body"}"#;
    let wrong = format!("sha256={}", sign("not-the-secret", body));
    for _ in 0..30 {
        let r = post(
            &d,
            "/webhook/acme/generic/stripe",
            &[("X-Signature-256", &wrong)],
            body,
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"], "Invalid signature");
        assert_eq!(
            post(&d, "/webhook/acme/generic/nope", &[], body).status,
            404
        );
    }
    // The 202 of a good delivery after the flood shows the refusals were all handled.
    let good = format!("sha256={}", sign("whsec-flood", body));
    let r = post(
        &d,
        "/webhook/acme/generic/stripe",
        &[("X-Signature-256", &good)],
        body,
    );
    assert_eq!(r.status, 202);
    let logs = || format!("{}{}", d.stdout(), d.stderr());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !logs().contains("acme/generic/nope") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = logs();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused.iter().any(|l| l.contains("401")
        && l.contains("Invalid signature")
        && l.contains("acme/generic/stripe")));
    assert!(refused.iter().any(|l| l.contains("404")
        && l.contains("Unknown source")
        && l.contains("acme/generic/nope")));
    assert!(!text.contains("whsec-flood") && !text.contains("4242-secret-body"));
}

/// Every key at any depth is camelCase (README, "Output"); `path` names the offender.
fn camel_keys(v: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let camel = k.starts_with(|c: char| c.is_ascii_lowercase())
                    && k.chars().all(|c| c.is_ascii_alphanumeric());
                if !camel {
                    bad.push(format!("{path}.{k}"));
                }
                camel_keys(v, &format!("{path}.{k}"), bad);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| camel_keys(v, path, bad)),
        _ => {}
    }
}

/// Runs the commands with `--json` against the quickstart's instance: each output is one JSON
/// document (python3 -m json.tool accepts it) with camelCase keys.
fn walk_json_outputs(admin: &str) {
    let run = |args: &str| -> serde_json::Value {
        let line = format!("{admin} {args}");
        let out = shell(&line, &[]);
        assert!(out.status.success(), "{line}: {}", stderr(&out));
        let checked = Command::new("python3")
            .args(["-m", "json.tool"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&out.stdout)?;
                c.wait()
            })
            .expect("python3");
        assert!(checked.success(), "{line}: not JSON:\n{}", stdout(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut bad = Vec::new();
        camel_keys(&v, "", &mut bad);
        assert!(bad.is_empty(), "{line}: keys not camelCase: {bad:?}");
        v
    };
    let added = run("source add generic --org walk --name w1 --secret s3cret-walk --json");
    assert!(added["webhookUrl"]
        .as_str()
        .is_some_and(|u| u.ends_with("/webhook/walk/generic/w1")));
    let id = added["id"].as_str().expect("id").to_owned();
    for args in [
        "orchestrator status --json".to_owned(),
        "source list --json".to_owned(),
        "source list --org walk --json".to_owned(),
        format!("source get {id} --json"),
        format!("source update-generic {id} --rate-limit 300 --json"),
        format!("source disable {id} --json"),
        format!("source enable {id} --json"),
        "token create walker --role auditor --json".to_owned(),
        "token list --json".to_owned(),
        format!(
            "storage check --env-file {}/kici-quickstart.env --json",
            admin.rsplit(' ').next().unwrap()
        ),
        "agent-token create --label linux --json".to_owned(),
        "agent-token list --json".to_owned(),
        "runs list --json".to_owned(),
        "db migrate --status --json".to_owned(),
        "orchestrator restart --json".to_owned(),
        format!("source remove {id} --generic --yes --json"),
    ] {
        run(&args);
    }
    let stopped = run("orchestrator stop --json");
    assert_eq!(stopped["running"], false);
    let gone = run("orchestrator uninstall --yes --json");
    assert_eq!(gone["uninstalled"], true);
    assert_eq!(gone["databaseUsedBy"], serde_json::json!([]));
}

#[test]
fn the_wizard_refuses_another_instances_database_without_its_key_and_joins_it_with_it() {
    use support::webhook::generic_source;
    const OWNER: &str = "4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e";
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let d = owner_daemon(&db, OWNER);
    // A sealed secret for the key check to open.
    generic_source(
        &d,
        OWNER,
        "acme",
        serde_json::json!({ "name": "s", "verificationConfig": { "secret": "sealed-one" } }),
    );
    let root = std::env::temp_dir().join(format!("kici-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let cli_env = [("KICI_CONFIG_ROOT".to_owned(), root.display().to_string())];
    let dir = root.join("second").display().to_string();
    let port = free_port();
    let install = |answers: &str, extra: &[&str]| {
        let mut args = vec![
            "orchestrator",
            "install",
            "--wizard",
            "--name",
            "second",
            "--instance-dir",
            &dir,
        ];
        args.extend_from_slice(extra);
        cli_with_stdin(&args, &cli_env, answers)
    };
    let env_file = root.join("second/second.env");

    // Without the key: a wrong one and a blank line, then the input ends — refused.
    let wrong = "ab".repeat(32);
    let out = install(&format!("independent\n{db}\n{wrong}\n\n"), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(
        err.contains("already holds a KiCI orchestrator instance"),
        "{err}"
    );
    assert!(
        err.contains("does not decrypt the instance's stored secrets"),
        "{err}"
    );
    assert!(err.contains("Secret key of that instance"), "{err}");
    assert!(!env_file.exists(), "nothing is written on refusal");

    // The same without the wizard: refused, naming --force-new-instance.
    let flags = |extra: &[&str]| {
        let mut args = vec![
            "orchestrator",
            "install",
            "--name",
            "third",
            "--instance-dir",
        ];
        let third = root.join("third").display().to_string();
        let port = free_port().to_string();
        let mut rest = vec![
            "--mode",
            "independent",
            "--database-url",
            &db,
            "--port",
            &port,
            "--storage-type",
            "none",
        ];
        rest.extend_from_slice(extra);
        args.push(&third);
        args.extend(rest);
        cli(&args, &cli_env)
    };
    let out = flags(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--force-new-instance"),
        "{}",
        stderr(&out)
    );
    let out = flags(&["--secret-key", TEST_KEY, "--admin-token", OWNER]);
    assert!(out.status.success(), "{}", stderr(&out));

    // With that instance's key and bootstrap token: installed, joined, nothing generated.
    let answers = format!("independent\n{db}\n{TEST_KEY}\n{OWNER}\n{port}\nnone\nn\n\n");
    let out = install(&answers, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert!(text.contains(&format!("KICI_SECRET_KEY={TEST_KEY}")));
    assert!(text.contains(&format!("KICI_BOOTSTRAP_ADMIN_TOKEN={OWNER}")));
    assert!(text.contains("KICI_BIND_ADDRESS=127.0.0.1"), "{text}");

    // Two instances on one database: uninstalling one names the other.
    let out = cli(
        &["orchestrator", "uninstall", "--instance-dir", &dir, "--yes"],
        &cli_env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is still used by: third"),
        "{}",
        stdout(&out)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn clean_forgets_a_host_wide_registration_left_by_an_earlier_quickstart() {
    let pg = PgCluster::shared();
    let dir = std::env::temp_dir().join(format!("kici-qs-legacy-{}", std::process::id()));
    let host = std::env::temp_dir().join(format!("kici-qs-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).unwrap();
    let qs = Quickstart {
        env: vec![
            ("KICI_QUICKSTART_DIR", dir.display().to_string()),
            ("KICI_QUICKSTART_BIN", BIN.to_owned()),
            ("KICI_DATABASE_URL", pg.create_database()),
            ("KICI_PORT", free_port().to_string()),
            ("KICI_CONFIG_ROOT", host.display().to_string()),
        ],
        dir,
    };
    let out = shell(SCRIPT, &qs.env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !host.join("instances.json").exists(),
        "the quickstart registers nothing host-wide"
    );
    // What an earlier quickstart left: the instance in the host's index.
    let instance = qs.dir.join("instance").display().to_string();
    let entry = serde_json::json!([{"component": "orchestrator", "name": "kici-quickstart",
        "platform": "process", "isUserLevel": true, "instanceDir": instance}]);
    let index = host.join("instances.json");
    std::fs::write(&index, serde_json::to_string_pretty(&entry).unwrap()).unwrap();
    let out = shell(&format!("{SCRIPT} clean"), &qs.env);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = std::fs::read_to_string(&index).unwrap_or_default();
    assert!(!left.contains(&instance), "{left}");
    assert!(!qs.dir.exists());
    let _ = std::fs::remove_dir_all(&host);
}
