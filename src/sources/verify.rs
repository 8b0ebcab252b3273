//! Webhook authentication as pure functions over headers and the raw body: generic sources
//! and GitHub's `X-Hub-Signature-256` (docs/operations.md, "Webhook sources").
//!
//! Secrets are compared with `crypto::ct_eq`, so response timing does not reveal how much of a
//! forged signature or token was right.

use std::fmt;
use std::net::IpAddr;

use super::client_ip::canonical;
use super::extract::header;
use crate::crypto::{ct_eq, hex, hmac_sha256};

/// Default header of `hmac_sha256` sources (docs/operations.md, "Webhook sources").
const DEFAULT_HMAC_HEADER: &str = "x-signature-256";
/// Default header of `bearer_token` sources.
const DEFAULT_BEARER_HEADER: &str = "authorization";
/// A hex HMAC-SHA256 digest is always 64 characters.
const HMAC_HEX_LEN: usize = 64;

/// How a generic source authenticates webhooks (built from the DB row + its decrypted secret by
/// someone else).
///
/// `Debug` is written by hand so secrets and tokens never reach logs or panic messages.
#[derive(Clone, PartialEq, Eq)]
pub enum Verification {
    /// HMAC-SHA256 of the raw body keyed with the UTF-8 secret; `header` defaults to
    /// `x-signature-256`.
    HmacSha256 {
        secret: String,
        header: Option<String>,
    },
    /// A shared token, optionally after `Bearer `; `header` defaults to `authorization`.
    BearerToken {
        token: String,
        header: Option<String>,
    },
    /// The client IP (`client_ip::client_ip`: the peer unless a trusted proxy reports it) must
    /// equal one of these addresses (no CIDR).
    IpAllowlist { allowlist: Vec<String> },
    /// Every webhook passes.
    None,
    /// The stored config is unusable (e.g. hmac without secret): every webhook → 500 "Source
    /// verification misconfigured".
    Misconfigured,
}

impl fmt::Debug for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::HmacSha256 { header, .. } => f
                .debug_struct("HmacSha256")
                .field("header", header)
                .finish_non_exhaustive(),
            Verification::BearerToken { header, .. } => f
                .debug_struct("BearerToken")
                .field("header", header)
                .finish_non_exhaustive(),
            Verification::IpAllowlist { allowlist } => f
                .debug_struct("IpAllowlist")
                .field("allowlist", allowlist)
                .finish(),
            Verification::None => f.write_str("None"),
            Verification::Misconfigured => f.write_str("Misconfigured"),
        }
    }
}

/// The outcome of checking one webhook against its source's `Verification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated (or the source uses `none`): go on with the pipeline.
    Valid,
    /// Missing or wrong signature, token or client IP: `401 "Invalid signature"`.
    Invalid,
    /// The source cannot verify anything: `500 "Source verification misconfigured"`.
    Misconfigured,
}

