//! The JWT a GitHub App signs to call the API as itself (not as an installation).
//!
//! GitHub's rules ("Generating a JSON Web Token for a GitHub App"): RS256, `iss` = the App ID,
//! `exp` at most 10 minutes ahead of GitHub's clock, `iat` back-dated 60 s against clock drift.
//! Pure code: the caller passes the time in, so tests pin exact tokens.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};

/// `iat` is this far in the past: GitHub rejects a token "issued" ahead of its own clock.
const IAT_BACKDATE_SECS: i64 = 60;
/// `exp` is this far ahead: GitHub's limit is 10 minutes, and a host clock a few seconds fast
/// already trips "'exp' is too far in the future" at exactly 600, so we stay a minute short.
const EXP_AHEAD_SECS: i64 = 540;
/// Precomputed: the header never varies, and GitHub only accepts RS256.
const HEADER_JSON: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// An App private key parsed from PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`, GitHub's download
/// format) or PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl pkcs8` and some vaults produce).
pub struct AppKey {
    pair: RsaKeyPair,
}

impl AppKey {
    /// Reads the first private key in `pem`; certificates or other blocks around it are skipped.
    pub fn from_pem(pem: &str) -> Result<AppKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(pem_error)?;
        let pair = match der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(_) => {
                return Err(KeyError::NotRsa {
                    found: "an EC key (BEGIN EC PRIVATE KEY)",
                })
            }
            // `PrivateKeyDer` is non-exhaustive; any future kind is still not an RSA key.
            _ => {
                return Err(KeyError::NotRsa {
                    found: "a private key of another kind",
                })
            }
        };
        pair.map(|pair| AppKey { pair }).map_err(|rejected| {
            // ring says WrongAlgorithm when a PKCS#8 block holds an EC or Ed25519 key.
            match rejected.to_string().as_str() {
                "WrongAlgorithm" => KeyError::NotRsa {
                    found: "a PKCS#8 key of another algorithm (EC or Ed25519)",
                },
                reason => KeyError::Rejected {
                    reason: reason.to_owned(),
                },
            }
        })
    }

    /// Modulus size in bits: public, and what an operator needs to tell keys apart.
    pub fn bits(&self) -> usize {
        self.pair.public().modulus_len() * 8
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys end up in `{:?}` of request structs and in panics; only public facts may follow.
        write!(f, "AppKey {{ rsa_bits: {} }}", self.bits())
    }
}

/// Why an App private key was refused. Never carries key text: even a broken key is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// No PEM private-key block in the text, or one that is cut short or damaged.
    NotPem { why: &'static str },
    /// A private key, but not RSA: GitHub only issues RSA keys for Apps.
    NotRsa { found: &'static str },
    /// An RSA key ring will not sign with (ring's reason: `TooSmall` under 2048 bits,
    /// `InvalidEncoding`, `InconsistentComponents`, ...).
    Rejected { reason: String },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotPem { why } => write!(
                f,
                "not a PEM private key ({why}): give the whole .pem file GitHub generated for the \
                 App, from -----BEGIN RSA PRIVATE KEY----- to -----END RSA PRIVATE KEY-----"
            ),
            KeyError::NotRsa { found } => write!(
                f,
                "not an RSA key (found {found}): GitHub App private keys are RSA; generate one \
                 in the App's settings on GitHub"
            ),
            KeyError::Rejected { reason } => write!(f, "RSA key rejected: {reason}"),
        }
    }
}

impl std::error::Error for KeyError {}

fn pem_error(e: rustls_pki_types::pem::Error) -> KeyError {
    use rustls_pki_types::pem::Error as E;
    // The parser's own messages quote input lines, which may be key material: name the cause only.
    let why = match e {
        E::NoItemsFound => "no BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY block found",
        E::MissingSectionEnd { .. } => "the END line is missing; was the key cut short?",
        E::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        E::Base64Decode(_) => "the base64 between BEGIN and END is damaged",
        _ => "unreadable PEM",
    };
    KeyError::NotPem { why }
}

