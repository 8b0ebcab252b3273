//! Argument parsing and command dispatch. Parsing is argh's, after `normalize_args` has made a
//! commander-style command line (docs/operations.md, "Admin CLI") acceptable to it: `--opt=value`
//! is split, `-h` becomes `--help`, and the global `-u/--url`, `-t/--token`, `--instance-dir`,
//! `-v/--verbose` and
//! `-V/--version` are moved before the subcommand, wherever the user wrote them. Command bodies
//! live in one file per group; the admin API is reached through `client`, and what is printed is
//! built by pure functions.

pub mod agent;
pub mod audit;
pub mod client;
pub mod db;
pub mod diagnose;
pub mod environment;
pub mod event_log;
pub mod event_log_cmd;
pub mod event_log_replay;
pub mod instance;
pub mod local_instance;
mod local_repo;
pub mod orchestrator;
pub mod output;
pub mod rotate_key;
pub mod runs;
pub mod runs_logs;
pub mod runs_rerun;
pub mod runs_show;
pub mod secret;
pub mod secret_input;
pub mod source;
pub mod source_generic;
mod source_generic_body;
pub mod source_local;
pub mod source_local_hook;
pub mod source_output;
pub mod storage;
pub mod token;
pub mod value_input;
pub mod variable;

use crate::cli::output::outln;
use argh::FromArgs;

use crate::Error;

/// KiCI orchestrator and admin CLI.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help", "help"))]
pub struct TopLevel {
    /// orchestrator URL, with its KICI_BASE_PATH if any (default: $KICI_ADMIN_URL, else the
    /// instance's KICI_PORT and KICI_BASE_PATH on localhost, else http://localhost:4000)
    #[argh(option, short = 'u')]
    pub url: Option<String>,
    /// admin API token (default: $KICI_ADMIN_TOKEN, else the instance's
    /// KICI_BOOTSTRAP_ADMIN_TOKEN when its env file is readable)
    #[argh(option, short = 't')]
    pub token: Option<String>,
    /// the orchestrator instance folder (holding .kici-orchestrator.json) whose env file gives
    /// the default URL and token (default: the current directory when it holds one, else the
    /// only instance registered on this host)
    #[argh(option)]
    pub instance_dir: Option<String>,
    /// say on stderr where the admin URL and token were taken from
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// print the version and exit (also -V, --version)
    #[argh(switch, short = 'V')]
    pub cli_version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// No Debug: the source commands hold secrets given on the command line. Parsed once per
/// process, so the size of the largest variant does not matter (and argh cannot box one).
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Command {
    Orchestrator(orchestrator::OrchestratorCmd),
    Source(source::SourceCmd),
    Token(token::TokenCmd),
    Db(db::DbCmd),
    Storage(storage::StorageCmd),
    AgentToken(agent::AgentTokenCmd),
    Agent(agent::AgentCmd),
    Runs(runs::RunsCmd),
    EventLog(event_log_cmd::EventLogCmd),
    Diagnose(diagnose::DiagnoseCmd),
    Secret(secret::SecretCmd),
    Environment(environment::EnvironmentCmd),
    Variable(variable::VariableCmd),
    RotateKey(rotate_key::RotateKeyCmd),
    Audit(audit::AuditCmd),
}

/// Global options shared by the commands that talk to the admin API.
#[derive(Clone)]
pub struct Globals {
    pub url: Option<String>,
    pub token: Option<String>,
    pub instance_dir: Option<String>,
    pub verbose: bool,
}

/// Hand-written so that a debug print can never show the token.
impl std::fmt::Debug for Globals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Globals")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("instance_dir", &self.instance_dir)
            .field("verbose", &self.verbose)
            .finish()
    }
}

pub fn version_line() -> String {
    format!(
        "kici-admin {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("KICI_BUILD_COMMIT")
    )
}

/// Options of the top level that take a value, and the switches meaning "version".
const GLOBAL_WITH_VALUE: &[&str] = &["-u", "--url", "-t", "--token", "--instance-dir"];
const VERSION_FLAGS: &[&str] = &["-V", "--version", "--cli-version"];
const VERBOSE_FLAGS: &[&str] = &["-v", "--verbose"];

