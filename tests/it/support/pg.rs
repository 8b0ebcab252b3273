//! Throwaway PostgreSQL clusters for integration tests.
//!
//! `PgCluster::start()` runs `initdb` + `pg_ctl start` in a fresh temp dir on a free
//! 127.0.0.1 port (trust auth, superuser `postgres`). When the tests run as root, the
//! server runs as an unprivileged user (`kici-test` if it exists, else `nobody`), because
//! `initdb` and `postgres` refuse to run as root.
//!
//! Leak protection: every cluster gets a detached watchdog shell that waits for the test
//! process to die and then stops the server (`-m immediate`) and removes the temp dir. It is
//! the only cleanup path of `PgCluster::shared()` (statics are never dropped) and the one
//! that still works after `panic = "abort"` or SIGKILL. A dropped `PgCluster` cleans up at
//! once and ends its watchdog.
//!
//! Tests share one cluster per test binary through `PgCluster::shared()` and isolate
//! themselves with `create_database()`. Never `stop()` the shared cluster: start a private
//! one with `PgCluster::start()` for restart tests.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NOT_FOUND: &str =
    "PostgreSQL server binaries not found: run scripts/test.sh (it installs postgresql)";

/// How long to wait for a started server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Unique suffixes for temp dirs and database names within this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A throwaway PostgreSQL cluster: initdb + pg_ctl in a temp dir, on a free 127.0.0.1
/// port, trust auth, superuser `postgres`.
pub struct PgCluster {
    bindir: PathBuf,
    tmp: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    watchdog: Mutex<Option<Child>>,
}

/// The unprivileged user the server runs as when the tests run as root.
#[derive(Clone, Debug)]
struct RunAs {
    user: String,
    uid: u32,
    gid: u32,
    /// Command prefix that runs the rest of the argv as that user.
    prefix: Vec<String>,
}

impl PgCluster {
    /// initdb + start a new cluster. Panics with a clear message (and the server log tail)
    /// on failure; whatever was started is cleaned up by the unwinding `Drop` (or, with
    /// `panic = "abort"`, by the watchdog).
    pub fn start() -> PgCluster {
        let bindir = bindir()
            .unwrap_or_else(|| panic!("{NOT_FOUND}"))
            .to_path_buf();
        let run_as = run_as().clone();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = std::env::temp_dir().join(format!(
            "kici-pg-{}-{}-{:08x}",
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir(&tmp)
            .unwrap_or_else(|e| panic!("PgCluster: cannot create {}: {e}", tmp.display()));
        let mut cluster = PgCluster {
            data: tmp.join("data"),
            log: tmp.join("server.log"),
            tmp,
            bindir,
            port: 0,
            run_as,
            watchdog: Mutex::new(None),
        };
        // First thing after the dir exists: from here on, nothing outlives this process.
        cluster.spawn_watchdog();
        if let Some(r) = &cluster.run_as {
            let out = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", r.uid, r.gid))
                .arg(&cluster.tmp)
                .output()
                .unwrap_or_else(|e| panic!("PgCluster: cannot run chown: {e}"));
            check(&out, "chown of the cluster dir", "");
        }
        cluster.initdb();
        let mut attempt = 1;
        loop {
            cluster.port = free_port();
            cluster.append_conf(&format!("port = {}\n", cluster.port));
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                Err((msg, bind_failure)) => {
                    if bind_failure && attempt < 3 {
                        attempt += 1;
                        continue;
                    }
                    panic!("{msg}");
                }
            }
        }
        cluster.wait_ready();
        cluster
    }

    /// One cluster per test binary, started on first use. Use a fresh database per test
    /// (`create_database`). Cleaned up by its watchdog when the test process exits.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(PgCluster::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port, db)
    }

