//! Where `secret set` and `variable set` take their value from (docs/secrets.md, "Commands"):
//! exactly one of `--value`, `--from-env`, `--from-file`, `--prompt` and `--from-stdin`; with
//! none, a prompt without echo on a terminal and standard input otherwise. `--value` warns that
//! the value lands in shell history; `--confirm-fingerprint` refuses a value whose SHA-256 is not
//! the one given, so a wrong file or variable is caught before anything is written.
//!
//! Pure over the injected `SecretReaders` (secret_input.rs) and `Terminal`, so tests never touch
//! the real stdin, environment or terminal.

use std::io;

use super::secret_input::{ProcessReaders, SecretReaders};
use crate::{crypto, Error};

/// The terminal side: whether stdin is one, and a prompt that does not echo.
pub trait Terminal {
    fn stdin_is_tty(&self) -> bool;
    /// Prints `prompt` on stderr and reads one line without echo; `None` at end of input.
    fn read_hidden(&self, prompt: &str) -> io::Result<Option<String>>;
}

/// The real process's terminal.
pub struct ProcessTerminal;

impl Terminal for ProcessTerminal {
    fn stdin_is_tty(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdin())
    }
    fn read_hidden(&self, prompt: &str) -> io::Result<Option<String>> {
        use crate::service::wizard::Console;
        super::orchestrator::console::ProcessConsole::new().ask_secret(prompt)
    }
}

/// The input flags as given.
#[derive(Default)]
pub struct ValueFlags<'a> {
    pub value: Option<&'a str>,
    pub from_env: Option<&'a str>,
    pub from_file: Option<&'a str>,
    pub prompt: bool,
    pub from_stdin: bool,
    /// Keep a file's trailing line ending.
    pub no_trim: bool,
}

/// Where the value came from, as `--dry-run` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Value,
    Env,
    File,
    Prompt,
    Stdin,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Value => "value",
            Source::Env => "env",
            Source::File => "file",
            Source::Prompt => "prompt",
            Source::Stdin => "stdin",
        }
    }
}

/// A value read, with the warnings to print on stderr before using it.
pub struct ReadValue {
    pub value: String,
    pub source: Source,
    pub warnings: Vec<String>,
}

pub const HISTORY_WARNING: &str = "warning: --value puts the secret in shell history and in the process list; prefer the prompt, --from-file, --from-env or standard input";

/// One trailing `\n` or `\r\n`, as a file or `echo` adds.
fn strip_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// [`read_value`] in the real process (its environment, files, stdin and terminal), printing
/// the warnings on stderr.
pub fn read_in_process(flags: &ValueFlags, what: &str, secret: bool) -> Result<ReadValue, Error> {
    let read = read_value(flags, what, secret, &ProcessReaders, &ProcessTerminal)?;
    for w in &read.warnings {
        eprintln!("{w}");
    }
    Ok(read)
}

