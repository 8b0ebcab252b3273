//! `kici-admin orchestrator install [--wizard]`: flags (or the wizard, or `--env-file`) →
//! the instance's env file, manifest, index entry and, under systemd, its unit; then the first
//! GitHub App source when one was given. The settings logic is `service::settings`; this file
//! gathers inputs, writes files only when they change, and prints.

use crate::cli::output::outln;
use std::path::{Path, PathBuf};

use argh::FromArgs;
use serde_json::json;

use super::{console, files, systemctl};
use crate::{
    cli::{
        output::print_json,
        secret_input::{self, ProcessReaders, SecretReaders},
        Globals,
    },
    crypto::{generate_token, SecretKey},
    service::{
        layout::{check_name, Host, Layout, Supervisor, DEFAULT_NAME},
        manifest::{IndexEntry, Manifest},
        provision::{self, SourceOutcome},
        settings::{self, Defaults, Layers, Vars},
        wizard::{self, GithubSource},
    },
    Error,
};

/// Install an orchestrator instance in --instance-dir (default /etc/kici/<name> as root,
/// ~/.config/kici/<name> otherwise): <name>.env (mode 0600), the .kici-orchestrator.json
/// manifest, and as root on a systemd host a hardened unit. Settings come from flags,
/// --env-file or --wizard; unset secrets are generated. Re-running with the same settings
/// changes nothing; other settings need --force. Secret flags take a value or @path.
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
pub struct InstallCmd {
    /// the instance name, also the env file's and the unit's (default kici-orchestrator)
    #[argh(option, default = "String::from(DEFAULT_NAME)")]
    pub name: String,
    /// ask for each setting no flag gave (on stdin, one answer per line; secrets not echoed)
    #[argh(switch)]
    pub wizard: bool,
    /// take the settings from this env file (KEY=value lines); flags still win
    #[argh(option)]
    pub env_file: Option<String>,
    /// replace another instance in the folder, or apply settings that differ from the installed
    /// ones
    #[argh(switch)]
    pub force: bool,
    /// install on a database that already holds another instance without its secret key and
    /// admin token: that instance's stored secrets become unreadable and its bootstrap token is
    /// replaced
    #[argh(switch)]
    pub force_new_instance: bool,
    /// print the result as JSON
    #[argh(switch)]
    pub json: bool,
    /// operating mode: platform (default), hybrid or independent
    #[argh(option)]
    pub mode: Option<String>,
    /// the PostgreSQL URL, e.g. postgresql://kici:password@127.0.0.1:5432/kici
    #[argh(option)]
    pub database_url: Option<String>,
    /// the port to listen on (default 4000)
    #[argh(option)]
    pub port: Option<String>,
    /// the address to listen on (default 0.0.0.0)
    #[argh(option)]
    pub bind_address: Option<String>,
    /// the key encrypting stored secrets: 64 hex characters or @path (default: generated)
    #[argh(option)]
    pub secret_key: Option<String>,
    /// the bootstrap admin token, or @path (default: generated)
    #[argh(option)]
    pub admin_token: Option<String>,
    /// the KiCI Platform URL (platform and hybrid modes)
    #[argh(option)]
    pub platform_url: Option<String>,
    /// the Platform token, or @path (platform and hybrid modes)
    #[argh(option)]
    pub platform_token: Option<String>,
    /// cache and log storage: filesystem (default), s3 or none
    #[argh(option)]
    pub storage_type: Option<String>,
    /// the filesystem storage folder (default: storage/ in the instance's state folder)
    #[argh(option)]
    pub storage_path: Option<String>,
    /// the S3 bucket
    #[argh(option)]
    pub storage_bucket: Option<String>,
    /// the S3 endpoint URL (omit for AWS S3)
    #[argh(option)]
    pub storage_endpoint: Option<String>,
    /// the S3 region, e.g. us-east-1
    #[argh(option)]
    pub storage_region: Option<String>,
    /// path-style S3 URLs (MinIO and most non-AWS stores): true or false
    #[argh(option)]
    pub storage_force_path_style: Option<String>,
    /// the GitHub REST API URL (default https://api.github.com; GitHub Enterprise:
    /// https://HOST/api/v3)
    #[argh(option)]
    pub github_api_url: Option<String>,
    /// add a GitHub App source with this App ID (needs --github-private-key)
    #[argh(option)]
    pub github_app_id: Option<String>,
    /// the GitHub App's private key (PEM): @path, or the value
    #[argh(option)]
    pub github_private_key: Option<String>,
    /// the GitHub App's webhook secret, or @path
    #[argh(option)]
    pub github_webhook_secret: Option<String>,
    /// a name for the GitHub source (default main; GitHub's name for the App is stored)
    #[argh(option)]
    pub github_source_name: Option<String>,
    /// how the daemon is supervised: systemd or process (default: systemd as root on a systemd
    /// host)
    #[argh(option)]
    pub supervisor: Option<String>,
    /// the kici-admin binary the service runs (default: this one)
    #[argh(option)]
    pub binary: Option<String>,
    /// the system user a systemd unit runs as (default kici; created when missing)
    #[argh(option)]
    pub user: Option<String>,
}