/// An RS256 JWT for `GET /app` and the installation-token calls, valid from `now_unix - 60`
/// to `now_unix + 540`. `iss` is the App ID as text, which GitHub accepts like the number.
pub fn app_jwt(key: &AppKey, app_id: &str, now_unix: i64) -> String {
    let claims = format!(
        r#"{{"iat":{},"exp":{},"iss":{}}}"#,
        now_unix.saturating_sub(IAT_BACKDATE_SECS),
        now_unix.saturating_add(EXP_AHEAD_SECS),
        // Value's Display writes a JSON string literal: quotes and escapes an odd App ID.
        serde_json::Value::from(app_id),
    );
    let signing_input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(HEADER_JSON.as_bytes()),
        BASE64URL_NOPAD.encode(claims.as_bytes())
    );
    let mut signature = vec![0u8; key.pair.public().modulus_len()];
    // PKCS#1 v1.5 signing is deterministic and fails only when the buffer is not the modulus
    // length, which it is by construction; the RNG argument is unused for this padding.
    key.pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .expect("RSA signature buffer is sized from the key");
    format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::{path::PathBuf, process::Command, sync::OnceLock};

    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// Keys made once per test run by the `openssl` CLI, so no key material lives in the repo.
    struct TestKeys {
        rsa_pkcs1: String,
        rsa_pkcs8: String,
        /// PKCS#1 RSAPublicKey DER of the key above (both formats hold the same key).
        rsa_public_der: Vec<u8>,
        rsa_1024: String,
        ec_sec1: String,
        ec_pkcs8: String,
        ed25519: String,
        certificate: String,
    }

    fn openssl(dir: &PathBuf, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn keys() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kici-app-jwt-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            // OpenSSL 3 writes PKCS#8 by default; -traditional gives GitHub's PKCS#1 format.
            openssl(
                &dir,
                &["genrsa", "-traditional", "-out", "rsa1.pem", "2048"],
            );
            openssl(
                &dir,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", "rsa1.pem", "-out", "rsa8.pem",
                ],
            );
            openssl(
                &dir,
                &[
                    "rsa",
                    "-in",
                    "rsa1.pem",
                    "-RSAPublicKey_out",
                    "-outform",
                    "DER",
                    "-out",
                    "rsa.pub.der",
                ],
            );
            openssl(
                &dir,
                &["genrsa", "-traditional", "-out", "small.pem", "1024"],
            );
            openssl(
                &dir,
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    "ec1.pem",
                ],
            );
            openssl(
                &dir,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", "ec1.pem", "-out", "ec8.pem",
                ],
            );
            openssl(
                &dir,
                &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"],
            );
            openssl(
                &dir,
                &[
                    "req", "-x509", "-key", "rsa1.pem", "-subj", "/CN=x", "-days", "1", "-out",
                    "cert.pem",
                ],
            );
            let text = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
            let keys = TestKeys {
                rsa_pkcs1: text("rsa1.pem"),
                rsa_pkcs8: text("rsa8.pem"),
                rsa_public_der: std::fs::read(dir.join("rsa.pub.der")).expect("public key"),
                rsa_1024: text("small.pem"),
                ec_sec1: text("ec1.pem"),
                ec_pkcs8: text("ec8.pem"),
                ed25519: text("ed.pem"),
                certificate: text("cert.pem"),
            };
            let _ = std::fs::remove_dir_all(&dir);
            keys
        })
    }

    fn decode(part: &str) -> Vec<u8> {
        BASE64URL_NOPAD
            .decode(part.as_bytes())
            .expect("base64url without padding")
    }

    /// Splits a JWT and checks the signature against the test key's public half.
    fn verified_parts(jwt: &str) -> (String, String) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &keys().rsa_public_der)
            .verify(signed.as_bytes(), &decode(parts[2]))
            .expect("signature verifies with the App's public key");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        (text(decode(parts[0])), text(decode(parts[1])))
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn pkcs1_key_signs_exact_header_and_claims() {
        let key = AppKey::from_pem(&keys().rsa_pkcs1).expect("PKCS#1 key");
        let (header, claims) = verified_parts(&app_jwt(&key, "123456", NOW));
        assert_eq!(header, r#"{"alg":"RS256","typ":"JWT"}"#);
        assert_eq!(
            claims,
            r#"{"iat":1699999940,"exp":1700000540,"iss":"123456"}"#
        );
    }

    #[test]
    fn pkcs8_key_gives_the_same_token_as_pkcs1() {
        let pkcs1 = AppKey::from_pem(&keys().rsa_pkcs1).expect("PKCS#1 key");
        let pkcs8 = AppKey::from_pem(&keys().rsa_pkcs8).expect("PKCS#8 key");
        let jwt = app_jwt(&pkcs8, "42", NOW);
        verified_parts(&jwt);
        // RS256 is deterministic: the same key in either container must sign identically.
        assert_eq!(jwt, app_jwt(&pkcs1, "42", NOW));
    }

    #[test]
    fn token_window_moves_with_the_clock() {
        let key = AppKey::from_pem(&keys().rsa_pkcs1).expect("key");
        let (_, claims) = verified_parts(&app_jwt(&key, "7", 1_000));
        assert_eq!(claims, r#"{"iat":940,"exp":1540,"iss":"7"}"#);
    }

    #[test]
    fn app_id_is_a_json_string_even_when_odd() {
        let key = AppKey::from_pem(&keys().rsa_pkcs1).expect("key");
        let (_, claims) = verified_parts(&app_jwt(&key, "12\"3\\", NOW));
        let v: serde_json::Value = serde_json::from_str(&claims).expect("claims are JSON");
        assert_eq!(v["iss"], "12\"3\\");
    }

    #[test]
    fn windows_line_endings_and_surrounding_text_are_accepted() {
        let pem = format!(
            "  \r\nApp key:\r\n{}\r\n",
            keys().rsa_pkcs1.trim().replace('\n', "\r\n")
        );
        let key = AppKey::from_pem(&pem).expect("CRLF key");
        verified_parts(&app_jwt(&key, "1", NOW));
    }

    #[test]
    fn key_and_errors_never_show_key_material() {
        let pem = &keys().rsa_pkcs1;
        let key = AppKey::from_pem(pem).expect("key");
        assert_eq!(format!("{key:?}"), "AppKey { rsa_bits: 2048 }");

        // Damage the key inside an intact PEM wrapper: ring rejects it; the message must not
        // echo any of it.
        let lines: Vec<&str> = pem.lines().collect();
        let body_line = lines[1];
        let damaged = format!("{}\nMIIB\n{}\n", lines[0], lines[lines.len() - 1]);
        let err = AppKey::from_pem(&damaged).expect_err("damaged key");
        assert!(matches!(err, KeyError::Rejected { .. }), "{err:?}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(body_line), "{shown}");
            assert!(!shown.contains("MIIB"), "{shown}");
        }
    }

    #[test]
    fn not_pem_inputs() {
        let cases = [
            ("", "no BEGIN"),
            ("   \n", "no BEGIN"),
            ("this is not a key", "no BEGIN"),
            (keys().certificate.as_str(), "no BEGIN"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow",
                "END line is missing",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\n!!!notbase64!!!\n-----END RSA PRIVATE KEY-----\n",
                "base64",
            ),
        ];
        for (input, why) in cases {
            let err = AppKey::from_pem(input).expect_err(input);
            assert!(matches!(err, KeyError::NotPem { .. }), "{input:?}: {err:?}");
            let shown = err.to_string();
            assert!(shown.starts_with("not a PEM private key ("), "{shown}");
            assert!(shown.contains(why), "{input:?}: {shown}");
        }
    }

    #[test]
    fn other_key_types_are_not_rsa() {
        for (input, found) in [
            (&keys().ec_sec1, "EC key"),
            (&keys().ec_pkcs8, "another algorithm"),
            (&keys().ed25519, "another algorithm"),
        ] {
            let err = AppKey::from_pem(input).expect_err("not RSA");
            assert!(matches!(err, KeyError::NotRsa { .. }), "{err:?}");
            let shown = err.to_string();
            assert!(shown.starts_with("not an RSA key (found "), "{shown}");
            assert!(shown.contains(found), "{shown}");
        }
    }

    #[test]
    fn small_rsa_key_is_rejected_with_rings_reason() {
        let err = AppKey::from_pem(&keys().rsa_1024).expect_err("1024-bit key");
        assert_eq!(
            err,
            KeyError::Rejected {
                reason: "TooSmall".into()
            }
        );
        assert_eq!(err.to_string(), "RSA key rejected: TooSmall");
    }
}
