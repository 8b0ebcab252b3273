//! Where the orchestrator listens, for the commands that call its admin API: `--url`, else
//! `$KICI_ADMIN_URL`, else the instance folder's env file (the folder given by `--instance-dir`,
//! or the current directory when it holds a `.kici-orchestrator.json` manifest), else
//! `http://localhost:4000`, the daemon's default port. The reference CLI defaults to port 8080
//! while its server listens on 4000; we follow the server (docs/operations.md, "Admin CLI").
//!
//! An explicit URL is used as given: like the reference, it must already carry any
//! `KICI_BASE_PATH`. A URL derived from an env file gets that file's `KICI_BASE_PATH` appended.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use crate::Error;

/// The manifest `orchestrator install` writes into an instance folder (docs/operations.md,
/// "Instances").
pub const MANIFEST_FILE: &str = ".kici-orchestrator.json";
/// The daemon's `KICI_PORT` default.
pub const DEFAULT_PORT: u16 = 4000;

/// The orchestrator base URL (scheme, host, port and base path; no trailing slash).
///
/// `instance_dir` is `--instance-dir`; `cwd` is searched for a manifest only when it is absent.
/// Files are read only when neither `url_flag` nor `env_url` gives the answer.
pub fn resolve_admin_url(
    url_flag: Option<&str>,
    env_url: Option<&str>,
    instance_dir: Option<&Path>,
    cwd: Option<&Path>,
) -> Result<String, Error> {
    if let Some(url) = url_flag.filter(|u| !u.is_empty()) {
        return checked_url(url, "--url");
    }
    if let Some(url) = env_url.filter(|u| !u.is_empty()) {
        return checked_url(url, "KICI_ADMIN_URL");
    }
    let manifest = instance_manifest(instance_dir, cwd)?;
    admin_url_of(manifest.as_deref())
}

/// The manifest of the instance `--instance-dir` names, else the one in `cwd`, if any.
pub fn instance_manifest(
    instance_dir: Option<&Path>,
    cwd: Option<&Path>,
) -> Result<Option<PathBuf>, Error> {
    Ok(match (instance_dir, cwd) {
        (Some(dir), _) => {
            let manifest = dir.join(MANIFEST_FILE);
            if !manifest.is_file() {
                return Err(Error::Config(format!(
                    "--instance-dir {}: no {MANIFEST_FILE} there; pass the folder `kici-admin orchestrator install` \
                     was run in, or --url",
                    dir.display()
                )));
            }
            Some(manifest)
        }
        (None, Some(dir)) => Some(dir.join(MANIFEST_FILE)).filter(|m| m.is_file()),
        (None, None) => None,
    })
}

/// The URL the env file of the instance with this manifest gives (no manifest: the default).
pub fn admin_url_of(manifest: Option<&Path>) -> Result<String, Error> {
    match manifest {
        Some(manifest) => {
            let (env_file, vars) = instance_env(manifest)?;
            url_from_env_file(&vars)
                .map_err(|m| Error::Config(format!("{}: {m}", env_file.display())))
        }
        None => Ok(format!("http://localhost:{DEFAULT_PORT}")),
    }
}

/// The env file a manifest names, and its variables.
pub fn instance_env(manifest: &Path) -> Result<(PathBuf, HashMap<String, String>), Error> {
    let env_file = env_file_of(manifest)?;
    let text = std::fs::read_to_string(&env_file).map_err(|e| {
        Error::Config(format!(
            "cannot read the instance env file {} (envFilePath in {}): {e}",
            env_file.display(),
            manifest.display()
        ))
    })?;
    Ok((env_file, parse_env_file(&text)))
}

fn checked_url(url: &str, source: &str) -> Result<String, Error> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Error::Usage(format!(
            "{source} must be an http:// or https:// URL such as http://localhost:4000, got {url:?}"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The env file a manifest names; a relative `envFilePath` is taken from the manifest's folder.
fn env_file_of(manifest: &Path) -> Result<PathBuf, Error> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", manifest.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{} is not valid JSON: {e}", manifest.display())))?;
    let path = json
        .get("envFilePath")
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "{} has no envFilePath: reinstall with `kici-admin orchestrator install`, or pass --url",
                manifest.display()
            ))
        })?;
    let dir = manifest.parent().unwrap_or_else(|| Path::new("."));
    Ok(dir.join(path))
}

