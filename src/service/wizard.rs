//! `orchestrator install --wizard`: the questions, their defaults and validation, over an
//! injected console (a terminal, a pipe with one answer per line, or a test script) and injected
//! checks (the database connection, reading the App's key, what the database already holds,
//! whether a port is taken). A question whose answer a flag already gave is not asked. End of
//! input before the last answer is an error, never a guess.
//!
//! A database that already holds an instance (`service::existing`) is joined, not taken over:
//! the wizard asks for that instance's secret key (accepted only when it decrypts a stored
//! value) and its bootstrap admin token (checked against the stored hash), unless
//! `--force-new-instance` was given, in which case it says what will break.

use std::io;

use super::{existing::Existing, settings::Vars};
use crate::crypto::SecretKey;

pub const DEFAULT_PLATFORM_URL: &str = "wss://platform.kici.dev";

/// Where answers come from and where the questions go.
pub trait Console {
    /// Shows `prompt`, reads one line (without its line ending); `None` at end of input.
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// The same without echoing what is typed (on a terminal).
    fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>>;
    fn say(&mut self, text: &str);
}

/// The wizard's contact with the world.
pub trait Checks {
    /// Connects to `url`; the server's version, or the exact connection error.
    fn database(&self, url: &str) -> Result<String, String>;
    fn read_file(&self, path: &str) -> Result<String, String>;
    /// The instance the database at `url` already holds, if any.
    fn existing_instance(&self, url: &str) -> Result<Option<Existing>, String>;
    /// Whether `key` (64 hex characters) decrypts a value stored in the database at `url`.
    fn key_opens(&self, url: &str, key: &str) -> Result<bool, String>;
    /// Whether something already listens on this TCP port.
    fn port_in_use(&self, port: u16) -> bool;
}

/// What the command line tells the wizard besides the settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--force-new-instance`: take over a database holding another instance.
    pub force_new_instance: bool,
    /// The GitHub API URL offered by default (`$KICI_GITHUB_API_URL`, else GitHub's).
    pub github_api_url: String,
}

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// A GitHub App source to add once the instance exists.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubSource {
    pub name: String,
    pub app_id: String,
    pub private_key: String,
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for GithubSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSource")
            .field("name", &self.name)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// What the wizard adds to the flags' answers.
#[derive(Debug, Default)]
pub struct Outcome {
    pub vars: Vars,
    pub github: Option<GithubSource>,
}

#[derive(Debug)]
pub enum WizardError {
    /// Input ended before this question was answered.
    EndOfInput(String),
    Io(io::Error),
}

impl std::fmt::Display for WizardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WizardError::EndOfInput(q) => write!(
                f,
                "the wizard's input ended before the question {q:?} was answered: give one answer per line \
                 (an empty line takes the default)"
            ),
            WizardError::Io(e) => write!(f, "cannot read the wizard's answers: {e}"),
        }
    }
}

type Answer<T> = Result<T, WizardError>;

struct Session<'a> {
    console: &'a mut dyn Console,
    checks: &'a dyn Checks,
}

impl Session<'_> {
    /// Asks until `parse` accepts the (trimmed) answer; its error is shown before asking again.
    fn until<T>(
        &mut self,
        prompt: &str,
        secret: bool,
        mut parse: impl FnMut(&str, &dyn Checks) -> Result<T, String>,
    ) -> Answer<T> {
        loop {
            let line = if secret {
                self.console.ask_secret(prompt)
            } else {
                self.console.ask(prompt)
            };
            let line = line.map_err(WizardError::Io)?;
            let Some(line) = line else {
                return Err(WizardError::EndOfInput(prompt.trim().to_owned()));
            };
            match parse(line.trim(), self.checks) {
                Ok(v) => return Ok(v),
                Err(e) => self.console.say(&format!("  {e}")),
            }
        }
    }
}