    /// `CREATE DATABASE` with a unique name; returns its URL. Safe to call concurrently.
    pub fn create_database(&self) -> String {
        let name = format!(
            "kici_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let url = self.url("postgres");
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PgCluster: connect {url}: {e}{}", self.log_tail()));
        // Concurrent CREATE DATABASE is fine, but the template must have no other session;
        // retry that one transient error for a while in case a test connects to template1.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
                Ok(()) => break,
                Err(e)
                    if e.to_string().contains("being accessed by other users")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("PgCluster: CREATE DATABASE {name}: {e}"),
            }
        }
        self.url(&name)
    }

    /// `pg_ctl stop -m fast`, waits until the server is down.
    pub fn stop(&self) {
        let out = self
            .pg_ctl()
            .args(["stop", "-m", "fast", "-w", "-t", "60"])
            .output()
            .unwrap_or_else(|e| panic!("PgCluster: cannot run pg_ctl: {e}"));
        check(&out, "pg_ctl stop", &self.log_tail());
    }

    /// Start the stopped server again on the SAME port and data dir; waits until it
    /// accepts connections.
    pub fn start_again(&self) {
        if let Err((msg, _)) = self.pg_ctl_start() {
            panic!("{msg}");
        }
        self.wait_ready();
    }

    /// Turns TLS on with this server certificate and key (PEM), then restarts the server.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = self.data.join(name);
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("PgCluster: cannot write {}: {e}", path.display()));
            let mut chmod = Command::new("chmod");
            chmod.arg("600").arg(&path);
            check(&chmod.output().expect("chmod"), "chmod of a TLS file", "");
            if let Some(r) = &self.run_as {
                let mut chown = Command::new("chown");
                chown.arg(format!("{}:{}", r.uid, r.gid)).arg(&path);
                check(&chown.output().expect("chown"), "chown of a TLS file", "");
            }
        }
        self.append_conf("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        self.stop();
        self.start_again();
    }

    /// Run SQL (simple query protocol, several statements allowed) and return the rows
    /// joined by '\n', columns by '|' (NULL as empty), like `psql -At`.
    pub fn psql(&self, db_url: &str, sql: &str) -> String {
        let mut client = postgres::Client::connect(db_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PgCluster::psql: connect {db_url}: {e}"));
        let messages = client
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("PgCluster::psql: {sql}: {e}"));
        let mut rows = Vec::new();
        for m in messages {
            if let postgres::SimpleQueryMessage::Row(row) = m {
                let cols: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("")).collect();
                rows.push(cols.join("|"));
            }
        }
        rows.join("\n")
    }

    /// The whole database at `db_url` as SQL text, from the installed `pg_dump` (data and
    /// schema, every table).
    pub fn pg_dump(&self, db_url: &str) -> String {
        let out = self
            .command("pg_dump")
            .args(["--no-owner", "--dbname", db_url])
            .output()
            .unwrap_or_else(|e| panic!("PgCluster::pg_dump: cannot run pg_dump: {e}"));
        assert!(
            out.status.success(),
            "pg_dump {db_url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Dumps the database with `pg_dump` and panics naming the first of `values` found in it,
    /// so a plaintext secret anywhere at rest fails the test. Use values without characters
    /// that `COPY` escapes (backslash, tab, newline), or they would hide as their escapes.
    /// Returns the dump's size, so a caller can check it dumped something.
    pub fn assert_dump_lacks(&self, db_url: &str, values: &[&str]) -> usize {
        let dump = self.pg_dump(db_url);
        assert!(
            dump.contains("CREATE TABLE"),
            "pg_dump of {db_url} has no tables"
        );
        for value in values {
            assert!(!value.is_empty(), "assert_dump_lacks: empty value");
            if let Some(at) = dump.find(value) {
                let line_start = dump[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = dump[at..].find('\n').map_or(dump.len(), |i| at + i);
                panic!(
                    "plaintext secret found in the database dump, on this line:\n{}",
                    &dump[line_start..line_end]
                );
            }
        }
        dump.len()
    }

    // ---- internals -------------------------------------------------------------------

    /// A command for a PostgreSQL binary, run as the unprivileged user when needed.
    fn command(&self, program: &str) -> Command {
        let program = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(r) => {
                let mut c = Command::new(&r.prefix[0]);
                c.args(&r.prefix[1..]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // The unprivileged user may not be able to enter the caller's cwd (e.g. /root);
        // a C locale avoids "invalid locale settings" on machines without locales.
        cmd.current_dir(&self.tmp)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null());
        cmd
    }

    fn pg_ctl(&self) -> Command {
        let mut c = self.command("pg_ctl");
        c.arg("-D").arg(&self.data);
        c
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|e| panic!("PgCluster: cannot run initdb: {e}"));
        check(&out, "initdb", "");
        let tmp = self.tmp.to_str().expect("temp dir path is not UTF-8");
        let socket_dir = tmp.replace('\'', "''");
        self.append_conf(&format!(
            "\n# kici test harness\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n"
        ));
    }

    /// Append to postgresql.conf (later lines win). Appending keeps the file's owner.
    fn append_conf(&self, text: &str) {
        let path = self.data.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("PgCluster: cannot open {}: {e}", path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("PgCluster: cannot write {}: {e}", path.display()));
    }

    /// `pg_ctl start -w`. Err((message, looks like a port bind failure)).
    fn pg_ctl_start(&self) -> Result<(), (String, bool)> {
        let log_len = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap_or_else(|e| panic!("PgCluster: cannot run pg_ctl: {e}"));
        if out.status.success() {
            return Ok(());
        }
        let log = fs::read(&self.log).unwrap_or_default();
        let new_log = String::from_utf8_lossy(log.get(log_len as usize..).unwrap_or(&[]));
        let bind_failure = new_log.contains("could not bind")
            || new_log.contains("could not create any TCP/IP sockets")
            || new_log.contains("Address already in use");
        Err((
            format!(
                "PgCluster: pg_ctl start on port {} failed ({}):\n{}{}",
                self.port,
                out.status,
                output_text(&out),
                self.log_tail()
            ),
            bind_failure,
        ))
    }

    /// Poll with real connections until the server answers `SELECT 1`.
    fn wait_ready(&self) {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let err = match config.connect(postgres::NoTls) {
                Ok(mut client) => match client.simple_query("SELECT 1") {
                    Ok(_) => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "PgCluster: server on 127.0.0.1:{} not accepting connections after {:?}: {err}{}",
                    self.port,
                    READY_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Detached `sh` that waits for this process to die, then stops the server and removes
    /// the temp dir. Own process group so a terminal's Ctrl-C does not kill it first. A
    /// zombie counts as dead: `kill -0` succeeds on one, and an orphan's reaper may be slow.
    fn spawn_watchdog(&self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let mut stop = String::new();
        if let Some(r) = &self.run_as {
            for p in &r.prefix {
                stop.push_str(&sh_quote(p));
                stop.push(' ');
            }
        }
        stop.push_str(&format!(
            "{} -D {} stop -m immediate -w -t 30",
            sh_quote(&pg_ctl.to_string_lossy()),
            sh_quote(&self.data.to_string_lossy())
        ));
        let script = format!(
            "trap '' HUP INT\n\
             while kill -0 {pid} 2>/dev/null \
             && ! grep -qs '^State:[[:space:]]*[ZX]' /proc/{pid}/status; do sleep 0.5; done\n\
             cd /\n\
             LC_ALL=C {stop} >/dev/null 2>&1\n\
             rm -rf {tmp}\n",
            pid = std::process::id(),
            tmp = sh_quote(&self.tmp.to_string_lossy()),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("PgCluster: cannot start the watchdog (sh): {e}"));
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    fn log_tail(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(40);
                format!(
                    "\n--- server log tail ({}) ---\n{}",
                    self.log.display(),
                    lines[from..].join("\n")
                )
            }
            Err(e) => format!("\n(no server log at {}: {e})", self.log.display()),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Must not panic: this may run while unwinding from a failed test.
        let _ = self
            .pg_ctl()
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.tmp);
        let watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = watchdog {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- process-wide lookups ----------------------------------------------------------------

/// `pg_config --bindir` if it has `initdb`, else the highest `/usr/lib/postgresql/*/bin`.
fn bindir() -> Option<&'static Path> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR.get_or_init(find_bindir).as_deref()
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path().join("bin");
        if dir.join("initdb").is_file()
            && dir.join("pg_ctl").is_file()
            && best.as_ref().is_none_or(|(v, _)| version > *v)
        {
            best = Some((version, dir));
        }
    }
    best.map(|(_, dir)| dir)
}

/// None when not root; else the user to run PostgreSQL as and how.
fn run_as() -> &'static Option<RunAs> {
    static RUN_AS: OnceLock<Option<RunAs>> = OnceLock::new();
    RUN_AS.get_or_init(|| {
        let euid = id(&["-u"]).expect("PgCluster: `id -u` failed");
        if euid != 0 {
            return None;
        }
        let user = ["kici-test", "nobody"]
            .into_iter()
            .find(|u| id(&["-u", u]).is_some())
            .unwrap_or_else(|| {
                panic!("PgCluster: running as root but neither user `kici-test` nor `nobody` exists (scripts/test.sh creates kici-test)")
            });
        let uid = id(&["-u", user]).unwrap();
        let gid = id(&["-g", user]).expect("PgCluster: `id -g` failed");
        let prefix = if let Some(setpriv) = find_tool("setpriv") {
            vec![
                setpriv,
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_string(),
                "--".to_string(),
            ]
        } else if let Some(runuser) = find_tool("runuser") {
            vec![runuser, "-u".to_string(), user.to_string(), "--".to_string()]
        } else {
            panic!("PgCluster: running as root needs `setpriv` or `runuser` (util-linux) to drop privileges for initdb/postgres");
        };
        Some(RunAs { user: user.to_string(), uid, gid, prefix })
    })
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A tool from PATH or the usual system dirs (root's PATH may lack sbin).
fn find_tool(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.map(|p| p.to_string_lossy().into_owned())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("PgCluster: cannot bind 127.0.0.1:0: {e}"));
    listener.local_addr().unwrap().port()
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(out: &Output, what: &str, extra: &str) {
    if !out.status.success() {
        panic!(
            "PgCluster: {what} failed ({}):\n{}{extra}",
            out.status,
            output_text(out)
        );
    }
}