/// `KEY=value` lines as systemd's EnvironmentFile reads them: blank lines and `#`/`;` comments
/// skipped, an optional `export ` prefix, one pair of surrounding quotes removed; the last
/// assignment wins.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.trim().to_owned(), unquoted.to_owned());
    }
    vars
}

/// `http://<host>:<KICI_PORT><KICI_BASE_PATH>`; the host is `KICI_BIND_ADDRESS` when the daemon
/// binds one specific address (localhost would not reach it), else localhost.
fn url_from_env_file(vars: &HashMap<String, String>) -> Result<String, String> {
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let port = match get("KICI_PORT") {
        None => DEFAULT_PORT,
        Some("0") => {
            return Err(
                "KICI_PORT=0 lets the daemon pick a free port at start, so the CLI cannot \
                        know it: pass --url with the port the daemon logged"
                    .to_owned(),
            )
        }
        Some(raw) => raw
            .parse::<u16>()
            .map_err(|_| format!("KICI_PORT must be a port number (1-65535), got {raw:?}"))?,
    };
    let host = match get("KICI_BIND_ADDRESS").and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(ip)) if !ip.is_unspecified() => ip.to_string(),
        Some(IpAddr::V6(ip)) if !ip.is_unspecified() => format!("[{ip}]"),
        _ => "localhost".to_owned(),
    };
    // The daemon refuses a malformed base path at start, so "" is what it would serve then too.
    let base_path = crate::config::normalize_base_path(get("KICI_BASE_PATH").unwrap_or("/"))
        .unwrap_or_default();
    Ok(format!("http://{host}:{port}{base_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "kici-cli-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn instance(env_file_text: &str) -> TempDir {
        let dir = TempDir::new("instance");
        let env = dir.write("orch.env", env_file_text);
        dir.write(
            MANIFEST_FILE,
            &serde_json::json!({"component": "orchestrator", "name": "orch", "envFilePath": env})
                .to_string(),
        );
        dir
    }

    fn message(r: Result<String, Error>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn flag_beats_env_beats_instance() {
        let dir = instance("KICI_PORT=5000\n");
        let d = Some(dir.0.as_path());
        assert_eq!(
            resolve_admin_url(Some("http://a:1/"), Some("http://b:2"), d, d).unwrap(),
            "http://a:1"
        );
        assert_eq!(
            resolve_admin_url(None, Some("https://b:2/ci"), d, d).unwrap(),
            "https://b:2/ci"
        );
        assert_eq!(
            resolve_admin_url(Some(""), Some(""), d, None).unwrap(),
            "http://localhost:5000"
        );
    }

    #[test]
    fn default_is_the_daemon_port_when_no_manifest_is_around() {
        let empty = TempDir::new("empty");
        assert_eq!(
            resolve_admin_url(None, None, None, Some(&empty.0)).unwrap(),
            "http://localhost:4000"
        );
        assert_eq!(
            resolve_admin_url(None, None, None, None).unwrap(),
            "http://localhost:4000"
        );
    }

    #[test]
    fn instance_env_file_gives_port_base_path_and_bind_address() {
        let dir = instance(
            "# KiCI orchestrator configuration\nKICI_MODE=independent\nexport KICI_PORT=\"4100\"\n\
             KICI_BASE_PATH=/ci/kici/\nKICI_BIND_ADDRESS=0.0.0.0\n",
        );
        assert_eq!(
            resolve_admin_url(None, None, None, Some(&dir.0)).unwrap(),
            "http://localhost:4100/ci/kici"
        );
        let dir = instance("KICI_BIND_ADDRESS=10.1.2.3\nKICI_BASE_PATH=/\n");
        assert_eq!(
            resolve_admin_url(None, None, Some(&dir.0), None).unwrap(),
            "http://10.1.2.3:4000"
        );
        let dir = instance("KICI_BIND_ADDRESS=::1\nKICI_PORT=\n");
        assert_eq!(
            resolve_admin_url(None, None, Some(&dir.0), None).unwrap(),
            "http://[::1]:4000"
        );
    }

    #[test]
    fn relative_env_file_path_is_taken_from_the_manifest_folder() {
        let dir = TempDir::new("relative");
        dir.write("my.env", "KICI_PORT=4242\n");
        dir.write(MANIFEST_FILE, r#"{"envFilePath": "my.env"}"#);
        assert_eq!(
            resolve_admin_url(None, None, Some(&dir.0), None).unwrap(),
            "http://localhost:4242"
        );
    }

    #[test]
    fn broken_instances_say_which_file_and_what_to_do() {
        let empty = TempDir::new("no-manifest");
        let m = message(resolve_admin_url(None, None, Some(&empty.0), None));
        assert!(
            m.starts_with("--instance-dir ") && m.contains(MANIFEST_FILE),
            "{m}"
        );

        let dir = TempDir::new("bad-json");
        dir.write(MANIFEST_FILE, "{not json");
        let m = message(resolve_admin_url(None, None, None, Some(&dir.0)));
        assert!(m.contains("is not valid JSON"), "{m}");

        let dir = TempDir::new("no-env-path");
        dir.write(MANIFEST_FILE, r#"{"name": "orch"}"#);
        assert!(
            message(resolve_admin_url(None, None, Some(&dir.0), None)).contains("no envFilePath")
        );

        let dir = TempDir::new("missing-env");
        dir.write(MANIFEST_FILE, r#"{"envFilePath": "gone.env"}"#);
        let m = message(resolve_admin_url(None, None, Some(&dir.0), None));
        assert!(
            m.contains("cannot read the instance env file") && m.contains("gone.env"),
            "{m}"
        );

        let dir = instance("KICI_PORT=http\n");
        let m = message(resolve_admin_url(None, None, Some(&dir.0), None));
        assert!(
            m.contains("orch.env: KICI_PORT must be a port number"),
            "{m}"
        );
        let dir = instance("KICI_PORT=0\n");
        assert!(message(resolve_admin_url(None, None, Some(&dir.0), None)).contains("pass --url"));
    }

    #[test]
    fn urls_without_a_scheme_are_refused() {
        let m = message(resolve_admin_url(Some("localhost:4000"), None, None, None));
        assert!(
            m.starts_with("--url must be an http:// or https:// URL"),
            "{m}"
        );
        let m = message(resolve_admin_url(None, Some("ftp://x"), None, None));
        assert!(m.starts_with("KICI_ADMIN_URL must be"), "{m}");
    }

    #[test]
    fn env_file_syntax() {
        let vars = parse_env_file("A=1\n  # c\n; c\nB = 'two words'\nC=x=y\nA=3\nnoequals\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("3"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two words"));
        assert_eq!(vars.get("C").map(String::as_str), Some("x=y"));
        assert_eq!(vars.len(), 3);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_any_env_file(text in "\\PC{0,200}|[ \\t\\r\\n=#;'\"a-zA-Z_]{0,200}") {
            let vars = parse_env_file(&text);
            let _ = url_from_env_file(&vars);
        }

        #[test]
        fn never_panics_and_keeps_plain_assignments(
            key in "KICI_[A-Z_]{1,12}",
            value in "[a-zA-Z0-9/:._-]{0,20}",
            noise in "(#[^\\n]{0,20}\\n|;[^\\n]{0,20}\\n|\\n|[ \\t]+\\n){0,4}",
            quote in prop_oneof![Just(""), Just("\""), Just("'")],
            export in any::<bool>(),
        ) {
            let prefix = if export { "export " } else { "" };
            let text = format!("{noise}{prefix}{key}={quote}{value}{quote}\n{noise}");
            let vars = parse_env_file(&text);
            prop_assert_eq!(vars.get(&key).map(String::as_str), Some(value.as_str()));
            let _ = url_from_env_file(&vars);
        }
    }
}
