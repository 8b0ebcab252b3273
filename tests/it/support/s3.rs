//! A real S3 server for the tests: s3s-fs (crates.io), which verifies SigV4 header and
//! presigned signatures and expiry. Each test process starts its own on a free 127.0.0.1 port
//! with a private data folder, and stops it on drop. `scripts/test.sh` installs the binary;
//! `S3S_FS_BIN` overrides where it is looked up.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ACCESS_KEY: &str = "kici-test-access";
pub const SECRET_KEY: &str = "kici-test-secret-0123456789";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    pub port: u16,
    pub data: PathBuf,
    child: Child,
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("S3S_FS_BIN") {
        return bin.into();
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("s3s-fs"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").into_os_string())
    }) {
        candidates.push(PathBuf::from(home).join("bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs not found (PATH, ~/.cargo/bin, $S3S_FS_BIN): run scripts/test.sh, which \
             installs it (cargo install s3s-fs --version 0.14.1 --features binary --locked)"
            )
        })
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let data = std::env::temp_dir().join(format!("kici-s3-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("s3 data folder");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let server = S3Server { port, data, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `http://127.0.0.1:<port>` (the orchestrator's vantage point).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://localhost:<port>`: the same server seen from "elsewhere" (the agents').
    pub fn external_endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// s3s-fs keeps a bucket as a folder of its data directory.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.data.join(name)).expect("create bucket folder");
    }

    /// The storage variables of an orchestrator using `bucket` on this server.
    pub fn env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("KICI_STORAGE_TYPE", "s3".to_owned()),
            ("KICI_STORAGE_BUCKET", bucket.to_owned()),
            ("KICI_STORAGE_REGION", REGION.to_owned()),
            ("KICI_STORAGE_ENDPOINT", self.endpoint()),
            ("KICI_STORAGE_EXTERNAL_ENDPOINT", self.external_endpoint()),
            ("KICI_STORAGE_FORCE_PATH_STYLE", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