pub fn run(cmd: InstallCmd, globals: &Globals) -> Result<(), Error> {
    check_name(&cmd.name).map_err(Error::Usage)?;
    if cmd.wizard && cmd.env_file.is_some() {
        return Err(Error::Usage(
            "Cannot use --wizard with --env-file: the wizard asks for what the env file would give; use one of them".into(),
        ));
    }
    let host = files::host();
    let dir = match globals.instance_dir.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => files::absolute(Path::new(d)),
        None => host.default_instance_dir(&cmd.name),
    };
    let previous = files::read_manifest(&dir)?;
    let same_instance = previous.as_ref().is_some_and(|p| p.name == cmd.name);
    refuse_other_instances(&cmd, &host, &dir, previous.as_ref())?;
    let supervisor = choose_supervisor(&cmd, &host, previous.as_ref().filter(|_| same_instance))?;
    let layout = Layout::new(&cmd.name, &dir, supervisor);
    let existing = match same_instance && layout.env_file.is_file() {
        true => Some(files::read_env_vars(&layout.env_file)?),
        false => None,
    };
    let env_file = match &cmd.env_file {
        Some(path) => Some(files::read_env_vars(&files::absolute(Path::new(path)))?),
        None => None,
    };
    let readers = ProcessReaders;
    let mut answers = flag_answers(&cmd, &readers)?;
    let mut github = flag_github(&cmd, &readers)?;
    let storage_default = layout.default_storage_path().display().to_string();
    if cmd.wizard {
        let mut console = console::ProcessConsole::new();
        let options = wizard::Options {
            force_new_instance: cmd.force_new_instance,
            github_api_url: std::env::var("KICI_GITHUB_API_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| wizard::DEFAULT_GITHUB_API_URL.to_owned()),
        };
        let outcome = wizard::run(
            &answers,
            github.is_some(),
            &storage_default,
            &options,
            &mut console,
            &console::SystemChecks,
        )
        .map_err(|e| Error::Usage(e.to_string()))?;
        answers.extend(outcome.vars);
        github = github.or(outcome.github);
    }
    // A GitHub source added by flags is checked against the environment's GitHub API, as the
    // wizard's default is, unless --github-api-url said otherwise.
    if github.is_some() && !answers.contains_key("KICI_GITHUB_API_URL") {
        if let Some(api) = std::env::var("KICI_GITHUB_API_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            answers.insert("KICI_GITHUB_API_URL".into(), api);
        }
    }
    let defaults = Defaults {
        storage_path: storage_default,
        secret_key: SecretKey::generate().to_hex(),
        admin_token: generate_token(),
    };
    let vars = settings::merge(&Layers {
        existing: existing.as_ref(),
        env_file: env_file.as_ref(),
        answers: &answers,
        defaults: &defaults,
    });
    settings::validate(&vars).map_err(|problems| {
        Error::Config(format!(
            "the instance settings are not valid:\n  - {}",
            problems.join("\n  - ")
        ))
    })?;
    let changes = existing
        .as_ref()
        .map(|old| settings::changes(old, &vars))
        .unwrap_or_default();
    if !changes.is_empty() && !cmd.force {
        return Err(Error::Usage(format!(
            "the instance {:?} in {} is installed with other settings:\n  {}\n\
             Pass --force to apply them (the secret key and admin token are kept unless given), \
             or leave those flags out to keep the installed values.",
            cmd.name,
            dir.display(),
            changes.join("\n  ")
        )));
    }

    let joining_database = existing
        .as_ref()
        .and_then(|old| old.get("KICI_DATABASE_URL"))
        != vars.get("KICI_DATABASE_URL");
    if joining_database && !(cmd.wizard && cmd.force_new_instance) {
        super::guard::another_instance(&vars, cmd.force_new_instance)?;
    }
    if existing.is_none() && !cmd.wizard {
        super::guard::port_taken(&vars);
    }

    // Writing starts here; everything above could still refuse.
    files::ensure_dir(&dir)?;
    let env_written = if existing.as_ref() == Some(&vars) {
        files::write_if_changed(
            &layout.env_file,
            &std::fs::read_to_string(&layout.env_file).unwrap_or_default(),
            0o600,
        )?
    } else {
        let text = settings::render(&cmd.name, &vars).map_err(Error::Config)?;
        files::write_if_changed(&layout.env_file, &text, 0o600)?
    };
    let binary = binary_path(&cmd, &host, &dir)?;
    let user = cmd.user.clone().unwrap_or_else(|| "kici".to_owned());
    let service_user = (supervisor == Supervisor::Systemd).then_some(user.as_str());
    let created_at = previous
        .as_ref()
        .filter(|_| same_instance)
        .map(|p| p.created_at.clone())
        .unwrap_or_else(|| jiff::Timestamp::now().to_string());
    let manifest = Manifest::new(&layout, supervisor, &binary, service_user, &created_at);
    let manifest_written = files::write_if_changed(&layout.manifest, &manifest.to_json(), 0o644)?;
    files::update_index(&host, &cmd.name, Some(IndexEntry::of(&manifest)));
    let storage_path = vars
        .get("KICI_STORAGE_FS_PATH")
        .filter(|_| vars.get("KICI_STORAGE_TYPE").map(String::as_str) == Some("filesystem"))
        .map(PathBuf::from);
    let unit_written = match supervisor {
        Supervisor::Process => {
            files::ensure_dir(&layout.state_dir)?;
            if let Some(path) = &storage_path {
                files::ensure_dir(path)?;
            }
            false
        }
        Supervisor::Systemd => {
            systemctl::install_unit(&layout, Path::new(&binary), &user, storage_path.as_deref())?
        }
    };
    let source = match &github {
        Some(source) => Some(provision::add_github_source(&vars, source)?),
        None => None,
    };
    let changed = env_written || manifest_written || unit_written;
    let generated_token = vars.get("KICI_BOOTSTRAP_ADMIN_TOKEN") == Some(&defaults.admin_token);
    let report = Report {
        layout: &layout,
        supervisor,
        vars: &vars,
        changed,
        changes: &changes,
        generated_token,
        source: source.as_ref(),
        binary: &binary,
    };
    if cmd.json {
        print_json(&report.json());
    } else {
        outln!("{}", report.text());
    }
    Ok(())
}

