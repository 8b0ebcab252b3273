//! The wizard's console on the real process: prompts on stderr (stdout stays clean for
//! `--json`), one answer per line from stdin, and secrets typed on a terminal without echo
//! (termios `ECHO` off for that one line, restored even when reading fails).

use std::io::{self, BufRead, IsTerminal, Write};

use crate::service::wizard::{Checks, Console};

pub struct ProcessConsole {
    input: io::StdinLock<'static>,
    tty: bool,
}

impl ProcessConsole {
    pub fn new() -> ProcessConsole {
        let stdin = io::stdin();
        ProcessConsole {
            tty: stdin.is_terminal(),
            input: stdin.lock(),
        }
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
    }
}

impl Console for ProcessConsole {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        eprint!("{prompt}");
        io::stderr().flush()?;
        let line = self.read_line()?;
        if !self.tty {
            eprintln!(); // the piped answer is not echoed: end the prompt's line
        }
        Ok(line)
    }

    fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        if !self.tty {
            return self.ask(prompt);
        }
        eprint!("{prompt}");
        io::stderr().flush()?;
        let _echo_off = EchoOff::new();
        let line = self.read_line();
        eprintln!(); // the Enter key was not echoed either
        line
    }

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// Echo off on stdin while alive.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it or fails, and fd 0 is stdin.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new` on the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

/// The wizard's checks on the real system.
pub struct SystemChecks;

impl Checks for SystemChecks {
    fn database(&self, url: &str) -> Result<String, String> {
        crate::service::provision::server_version(url)
    }

    fn read_file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn existing_instance(
        &self,
        url: &str,
    ) -> Result<Option<crate::service::existing::Existing>, String> {
        crate::service::existing::inspect(url)
    }

    fn key_opens(&self, url: &str, key: &str) -> Result<bool, String> {
        crate::service::existing::key_opens(url, key)
    }

    /// Taken when binding all addresses on it fails (a listener on any address blocks that).
    fn port_in_use(&self, port: u16) -> bool {
        std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
    }
}
