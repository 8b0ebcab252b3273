//! Who may read `GET /metrics` (docs/metrics.md, "Access"), decided from the peer address, the
//! request's headers and the configuration; pure, so every branch is a unit test.
//!
//! - `KICI_METRICS_PUBLIC=true`: everyone.
//! - A loopback peer that is not a reverse proxy: open. A request carrying `X-Forwarded-For`,
//!   `Forwarded` or `X-Real-IP` came through a proxy, and a proxy on the same host would
//!   otherwise make every outside client look local.
//! - Everyone else: `Authorization: Bearer <KICI_METRICS_TOKEN>` (401 without it or with another
//!   token); with no token configured, 403.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither their bytes nor their
//! length leak through timing.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

/// The decision, with the reason a refused client is told (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 401: a token would let it in; the reason says what was wrong.
    Unauthorized(&'static str),
    /// 403: nothing it could send lets it in.
    Forbidden(&'static str),
}

/// Header names that say a request came through a reverse proxy.
pub const PROXY_HEADERS: &[&str] = &["x-forwarded-for", "forwarded", "x-real-ip"];

/// `peer`: the TCP peer; `proxied`: one of [`PROXY_HEADERS`] is present; `authorization`: the
/// header's value; `token`: `KICI_METRICS_TOKEN`; `public`: `KICI_METRICS_PUBLIC`.
pub fn decide(
    peer: IpAddr,
    proxied: bool,
    authorization: Option<&str>,
    token: Option<&str>,
    public: bool,
) -> Decision {
    if public || (peer.to_canonical().is_loopback() && !proxied) {
        return Decision::Allow;
    }
    let Some(token) = token else {
        return Decision::Forbidden(
            "metrics are served to local clients only: set KICI_METRICS_TOKEN and send \
             Authorization: Bearer <token>, or set KICI_METRICS_PUBLIC=true",
        );
    };
    let Some(given) = authorization.and_then(bearer) else {
        return Decision::Unauthorized(
            "a bearer token is required: send Authorization: Bearer <KICI_METRICS_TOKEN>",
        );
    };
    if digest(given).ct_eq(&digest(token)).into() {
        Decision::Allow
    } else {
        Decision::Unauthorized("the bearer token is not KICI_METRICS_TOKEN")
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "metrics-token-0123456789abcdef";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_open_unless_it_is_a_proxy() {
        for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(decide(ip(peer), false, None, None, false), Decision::Allow);
        }
        assert!(matches!(
            decide(ip("127.0.0.1"), true, None, None, false),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            decide(ip("127.0.0.1"), true, None, Some(TOKEN), false),
            Decision::Unauthorized(_)
        ));
    }

    #[test]
    fn elsewhere_the_token_is_required() {
        let remote = ip("192.0.2.7");
        assert!(matches!(
            decide(remote, false, None, None, false),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            decide(remote, false, Some(&format!("Bearer {TOKEN}")), None, false),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            decide(remote, false, None, Some(TOKEN), false),
            Decision::Unauthorized(_)
        ));
        for wrong in [
            "Bearer nope",
            "Basic abc",
            "Bearer",
            &format!("Bearer {TOKEN}x"),
            &format!("Token {TOKEN}"),
        ] {
            assert!(
                matches!(
                    decide(remote, false, Some(wrong), Some(TOKEN), false),
                    Decision::Unauthorized(_)
                ),
                "{wrong}"
            );
        }
        for right in [format!("Bearer {TOKEN}"), format!("bearer  {TOKEN} ")] {
            assert_eq!(
                decide(remote, false, Some(&right), Some(TOKEN), false),
                Decision::Allow
            );
        }
        assert_eq!(
            decide(ip("2001:db8::1"), true, None, None, true),
            Decision::Allow
        );
    }

    proptest! {
        /// Whatever a remote client sends, only the exact token lets it in.
        #[test]
        fn only_the_token_opens_for_remote_clients(header in ".{0,80}") {
            let d = decide(ip("198.51.100.1"), false, Some(&header), Some(TOKEN), false);
            let exact = header.trim().split_once(' ').is_some_and(|(s, t)| {
                s.eq_ignore_ascii_case("bearer") && t.trim() == TOKEN
            });
            prop_assert_eq!(d == Decision::Allow, exact);
        }
    }
}