/// Another instance in the folder, or this name installed in another folder: both need --force.
fn refuse_other_instances(
    cmd: &InstallCmd,
    host: &Host,
    dir: &Path,
    previous: Option<&Manifest>,
) -> Result<(), Error> {
    if cmd.force {
        return Ok(());
    }
    if let Some(p) = previous.filter(|p| p.name != cmd.name) {
        return Err(Error::Usage(format!(
            "{} holds the orchestrator instance {:?}, not {:?}: pass --name {} to re-install it, \
             another --instance-dir, or --force to replace it",
            dir.display(),
            p.name,
            cmd.name,
            p.name
        )));
    }
    let elsewhere = crate::service::manifest::find_in_index(&files::index(host), &cmd.name)
        .filter(|other| other != dir && files::read_manifest(other).ok().flatten().is_some());
    if let Some(other) = elsewhere {
        return Err(Error::Usage(format!(
            "an orchestrator instance {:?} is already installed at {}: re-run install with \
             --instance-dir {} to change it, choose another --name, or pass --force",
            cmd.name,
            other.display(),
            other.display()
        )));
    }
    Ok(())
}

fn choose_supervisor(
    cmd: &InstallCmd,
    host: &Host,
    previous: Option<&Manifest>,
) -> Result<Supervisor, Error> {
    let chosen = match (&cmd.supervisor, previous) {
        (Some(s), _) => Supervisor::parse(s).ok_or_else(|| {
            Error::Usage(format!(
                "--supervisor must be systemd or process, got {s:?}"
            ))
        })?,
        (None, Some(p)) => p.supervisor().map_err(Error::Config)?,
        (None, None) => host.default_supervisor(),
    };
    if chosen == Supervisor::Systemd && !(host.systemd && host.is_root) {
        return Err(Error::Usage(
            "--supervisor systemd needs a host where systemd runs (PID 1) and root to install a system unit; \
             use --supervisor process to run the daemon detached with a pid file instead"
                .into(),
        ));
    }
    Ok(chosen)
}

