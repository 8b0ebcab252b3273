//! Argument parsing and command dispatch. Parsing is argh's, after `normalize_args` has made a
//! commander-style command line (spec-admin.md §7.1) acceptable to it: `--opt=value` is split,
//! and the global `-u/--url`, `-t/--token` and `-V/--version` are moved before the subcommand,
//! wherever the user wrote them. Command bodies live in one file per group and call library code.

pub mod db;
pub mod orchestrator;
pub mod output;

use argh::FromArgs;

use crate::Error;

/// KiCI orchestrator and admin CLI.
#[derive(FromArgs, Debug)]
#[argh(help_triggers("-h", "--help", "help"))]
pub struct TopLevel {
    /// admin API base URL (default: $KICI_ADMIN_URL, else http://localhost:8080)
    #[argh(option, short = 'u')]
    pub url: Option<String>,
    /// admin API token (default: $KICI_ADMIN_TOKEN)
    #[argh(option, short = 't')]
    pub token: Option<String>,
    /// print the version and exit (also -V, --version)
    #[argh(switch, short = 'V')]
    pub cli_version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Orchestrator(orchestrator::OrchestratorCmd),
    Db(db::DbCmd),
}

/// Global options shared by the commands that talk to the admin API.
#[derive(Debug, Clone)]
pub struct Globals {
    pub url: Option<String>,
    pub token: Option<String>,
}

pub fn version_line() -> String {
    format!(
        "kici-admin {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("KICI_BUILD_COMMIT")
    )
}

/// Options of the top level that take a value, and the switches meaning "version".
const GLOBAL_WITH_VALUE: &[&str] = &["-u", "--url", "-t", "--token"];
const VERSION_FLAGS: &[&str] = &["-V", "--version", "--cli-version"];

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
        if VERSION_FLAGS.contains(&name.as_str()) && inline.is_none() {
            globals.push("--cli-version".to_owned());
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
        println!("{}", version_line());
        return Ok(());
    }
    let globals = Globals {
        url: top.url,
        token: top.token,
    };
    match top.command {
        None => Err(Error::Usage(
            "a command is required: run kici-admin --help to see them".into(),
        )),
        Some(Command::Orchestrator(cmd)) => orchestrator::run(cmd, &globals),
        Some(Command::Db(cmd)) => db::run(cmd, &globals),
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
            other => panic!("unexpected {other:?}"),
        }
    }
}