impl Verdict {
    fn from_bool(ok: bool) -> Verdict {
        if ok {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }
}

/// Check a generic-source webhook.
///
/// `headers` have lower-cased names (as `crate::http::Request` stores them). Header-name lookup is
/// case-insensitive, so a mixed-case configured `headerName` works (the reference's
/// case-sensitive lookup is not copied). An empty configured header name falls back to the
/// default, as the reference's `headerName || default` did.
///
/// An empty secret or token is `Misconfigured`: otherwise an empty `Authorization` header would
/// match an empty token (the admin API refuses such sources anyway).
///
/// `client` is the sender's address as the caller established it (never read from headers
/// here: only the caller knows whether the peer is a trusted proxy); `None` passes no allowlist.
pub fn verify_generic(
    v: &Verification,
    headers: &[(String, String)],
    body: &[u8],
    client: Option<IpAddr>,
) -> Verdict {
    match v {
        Verification::HmacSha256 { secret, header: h } => {
            if secret.is_empty() {
                return Verdict::Misconfigured;
            }
            let name = configured_or(h, DEFAULT_HMAC_HEADER);
            let given = header(headers, name);
            // `sha256=<hex>` or bare `<hex>`; the prefix is optional for generic senders.
            let hex_sig = given.map(|g| g.strip_prefix("sha256=").unwrap_or(g));
            Verdict::from_bool(
                hex_sig.is_some_and(|s| hmac_hex_matches(secret.as_bytes(), s, body)),
            )
        }
        Verification::BearerToken { token, header: h } => {
            if token.is_empty() {
                return Verdict::Misconfigured;
            }
            let name = configured_or(h, DEFAULT_BEARER_HEADER);
            // `Bearer ` is stripped case-sensitively, so `bearer x` compares as a whole.
            let given = header(headers, name).map(|g| g.strip_prefix("Bearer ").unwrap_or(g));
            Verdict::from_bool(given.is_some_and(|g| ct_eq(g.as_bytes(), token.as_bytes())))
        }
        Verification::IpAllowlist { allowlist } => Verdict::from_bool(client.is_some_and(|ip| {
            let ip = canonical(ip);
            allowlist
                .iter()
                .any(|a| a.trim().parse::<IpAddr>().is_ok_and(|a| canonical(a) == ip))
        })),
        Verification::None => Verdict::Valid,
        Verification::Misconfigured => Verdict::Misconfigured,
    }
}

/// Check GitHub's `X-Hub-Signature-256`: the `sha256=` prefix is required, then 64
/// hex digits (either case) of HMAC-SHA256(secret, body). Anything else, including a missing
/// header, is invalid.
pub fn verify_github(secret: &[u8], signature_header: Option<&str>, body: &[u8]) -> bool {
    signature_header
        .and_then(|s| s.strip_prefix("sha256="))
        .is_some_and(|s| hmac_hex_matches(secret, s, body))
}

/// Whether `given` is exactly 64 hex digits equal (ignoring case) to HMAC-SHA256(secret, body).
/// The length and alphabet are checked first: they are public (every valid digest has them), so
/// only the digest contents go through the constant-time compare.
fn hmac_hex_matches(secret: &[u8], given: &str, body: &[u8]) -> bool {
    if given.len() != HMAC_HEX_LEN || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let expected = hex(&hmac_sha256(secret, body));
    ct_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// The configured header name unless it is absent or empty.
fn configured_or<'a>(configured: &'a Option<String>, default: &'a str) -> &'a str {
    configured
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example ("Validating webhook deliveries").
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const TOKEN: &str = "s3cret-token";

    /// `verify_generic` with headers lower-cased the way `crate::http::Request` stores them.
    fn run(v: &Verification, pairs: &[(&str, &str)], body: &[u8]) -> Verdict {
        let headers: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        verify_generic(v, &headers, body, None)
    }

    fn hmac(header: Option<&str>) -> Verification {
        Verification::HmacSha256 {
            secret: GH_SECRET.into(),
            header: header.map(String::from),
        }
    }

    fn bearer(header: Option<&str>) -> Verification {
        Verification::BearerToken {
            token: TOKEN.into(),
            header: header.map(String::from),
        }
    }

    #[test]
    fn github_published_example() {
        assert_eq!(hex(&hmac_sha256(GH_SECRET.as_bytes(), GH_BODY)), GH_HEX);
        let sig = format!("sha256={GH_HEX}");
        assert!(verify_github(GH_SECRET.as_bytes(), Some(&sig), GH_BODY));
        let upper = format!("sha256={}", GH_HEX.to_ascii_uppercase());
        assert!(verify_github(GH_SECRET.as_bytes(), Some(&upper), GH_BODY));
    }

    #[test]
    fn github_rejects_every_deviation() {
        let ok = format!("sha256={GH_HEX}");
        let check = |sig: Option<&str>, secret: &str, body: &[u8]| {
            verify_github(secret.as_bytes(), sig, body)
        };
        assert!(!check(Some(&ok), "It's a Secret to Everybody!", GH_BODY));
        assert!(!check(None, GH_SECRET, GH_BODY));
        assert!(
            !check(Some(GH_HEX), GH_SECRET, GH_BODY),
            "prefix is required"
        );
        assert!(!check(
            Some(&format!("SHA256={GH_HEX}")),
            GH_SECRET,
            GH_BODY
        ));
        assert!(!check(Some(&ok), GH_SECRET, b"Hello, World?"));
        assert!(!check(Some(&ok[..ok.len() - 1]), GH_SECRET, GH_BODY));
        assert!(!check(Some(&format!("{ok}0")), GH_SECRET, GH_BODY));
        assert!(!check(Some("sha256="), GH_SECRET, GH_BODY));
    }

    #[test]
    fn hmac_accepts_prefixed_bare_and_uppercase_hex() {
        let upper = GH_HEX.to_ascii_uppercase();
        for sig in [
            format!("sha256={GH_HEX}"),
            GH_HEX.into(),
            format!("sha256={upper}"),
            upper,
        ] {
            let verdict = run(&hmac(None), &[("X-Signature-256", &sig)], GH_BODY);
            assert_eq!(verdict, Verdict::Valid, "{sig}");
        }
    }

    #[test]
    fn hmac_rejects_bad_signatures() {
        let bad = [
            GH_HEX[..63].to_string(),
            format!("{GH_HEX}0"),
            GH_HEX[..32].to_string(),
            format!("g{}", &GH_HEX[1..]),
            format!("sha1={GH_HEX}"),
            // Non-ASCII of the right byte length must not slip past the hex check.
            format!("é{}", &GH_HEX[2..]),
            String::new(),
        ];
        for sig in bad {
            let verdict = run(&hmac(None), &[("x-signature-256", &sig)], GH_BODY);
            assert_eq!(verdict, Verdict::Invalid, "{sig}");
        }
        let good = [("x-signature-256", GH_HEX)];
        assert_eq!(run(&hmac(None), &good, b"Hello, World."), Verdict::Invalid);
        let wrong_secret = Verification::HmacSha256 {
            secret: "another secret".into(),
            header: None,
        };
        assert_eq!(run(&wrong_secret, &good, GH_BODY), Verdict::Invalid);
        assert_eq!(run(&hmac(None), &[], GH_BODY), Verdict::Invalid);
    }

    #[test]
    fn hmac_custom_header_name_is_case_insensitive() {
        let v = hmac(Some("X-Hub-Signature-256"));
        let sig = format!("sha256={GH_HEX}");
        assert_eq!(
            run(&v, &[("X-HUB-signature-256", &sig)], GH_BODY),
            Verdict::Valid
        );
        // The default header no longer counts once another is configured.
        let default_only = [("x-signature-256", GH_HEX)];
        assert_eq!(run(&v, &default_only, GH_BODY), Verdict::Invalid);
        // An empty configured name means the default.
        assert_eq!(run(&hmac(Some("")), &default_only, GH_BODY), Verdict::Valid);
    }

    #[test]
    fn bearer_with_and_without_prefix() {
        for value in ["Bearer s3cret-token", "s3cret-token"] {
            let verdict = run(&bearer(None), &[("Authorization", value)], b"");
            assert_eq!(verdict, Verdict::Valid, "{value}");
        }
        let bad = [
            "bearer s3cret-token",
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer S3CRET-TOKEN",
            "Bearer ",
            "",
        ];
        for value in bad {
            let verdict = run(&bearer(None), &[("authorization", value)], b"");
            assert_eq!(verdict, Verdict::Invalid, "{value}");
        }
        assert_eq!(run(&bearer(None), &[], b""), Verdict::Invalid);
    }

    #[test]
    fn bearer_custom_header_name_is_case_insensitive() {
        let h = [("X-Api-Key", TOKEN)];
        assert_eq!(run(&bearer(Some("X-API-Key")), &h, b""), Verdict::Valid);
        assert_eq!(run(&bearer(None), &h, b""), Verdict::Invalid);
    }

    #[test]
    fn ip_allowlist_matches_the_given_client_address_only() {
        let allowlist = vec![
            "203.0.113.7".to_string(),
            " 2001:db8::1".to_string(),
            "junk".into(),
        ];
        let v = Verification::IpAllowlist { allowlist };
        let check = |client: Option<&str>, headers: &[(String, String)]| {
            verify_generic(&v, headers, b"", client.map(|c| c.parse().unwrap()))
        };
        assert_eq!(check(Some("203.0.113.7"), &[]), Verdict::Valid);
        assert_eq!(
            check(Some("::ffff:203.0.113.7"), &[]),
            Verdict::Valid,
            "mapped"
        );
        assert_eq!(
            check(Some("2001:db8:0::1"), &[]),
            Verdict::Valid,
            "any spelling"
        );
        // Exact match only: no CIDR, no prefix.
        assert_eq!(check(Some("203.0.113.70"), &[]), Verdict::Invalid);
        assert_eq!(check(None, &[]), Verdict::Invalid);
        // Headers are not a client address here: the caller decides whom to believe.
        let spoof = vec![("x-forwarded-for".to_string(), "203.0.113.7".to_string())];
        assert_eq!(check(Some("198.51.100.1"), &spoof), Verdict::Invalid);
        assert_eq!(check(None, &spoof), Verdict::Invalid);
        let nobody = Verification::IpAllowlist { allowlist: vec![] };
        let client = Some("203.0.113.7".parse().unwrap());
        assert_eq!(verify_generic(&nobody, &[], b"", client), Verdict::Invalid);
    }

    #[test]
    fn none_and_misconfigured() {
        assert_eq!(run(&Verification::None, &[], b"x"), Verdict::Valid);
        let signed = [("x-signature-256", GH_HEX)];
        let misconfigured = Verdict::Misconfigured;
        assert_eq!(
            run(&Verification::Misconfigured, &signed, GH_BODY),
            misconfigured
        );
        let no_secret = Verification::HmacSha256 {
            secret: String::new(),
            header: None,
        };
        let no_token = Verification::BearerToken {
            token: String::new(),
            header: None,
        };
        assert_eq!(run(&no_secret, &signed, GH_BODY), misconfigured);
        assert_eq!(run(&no_token, &[("authorization", "")], b""), misconfigured);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?} {:?}", hmac(Some("x-sig")), bearer(None));
        assert!(!shown.contains(GH_SECRET), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("x-sig"), "{shown}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Signature and token headers are the sender's: anything in them is a verdict, never a
        /// panic, and never `Valid` for a made-up HMAC.
        #[test]
        fn never_panics_verifying(
            signature in ".{0,80}|sha256=[0-9a-fA-F]{0,70}",
            auth in ".{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..128),
            client in proptest::option::of(any::<[u8; 16]>().prop_map(IpAddr::from)),
        ) {
            let headers = vec![
                ("x-signature-256".to_owned(), signature.clone()),
                ("authorization".to_owned(), auth),
            ];
            let hmac = Verification::HmacSha256 { secret: "s3cret".into(), header: None };
            prop_assert_ne!(verify_generic(&hmac, &headers, &body, client), Verdict::Valid);
            let bearer = Verification::BearerToken { token: "t0ken-value".into(), header: None };
            let _ = verify_generic(&bearer, &headers, &body, client);
            let allow = Verification::IpAllowlist { allowlist: vec!["127.0.0.1".into(), "::1".into(), "bad".into()] };
            let _ = verify_generic(&allow, &headers, &body, client);
            prop_assert!(!verify_github(b"s3cret", Some(&signature), &body));
        }
    }
}
