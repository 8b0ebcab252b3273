//! `kici-admin secret|environment|variable|rotate-key|audit` end to end against a real daemon:
//! every value input mode, `--dry-run`, `--confirm-fingerprint`, confirmations, `--json` and
//! `--help`; no command prints a secret value.

use crate::support;

use std::{process::Output, time::Duration};

use serde_json::Value;
use support::{
    daemon::{cli, cli_with_stdin, stderr, stdout, Daemon},
    pg::PgCluster,
};

use super::secrets_admin::daemon_env;

const OWNER: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const VALUES: [&str; 4] = [
    "cli-piped-value",
    "cli-env-value",
    "cli-file-value",
    "cli-literal-value",
];

struct Cli {
    env: Vec<(String, String)>,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let out = match stdin {
            Some(input) => cli_with_stdin(args, &self.env, input),
            None => cli(args, &self.env),
        };
        let all = format!("{}{}", stdout(&out), stderr(&out));
        for v in VALUES {
            assert!(
                !all.contains(v),
                "kici-admin {args:?} printed a value:\n{all}"
            );
        }
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "kici-admin {args:?}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert_eq!(
            out.status.code(),
            Some(1),
            "kici-admin {args:?} should fail:\n{}",
            stdout(&out)
        );
        stderr(&out)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON")
    }
}