/// The env values the flags give; an empty value removes a key (`--storage-type none`).
fn flag_answers(cmd: &InstallCmd, readers: &dyn SecretReaders) -> Result<Vars, Error> {
    let mut vars = Vars::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            vars.insert(key.to_owned(), v);
        }
    };
    let secret = |flag: &str, raw: &Option<String>| -> Result<Option<String>, Error> {
        raw.as_deref()
            .map(|r| secret_input::flag_value(flag, r, readers))
            .transpose()
    };
    if let Some(mode) = &cmd.mode {
        put(
            "KICI_MODE",
            Some(wizard::parse_mode(mode).map_err(|e| Error::Usage(format!("--mode: {e}")))?),
        );
    }
    put("KICI_DATABASE_URL", cmd.database_url.clone());
    if let Some(port) = &cmd.port {
        put(
            "KICI_PORT",
            Some(wizard::parse_port(port).map_err(|e| Error::Usage(format!("--port: {e}")))?),
        );
    }
    put("KICI_BIND_ADDRESS", cmd.bind_address.clone());
    put("KICI_SECRET_KEY", secret("--secret-key", &cmd.secret_key)?);
    put(
        "KICI_BOOTSTRAP_ADMIN_TOKEN",
        secret("--admin-token", &cmd.admin_token)?,
    );
    put("KICI_PLATFORM_URL", cmd.platform_url.clone());
    put(
        "KICI_PLATFORM_TOKEN",
        secret("--platform-token", &cmd.platform_token)?,
    );
    let storage_type = match cmd.storage_type.as_deref() {
        None => None,
        Some("none") => Some(String::new()),
        Some(t @ ("filesystem" | "s3")) => Some(t.to_owned()),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--storage-type must be filesystem, s3 or none, got {other:?}"
            )))
        }
    };
    put("KICI_STORAGE_TYPE", storage_type);
    if let Some(path) = &cmd.storage_path {
        put(
            "KICI_STORAGE_FS_PATH",
            Some(files::absolute(Path::new(path)).display().to_string()),
        );
    }
    put("KICI_STORAGE_BUCKET", cmd.storage_bucket.clone());
    put("KICI_STORAGE_ENDPOINT", cmd.storage_endpoint.clone());
    put("KICI_STORAGE_REGION", cmd.storage_region.clone());
    put(
        "KICI_STORAGE_FORCE_PATH_STYLE",
        cmd.storage_force_path_style.clone(),
    );
    put("KICI_GITHUB_API_URL", cmd.github_api_url.clone());
    Ok(vars)
}

fn flag_github(
    cmd: &InstallCmd,
    readers: &dyn SecretReaders,
) -> Result<Option<GithubSource>, Error> {
    let Some(app_id) = &cmd.github_app_id else {
        let stray = [
            &cmd.github_private_key,
            &cmd.github_webhook_secret,
            &cmd.github_source_name,
        ];
        if stray.iter().any(|f| f.is_some()) {
            return Err(Error::Usage(
                "--github-private-key, --github-webhook-secret and --github-source-name need --github-app-id".into(),
            ));
        }
        return Ok(None);
    };
    let app_id =
        wizard::parse_app_id(app_id).map_err(|e| Error::Usage(format!("--github-app-id: {e}")))?;
    let key = cmd.github_private_key.as_deref().ok_or_else(|| {
        Error::Usage("--github-app-id needs --github-private-key @/path/to/app.pem".into())
    })?;
    Ok(Some(GithubSource {
        name: cmd
            .github_source_name
            .clone()
            .unwrap_or_else(|| "main".into()),
        app_id,
        private_key: secret_input::flag_value("--github-private-key", key, readers)?,
        webhook_secret: cmd
            .github_webhook_secret
            .as_deref()
            .map(|w| secret_input::flag_value("--github-webhook-secret", w, readers))
            .transpose()?,
    }))
}