/// Rewrites argv (without the program name) so argh accepts commander-style input.
pub fn normalize_args(args: &[String]) -> Vec<String> {
    let mut globals = Vec::new();
    let mut rest = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            rest.push(arg.clone());
            rest.extend(iter.cloned());
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") && n.len() > 2 => {
                (n.to_owned(), Some(v.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if name == "-h" && inline.is_none() {
            // argh knows -h only at the top level; commander takes it everywhere.
            rest.push("--help".to_owned());
        } else if VERSION_FLAGS.contains(&name.as_str()) && inline.is_none() {
            globals.push("--cli-version".to_owned());
        } else if VERBOSE_FLAGS.contains(&name.as_str()) && inline.is_none() {
            globals.push("--verbose".to_owned());
        } else if GLOBAL_WITH_VALUE.contains(&name.as_str()) {
            globals.push(name);
            match inline {
                Some(v) => globals.push(v),
                None => globals.extend(iter.next().cloned()),
            }
        } else {
            rest.push(name);
            rest.extend(inline);
        }
    }
    globals.extend(rest);
    globals
}

/// Runs a parsed command line.
pub fn dispatch(top: TopLevel) -> Result<(), Error> {
    if top.cli_version {
        outln!("{}", version_line());
        return Ok(());
    }
    let globals = Globals {
        url: top.url,
        token: top.token,
        instance_dir: top.instance_dir,
        verbose: top.verbose,
    };
    match top.command {
        None => Err(Error::Usage(
            "a command is required: run kici-admin --help to see them".into(),
        )),
        Some(Command::Orchestrator(cmd)) => orchestrator::run(cmd, &globals),
        Some(Command::Source(cmd)) => source::run(cmd, &globals),
        Some(Command::Token(cmd)) => token::run(cmd, &globals),
        Some(Command::Db(cmd)) => db::run(cmd, &globals),
        Some(Command::Storage(cmd)) => storage::run(cmd, &globals),
        Some(Command::AgentToken(cmd)) => agent::run(cmd, &globals),
        Some(Command::Agent(cmd)) => agent::run_agent(cmd, &globals),
        Some(Command::Runs(cmd)) => runs::run(cmd, &globals),
        Some(Command::EventLog(cmd)) => event_log_cmd::run(cmd, &globals),
        Some(Command::Diagnose(cmd)) => diagnose::run(cmd, &globals),
        Some(Command::Secret(cmd)) => secret::run(cmd, &globals),
        Some(Command::Environment(cmd)) => environment::run(cmd, &globals),
        Some(Command::Variable(cmd)) => variable::run(cmd, &globals),
        Some(Command::RotateKey(cmd)) => rotate_key::run(cmd, &globals),
        Some(Command::Audit(cmd)) => audit::run(cmd, &globals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn hoists_globals_and_splits_equals() {
        assert_eq!(
            n(&["db", "migrate", "--url", "http://x", "--status"]),
            ["--url", "http://x", "db", "migrate", "--status"]
        );
        assert_eq!(n(&["db", "migrate", "-t=abc"]), ["db", "migrate", "-t=abc"]);
        assert_eq!(
            n(&[
                "db",
                "migrate",
                "--token=abc",
                "--database-url=postgres://a?b=c"
            ]),
            [
                "--token",
                "abc",
                "db",
                "migrate",
                "--database-url",
                "postgres://a?b=c"
            ]
        );
        assert_eq!(n(&["--version"]), ["--cli-version"]);
        assert_eq!(n(&["db", "-V"]), ["--cli-version", "db"]);
        assert_eq!(n(&["x", "--", "--url", "y"]), ["x", "--", "--url", "y"]);
        assert_eq!(n(&["source", "list", "-h"]), ["source", "list", "--help"]);
        assert_eq!(
            n(&["source", "list", "-v"]),
            ["--verbose", "source", "list"]
        );
    }

    #[test]
    fn hoists_instance_dir_in_both_spellings() {
        assert_eq!(
            n(&["source", "list", "--instance-dir", "/srv/ci", "--json"]),
            ["--instance-dir", "/srv/ci", "source", "list", "--json"]
        );
        assert_eq!(
            n(&["token", "list", "--instance-dir=/srv/ci", "-t", "tok"]),
            ["--instance-dir", "/srv/ci", "-t", "tok", "token", "list"]
        );
        let args = n(&["source", "list", "--instance-dir=./deploy"]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let top = TopLevel::from_args(&["kici-admin"], &refs).expect("parses");
        assert_eq!(top.instance_dir.as_deref(), Some("./deploy"));
    }

    #[test]
    fn every_command_parses_after_normalisation() {
        let lines: &[&[&str]] = &[
            &[
                "source",
                "add",
                "github",
                "--name",
                "main-org",
                "--app-id",
                "12345",
                "--private-key",
                "@/path/to/app.pem",
                "--webhook-secret",
                "s",
            ],
            &[
                "source",
                "add",
                "generic",
                "--org",
                "my-org",
                "--name",
                "n",
                "--verification",
                "hmac_sha256",
                "--secret",
                "@/p",
                "--event-type-header",
                "X-Event-Type",
                "--rate-limit",
                "120",
            ],
            &[
                "source",
                "list",
                "--org",
                "my-org",
                "--include-deleted",
                "--json",
            ],
            &["source", "get", "id", "--show-secrets"],
            &[
                "source",
                "update",
                "github:12345",
                "--webhook-secret",
                "new-secret",
            ],
            &[
                "source",
                "update-generic",
                "id",
                "--rate-limit",
                "300",
                "--name",
                "new-name",
            ],
            &["source", "enable", "id"],
            &["source", "disable", "id"],
            &["source", "remove", "id", "--generic", "--hard", "--yes"],
            &["source", "get-webhook-secret", "github:1"],
            &[
                "token",
                "create",
                "ci",
                "--role",
                "admin",
                "--routing-key",
                "github:1",
            ],
            &["token", "list", "--json"],
            &["token", "revoke", "id"],
            &["db", "migrate", "--status"],
        ];
        for line in lines {
            let args = n(line);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert!(
                TopLevel::from_args(&["kici-admin"], &refs).is_ok(),
                "does not parse: {line:?}"
            );
        }
    }

    #[test]
    fn argh_accepts_the_normalized_line() {
        let args = n(&["db", "migrate", "--status", "-u", "http://h:4000", "--json"]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let top = TopLevel::from_args(&["kici-admin"], &refs).expect("parses");
        assert_eq!(top.url.as_deref(), Some("http://h:4000"));
        match top.command {
            Some(Command::Db(db::DbCmd {
                command: db::DbSub::Migrate(m),
            })) => assert!(m.status && m.json),
            _ => panic!("not db migrate"),
        }
    }
}