#[test]
fn secret_environment_variable_rotate_and_audit_commands() {
    let pg = PgCluster::shared();
    let url = pg.create_database();
    let d = Daemon::start(&daemon_env(&url));
    d.wait_ready_status(200, Duration::from_secs(10));
    let dir = std::env::temp_dir().join(format!("kici-secrets-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("value.txt");
    std::fs::write(&file, format!("{}\n", VALUES[2])).unwrap();
    let file = file.display().to_string();
    let c = Cli {
        env: vec![
            ("KICI_ADMIN_URL".into(), format!("http://{}", d.addr)),
            ("KICI_ADMIN_TOKEN".into(), OWNER.into()),
            ("CLI_SECRET_SOURCE".into(), VALUES[1].into()),
        ],
    };

    // Standard input when it is not a terminal (one trailing newline dropped).
    let out = c.run(
        &["secret", "set", "acme", "aws/prod", "PIPED"],
        Some(&format!("{}\n", VALUES[0])),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Secret 'PIPED' set in scope 'aws/prod' for org acme.\n"
    );
    c.ok(&[
        "secret",
        "set",
        "--org",
        "acme",
        "--org-wide",
        "--key",
        "FROM_ENV",
        "--from-env",
        "CLI_SECRET_SOURCE",
    ]);
    c.ok(&[
        "secret",
        "set",
        "acme",
        "aws/prod",
        "FROM_FILE",
        "--from-file",
        &file,
    ]);
    let out = c.run(
        &[
            "secret", "set", "acme", "aws/prod", "LITERAL", "--value", VALUES[3],
        ],
        None,
    );
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("warning: --value puts the secret in shell history"),
        "{}",
        stderr(&out)
    );

    // --dry-run writes nothing; --confirm-fingerprint refuses a mismatch before writing.
    let sha = kici_orchestrator::crypto::sha256_hex(VALUES[2].as_bytes());
    let dry = c.ok(&[
        "secret",
        "set",
        "acme",
        "aws/prod",
        "DRY",
        "--from-file",
        &file,
        "--dry-run",
    ]);
    assert_eq!(
        dry,
        format!("[dry-run] would set secret 'DRY' in scope 'aws/prod' for org acme (14 chars, source=file, sha256={sha})\n")
    );
    let err = c.fails(&[
        "secret",
        "set",
        "acme",
        "aws/prod",
        "MISMATCH",
        "--from-file",
        &file,
        "--confirm-fingerprint",
        &"0".repeat(64),
    ]);
    assert!(
        err.contains("--confirm-fingerprint does not match") && err.contains("nothing was written"),
        "{err}"
    );
    c.ok(&[
        "secret",
        "set",
        "acme",
        "aws/prod",
        "CONFIRMED",
        "--from-file",
        &file,
        "--confirm-fingerprint",
        &sha,
    ]);
    let err = c.fails(&[
        "secret",
        "set",
        "acme",
        "aws/prod",
        "X",
        "--value",
        "a",
        "--from-env",
        "CLI_SECRET_SOURCE",
    ]);
    assert!(err.contains("Ambiguous input mode"), "{err}");
    let err = c.fails(&["secret", "set", "acme", "__source__/x", "K", "--value", "v"]);
    assert!(
        err.contains("HTTP 400") && err.contains("reserved"),
        "{err}"
    );

    assert_eq!(
        c.ok(&["secret", "scopes", "acme"]),
        "  - __org__\n  - aws/prod\n"
    );
    assert_eq!(
        c.ok(&["secret", "list", "acme", "aws/prod"]),
        "  - CONFIRMED\n  - FROM_FILE\n  - LITERAL\n  - PIPED\n"
    );
    assert_eq!(
        c.json(&["secret", "list", "acme", "__org__", "--json"])["keys"][0],
        "FROM_ENV"
    );
    assert_eq!(c.ok(&["secret", "scopes", "nobody"]), "No scopes found.\n");
    // Deleting asks first; without a terminal to ask on, --yes is required.
    let err = c.fails(&["secret", "delete", "acme", "aws/prod", "LITERAL"]);
    assert!(err.contains("add --yes"), "{err}");
    assert_eq!(
        c.ok(&["secret", "delete", "acme", "aws/prod", "LITERAL", "--yes"]),
        "Secret 'LITERAL' deleted from scope 'aws/prod' for org acme.\n"
    );

    // Environments, bindings, variables.
    let created = c.ok(&["environment", "create", "--org", "acme", "--name", "prod"]);
    assert!(
        created.starts_with("Environment 'prod' created for org acme (id "),
        "{created}"
    );
    let v = c.json(&[
        "environment",
        "create",
        "--org",
        "acme",
        "--name",
        "preview",
        "--glob-pattern",
        "preview-*",
        "--allow-untrusted",
        "--json",
    ]);
    assert_eq!(v["created"], true);
    assert_eq!(
        c.ok(&[
            "environment",
            "bind",
            "--org",
            "acme",
            "--name",
            "prod",
            "--scope",
            "aws/prod"
        ]),
        "Environment 'prod' bound to scope 'aws/prod'.\n"
    );
    let err = c.fails(&[
        "environment",
        "bind",
        "--org",
        "acme",
        "--name",
        "nope",
        "--scope",
        "x",
    ]);
    assert!(
        err.contains("HTTP 404: environment not found (org=acme, name=nope)"),
        "{err}"
    );
    c.ok(&[
        "variable",
        "set",
        "acme",
        "prod",
        "REGION",
        "--value",
        "eu-west-1",
        "--locked",
    ]);
    assert_eq!(
        c.ok(&["variable", "list", "acme", "prod"]),
        "  REGION=eu-west-1 (locked)\n"
    );
    let list = c.ok(&["environment", "list", "--org", "acme", "--include-secrets"]);
    assert!(
        list.contains("preview | glob preview-* | yes | yes | -"),
        "{list}"
    );
    assert!(
        list.contains("prod | fixed | no | yes | aws/prod | keys: CONFIRMED, FROM_FILE, PIPED"),
        "{list}"
    );
    let shown = c.ok(&["environment", "show", "--org", "acme", "--name", "prod"]);
    assert!(
        shown.contains("Bindings:\n  - aws/prod\nVariables:\n  REGION=eu-west-1 (locked)"),
        "{shown}"
    );
    c.ok(&["variable", "delete", "acme", "prod", "REGION"]);
    assert_eq!(
        c.ok(&["variable", "list", "acme", "prod"]),
        "No variables found.\n"
    );
    c.ok(&[
        "environment",
        "unbind",
        "--org",
        "acme",
        "--name",
        "prod",
        "--scope",
        "aws/prod",
    ]);
    c.ok(&[
        "environment",
        "delete",
        "--org",
        "acme",
        "--name",
        "preview",
        "--yes",
    ]);
    let names: Vec<Value> = c.json(&["environment", "list", "--org", "acme", "--json"])
        ["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, [Value::from("prod")]);

    // rotate-key (same key: a re-seal) and the audit log.
    let rotated = c.ok(&["rotate-key"]);
    assert!(
        rotated.starts_with("Re-encrypted 4 secrets, 0 config versions.\n0 of them"),
        "{rotated}"
    );
    let audit = c.ok(&[
        "audit",
        "--org",
        "acme",
        "--action",
        "setSecret",
        "--since",
        "1h",
    ]);
    let rows: Vec<&str> = audit.lines().skip(2).collect();
    assert_eq!(rows.len(), 5, "{audit}");
    assert!(
        rows.iter()
            .all(|r| r.contains("| setSecret | acme |") && r.ends_with("| bootstrap (owner) | -")),
        "{audit}"
    );
    let entries = c.json(&["audit", "--action", "rotateKey", "--json"]);
    assert_eq!(entries["entries"][0]["metadata"]["reEncrypted"], 4);
    let err = c.fails(&["audit", "--since", "yesterday"]);
    assert!(err.contains("since"), "{err}");

    // purge: --confirm, --yes without a terminal; source credentials are never touched.
    let err = c.fails(&["secret", "purge", "--org", "acme", "--yes"]);
    assert!(err.contains("add --confirm"), "{err}");
    let err = c.fails(&["secret", "purge", "--org", "acme", "--confirm"]);
    assert!(err.contains("add --yes"), "{err}");
    assert_eq!(
        c.ok(&["secret", "purge", "--confirm", "--org", "acme", "--yes"]),
        "secret purge: deleted=4 (acme)\n"
    );
    assert_eq!(c.ok(&["secret", "scopes", "acme"]), "No scopes found.\n");

    // --help everywhere, without a token.
    for cmd in [
        &["secret", "set", "--help"][..],
        &["secret", "--help"],
        &["secret", "purge", "--help"],
        &["environment", "create", "--help"],
        &["variable", "set", "--help"],
        &["rotate-key", "--help"],
        &["audit", "--help"],
    ] {
        let out = cli(cmd, &[]);
        assert!(
            out.status.success() && stdout(&out).contains("Usage:"),
            "{cmd:?}: {}",
            stdout(&out)
        );
    }
    pg.assert_dump_lacks(&url, &VALUES);
    let _ = std::fs::remove_dir_all(&dir);
}