/// Runs the questions the flags left open; `given` holds the flags' env values.
pub fn run(
    given: &Vars,
    github_given: bool,
    default_storage_path: &str,
    options: &Options,
    console: &mut dyn Console,
    checks: &dyn Checks,
) -> Answer<Outcome> {
    let mut s = Session { console, checks };
    let mut out = Outcome::default();
    let has = |k: &str, out: &Outcome| given.contains_key(k) || out.vars.contains_key(k);
    s.console
        .say("KiCI orchestrator setup. Press Enter to take the [default].");

    let mode = match given.get("KICI_MODE") {
        Some(m) => m.clone(),
        None => s.until(
            "Operating mode: platform (through the KiCI Platform), hybrid, or independent [platform]: ",
            false,
            |a, _| parse_mode(a),
        )?,
    };
    out.vars.insert("KICI_MODE".into(), mode.clone());

    // A URL given by flag is tested too, and asked for again only when it does not connect.
    let given_url = given
        .get("KICI_DATABASE_URL")
        .map(|u| check_database_url(u, s.checks));
    let (url, version) = match given_url {
        Some(Ok(found)) => found,
        other => {
            if let Some(Err(e)) = other {
                s.console.say(&format!("  --database-url: {e}"));
            }
            s.until(
                "PostgreSQL database URL (postgresql://user:password@host:5432/db): ",
                false,
                |a, checks| check_database_url(a, checks),
            )?
        }
    };
    s.console.say(&format!("  Connected: PostgreSQL {version}"));
    out.vars.insert("KICI_DATABASE_URL".into(), url.clone());
    join_existing(&mut s, given, options, &url, &mut out.vars)?;

    if !has("KICI_PORT", &out) {
        let port = ask_port(&mut s)?;
        out.vars.insert("KICI_PORT".into(), port);
    }
    if !has("KICI_SECRET_KEY", &out) {
        let key = s.until(
            "Secret key for stored secrets: Enter generates one (kept in the env file), or paste 64 hex characters: ",
            true,
            |a, _| parse_secret_key(a),
        )?;
        out.vars
            .extend(key.map(|k| ("KICI_SECRET_KEY".to_owned(), k)));
    }
    if !has("KICI_BOOTSTRAP_ADMIN_TOKEN", &out) {
        let token = s.until(
            "Bootstrap admin token: Enter generates one (kept in the env file), or paste your own: ",
            true,
            |a, _| parse_admin_token(a),
        )?;
        out.vars
            .extend(token.map(|t| ("KICI_BOOTSTRAP_ADMIN_TOKEN".to_owned(), t)));
    }
    if mode != "independent" {
        if !has("KICI_PLATFORM_URL", &out) {
            let prompt = format!("Platform URL [{DEFAULT_PLATFORM_URL}]: ");
            let url = s.until(&prompt, false, |a, _| parse_platform_url(a))?;
            out.vars.insert("KICI_PLATFORM_URL".into(), url);
        }
        if !has("KICI_PLATFORM_TOKEN", &out) {
            let token = s.until("Platform token: ", true, |a, _| {
                non_empty(a, "the Platform token is required in platform and hybrid modes (Platform → Settings → Orchestrators)")
            })?;
            out.vars.insert("KICI_PLATFORM_TOKEN".into(), token);
        }
    }
    if !has("KICI_STORAGE_TYPE", &out) {
        storage(&mut s, default_storage_path, &mut out.vars)?;
    }
    if !github_given {
        let add = s.until("Add a GitHub App source now? [y/N]: ", false, |a, _| {
            parse_yes_no(a, false)
        })?;
        if add {
            let api = if has("KICI_GITHUB_API_URL", &out) {
                None
            } else {
                Some(options.github_api_url.as_str())
            };
            let (source, api_url) = github_source(&mut s, api)?;
            out.github = Some(source);
            out.vars
                .extend(api_url.map(|u| ("KICI_GITHUB_API_URL".to_owned(), u)));
        }
    }
    if !has("KICI_BIND_ADDRESS", &out) {
        let ingress = mode != "independent" || github_given || out.github.is_some();
        let (default, why) = if ingress {
            (
                "0.0.0.0",
                "all addresses, since webhooks and agents reach it from other machines",
            )
        } else {
            (
                "127.0.0.1",
                "this machine only, since no Platform or GitHub App sends it anything",
            )
        };
        s.console.say(&format!(
            "  Bind address: the default {default} listens on {why}."
        ));
        let prompt = format!("Bind address [{default}]: ");
        let address = s.until(&prompt, false, |a, _| parse_bind_address(a, default))?;
        out.vars.insert("KICI_BIND_ADDRESS".into(), address);
    }
    Ok(out)
}

