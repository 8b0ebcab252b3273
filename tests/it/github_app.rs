//! The GitHub App credential check `sources add` makes (docs/operations.md, "Admin API and
//! tokens"): sign a JWT with the App's key and call `GET /app`, here against a fake GitHub that
//! verifies the JWT.

use crate::support;

use std::{net::TcpListener, sync::OnceLock};

use kici_orchestrator::github::{
    validate_app, AppIdentity, GitHubApi, GitHubError, KeyError, ValidationError,
};
use support::fake_github::{self, FakeGitHub};

const APP_ID: i64 = 123456;

/// Two App keys: the App's own and another App's. Made once; RSA key generation is slow.
fn keys() -> &'static [(String, Vec<u8>); 2] {
    static KEYS: OnceLock<[(String, Vec<u8>); 2]> = OnceLock::new();
    KEYS.get_or_init(|| [fake_github::rsa_key_pair(), fake_github::rsa_key_pair()])
}

fn app_pem() -> &'static str {
    &keys()[0].0
}

fn fake() -> FakeGitHub {
    FakeGitHub::start(
        APP_ID,
        "KiCI Test App",
        "kici-test-app",
        keys()[0].1.clone(),
    )
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn rejected(status: u16, message: &str) -> ValidationError {
    ValidationError::GitHub(GitHubError::Rejected {
        status,
        message: message.to_owned(),
    })
}

#[test]
fn the_apps_own_key_returns_githubs_name_and_slug() {
    let github = fake();
    let api = GitHubApi::new(&format!("{}/", github.url));
    let identity = validate_app(&api, "123456", app_pem(), now()).expect("valid credentials");
    assert_eq!(
        identity,
        AppIdentity {
            id: APP_ID,
            name: "KiCI Test App".into(),
            slug: "kici-test-app".into(),
        }
    );
    assert_eq!(github.requests(), 1);
    let headers = github.last_headers();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("accept"), Some("application/vnd.github+json"));
    assert_eq!(header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(header("user-agent"), Some("kici-orchestrator"));
    assert!(header("authorization").is_some_and(|v| v.starts_with("Bearer ey")));
}

#[test]
fn a_key_of_another_app_is_rejected_with_githubs_message() {
    let github = fake();
    let api = GitHubApi::new(&github.url);
    let err = validate_app(&api, "123456", &keys()[1].0, now()).expect_err("wrong key");
    assert_eq!(err, rejected(401, fake_github::MSG_UNDECODABLE));
    assert_eq!(
        err.to_string(),
        "GitHub rejected the App credentials (HTTP 401): A JSON web token could not be decoded"
    );
    assert_eq!(github.requests(), 1);
}

#[test]
fn another_apps_id_is_rejected_by_github() {
    let github = fake();
    let api = GitHubApi::new(&github.url);
    let err = validate_app(&api, "654321", app_pem(), now()).expect_err("wrong App ID");
    assert_eq!(err, rejected(401, fake_github::MSG_UNDECODABLE));
}

#[test]
fn an_app_id_github_reads_as_a_different_number_is_a_mismatch() {
    // GitHub reads `iss` as a number, so "0123456" authenticates as App 123456; storing it would
    // give the routing key github:0123456, which webhooks for App 123456 never match.
    let github = fake();
    let api = GitHubApi::new(&github.url);
    let err = validate_app(&api, "0123456", app_pem(), now()).expect_err("mismatch");
    assert_eq!(
        err,
        ValidationError::AppIdMismatch {
            expected: "0123456".into(),
            got: APP_ID,
        }
    );
    assert!(err.to_string().contains("App ID 123456"), "{err}");
}

#[test]
fn a_host_clock_a_little_fast_is_tolerated_but_not_two_minutes() {
    let github = fake();
    let api = GitHubApi::new(&github.url);
    // exp is 9 minutes ahead, so up to a minute of drift stays inside GitHub's 10-minute cap.
    validate_app(&api, "123456", app_pem(), now() + 30).expect("30 s fast is fine");
    let err = validate_app(&api, "123456", app_pem(), now() + 120).expect_err("2 min fast");
    assert_eq!(err, rejected(401, fake_github::MSG_EXP_TOO_FAR));
}

#[test]
fn a_host_clock_an_hour_slow_gets_githubs_expiry_message() {
    let github = fake();
    let api = GitHubApi::new(&github.url);
    let err = validate_app(&api, "123456", app_pem(), now() - 3600).expect_err("expired");
    assert_eq!(err, rejected(401, fake_github::MSG_EXPIRED));
}

#[test]
fn a_broken_key_is_reported_without_calling_github() {
    let github = fake();
    let api = GitHubApi::new(&github.url);
    let err = validate_app(&api, "123456", "not a key", now()).expect_err("no key");
    assert!(
        matches!(err, ValidationError::InvalidKey(KeyError::NotPem { .. })),
        "{err:?}"
    );
    assert_eq!(github.requests(), 0);
}

#[test]
fn a_closed_port_is_unreachable_and_names_the_url() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let api = GitHubApi::new(&format!("http://127.0.0.1:{port}"));
    let err = validate_app(&api, "123456", app_pem(), now()).expect_err("nothing listens");
    let url = format!("http://127.0.0.1:{port}/app");
    match &err {
        ValidationError::GitHub(GitHubError::Unreachable { url: got, detail }) => {
            assert_eq!(got, &url);
            assert!(detail.to_lowercase().contains("refused"), "{detail}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("GitHub API unreachable at {url}: ")),
        "{err}"
    );
}
