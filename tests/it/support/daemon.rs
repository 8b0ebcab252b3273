//! Runs the real `kici-admin` binary: the daemon in the background (stdout/stderr captured) and
//! one-shot CLI commands. Talks HTTP over plain `TcpStream`s so tests see exactly the bytes.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_kici-admin");

/// A fixed valid key for tests (64 hex chars).
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A command with no inherited KICI_* variables, so the developer's shell can't leak in.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KICI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("JOURNAL_STREAM");
    cmd.stdin(Stdio::null());
    cmd
}

/// The minimal valid environment for an independent daemon on `db_url`, ephemeral port.
pub fn base_env(db_url: &str) -> Vec<(String, String)> {
    vec![
        ("KICI_MODE".into(), "independent".into()),
        ("KICI_DATABASE_URL".into(), db_url.into()),
        ("KICI_SECRET_KEY".into(), TEST_KEY.into()),
        ("KICI_PORT".into(), "0".into()),
        ("KICI_BIND_ADDRESS".into(), "127.0.0.1".into()),
    ]
}

/// Runs `kici-admin <args>` to completion with exactly `env` as its KICI_* environment.
pub fn cli(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = command();
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("run kici-admin")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The id of the source that `source add` printed: the second word of its second line.
pub fn added_source_id(out: &str) -> String {
    out.lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A daemon on database `db` with bootstrap admin token `owner`, ready.
pub fn owner_daemon(db: &str, owner: &str) -> Daemon {
    let mut env = base_env(db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), owner.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    d
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn capture(stream: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

impl Daemon {
    /// Starts `orchestrator run` and waits until it logs where it listens. Panics with its
    /// output if it exits or takes longer than 30 s.
    pub fn start(env: &[(String, String)]) -> Daemon {
        Daemon::try_start(env).unwrap_or_else(|(code, out, err)| {
            panic!("daemon did not start (exit {code:?})\nstdout:\n{out}\nstderr:\n{err}")
        })
    }

    /// Like `start`, but returns (exit code, stdout, stderr) when the daemon exits before
    /// listening.
    pub fn try_start(env: &[(String, String)]) -> Result<Daemon, (Option<i32>, String, String)> {
        let mut cmd = command();
        cmd.args(["orchestrator", "run"])
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kici-admin");
        let (out, err) = (
            Arc::new(Mutex::new(String::new())),
            Arc::new(Mutex::new(String::new())),
        );
        capture(child.stdout.take().unwrap(), out.clone());
        capture(child.stderr.take().unwrap(), err.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = listen_addr(&err.lock().unwrap());
            if let Some(addr) = found {
                return Ok(Daemon {
                    child,
                    addr,
                    out,
                    err,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                thread::sleep(Duration::from_millis(100)); // let the readers drain
                let (o, e) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
                return Err((status.code(), o, e));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "daemon did not listen within 30 s; stderr:\n{}",
                    err.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Standard output once it contains `needle` (stdout and stderr are read by two threads,
    /// so a line printed before the "Listening" log line may still be on its way).
    pub fn stdout_with(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.stdout();
            if out.contains(needle) || Instant::now() > deadline {
                return out;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        request(self.addr, "GET", path, &[], b"")
    }

    /// Polls `/ready` until it answers `want` (panics after `within`).
    pub fn wait_ready_status(&self, want: u16, within: Duration) -> HttpResponse {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get("/ready");
            if r.status == want {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "/ready stayed {} (wanted {want}); stderr:\n{}",
                    r.status,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        signal(self.child.id(), "TERM");
        self.wait_exit(Duration::from_secs(20))
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {within:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "kill -{sig} {pid}");
}

fn listen_addr(log: &str) -> Option<SocketAddr> {
    let rest = log.split("Listening on http://").nth(1)?;
    let end = rest.find('/')?;
    rest[..end].parse().ok()
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s)
}

/// Reads one response (Content-Length framed, as our server always sends).
pub fn read_response(s: &mut TcpStream) -> HttpResponse {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            // A signal meant for another test's child process may interrupt the read.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => panic!(
                "connection ended before a full response head ({other:?}): {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("response body");
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Like `cli`, feeding `input` on standard input.
pub fn cli_with_stdin(args: &[&str], env: &[(String, String)], input: &str) -> Output {
    let mut cmd = command();
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kici-admin");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("kici-admin output")
}