/// Reads the value from the one mode given. `what` names it in messages ("secret", "variable").
pub fn read_value(
    flags: &ValueFlags,
    what: &str,
    secret: bool,
    readers: &dyn SecretReaders,
    term: &dyn Terminal,
) -> Result<ReadValue, Error> {
    let given: Vec<&str> = [
        (flags.value.is_some(), "--value"),
        (flags.from_env.is_some(), "--from-env"),
        (flags.from_file.is_some(), "--from-file"),
        (flags.prompt, "--prompt"),
        (flags.from_stdin, "--from-stdin"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect();
    if given.len() > 1 {
        return Err(Error::Usage(format!(
            "Ambiguous input mode: {} each give the {what}'s value; use only one",
            given.join(", ")
        )));
    }
    let mut warnings = Vec::new();
    let (value, source) = if let Some(v) = flags.value {
        if secret {
            warnings.push(HISTORY_WARNING.to_owned());
        }
        (v.to_owned(), Source::Value)
    } else if let Some(var) = flags.from_env {
        if var.is_empty() {
            return Err(Error::Usage(
                "--from-env needs the name of an environment variable".into(),
            ));
        }
        let v = readers.env_var(var).ok_or_else(|| {
            Error::Usage(format!("--from-env: environment variable {var} is not set"))
        })?;
        (v, Source::Env)
    } else if let Some(path) = flags.from_file {
        let text = readers
            .read_file(path)
            .map_err(|e| Error::Usage(format!("--from-file: cannot read {path}: {e}")))?;
        let v = if flags.no_trim {
            text
        } else {
            strip_one_newline(&text).to_owned()
        };
        (v, Source::File)
    } else if flags.prompt || (!flags.from_stdin && term.stdin_is_tty()) {
        if !term.stdin_is_tty() {
            return Err(Error::Usage(
                "--prompt needs a terminal on standard input; pipe the value with --from-stdin instead".into(),
            ));
        }
        let line = term
            .read_hidden("Enter value: ")
            .map_err(|e| Error::Usage(format!("cannot read the {what} from the terminal: {e}")))?
            .ok_or_else(|| Error::Usage(format!("no {what} value was entered")))?;
        (line, Source::Prompt)
    } else {
        if flags.from_stdin && term.stdin_is_tty() {
            return Err(Error::Usage(
                "--from-stdin reads a pipe or file, but standard input is a terminal; type the value at the prompt (leave out --from-stdin)".into(),
            ));
        }
        let text = readers.read_stdin().map_err(|e| {
            Error::Usage(format!("cannot read the {what} from standard input: {e}"))
        })?;
        (strip_one_newline(&text).to_owned(), Source::Stdin)
    };
    if value.is_empty() {
        warnings.push(format!("warning: the {what} value is empty"));
    }
    Ok(ReadValue {
        value,
        source,
        warnings,
    })
}

/// Lowercase hex SHA-256 of the value: what `--confirm-fingerprint` compares.
pub fn fingerprint(value: &str) -> String {
    crypto::sha256_hex(value.as_bytes())
}

/// `Ok` when `expected` (64 hex digits, either case) is the value's SHA-256.
pub fn confirm_fingerprint(value: &str, expected: &str) -> Result<(), Error> {
    let expected = expected.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Usage(format!(
            "--confirm-fingerprint must be 64 hex characters (the SHA-256 of the value, e.g. from `printf %s \"$VALUE\" | sha256sum`), got {} characters",
            expected.chars().count()
        )));
    }
    let actual = fingerprint(value);
    if crypto::ct_eq(actual.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--confirm-fingerprint does not match: the value read has SHA-256 {actual}; nothing was written"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, collections::HashMap};

    use super::*;

    #[derive(Default)]
    struct Fake {
        files: HashMap<&'static str, &'static str>,
        env: HashMap<&'static str, &'static str>,
        stdin: &'static str,
        tty: bool,
        typed: Option<&'static str>,
        prompts: Cell<usize>,
    }

    impl SecretReaders for Fake {
        fn read_file(&self, path: &str) -> io::Result<String> {
            self.files
                .get(path)
                .map(|s| s.to_string())
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn env_var(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|s| s.to_string())
        }
        fn read_stdin(&self) -> io::Result<String> {
            Ok(self.stdin.to_owned())
        }
    }

    impl Terminal for Fake {
        fn stdin_is_tty(&self) -> bool {
            self.tty
        }
        fn read_hidden(&self, _prompt: &str) -> io::Result<Option<String>> {
            self.prompts.set(self.prompts.get() + 1);
            Ok(self.typed.map(str::to_owned))
        }
    }

    fn read(flags: ValueFlags, fake: &Fake) -> Result<ReadValue, Error> {
        read_value(&flags, "secret", true, fake, fake)
    }

    #[test]
    fn each_mode() {
        let fake = Fake {
            files: HashMap::from([("/v", "line\r\n\n"), ("/raw", "x\n")]),
            env: HashMap::from([("TOKEN", "from-env"), ("EMPTY", "")]),
            stdin: "piped\n",
            ..Fake::default()
        };
        let r = read(
            ValueFlags {
                value: Some("lit"),
                ..Default::default()
            },
            &fake,
        )
        .unwrap();
        assert_eq!((r.value.as_str(), r.source), ("lit", Source::Value));
        assert_eq!(r.warnings, [HISTORY_WARNING]);
        let r = read(
            ValueFlags {
                from_env: Some("TOKEN"),
                ..Default::default()
            },
            &fake,
        )
        .unwrap();
        assert_eq!((r.value.as_str(), r.source.name()), ("from-env", "env"));
        let r = read(
            ValueFlags {
                from_env: Some("EMPTY"),
                ..Default::default()
            },
            &fake,
        )
        .unwrap();
        assert_eq!(r.warnings, ["warning: the secret value is empty"]);
        let e = read(
            ValueFlags {
                from_env: Some("NOPE"),
                ..Default::default()
            },
            &fake,
        );
        assert_eq!(
            e.err().unwrap().to_string(),
            "--from-env: environment variable NOPE is not set"
        );
        // One line ending is stripped, not all of them.
        let r = read(
            ValueFlags {
                from_file: Some("/v"),
                ..Default::default()
            },
            &fake,
        )
        .unwrap();
        assert_eq!(r.value, "line\r\n");
        let r = read(
            ValueFlags {
                from_file: Some("/raw"),
                no_trim: true,
                ..Default::default()
            },
            &fake,
        )
        .unwrap();
        assert_eq!(r.value, "x\n");
        // Not a terminal and nothing given: standard input.
        let r = read(ValueFlags::default(), &fake).unwrap();
        assert_eq!((r.value.as_str(), r.source), ("piped", Source::Stdin));
        assert_eq!(fake.prompts.get(), 0);
    }

    #[test]
    fn the_terminal_gets_a_prompt() {
        let fake = Fake {
            tty: true,
            typed: Some("typed"),
            ..Fake::default()
        };
        let r = read(ValueFlags::default(), &fake).unwrap();
        assert_eq!((r.value.as_str(), r.source), ("typed", Source::Prompt));
        assert!(r.warnings.is_empty());
        let e = read(
            ValueFlags {
                from_stdin: true,
                ..Default::default()
            },
            &fake,
        );
        assert!(e
            .err()
            .unwrap()
            .to_string()
            .contains("standard input is a terminal"));
        let piped = Fake::default();
        let e = read(
            ValueFlags {
                prompt: true,
                ..Default::default()
            },
            &piped,
        );
        assert!(e.err().unwrap().to_string().contains("needs a terminal"));
    }

    #[test]
    fn two_modes_are_ambiguous() {
        let fake = Fake::default();
        let flags = ValueFlags {
            value: Some("a"),
            from_file: Some("/f"),
            ..Default::default()
        };
        assert_eq!(
            read(flags, &fake).err().unwrap().to_string(),
            "Ambiguous input mode: --value, --from-file each give the secret's value; use only one"
        );
    }

    #[test]
    fn fingerprints() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // "hello"
        assert_eq!(fingerprint("hello"), sha);
        assert!(confirm_fingerprint("hello", sha).is_ok());
        assert!(confirm_fingerprint("hello", &sha.to_uppercase()).is_ok());
        let e = confirm_fingerprint("hullo", sha).unwrap_err().to_string();
        assert!(
            e.contains("does not match") && e.contains("nothing was written"),
            "{e}"
        );
        assert!(!e.contains("hullo"));
        assert!(confirm_fingerprint("hello", "abc").is_err());
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    struct Given(Option<String>, bool);

    impl SecretReaders for Given {
        fn read_file(&self, _: &str) -> io::Result<String> {
            self.0.clone().ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn env_var(&self, _: &str) -> Option<String> {
            self.0.clone()
        }
        fn read_stdin(&self) -> io::Result<String> {
            self.0
                .clone()
                .ok_or_else(|| io::ErrorKind::InvalidData.into())
        }
    }

    impl Terminal for Given {
        fn stdin_is_tty(&self) -> bool {
            self.1
        }
        fn read_hidden(&self, _: &str) -> io::Result<Option<String>> {
            Ok(self.0.clone())
        }
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics(
            value in proptest::option::of("\\PC{0,10}"),
            env in proptest::option::of("\\PC{0,10}"),
            file in proptest::option::of("\\PC{0,10}"),
            prompt in any::<bool>(),
            stdin in any::<bool>(),
            tty in any::<bool>(),
            contents in proptest::option::of("\\PC{0,20}[\\r\\n]{0,3}"),
            fp in "\\PC{0,70}",
        ) {
            let flags = ValueFlags {
                value: value.as_deref(),
                from_env: env.as_deref(),
                from_file: file.as_deref(),
                prompt,
                from_stdin: stdin,
                no_trim: false,
            };
            let given = Given(contents, tty);
            if let Ok(r) = read_value(&flags, "secret", true, &given, &given) {
                let _ = confirm_fingerprint(&r.value, &fp);
            }
        }
    }
}
