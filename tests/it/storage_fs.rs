//! The filesystem backend through a real daemon: signed blob routes moving 50 MiB with curl,
//! URLs that still work after a restart (the signing key comes from KICI_SECRET_KEY), every
//! refusal of the routes, TTL with an injected clock, and the routes absent without it.

use crate::support;

use std::{net::TcpListener, path::PathBuf, time::Duration};

use jiff::{SignedDuration, Timestamp};
use kici_orchestrator::storage::{keys, presign::Verb, Area, Audience};
use support::{
    daemon::{base_env, cli, request, stderr, stdout, Daemon},
    pg::PgCluster,
    storage::{big_file, curl, open, ttl_scenario},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kici-fs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Daemon env with filesystem storage in `dir` on a fixed port (so URLs survive a restart).
fn env(dir: &std::path::Path, port: u16) -> Vec<(String, String)> {
    let url = PgCluster::shared().create_database();
    let mut env = base_env(&url);
    env.retain(|(k, _)| k != "KICI_PORT");
    env.push(("KICI_PORT".into(), port.to_string()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), dir.display().to_string()));
    env
}

fn start(env: &[(String, String)]) -> Daemon {
    let d = Daemon::start(env);
    d.wait_ready_status(200, Duration::from_secs(10));
    d
}

fn presign(env: &[(String, String)], key: &str, method: &str) -> String {
    let out = cli(&["storage", "presign", key, "--method", method], env);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn signed_urls_move_50_mib_and_survive_a_restart() {
    let dir = folder("big");
    let port = free_port();
    let env = env(&dir, port);
    let mut daemon = start(&env);
    assert!(
        daemon.stderr().contains("filesystem storage in"),
        "{}",
        daemon.stderr()
    );
    let key = "deps/linux-x64/big lock+ü.tar.gz";
    let put = presign(&env, key, "put");
    let base = format!(
        "http://127.0.0.1:{port}/api/v1/cache/blob/deps/linux-x64/big%20lock%2B%C3%BC.tar.gz?sig="
    );
    assert!(put.starts_with(&base), "{put}");
    let files = dir.with_extension("files");
    let (file, bytes) = big_file(&files, "upload.bin", 50 * 1024 * 1024);
    let (status, body) = curl(&["-T", file.to_str().unwrap(), &put]);
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
    assert!(dir.join(key).is_file(), "the blob is stored under its key");
    assert!(
        std::fs::read_dir(dir.join(".kici-tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no temp file is left behind"
    );
    let get = presign(&env, key, "get");
    let download = |name: &str| {
        let out = files.join(name);
        let (status, _) = curl(&["-o", out.to_str().unwrap(), &get]);
        assert_eq!(status, 200);
        let back = std::fs::read(&out).unwrap();
        assert!(
            back == bytes,
            "{name}: {} bytes back, differing",
            back.len()
        );
    };
    download("before-restart.bin");
    assert_eq!(daemon.terminate(), Some(0));
    let _daemon = start(&env);
    download("after-restart.bin");
    std::fs::remove_dir_all(&files).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_blob_routes_refuse_what_they_must() {
    let dir = folder("refuse");
    let port = free_port();
    let env = env(&dir, port);
    let daemon = start(&env);
    let storage = open(&env);
    let now = Timestamp::now();
    let key = "source/a.tar.gz";
    let url = |verb: Verb, at: Timestamp| {
        storage
            .presign(
                Area::Cache,
                key,
                verb,
                Audience::Agent,
                Duration::from_secs(900),
                at,
            )
            .unwrap()
    };
    let path_of = |u: &str| u.split_once(&format!("{port}")).unwrap().1.to_owned();
    let call = |method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]| {
        request(daemon.addr, method, path, headers, body)
    };
    let put = path_of(&url(Verb::Put, now));
    assert_eq!(call("PUT", &put, b"v1", &[]).status, 200);

    let get = path_of(&url(Verb::Get, now));
    let ok = call("GET", &get, b"", &[]);
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"v1"[..]));
    assert_eq!(ok.header("content-type"), Some("application/octet-stream"));
    let full = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let (status, head) = curl(&["-I", &full(&get)]);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-length: 2\r\n"),
        "{head}"
    );

    let error = |path: &str, method: &str| {
        let r = call(method, path, b"x", &[]);
        (
            r.status,
            r.json()["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (sig_head, sig) = get.split_once("sig=").unwrap();
    let last = if sig.ends_with('0') { "1" } else { "0" };
    let flipped = format!("{sig_head}sig={}{last}", &sig[..sig.len() - 1]);
    assert_eq!(
        error(&flipped, "GET"),
        (401, "Invalid token (bad-signature)".into())
    );
    // A GET signature does not allow a PUT.
    assert_eq!(
        error(&get, "PUT"),
        (401, "Invalid token (bad-signature)".into())
    );
    let expired = path_of(&url(Verb::Get, now - SignedDuration::from_hours(2)));
    assert_eq!(
        error(&expired, "GET"),
        (401, "Invalid token (expired)".into())
    );
    let bare = get.split('?').next().unwrap().to_owned();
    assert_eq!(
        error(&bare, "GET"),
        (401, "Invalid token (malformed)".into())
    );
    let dotdot = format!("/api/v1/cache/blob/source/%2E%2E/x?sig={sig}");
    assert_eq!(error(&dotdot, "GET").0, 400);
    let nul = format!("/api/v1/cache/blob/source/a%00b?sig={sig}");
    assert_eq!(error(&nul, "GET").0, 400);
    let missing_key = "source/missing.tar.gz";
    let missing = storage
        .presign(
            Area::Cache,
            missing_key,
            Verb::Get,
            Audience::Agent,
            Duration::from_secs(60),
            now,
        )
        .unwrap();
    assert_eq!(error(&path_of(&missing), "GET").0, 404);
    assert_eq!(call("DELETE", &get, b"", &[]).status, 405);
    let chunk_file = dir.with_extension("chunked");
    std::fs::write(&chunk_file, b"v2").unwrap();
    let chunked = [
        "-H",
        "Transfer-Encoding: chunked",
        "-T",
        chunk_file.to_str().unwrap(),
    ];
    let (status, _) = curl(&[&chunked[..], &[full(&put).as_str()]].concat());
    assert_eq!(status, 411, "uploads must announce their length");
    // Refused before the body is sent: a bad signature gets its 401 instead of 100 Continue.
    let (put_head, put_sig) = put.split_once("sig=").unwrap();
    let last = if put_sig.ends_with('0') { "1" } else { "0" };
    let bad_put = format!("{put_head}sig={}{last}", &put_sig[..put_sig.len() - 1]);
    let mut raw = std::net::TcpStream::connect(daemon.addr).unwrap();
    let head = format!(
        "PUT {bad_put} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    );
    std::io::Write::write_all(&mut raw, head.as_bytes()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(support::daemon::read_response(&mut raw).status, 401);
    std::fs::remove_file(&chunk_file).unwrap();
    // Nothing above changed the blob.
    assert_eq!(std::fs::read(dir.join(key)).unwrap(), b"v1");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ttl_and_no_routes_without_filesystem_storage() {
    let dir = folder("ttl");
    let port = free_port();
    let env = env(&dir, port);
    let _daemon = start(&env);
    let storage = open(&env);
    ttl_scenario(&storage, &keys::source("hash-ttl"), |url, bytes| {
        let (status, _) = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &String::from_utf8_lossy(bytes),
            url,
        ]);
        assert_eq!(status, 200);
    });
    std::fs::remove_dir_all(&dir).unwrap();

    let plain = Daemon::start(&base_env(&PgCluster::shared().create_database()));
    plain.wait_ready_status(200, Duration::from_secs(10));
    assert!(
        plain.stderr().contains("No object storage configured"),
        "{}",
        plain.stderr()
    );
    assert_eq!(
        plain
            .get("/api/v1/cache/blob/source/a.tar.gz?sig=1.ab")
            .status,
        404
    );
}
