//! Signed URLs of the filesystem backend (docs/operations.md, "Object storage"). Pure: the clock
//! is a parameter.
//!
//! Token `"<expiresUnixMs>.<hex HMAC-SHA256(key, "<METHOD>:<objectKey>:<expiresUnixMs>")>"`, the
//! reference's format. Unlike the reference, whose signing key is 32 random bytes drawn per
//! process (every URL dies on restart), the key is derived from `KICI_SECRET_KEY`, so URLs
//! survive restarts and work on every instance sharing the folder; during a key rotation, URLs
//! signed with `KICI_SECRET_KEY_OLD` keep working until they expire.

use crate::crypto::{ct_eq, hex, hmac_sha256, SecretKey};
use crate::http::parse::encode_component;

/// Mounted under the orchestrator's `KICI_BASE_PATH`.
pub const ROUTE_PREFIX: &str = "/api/v1/cache/blob/";
const DERIVATION_LABEL: &[u8] = b"kici-orchestrator/fs-blob-url/v1";

/// The HMAC key for blob URLs, derived from a secret key (so it is never the key itself).
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    pub fn derive(secret: &SecretKey) -> SigningKey {
        SigningKey(secret.derive(DERIVATION_LABEL))
    }

    #[cfg(test)]
    fn from_bytes(bytes: [u8; 32]) -> SigningKey {
        SigningKey(bytes)
    }

    fn mac(&self, method: &str, key: &str, expires_ms: i64) -> [u8; 32] {
        hmac_sha256(&self.0, format!("{method}:{key}:{expires_ms}").as_bytes())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// `method` is `GET` or `PUT`.
pub fn sign(key: &SigningKey, method: &str, object_key: &str, expires_ms: i64) -> String {
    format!(
        "{expires_ms}.{}",
        hex(&key.mac(method, object_key, expires_ms))
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    Expired,
    BadSignature,
}

impl TokenError {
    /// The reference's wording (`{"error":"Invalid token (<why>)"}`).
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Expired => "expired",
            TokenError::BadSignature => "bad-signature",
        }
    }
}

/// Checks a token against each key in turn (current, then old), in constant time per key.
pub fn verify(
    keys: &[SigningKey],
    token: &str,
    method: &str,
    object_key: &str,
    now_ms: i64,
) -> Result<(), TokenError> {
    let (expires, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if expires.is_empty() || expires.len() > 15 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let expires_ms: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if expires_ms <= 0 || sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    if expires_ms < now_ms {
        return Err(TokenError::Expired);
    }
    let given = sig.to_ascii_lowercase();
    let matched = keys.iter().fold(false, |found, key| {
        let expected = hex(&key.mac(method, object_key, expires_ms));
        found | ct_eq(expected.as_bytes(), given.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

/// The full signed URL for `object_key` under `base_url` (the orchestrator as agents reach it,
/// with its base path).
pub fn url(
    base_url: &str,
    key: &SigningKey,
    method: &str,
    object_key: &str,
    expires_ms: i64,
) -> String {
    let path: Vec<String> = object_key.split('/').map(encode_component).collect();
    let token = sign(key, method, object_key, expires_ms);
    format!(
        "{}{ROUTE_PREFIX}{}?sig={}",
        base_url.trim_end_matches('/'),
        path.join("/"),
        encode_component(&token)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_every_failure() {
        let k = key(7);
        let t = sign(&k, "GET", "source/a.tar.gz", 2_000);
        assert_eq!(
            verify(
                std::slice::from_ref(&k),
                &t,
                "GET",
                "source/a.tar.gz",
                1_000
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&k),
                &t,
                "GET",
                "source/a.tar.gz",
                2_000
            ),
            Ok(())
        );
        let e = |token: &str, method: &str, object: &str, now: i64| {
            verify(std::slice::from_ref(&k), token, method, object, now).unwrap_err()
        };
        assert_eq!(e(&t, "GET", "source/a.tar.gz", 2_001), TokenError::Expired);
        assert_eq!(e(&t, "PUT", "source/a.tar.gz", 0), TokenError::BadSignature);
        assert_eq!(e(&t, "GET", "source/b.tar.gz", 0), TokenError::BadSignature);
        let other = sign(&key(8), "GET", "source/a.tar.gz", 2_000);
        assert_eq!(
            e(&other, "GET", "source/a.tar.gz", 0),
            TokenError::BadSignature
        );
        // A later expiry with the old signature is a different message.
        let moved = t.replacen("2000.", "3000.", 1);
        assert_eq!(
            e(&moved, "GET", "source/a.tar.gz", 0),
            TokenError::BadSignature
        );
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            e(&flipped, "GET", "source/a.tar.gz", 0),
            TokenError::BadSignature
        );
        for bad in [
            "",
            "2000",
            ".abc",
            "x.ab",
            "-5.aa",
            "0.aa",
            &t[..t.len() - 1],
            "2000.zz",
        ] {
            assert_eq!(
                e(bad, "GET", "source/a.tar.gz", 0),
                TokenError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn old_key_still_verifies_during_rotation() {
        let t = sign(&key(1), "PUT", "k", 10);
        assert_eq!(verify(&[key(2), key(1)], &t, "PUT", "k", 0), Ok(()));
        assert_eq!(
            verify(&[key(2)], &t, "PUT", "k", 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn derived_key_is_stable_and_not_the_secret() {
        let secret = SecretKey::parse(&"ab".repeat(32)).unwrap();
        let a = SigningKey::derive(&secret);
        let b = SigningKey::derive(&secret);
        assert_eq!(a.0, b.0);
        assert_ne!(a.0, [0xab; 32]);
    }

    #[test]
    fn urls_encode_each_segment() {
        let k = key(3);
        let u = url("http://h:1/base/", &k, "GET", "odd dir/a b+c/ü.txt", 99);
        let token = sign(&k, "GET", "odd dir/a b+c/ü.txt", 99);
        assert_eq!(
            u,
            format!("http://h:1/base/api/v1/cache/blob/odd%20dir/a%20b%2Bc/%C3%BC.txt?sig={token}")
        );
        assert_eq!(encode_component("a.b~c*(d)'!"), "a.b~c*(d)'!");
        assert_eq!(encode_component("a/b?c=d&e"), "a%2Fb%3Fc%3Dd%26e");
    }
}
