//! The seed guide's `kici-admin source …` and `token …` commands, run as written (with --url and
//! --token added, before or after the subcommand) against a real daemon, PostgreSQL and a fake
//! GitHub that checks the App JWT.

use crate::support;

use std::time::Duration;

use support::{daemon::*, fake_github::*, pg::PgCluster};

const OWNER: &str = "1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e";

struct Setup {
    _d: Daemon,
    url: String,
    dir: std::path::PathBuf,
    key_pem: String,
    pg: &'static PgCluster,
    db: String,
    _gh: FakeGitHub,
}

fn setup(app_id: i64) -> Setup {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(app_id, "Main Org App", "main-org-app", public_der);
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_GITHUB_API_URL".into(), gh.url.clone()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    let dir = std::env::temp_dir().join(format!("kici-cli-{}-{app_id}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.pem"), format!("{key_pem}\n")).unwrap();
    std::fs::write(dir.join("new-key.pem"), &key_pem).unwrap();
    std::fs::write(dir.join("webhook-secret.txt"), "whsec-from-file\n").unwrap();
    Setup {
        url: format!("http://{}", d.addr),
        _d: d,
        dir,
        key_pem,
        pg,
        db,
        _gh: gh,
    }
}

impl Setup {
    /// `kici-admin --url U --token T <args>`; panics with the output unless it exits 0.
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

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--url", &self.url, "--token", OWNER];
        all.extend_from_slice(args);
        cli(&all, &[])
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

#[test]
fn seed_github_source_commands() {
    let s = setup(12345);
    // A key GitHub does not accept: GitHub's own reason, nothing stored.
    let (other_key, _) = rsa_key_pair();
    std::fs::write(s.dir.join("other.pem"), other_key).unwrap();
    let out = s.run(&[
        "source",
        "add",
        "github",
        "--name",
        "main-org",
        "--app-id",
        "12345",
        "--private-key",
        &format!("@{}", s.path("other.pem")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error: HTTP 400: GitHub API validation failed: A JSON web token could not be decoded"
    );
    assert_eq!(s.pg.psql(&s.db, "SELECT count(*) FROM sources"), "0");
    let out = s.ok(&[
        "source",
        "add",
        "github",
        "--name",
        "main-org",
        "--app-id",
        "12345",
        "--private-key",
        &format!("@{}", s.path("app.pem")),
        "--webhook-secret",
        "your-webhook-secret",
    ]);
    assert!(
        out.starts_with("Source added: github:12345 (Main Org App)\n"),
        "{out}"
    );
    assert!(out.contains("Webhook URL:  (unavailable"), "{out}");

    let out = s.ok(&["source", "list"]);
    assert!(out.starts_with("GitHub sources:\n  github:12345"), "{out}");
    assert!(
        out.contains("Main Org App") && out.contains("(github)"),
        "{out}"
    );
    assert!(
        out.contains("Generic and local sources are listed per org: add --org <orgId>"),
        "{out}"
    );

    // Global options after the subcommand, and --opt=value, work too.
    let out = cli(
        &[
            "source",
            "update",
            "github:12345",
            "--webhook-secret",
            "new-secret",
            &format!("--url={}", s.url),
            "-t",
            OWNER,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Source updated: github:12345\n");
    assert_eq!(
        s.ok(&["source", "get-webhook-secret", "github:12345"])
            .trim(),
        "new-secret"
    );
    assert_eq!(
        s.ok(&[
            "source",
            "update",
            "github:12345",
            "--private-key",
            &format!("@{}", s.path("new-key.pem"))
        ]),
        "Source updated: github:12345\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["source", "list", "--json"])).expect("--json parses");
    assert_eq!(json["github"][0]["routingKey"], "github:12345");

    // The prompt: declining keeps the source, answering y removes it.
    let mut args = vec![
        "--url",
        &s.url,
        "--token",
        OWNER,
        "source",
        "remove",
        "github:12345",
    ];
    let out = cli_with_stdin(&args, &[], "n\n");
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("Remove source \"github:12345\"? (y/N) ")
            && stdout(&out).contains("Cancelled."),
        "{}",
        stdout(&out)
    );
    assert!(s.ok(&["source", "list"]).contains("github:12345"));
    let out = cli_with_stdin(&args, &[], "y\n");
    assert!(
        stdout(&out).contains("Source removed: github:12345"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    args.push("--yes");
    let out = cli(&args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error: HTTP 404"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn secret_input_modes() {
    let s = setup(777);
    // --from-env feeds the private key.
    let env = vec![("GITHUB_PRIVATE_KEY".to_owned(), s.key_pem.clone())];
    let args = [
        "--url",
        &s.url,
        "--token",
        OWNER,
        "source",
        "add",
        "github",
        "--name",
        "a",
        "--app-id",
        "777",
        "--from-env",
        "GITHUB_PRIVATE_KEY",
        "--webhook-secret",
        &format!("@{}", s.path("webhook-secret.txt")),
    ];
    let out = cli(&args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.ok(&["source", "get-webhook-secret", "github:777"]).trim(),
        "whsec-from-file",
        "@file is read and trimmed"
    );
    s.ok(&["source", "remove", "github:777", "--yes"]);
    // --stdin, as in `cat key.pem | kici-admin source add github --stdin ...`.
    let args = [
        "--url", &s.url, "--token", OWNER, "source", "add", "github", "--name", "a", "--app-id",
        "777", "--stdin",
    ];
    let out = cli_with_stdin(&args, &[], &format!("{}\n", s.key_pem));
    assert!(out.status.success(), "{}", stderr(&out));

    // Errors: unset variable, missing file, two modes for one secret, no key at all.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--from-env", "KICI_TEST_UNSET_VAR"],
            "KICI_TEST_UNSET_VAR",
        ),
        (
            vec!["--private-key", "@/nonexistent/key.pem"],
            "/nonexistent/key.pem",
        ),
        (vec!["--private-key", "x", "--stdin"], "--stdin"),
        (vec![], "Private key is required"),
    ];
    for (extra, expected) in cases {
        let mut a = vec!["source", "add", "github", "--name", "b", "--app-id", "778"];
        a.extend(extra.iter());
        let out = s.run(&a);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        assert!(
            stderr(&out).starts_with("Error: ") && stderr(&out).contains(expected),
            "{a:?}: {}",
            stderr(&out)
        );
    }
    // Without a token: the documented error; --help needs none.
    let out = cli(&["--url", &s.url, "source", "list"], &[]);
    assert_eq!(
        stderr(&out).trim(),
        "Error: --token or KICI_ADMIN_TOKEN is required"
    );
    assert!(cli(&["source", "add", "generic", "--help"], &[])
        .status
        .success());
}

#[test]
fn seed_generic_source_commands() {
    let s = setup(1);
    let out = s.ok(&[
        "source",
        "add",
        "generic",
        "--org",
        "my-org",
        "--name",
        "stripe-webhooks",
        "--verification",
        "hmac_sha256",
        "--secret",
        &format!("@{}", s.path("webhook-secret.txt")),
        "--event-type-header",
        "X-Event-Type",
        "--rate-limit",
        "120",
    ]);
    assert!(
        out.starts_with("Generic source created:\n  ID:           "),
        "{out}"
    );
    let id = out
        .lines()
        .find(|l| l.starts_with("  ID:"))
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert!(
        out.contains("  Name:         stripe-webhooks\n")
            && out.contains(&format!("  Routing key:  generic:my-org:{id}\n"))
            && out.contains("  Enabled:      true"),
        "{out}"
    );
    s.ok(&[
        "source",
        "add",
        "generic",
        "--org",
        "my-org",
        "--name",
        "custom-service",
        "--verification",
        "bearer_token",
        "--secret",
        "my-bearer-token",
        "--event-type-path",
        "$.event.type",
    ]);
    let out = s.ok(&[
        "source",
        "add",
        "generic",
        "--org",
        "my-org",
        "--name",
        "internal-service",
        "--verification",
        "none",
        "--json",
    ]);
    let row: serde_json::Value = serde_json::from_str(&out).expect("--json parses");
    assert_eq!(row["verificationMethod"], "none");

    let out = s.ok(&["source", "get", &id]);
    assert!(out.starts_with("Generic source:\n"), "{out}");
    assert!(
        out.contains("Rate limit:") && out.contains("120 rpm"),
        "{out}"
    );
    assert!(
        !out.contains("whsec-from-file"),
        "the secret is never printed by get"
    );
    let out = s.ok(&["source", "get", &id, "--show-secrets"]);
    assert!(out.contains("whsec-from-file"), "{out}");

    let out = s.ok(&["source", "list", "--org", "my-org"]);
    assert!(
        out.contains("Generic sources:")
            && out.contains("stripe-webhooks")
            && out.contains("custom-service"),
        "{out}"
    );
    let out = s.ok(&[
        "source",
        "update-generic",
        &id,
        "--rate-limit",
        "300",
        "--name",
        "new-name",
    ]);
    assert_eq!(out, format!("Generic source updated: {id} (new-name)\n"));
    assert_eq!(
        s.ok(&["source", "disable", &id]),
        format!("Generic source disabled: {id}\n")
    );
    assert_eq!(
        s.ok(&["source", "enable", &id]),
        format!("Generic source enabled: {id}\n")
    );
    assert_eq!(
        s.ok(&["source", "remove", &id, "--generic", "--yes"]),
        format!("Generic source soft-deleted: {id}\n")
    );
    let out = s.ok(&["source", "list", "--org", "my-org", "--include-deleted"]);
    assert!(out.contains("[deleted]"), "{out}");
    let other = serde_json::from_str::<serde_json::Value>(
        &s.ok(&["source", "list", "--org", "my-org", "--json"]),
    )
    .unwrap()["generic"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.ok(&["source", "remove", &other, "--generic", "--hard", "--yes"]),
        format!("Generic source permanently deleted: {other}\n")
    );

    // No plaintext secret anywhere in the database.
    let dump = s.pg.psql(&s.db, "SELECT string_agg(q::text, ' ') FROM (SELECT g::text FROM generic_webhook_sources g UNION ALL SELECT x::text FROM scoped_secrets x) q(q)");
    assert!(
        !dump.contains("whsec-from-file") && !dump.contains("my-bearer-token"),
        "plaintext secret stored"
    );

    // update-generic rules (docs/operations.md, "Admin CLI").
    let out = s.run(&["source", "update-generic", &id]);
    assert!(
        stderr(&out).contains("no fields to update"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn token_and_db_commands() {
    let s = setup(2);
    let out = s.ok(&["token", "create", "ci-bot", "--role", "auditor"]);
    let mut lines = out.lines();
    let token = lines
        .next()
        .unwrap()
        .strip_prefix("Token created: ")
        .expect("token line")
        .to_owned();
    let id = lines
        .next()
        .unwrap()
        .strip_prefix("Token ID: ")
        .expect("id line")
        .to_owned();
    assert_eq!(
        lines.next(),
        Some("Save this token -- it will not be shown again.")
    );
    assert_eq!(token.len(), 64);
    let list = s.ok(&["token", "list"]);
    assert!(
        list.starts_with("ID ") && list.lines().next().unwrap().contains("  Label  "),
        "{list}"
    );
    assert!(list.contains(&id) && list.contains("ci-bot") && !list.contains(&token));
    // The auditor can read but not write.
    let out = cli(
        &[
            "--url",
            &s.url,
            "--token",
            &token,
            "source",
            "add",
            "generic",
            "--org",
            "o",
            "--name",
            "n",
            "--verification",
            "none",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("HTTP 403") && stderr(&out).contains("context.create"),
        "{}",
        stderr(&out)
    );
    assert!(
        cli(&["--url", &s.url, "--token", &token, "source", "list"], &[])
            .status
            .success()
    );
    assert_eq!(
        s.ok(&["token", "revoke", &id]),
        format!("Token {id} revoked.\n")
    );
    let out = cli(&["--url", &s.url, "--token", &token, "source", "list"], &[]);
    assert!(
        stderr(&out).contains("HTTP 401: Invalid or expired token"),
        "{}",
        stderr(&out)
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["token", "list", "--json"])).unwrap();
    assert!(json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["revoked"] == true));

    // db migrate through the API.
    assert_eq!(s.ok(&["db", "migrate"]), "Database schema is up to date.\n");
    assert!(s
        .ok(&["db", "migrate", "--status"])
        .starts_with("  OK       0001_initial"));
}
