//! `kici-admin diagnose [--env-file FILE] [--json]` (docs/operations.md, "Diagnose"): against a
//! running orchestrator it asks `GET /diagnose`, which runs every check from inside the daemon;
//! with `--env-file` it runs them itself against the database, storage and GitHub that file names,
//! for a stopped instance (what only the daemon knows is then a `WARN ... not running`). Prints
//! one `OK`/`WARN`/`FAIL` line per check with its fix; exits 0, 1 (warnings) or 2 (failures).

use std::collections::HashMap;

use argh::FromArgs;
use serde_json::{json, Value};

use super::{
    client::AdminClient,
    instance::parse_env_file,
    output::{outln, print_json},
    Globals,
};
use crate::{
    config::{default_blob_base_url, Config},
    crypto::SecretBox,
    db::Connector,
    diagnose::{
        self,
        checks::{self},
        probe::{self, Inputs},
        Check,
    },
    github::GitHubApi,
    storage::{OpenParams, Storage},
    Error,
};

/// Check the installation (configuration, database, migrations, clock, storage, GitHub Apps,
/// Platform link, agents, queue): one OK/WARN/FAIL line each with its fix; exit 0, 1 or 2.
#[derive(FromArgs)]
#[argh(subcommand, name = "diagnose")]
pub struct DiagnoseCmd {
    /// check a stopped instance directly with the settings of this env file (the instance's
    /// <name>.env; the environment wins) instead of asking the running orchestrator
    #[argh(option)]
    pub env_file: Option<String>,
    /// print {"ok", "worst", "exitCode", "checks": [{check, level, message, fix}]} as JSON
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: DiagnoseCmd, globals: &Globals) -> Result<(), Error> {
    let found = match &cmd.env_file {
        Some(path) => direct(path)?,
        None => {
            let client = AdminClient::from_globals(globals)?;
            let answer = client.get("/diagnose").map_err(|e| {
                Error::Api(format!(
                    "{e}; to diagnose a stopped instance run kici-admin diagnose --env-file \
                     <the instance's env file>"
                ))
            })?;
            let checks = answer.get("checks").cloned().unwrap_or(Value::Null);
            serde_json::from_value::<Vec<Check>>(checks)
                .map_err(|e| Error::Api(format!("unexpected answer from GET /diagnose: {e}")))?
        }
    };
    let code = diagnose::exit_code(&found);
    if cmd.json {
        print_json(&json!({
            "ok": code == 0, "worst": diagnose::worst(&found), "exitCode": code, "checks": found,
        }));
    } else {
        for c in &found {
            outln!("{}", c.render());
        }
    }
    let count = |level| found.iter().filter(|c| c.level == level).count();
    match code {
        0 => Ok(()),
        code => Err(Error::Outcome {
            message: format!(
                "diagnose: {} failure(s), {} warning(s)",
                count(diagnose::Level::Fail),
                count(diagnose::Level::Warn)
            ),
            code: code as u8,
        }),
    }
}

/// The checks run from here, on the settings of `env_file` with the environment on top.
fn direct(env_file: &str) -> Result<Vec<Check>, Error> {
    let text = std::fs::read_to_string(env_file)
        .map_err(|e| Error::Usage(format!("--env-file {env_file}: {e}")))?;
    let mut vars: HashMap<String, String> = parse_env_file(&text);
    vars.extend(std::env::vars());
    let loaded = match Config::from_vars(vars.clone()) {
        Ok(l) => l,
        Err(e) => {
            return Ok(vec![checks::configuration("(unknown)", &e.problems, &[])]);
        }
    };
    let config = loaded.config;
    let mode = config.mode.as_str();
    let secrets = SecretBox::new(config.secret_key.clone(), config.secret_key_old.clone());
    let github = GitHubApi::new(&config.github_api_url);
    let env = |name: &str| vars.get(name).cloned();
    let mut opened = None;
    let mut storage_problem = None;
    if let Some(cfg) = &config.storage {
        let params = OpenParams {
            ttl_days: config.cache_ttl_days,
            secret_key: Some(&config.secret_key),
            secret_key_old: config.secret_key_old.as_ref(),
            default_base_url: default_blob_base_url(config.port, &config.base_path),
            env: &env,
        };
        match Storage::open(cfg, &params) {
            Ok(s) => opened = Some(s),
            Err(e) => storage_problem = Some(e),
        }
    }
    let inputs = Inputs {
        configuration: checks::configuration(mode, &[], &loaded.warnings),
        mode,
        auto_migrate: config.auto_migrate,
        secrets: &secrets,
        github: &github,
        storage: opened.as_ref(),
        daemon: None,
    };
    let mut client = Connector::from_url(&config.database_url)
        .and_then(|c| c.connect())
        .map_err(|e| e.to_string());
    let db = match &mut client {
        Ok(c) => Ok(c),
        Err(e) => Err(e.clone()),
    };
    let mut found = probe::run(&inputs, db);
    if let Some(problem) = storage_problem {
        if let Some(line) = found.iter_mut().find(|c| c.check == "storage") {
            *line = Check::fail(
                "storage",
                format!("cannot be opened: {problem}"),
                "correct the KICI_STORAGE_* settings (and AWS_* credentials) in the env file",
            );
        }
    }
    Ok(found)
}