/// `--binary`, else this binary, or a placed copy of it when it sits in a build folder
/// (`binary.rs`).
fn binary_path(
    cmd: &InstallCmd,
    host: &crate::service::layout::Host,
    dir: &Path,
) -> Result<String, Error> {
    let path = match &cmd.binary {
        Some(b) => files::absolute(Path::new(b)),
        None => {
            let exe = std::env::current_exe().map_err(|e| {
                Error::Config(format!(
                    "cannot tell where this kici-admin binary is ({e}): pass --binary"
                ))
            })?;
            super::binary::for_instance(&exe, host, &cmd.name, dir)?
        }
    };
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "--binary {}: no such file",
            path.display()
        )));
    }
    Ok(path.display().to_string())
}

struct Report<'a> {
    layout: &'a Layout,
    supervisor: Supervisor,
    vars: &'a Vars,
    changed: bool,
    changes: &'a [String],
    generated_token: bool,
    source: Option<&'a SourceOutcome>,
    binary: &'a str,
}

impl Report<'_> {
    fn get(&self, k: &str) -> &str {
        self.vars.get(k).map_or("", String::as_str)
    }

    fn storage(&self) -> String {
        match self.get("KICI_STORAGE_TYPE") {
            "filesystem" => format!("filesystem, {}", self.get("KICI_STORAGE_FS_PATH")),
            "s3" => format!("s3, bucket {}", self.get("KICI_STORAGE_BUCKET")),
            _ => "none".to_owned(),
        }
    }

    fn text(&self) -> String {
        let l = self.layout;
        let mode = self
            .vars
            .get("KICI_MODE")
            .map_or("platform", String::as_str);
        let mut out = if self.changed {
            format!(
                "Orchestrator instance \"{}\" installed ({mode} mode, {} supervisor).\n",
                l.name,
                self.supervisor.as_str()
            )
        } else {
            format!("Orchestrator instance \"{}\" is already installed with these settings: nothing changed.\n", l.name)
        };
        for c in self.changes {
            out.push_str(&format!("  changed {c}\n"));
        }
        out.push_str(&format!("  Instance dir:  {}\n", l.dir.display()));
        out.push_str(&format!(
            "  Env file:      {} (mode 0600)\n",
            l.env_file.display()
        ));
        out.push_str(&format!("  Manifest:      {}\n", l.manifest.display()));
        if let Some(unit) = &l.unit_file {
            out.push_str(&format!("  Unit:          {}\n", unit.display()));
        }
        out.push_str(&format!("  Binary:        {}\n", self.binary));
        out.push_str(&format!("  Port:          {}\n", self.get("KICI_PORT")));
        out.push_str(&format!("  Storage:       {}\n", self.storage()));
        let how = if self.generated_token {
            "generated; "
        } else {
            ""
        };
        out.push_str(&format!(
            "  Admin token:   {how}stored in the env file as KICI_BOOTSTRAP_ADMIN_TOKEN \
             (show it with: grep KICI_BOOTSTRAP_ADMIN_TOKEN {})\n",
            l.env_file.display()
        ));
        match self.source {
            Some(SourceOutcome::Added { routing_key, name }) => {
                out.push_str(&format!("  GitHub source: {routing_key} ({name}) added\n"))
            }
            Some(SourceOutcome::Exists { routing_key }) => out.push_str(&format!(
                "  GitHub source: {routing_key} exists already (left unchanged; use `kici-admin source update`)\n"
            )),
            None => {}
        }
        out.push_str(&format!(
            "Next: kici-admin orchestrator start --instance-dir {}",
            l.dir.display()
        ));
        out
    }

    fn json(&self) -> serde_json::Value {
        let l = self.layout;
        let source = self.source.map(|s| match s {
            SourceOutcome::Added { routing_key, name } => {
                json!({"routingKey": routing_key, "name": name, "added": true})
            }
            SourceOutcome::Exists { routing_key } => {
                json!({"routingKey": routing_key, "added": false})
            }
        });
        json!({
            "name": l.name,
            "instanceDir": l.dir,
            "envFile": l.env_file,
            "manifest": l.manifest,
            "unitFile": l.unit_file,
            "supervisor": self.supervisor.as_str(),
            "binary": self.binary,
            "mode": self.vars.get("KICI_MODE"),
            "port": self.get("KICI_PORT").parse::<u16>().ok(),
            "storage": self.storage(),
            "changed": self.changed,
            "changes": self.changes,
            "adminToken": {
                "storedIn": l.env_file,
                "variable": "KICI_BOOTSTRAP_ADMIN_TOKEN",
                "generated": self.generated_token,
            },
            "githubSource": source,
        })
    }
}
