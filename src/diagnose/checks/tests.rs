//! Each check's levels and the fix it names.

use super::*;
use crate::{diagnose::Level, runs::requirements::Pattern};

fn line(ok: bool, check: &str, detail: &str) -> Line {
    Line {
        ok,
        check: check.into(),
        target: "t".into(),
        detail: detail.into(),
        clock_skew_seconds: None,
    }
}

#[test]
fn clock_thresholds() {
    assert_eq!(clock(0.4).level, Level::Ok);
    assert_eq!(clock(-5.0).level, Level::Ok);
    assert_eq!(clock(-5.1).level, Level::Warn);
    assert_eq!(clock(60.0).level, Level::Warn);
    assert_eq!(clock(61.0).level, Level::Fail);
    assert!(clock(61.0).fix.unwrap().contains("NTP"));
    assert_eq!(clock(-0.01).message, "0.0 s against the database");
    assert_eq!(clock(-7.25).message, "-7.3 s against the database");
}

#[test]
fn storage_failures_carry_the_probe_advice() {
    assert_eq!(storage(None, &[], true).level, Level::Ok);
    let lines = [line(
        false,
        "internal",
        "access key not recognised: check AWS_ACCESS_KEY_ID",
    )];
    let c = storage(Some("s3 bucket b"), &lines, true);
    assert_eq!(c.level, Level::Fail);
    assert!(c
        .fix
        .unwrap()
        .starts_with("access key not recognised: check AWS_ACCESS_KEY_ID"));
    let fs = [
        line(true, "folder", "ok"),
        line(false, "signed-urls", "refused"),
    ];
    assert_eq!(storage(Some("fs"), &fs, false).level, Level::Warn);
    assert_eq!(storage(Some("fs"), &fs, true).level, Level::Fail);
    let good = [line(true, "folder", "ok"), line(true, "signed-urls", "ok")];
    assert_eq!(
        storage(Some("fs"), &good, true).message,
        "fs: folder, signed-urls OK"
    );
}

#[test]
fn github_apps() {
    let good = AppAnswer::Accepted {
        app_id: 1,
        installations: Some(2),
        checks: Some("write".into()),
    };
    let c = github_app("github:1", true, &good);
    assert_eq!((c.check.as_str(), c.level), ("github:1", Level::Ok));
    let refused = AppAnswer::Rejected {
        status: 401,
        message: "A JSON web token could not be decoded".into(),
    };
    let c = github_app("github:1", true, &refused);
    assert_eq!(c.level, Level::Fail);
    assert!(c.message.contains("HTTP 401"), "{}", c.message);
    assert!(c
        .fix
        .unwrap()
        .contains("kici-admin source update github:1 --private-key"));
    let bare = AppAnswer::Accepted {
        app_id: 1,
        installations: Some(0),
        checks: Some("read".into()),
    };
    let c = github_app("github:1", false, &bare);
    assert_eq!(c.level, Level::Fail);
    assert!(c.message.contains("installed nowhere"));
    assert!(c.message.contains("checks: read"));
    assert!(c.fix.as_deref().unwrap().contains("--webhook-secret"));
    let c = github_app("github:1", true, &bare);
    assert_eq!(c.level, Level::Warn);
}

#[test]
fn platform_states() {
    assert_eq!(platform("independent", false, None).level, Level::Ok);
    assert_eq!(platform("platform", false, None).level, Level::Warn);
    let down = LinkFacts {
        state: "disconnected".into(),
        since: "2026-01-01T00:00:00Z".into(),
        last_error: Some("connection refused".into()),
        attempts: 4,
    };
    let c = platform("hybrid", true, Some(&down));
    assert_eq!(c.level, Level::Fail);
    assert!(c.message.contains("connection refused"));
    assert!(c.fix.unwrap().contains("KICI_PLATFORM_URL"));
    let up = LinkFacts {
        state: "connected".into(),
        ..down
    };
    assert_eq!(platform("platform", true, Some(&up)).level, Level::Ok);
}

#[test]
fn jobs_waiting_for_labels_nobody_has() {
    let job = |labels: &[&str]| WaitingJob {
        name: "ci / build".into(),
        requirements: Requirements {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Requirements::default()
        },
        waiting_secs: 30,
    };
    let agent = AgentFacts {
        id: "a1".into(),
        labels: vec!["linux".into()],
        taint: vec![],
        free_slots: 1,
    };
    assert_eq!(queue(&[], Some(&[])).level, Level::Ok);
    assert_eq!(
        queue(&[job(&["linux"])], Some(std::slice::from_ref(&agent))).level,
        Level::Ok
    );
    let c = queue(
        &[job(&["gpu"]), job(&["gpu"])],
        Some(std::slice::from_ref(&agent)),
    );
    assert_eq!(c.level, Level::Warn);
    assert!(
        c.message.contains("2 job(s)") && c.message.contains("runsOn [gpu]"),
        "{}",
        c.message
    );
    assert!(c.fix.unwrap().contains("KICI_LABELS=gpu"));
    assert_eq!(queue(&[job(&["gpu"])], None).level, Level::Warn);
    let mut pat = job(&[]);
    pat.requirements.patterns = vec![Pattern::plain("^mac")];
    assert!(queue(&[pat], Some(&[agent])).message.contains("/^mac/"));
    assert_eq!(agents(Some(&[]), 0).level, Level::Ok);
    assert_eq!(agents(Some(&[]), 3).level, Level::Warn);
}

#[test]
fn migrations_and_configuration() {
    let st = |name: &str, status: State| MigrationStatus {
        name: name.into(),
        status,
        applied_at: None,
    };
    assert_eq!(
        migrations(&[st("0001_a", State::Applied)], true).level,
        Level::Ok
    );
    assert_eq!(
        migrations(&[st("0002_b", State::Pending)], true).level,
        Level::Warn
    );
    assert_eq!(
        migrations(&[st("0009_z", State::Unknown)], true).level,
        Level::Fail
    );
    assert_eq!(
        migrations(&[st("0001_a", State::Changed)], true).level,
        Level::Fail
    );
    assert_eq!(configuration("independent", &[], &[]).level, Level::Ok);
    let bad = configuration("platform", &["KICI_PORT: not a number".into()], &[]);
    assert_eq!(bad.level, Level::Fail);
    assert!(bad.message.contains("KICI_PORT"));
    assert_eq!(database(Err("connection refused")).level, Level::Fail);
}