fn storage(s: &mut Session, default_path: &str, vars: &mut Vars) -> Answer<()> {
    let kind = s.until(
        "Storage for caches and logs: filesystem, s3 or none [filesystem]: ",
        false,
        |a, _| match a {
            "" | "filesystem" | "fs" => Ok("filesystem"),
            "s3" => Ok("s3"),
            "none" => Ok(""),
            other => Err(format!(
                "{other:?} is not a storage type: answer filesystem, s3 or none"
            )),
        },
    )?;
    vars.insert("KICI_STORAGE_TYPE".into(), kind.into());
    match kind {
        "filesystem" => {
            let prompt = format!("Storage folder [{default_path}]: ");
            let path = s.until(&prompt, false, |a, _| match a {
                "" => Ok(default_path.to_owned()),
                p if p.starts_with('/') => Ok(p.to_owned()),
                p => Err(format!(
                    "{p:?} is not an absolute path (it must start with /)"
                )),
            })?;
            vars.insert("KICI_STORAGE_FS_PATH".into(), path);
        }
        "s3" => {
            let bucket = s.until("S3 bucket: ", false, |a, _| {
                non_empty(a, "the bucket name is required")
            })?;
            let endpoint = s.until(
                "S3 endpoint URL (blank for AWS S3): ",
                false,
                |a, _| match a {
                    "" => Ok(None),
                    u if u.starts_with("http://") || u.starts_with("https://") => {
                        Ok(Some(u.to_owned()))
                    }
                    u => Err(format!(
                        "{u:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:9000)"
                    )),
                },
            )?;
            let region = s.until("S3 region [us-east-1]: ", false, |a, _| {
                Ok::<_, String>(if a.is_empty() { "us-east-1" } else { a }.to_owned())
            })?;
            vars.insert("KICI_STORAGE_BUCKET".into(), bucket);
            vars.insert("KICI_STORAGE_REGION".into(), region);
            if let Some(endpoint) = endpoint {
                vars.insert("KICI_STORAGE_ENDPOINT".into(), endpoint);
                // Path-style addressing is what MinIO and most non-AWS stores need.
                let path_style = s.until("Path-style bucket URLs? [Y/n]: ", false, |a, _| {
                    parse_yes_no(a, true)
                })?;
                vars.insert(
                    "KICI_STORAGE_FORCE_PATH_STYLE".into(),
                    path_style.to_string(),
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// The source, and the GitHub API URL when it was asked (`api_default` is `None` when a flag
/// gave it).
fn github_source(
    s: &mut Session,
    api_default: Option<&str>,
) -> Answer<(GithubSource, Option<String>)> {
    let name = s.until("Source name [main]: ", false, |a, _| {
        Ok::<_, String>(if a.is_empty() { "main" } else { a }.to_owned())
    })?;
    let api_url = match api_default {
        Some(default) => {
            let prompt =
                format!("GitHub API URL (GitHub Enterprise: https://HOST/api/v3) [{default}]: ");
            Some(s.until(&prompt, false, |a, _| {
                let url = if a.is_empty() { default } else { a };
                if url.starts_with("https://") || url.starts_with("http://") {
                    Ok(url.trim_end_matches('/').to_owned())
                } else {
                    Err(format!(
                        "{url:?} is not an http(s) URL: e.g. https://api.github.com or https://github.example.com/api/v3"
                    ))
                }
            })?)
        }
        None => None,
    };
    let app_id = s.until("GitHub App ID: ", false, |a, _| parse_app_id(a))?;
    let private_key = s.until(
        "Path to the App's private key (.pem): ",
        false,
        |a, checks| {
            let path = non_empty(
                a,
                "the private key file is required (GitHub → App settings → Generate a private key)",
            )?;
            let pem = checks
                .read_file(&path)
                .map_err(|e| format!("cannot read the private key from {path}: {e}"))?;
            let pem = pem.trim().to_owned();
            if !pem.starts_with("-----BEGIN") {
                return Err(format!(
                    "{path} is not a PEM private key (it should start with -----BEGIN)"
                ));
            }
            Ok(pem)
        },
    )?;
    let webhook_secret = s.until("Webhook secret (blank for none): ", true, |a, _| {
        Ok::<_, String>(Some(a.to_owned()).filter(|a| !a.is_empty()))
    })?;
    Ok((
        GithubSource {
            name,
            app_id,
            private_key,
            webhook_secret,
        },
        api_url,
    ))
}

// ---- one parser per answer, shared with the flags --------------------------------------------

pub fn parse_mode(a: &str) -> Result<String, String> {
    match a {
        "" | "1" | "platform" => Ok("platform".into()),
        "2" | "hybrid" => Ok("hybrid".into()),
        "3" | "independent" => Ok("independent".into()),
        other => Err(format!(
            "{other:?} is not a mode: answer platform, hybrid or independent"
        )),
    }
}

fn check_database_url(url: &str, checks: &dyn Checks) -> Result<(String, String), String> {
    let looks_right = url.starts_with("postgresql://")
        || url.starts_with("postgres://")
        || url.contains("host=")
        || url.contains("dbname=");
    if !looks_right {
        return Err(format!(
            "{:?} is not a PostgreSQL URL: use postgresql://user:password@host:5432/db",
            crate::config::redact_database_url(url)
        ));
    }
    match checks.database(url) {
        Ok(version) => Ok((url.to_owned(), version)),
        Err(e) => Err(format!(
            "Cannot connect: {e}\n  Check the URL and that the server is running, then enter it again."
        )),
    }
}

pub fn parse_port(a: &str) -> Result<String, String> {
    if a.is_empty() {
        return Ok("4000".into());
    }
    match a.parse::<u16>() {
        Ok(p) if p > 0 && a.bytes().all(|b| b.is_ascii_digit()) => Ok(p.to_string()),
        _ => Err(format!(
            "{a:?} is not a port: give a number from 1 to 65535"
        )),
    }
}

/// `None`: generate one.
pub fn parse_secret_key(a: &str) -> Result<Option<String>, String> {
    if a.is_empty() {
        return Ok(None);
    }
    SecretKey::parse(a)
        .map(|_| Some(a.to_owned()))
        .map_err(|e| format!("not a usable secret key: {e}"))
}

/// `None`: generate one.
pub fn parse_admin_token(a: &str) -> Result<Option<String>, String> {
    match a {
        "" => Ok(None),
        t if t.len() < 16 || t.contains(char::is_whitespace) => Err(
            "an admin token needs at least 16 characters and no spaces (or press Enter to generate one)".into(),
        ),
        t => Ok(Some(t.to_owned())),
    }
}

pub fn parse_platform_url(a: &str) -> Result<String, String> {
    let url = if a.is_empty() {
        DEFAULT_PLATFORM_URL
    } else {
        a
    };
    let ok = ["ws://", "wss://", "http://", "https://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if ok {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "{url:?} is not a Platform URL: it starts with wss://, ws://, https:// or http://"
        ))
    }
}

pub fn parse_app_id(a: &str) -> Result<String, String> {
    if !a.is_empty() && a.len() <= 20 && a.bytes().all(|b| b.is_ascii_digit()) {
        Ok(a.to_owned())
    } else {
        Err(format!(
            "{a:?} is not a GitHub App ID: it is a number, shown on the App's settings page"
        ))
    }
}

fn parse_yes_no(a: &str, default: bool) -> Result<bool, String> {
    match a.to_ascii_lowercase().as_str() {
        "" => Ok(default),
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        other => Err(format!("{other:?}: answer y or n")),
    }
}

fn non_empty(a: &str, message: &str) -> Result<String, String> {
    if a.is_empty() {
        Err(message.to_owned())
    } else {
        Ok(a.to_owned())
    }
}

mod join;
#[cfg(test)]
use join::first_free_port;
pub use join::parse_bind_address;
use join::{ask_port, join_existing};

#[cfg(test)]
mod tests;
