//! The Platform link over wss with a private CA (trusted through SSL_CERT_FILE, as a corporate CA
//! installed on the host would be), refused without it; and the OIDC mint relay over HTTPS on the
//! Platform's host, with its ownership check and every error mapping of docs/platform-protocol.md,
//! "OIDC mint relay".

use crate::support;

use std::time::Duration;

use kici_orchestrator::platform::oidc::{handle, Minter, OwnedJobs};
use serde_json::json;
use support::{
    daemon::{base_env, Daemon},
    pg::PgCluster,
    platform::PlatformDouble,
    tls::TestPki,
};

fn pki(tag: &str) -> TestPki {
    let dir = std::env::temp_dir().join(format!("kici-platform-pki-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TestPki::create(&dir)
}

fn hybrid_env(platform: &PlatformDouble, ca: Option<&std::path::Path>) -> Vec<(String, String)> {
    let mut env = base_env(&PgCluster::shared().create_database());
    env.retain(|(k, _)| k != "KICI_MODE");
    env.push(("KICI_MODE".into(), "hybrid".into()));
    env.push(("KICI_PLATFORM_URL".into(), platform.url()));
    env.push(("KICI_PLATFORM_TOKEN".into(), PlatformDouble::TOKEN.into()));
    // An empty bundle: only the webpki roots, which do not know the test CA.
    let bundle = ca.map_or_else(
        || "/nonexistent-bundle.pem".to_owned(),
        |p| p.display().to_string(),
    );
    env.push(("SSL_CERT_FILE".into(), bundle));
    env
}

#[test]
fn wss_with_a_private_ca_and_refused_without_it() {
    let pki = pki("wss");
    let platform = PlatformDouble::start(Some(pki.server_config()));
    assert!(platform.url().starts_with("wss://"));
    let d = Daemon::start(&hybrid_env(&platform, Some(&pki.ca_pem())));
    d.wait_ready_status(200, Duration::from_secs(10));
    platform.wait_for("source.register", Duration::from_secs(10), |_| true);

    let untrusted = PlatformDouble::start(Some(pki.server_config()));
    let d2 = Daemon::start(&hybrid_env(&untrusted, None));
    d2.wait_ready_status(200, Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = d2.get("/ready").json();
        let error = ready["platform"]["lastError"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if error.contains("handshake") && error.contains("certificate") {
            assert!(
                untrusted.frames().is_empty(),
                "nothing was sent to an untrusted server"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ready}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// A fake agent session record: agent `agent-1` holds job `job-1` of run `run-from-dispatch`.
struct Sessions;
impl OwnedJobs for Sessions {
    fn run_of(&self, agent: &str, job: &str) -> Option<String> {
        (agent == "agent-1" && job == "job-1").then(|| "run-from-dispatch".to_owned())
    }
}

#[test]
fn oidc_mint_relay_over_https() {
    let pki = pki("mint");
    // The minter trusts the test CA alone; the process environment (shared with every other
    // test of this binary and the daemons they start) is left alone.
    let pem = std::fs::read(pki.ca_pem()).expect("the test CA");
    let ca: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    assert!(!ca.is_empty());
    let roots = || ureq::tls::RootCerts::Specific(std::sync::Arc::new(ca.clone()));
    let platform = PlatformDouble::start(Some(pki.server_config()));
    let minter = Minter::with_roots(&platform.url(), PlatformDouble::TOKEN, "inst-9", roots());
    let params = json!({"jobId": "job-1", "audience": "sigstore", "runId": "agent-claimed-run"});

    let result = handle(Some(&minter), &Sessions, "agent-1", &params).unwrap();
    assert_eq!(
        result,
        json!({"token": "eyJhbGciOiJFUzI1NiJ9.test.sig", "expiresIn": 300, "jti": "jti-1"})
    );
    let requests = platform.mint_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/internal/orchestrator/inst-9/mint-id-token");
    assert_eq!(
        requests[0].1,
        json!({"run_id": "run-from-dispatch", "job_id": "job-1", "audience": "sigstore"}),
        "the run id comes from our dispatch record, never from the agent"
    );

    // Another agent, or a job not held: refused before the Platform is asked.
    let e = handle(Some(&minter), &Sessions, "agent-2", &params).unwrap_err();
    assert_eq!(e, "job job-1 not owned by agent agent-2");
    assert_eq!(platform.mint_requests().len(), 1);

    for (status, wanted) in [
        (404, "token mint rejected (404)"),
        (409, "token mint rejected (409)"),
        (503, "provenance signing is not configured on the Platform"),
        (500, "token mint failed (500)"),
    ] {
        platform.set_mint_status(status);
        assert_eq!(
            handle(Some(&minter), &Sessions, "agent-1", &params).unwrap_err(),
            wanted
        );
    }
    // A wrong orchestrator token is the Platform's 401.
    platform.set_mint_status(200);
    let wrong = Minter::with_roots(&platform.url(), "kici_ok_wrong", "inst-9", roots());
    assert_eq!(
        handle(Some(&wrong), &Sessions, "agent-1", &params).unwrap_err(),
        "token mint failed (401)"
    );
    // Independent mode has no such method.
    assert_eq!(
        handle(None, &Sessions, "agent-1", &params).unwrap_err(),
        "Unknown API method 'oidc.token.request'"
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
}
