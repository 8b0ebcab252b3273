//! Secret flags (docs/operations.md, "Admin CLI"). Every secret flag (`--private-key`,
//! `--webhook-secret`, `--secret`) takes a literal or `@path` (the file's contents). A command's
//! primary secret (the GitHub private key, the generic verification secret) may instead come from
//! `--from-env VAR` or `--stdin`, but from one mode only: two would leave the user guessing which
//! one won. Unlike the reference, `--webhook-secret` also honours `@path` (the docs promise it), so
//! a literal secret starting with `@` must be put in a file. Empty values are refused rather than
//! silently taken as "not given".
//!
//! The readers are injected (`SecretReaders`) so tests never touch the real stdin or env.

use crate::Error;

/// Where secret bytes come from; `ProcessReaders` is the real process.
pub trait SecretReaders {
    fn read_file(&self, path: &str) -> std::io::Result<String>;
    fn env_var(&self, name: &str) -> Option<String>;
    fn read_stdin(&self) -> std::io::Result<String>;
}

pub struct ProcessReaders;

impl SecretReaders for ProcessReaders {
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read_stdin(&self) -> std::io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    }
}

/// The primary secret of a command, as given on the command line.
pub struct PrimarySecret<'a> {
    /// The flag's name, e.g. `--private-key`.
    pub flag: &'a str,
    /// What it is, for messages: "private key", "verification secret".
    pub what: &'a str,
    pub value: Option<&'a str>,
    pub from_env: Option<&'a str>,
    pub stdin: bool,
}

impl<'a> PrimarySecret<'a> {
    /// The GitHub App private key (`source add github`, `source update`).
    pub fn private_key(value: Option<&'a str>, from_env: Option<&'a str>, stdin: bool) -> Self {
        PrimarySecret {
            flag: "--private-key",
            what: "private key",
            value,
            from_env,
            stdin,
        }
    }

    /// A generic source's verification secret (`source add generic`, `source update-generic`).
    pub fn verification_secret(
        value: Option<&'a str>,
        from_env: Option<&'a str>,
        stdin: bool,
    ) -> Self {
        PrimarySecret {
            flag: "--secret",
            what: "verification secret",
            value,
            from_env,
            stdin,
        }
    }
}

/// The value of a secret flag: `raw` itself, or the contents of the file `@path` names.
pub fn flag_value(flag: &str, raw: &str, readers: &dyn SecretReaders) -> Result<String, Error> {
    let Some(path) = raw.strip_prefix('@') else {
        return non_empty(raw.to_owned(), || {
            format!("{flag} is empty: give the value, or @path to read it from a file")
        });
    };
    if path.is_empty() {
        return Err(Error::Usage(format!(
            "{flag} @: a file path must follow the @ (e.g. {flag} @/path/to/file)"
        )));
    }
    let text = readers
        .read_file(path)
        .map_err(|e| Error::Usage(format!("cannot read {flag} file {path}: {e}")))?;
    non_empty(trim_newlines(&text), || {
        format!("{flag} file {path} is empty")
    })
}

/// The primary secret from whichever single mode was given; `None` when none was.
pub fn primary(
    secret: &PrimarySecret,
    readers: &dyn SecretReaders,
) -> Result<Option<String>, Error> {
    let mut given = Vec::new();
    if secret.value.is_some() {
        given.push(secret.flag);
    }
    if secret.from_env.is_some() {
        given.push("--from-env");
    }
    if secret.stdin {
        given.push("--stdin");
    }
    if given.len() > 1 {
        return Err(Error::Usage(format!(
            "{} each give the {}: use only one of them",
            join_and(&given),
            secret.what
        )));
    }
    if let Some(raw) = secret.value {
        return flag_value(secret.flag, raw, readers).map(Some);
    }
    if let Some(var) = secret.from_env {
        if var.is_empty() {
            return Err(Error::Usage(
                "--from-env needs the name of an environment variable".into(),
            ));
        }
        return match readers.env_var(var).filter(|v| !v.is_empty()) {
            Some(value) => Ok(Some(value)),
            None => Err(Error::Usage(format!(
                "Environment variable {var} is not set"
            ))),
        };
    }
    if secret.stdin {
        let text = readers.read_stdin().map_err(|e| {
            Error::Usage(format!("cannot read the {} from stdin: {e}", secret.what))
        })?;
        return non_empty(trim_newlines(&text), || {
            format!("--stdin: stdin was empty, expected the {}", secret.what)
        })
        .map(Some);
    }
    Ok(None)
}

/// Drops the line ending(s) a file or pipe adds; other whitespace may be part of the secret.
fn trim_newlines(text: &str) -> String {
    text.trim_end_matches(['\n', '\r']).to_owned()
}

fn non_empty(value: String, message: impl FnOnce() -> String) -> Result<String, Error> {
    if value.is_empty() {
        Err(Error::Usage(message()))
    } else {
        Ok(value)
    }
}

fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{cell::Cell, collections::HashMap, io};

    #[derive(Default)]
    struct Fake {
        files: HashMap<&'static str, &'static str>,
        env: HashMap<&'static str, &'static str>,
        stdin: Option<&'static str>,
        stdin_reads: Cell<usize>,
    }

    impl SecretReaders for Fake {
        fn read_file(&self, path: &str) -> io::Result<String> {
            self.files
                .get(path)
                .map(|t| t.to_string())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn env_var(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|v| v.to_string())
        }
        fn read_stdin(&self) -> io::Result<String> {
            self.stdin_reads.set(self.stdin_reads.get() + 1);
            Ok(self.stdin.unwrap_or("").to_owned())
        }
    }

    fn err(r: Result<impl std::fmt::Debug, Error>) -> String {
        r.expect_err("should fail").to_string()
    }

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----";

    #[test]
    fn literal_or_file_with_line_endings_trimmed() {
        let fake = Fake {
            files: HashMap::from([
                (
                    "/k.pem",
                    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\r\n\n",
                ),
                ("/s.txt", " spaced secret \n"),
            ]),
            ..Fake::default()
        };
        assert_eq!(
            flag_value("--webhook-secret", "plain", &fake).unwrap(),
            "plain"
        );
        assert_eq!(flag_value("--private-key", "@/k.pem", &fake).unwrap(), PEM);
        assert_eq!(
            flag_value("--secret", "@/s.txt", &fake).unwrap(),
            " spaced secret "
        );
    }

    #[test]
    fn bad_flag_values_say_which_flag_and_file() {
        let fake = Fake {
            files: HashMap::from([("/empty", "\n")]),
            ..Fake::default()
        };
        let m = err(flag_value("--private-key", "@/missing.pem", &fake));
        assert!(
            m.starts_with("cannot read --private-key file /missing.pem: "),
            "{m}"
        );
        assert!(m.contains("not found"), "{m}");
        assert_eq!(
            err(flag_value("--secret", "@/empty", &fake)),
            "--secret file /empty is empty"
        );
        assert!(err(flag_value("--secret", "", &fake)).starts_with("--secret is empty"));
        assert!(err(flag_value("--secret", "@", &fake)).contains("a file path must follow the @"));
    }

    #[test]
    fn from_env_and_stdin_feed_the_primary_secret() {
        let fake = Fake {
            env: HashMap::from([("GH_KEY", PEM), ("BLANK", "")]),
            stdin: Some("piped-key\n"),
            ..Fake::default()
        };
        assert_eq!(
            primary(
                &PrimarySecret::private_key(None, Some("GH_KEY"), false),
                &fake
            )
            .unwrap()
            .as_deref(),
            Some(PEM)
        );
        assert_eq!(
            err(primary(
                &PrimarySecret::private_key(None, Some("NOPE"), false),
                &fake
            )),
            "Environment variable NOPE is not set"
        );
        assert_eq!(
            err(primary(
                &PrimarySecret::private_key(None, Some("BLANK"), false),
                &fake
            )),
            "Environment variable BLANK is not set"
        );
        assert_eq!(
            primary(&PrimarySecret::private_key(None, None, true), &fake)
                .unwrap()
                .as_deref(),
            Some("piped-key")
        );
        assert_eq!(
            primary(&PrimarySecret::private_key(None, None, false), &fake).unwrap(),
            None
        );
    }

    #[test]
    fn empty_stdin_is_refused() {
        let fake = Fake {
            stdin: Some("\r\n"),
            ..Fake::default()
        };
        assert_eq!(
            err(primary(
                &PrimarySecret::private_key(None, None, true),
                &fake
            )),
            "--stdin: stdin was empty, expected the private key"
        );
    }

    #[test]
    fn two_modes_for_one_secret_are_refused_before_reading_anything() {
        let fake = Fake {
            stdin: Some("x"),
            ..Fake::default()
        };
        assert_eq!(
            err(primary(
                &PrimarySecret::private_key(Some("x"), None, true),
                &fake
            )),
            "--private-key and --stdin each give the private key: use only one of them"
        );
        assert_eq!(
            err(primary(
                &PrimarySecret::private_key(Some("x"), Some("V"), true),
                &fake
            )),
            "--private-key, --from-env and --stdin each give the private key: use only one of them"
        );
        assert_eq!(fake.stdin_reads.get(), 0);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Readers that answer with the generated contents (or an error when `None`).
    struct Given {
        file: Option<String>,
        env: Option<String>,
        stdin: Option<String>,
    }

    impl SecretReaders for Given {
        fn read_file(&self, _path: &str) -> std::io::Result<String> {
            self.file
                .clone()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn env_var(&self, _name: &str) -> Option<String> {
            self.env.clone()
        }
        fn read_stdin(&self) -> std::io::Result<String> {
            self.stdin
                .clone()
                .ok_or_else(|| std::io::ErrorKind::InvalidData.into())
        }
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_on_any_flags_and_contents(
            value in proptest::option::of("\\PC{0,20}|@\\PC{0,10}"),
            from_env in proptest::option::of("\\PC{0,10}"),
            stdin in any::<bool>(),
            file in proptest::option::of("[\\r\\n]{0,3}\\PC{0,20}[\\r\\n]{0,3}"),
            env in proptest::option::of("\\PC{0,20}"),
            stdin_text in proptest::option::of("\\PC{0,20}[\\r\\n]{0,3}"),
        ) {
            let readers = Given { file, env, stdin: stdin_text };
            let secret = PrimarySecret::verification_secret(value.as_deref(), from_env.as_deref(), stdin);
            // Whatever comes back is never an empty secret.
            if let Ok(Some(s)) = primary(&secret, &readers) {
                prop_assert!(!s.is_empty());
            }
            if let Some(raw) = value.as_deref() {
                if let Ok(s) = flag_value("--secret", raw, &readers) {
                    prop_assert!(!s.is_empty());
                }
            }
        }
    }
}
