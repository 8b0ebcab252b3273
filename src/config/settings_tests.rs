//! The settings of `settings.rs`, through the whole loader.

use super::super::tests::{err, ok};

#[test]
fn base_path_is_normalised() {
    let cases = [
        ("/", ""),
        ("", ""),
        ("/kici", "/kici"),
        ("/kici/", "/kici"),
        ("//a//b/", "/a/b"),
    ];
    for (raw, expected) in cases {
        assert_eq!(
            ok(&[("KICI_BASE_PATH", raw)]).config.base_path,
            expected,
            "for {raw:?}"
        );
    }
    for bad in [
        "kici", "/a?b", "/a#b", "/a b", "/a/../b", "/..", "/a/./b", "/a\tb",
    ] {
        let e = err(&[("KICI_BASE_PATH", bad)]);
        assert!(
            e.problems[0].starts_with("KICI_BASE_PATH: must be a URL path starting with /"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn trusted_proxies_default_to_none_and_each_bad_entry_is_named() {
    let none = ok(&[]).config.trusted_proxies;
    assert!(none.is_empty());
    let c = ok(&[(
        "KICI_TRUSTED_PROXIES",
        "127.0.0.1/32, 10.0.0.0/8,::1,2001:db8::/32",
    )])
    .config;
    assert!(c
        .trusted_proxies
        .contains("::ffff:127.0.0.1".parse().unwrap()));
    assert!(c.trusted_proxies.contains("10.200.0.1".parse().unwrap()));
    assert!(c.trusted_proxies.contains("2001:db8::7".parse().unwrap()));
    assert!(!c.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
    let e = err(&[("KICI_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.0/33,proxy.local")]);
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
    assert!(
        e.problems[0].starts_with("KICI_TRUSTED_PROXIES: \"10.0.0.0/33\""),
        "{}",
        e.problems[0]
    );
    assert!(
        e.problems[1].starts_with("KICI_TRUSTED_PROXIES: \"proxy.local\""),
        "{}",
        e.problems[1]
    );
    assert!(
        e.problems[1].contains("comma-separated"),
        "{}",
        e.problems[1]
    );
}

#[test]
fn metrics_access_and_log_format() {
    let c = ok(&[]).config;
    assert_eq!(
        (c.metrics_token.as_deref(), c.metrics_public),
        (None, false)
    );
    assert_eq!(c.log_format, crate::logging::Format::Text);
    let token = "0123456789abcdef0123";
    let l = ok(&[("KICI_METRICS_TOKEN", token), ("KICI_LOG_FORMAT", "json")]);
    assert_eq!(l.config.metrics_token.as_deref(), Some(token));
    assert_eq!(l.config.log_format, crate::logging::Format::Json);
    assert!(!format!("{:?}", l.config).contains(token));
    let e = err(&[("KICI_METRICS_TOKEN", "short-secret")]).to_string();
    assert!(
        e.contains("KICI_METRICS_TOKEN: must be at least 16 characters"),
        "{e}"
    );
    assert!(!e.contains("short-secret"), "{e}");
    let e = err(&[("KICI_LOG_FORMAT", "yaml")]).to_string();
    assert!(
        e.contains("KICI_LOG_FORMAT: must be one of text, json"),
        "{e}"
    );
    let l = ok(&[
        ("KICI_METRICS_PUBLIC", "true"),
        ("KICI_METRICS_TOKEN", token),
    ]);
    assert!(l.config.metrics_public);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("KICI_METRICS_TOKEN is unused")));
}
