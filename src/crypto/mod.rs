//! Secrets at rest and admin/agent tokens (docs/operations.md, "Secrets at rest").
//!
//! Pure code over bytes: the only outside resource is the OS random generator (keys, nonces,
//! tokens, ids). Nothing here reads env vars or files; callers hand in the key text.

use std::fmt;
use std::sync::OnceLock;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use data_encoding::{Encoding, Specification, BASE64, HEXLOWER, HEXLOWER_PERMISSIVE};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Prefix of the format this implementation writes. The reference wrote bare base64, which can
/// never contain ':', so a prefix alone tells the formats apart.
const V1_PREFIX: &str = "v1:";

/// Fill `buf` from the OS random generator.
///
/// Panics if the OS cannot supply randomness: there is no safe fallback for keys, nonces or
/// tokens, and on Linux this only happens on a broken system (no getrandom(2), no /dev/urandom).
fn os_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("OS random generator unavailable");
}

// --- Master key ---

/// The 32-byte master key (`KICI_SECRET_KEY`). Debug never prints the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Parse operator-supplied key text, trimmed first.
    ///
    /// Exactly 64 hex digits are hex; anything else is base64 in either alphabet with optional
    /// padding (the reference used Node's lenient `Buffer.from(s, "base64")`, so keys that worked
    /// there keep working). The result must be exactly 32 bytes.
    pub fn parse(input: &str) -> Result<SecretKey, KeyError> {
        let text = input.trim();
        let is_hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        let decoded = if is_hex {
            HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()
        } else {
            decode_base64_lenient(text)
        };
        let bytes = decoded.ok_or(KeyError(KeyErrorKind::NotDecodable {
            chars: text.chars().count(),
        }))?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError(KeyErrorKind::WrongLength { bytes: bytes.len() }))?;
        Ok(SecretKey(key))
    }

    /// A fresh key from the OS random generator (the install wizard offers one).
    pub fn generate() -> SecretKey {
        let mut key = [0u8; 32];
        os_random(&mut key);
        SecretKey(key)
    }

    /// A subkey for one purpose: HMAC-SHA256(key, label). Distinct labels give independent keys,
    /// and none reveals the secret key.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, label)
    }

    /// 64 lowercase hex characters: the form the wizard prints and `parse` reads back.
    pub fn to_hex(&self) -> String {
        HEXLOWER.encode(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys end up in `{:?}` of config structs and in panics; the bytes must never follow.
        f.write_str("SecretKey(..)")
    }
}

/// Why `KICI_SECRET_KEY` was rejected. Never carries the key text: it is secret even when wrong
/// (an operator may have pasted the right key with one character off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(KeyErrorKind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyErrorKind {
    /// Decoded fine, but not to 32 bytes.
    WrongLength { bytes: usize },
    /// Neither 64 hex digits nor base64 in any accepted form.
    NotDecodable { chars: usize },
}

const KEY_FORMS: &str = "must be 64 hex characters or base64 of exactly 32 bytes";

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            KeyErrorKind::WrongLength { bytes } => {
                write!(f, "{KEY_FORMS}, got {bytes} bytes after decoding")
            }
            KeyErrorKind::NotDecodable { chars } => write!(
                f,
                "{KEY_FORMS}, and it is neither valid hex nor valid base64 ({chars} characters)"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Base64 as Node's `Buffer.from(s, "base64")` reads it for well-formed input: standard and
/// URL-safe alphabets (even mixed), padding optional, non-zero trailing bits ignored.
fn decode_base64_lenient(text: &str) -> Option<Vec<u8>> {
    static LENIENT: OnceLock<Encoding> = OnceLock::new();
    let encoding = LENIENT.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols
            .push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
        spec.translate.from.push_str("-_");
        spec.translate.to.push_str("+/");
        spec.check_trailing_bits = false;
        // A fixed specification; the unit tests exercise it, so this cannot fail at run time.
        spec.encoding()
            .expect("static base64 specification is valid")
    });
    // The spec has no padding character, so padding is stripped instead of parsed: that makes
    // "with or without '='" one code path.
    encoding.decode(text.trim_end_matches('=').as_bytes()).ok()
}

// --- Sealed values ---

/// AES-256-GCM with additional authenticated data binding each value to its owner, so a
/// ciphertext copied to another row (another source, another field) fails to open.
#[derive(Clone)]
pub struct SecretBox {
    current: Aes256Gcm,
    /// Set during key rotation (`KICI_SECRET_KEY_OLD`); only ever used to open.
    old: Option<Aes256Gcm>,
}

/// Which key opened a value. `Old` tells the caller the row should be re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    Current,
    Old,
}

/// Why a stored value could not be opened. Never carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The stored text is not a sealed value at all: bad base64, shorter than nonce + tag, or a
    /// `vN:` prefix this build does not know (written by a newer version).
    Malformed(&'static str),
    /// Well-formed, but the tag did not verify under any configured key: wrong key, wrong AAD
    /// (value moved to another owner) or tampered bytes.
    Decrypt { aad: String, tried_old: bool },
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Malformed(what) => write!(f, "Invalid encrypted data: {what}"),
            CryptoError::Decrypt { aad, tried_old } => {
                let keys = if *tried_old {
                    "both current and old key"
                } else {
                    "current key"
                };
                write!(f, "Failed to decrypt secret with {keys} (AAD: {aad})")
            }
        }
    }
}

impl std::error::Error for CryptoError {}

/// The AAD of a scoped secret: `"<org_id>:<scope>:<key>"` (docs/operations.md, "Secrets at rest"),
/// e.g. `aad("__system__", "__source__/<uuid>", "webhookSecret")`.
pub fn aad(org_id: &str, scope: &str, key: &str) -> String {
    format!("{org_id}:{scope}:{key}")
}

/// A stored value split into its parts, whichever format it came in.
struct Sealed {
    nonce: [u8; NONCE_LEN],
    tag: [u8; TAG_LEN],
    ciphertext: Vec<u8>,
}

const TOO_SHORT: CryptoError = CryptoError::Malformed("too short");

impl Sealed {
    /// Below nonce + tag (28 bytes, the reference's minimum) is `too short`; an empty plaintext
    /// is legal.
    fn parse(stored: &str) -> Result<Sealed, CryptoError> {
        let (raw, tag_last) = if let Some(body) = stored.strip_prefix(V1_PREFIX) {
            // We wrote it, with padding: anything else is corruption, so decode strictly.
            (BASE64.decode(body.as_bytes()).ok(), true)
        } else if let Some((prefix, _)) = stored.split_once(':') {
            let is_version = prefix.len() > 1
                && prefix.starts_with('v')
                && prefix[1..].bytes().all(|b| b.is_ascii_digit());
            return Err(CryptoError::Malformed(if is_version {
                "unknown format version (this build reads v1: and legacy unprefixed values)"
            } else {
                "not valid base64"
            }));
        } else {
            // Legacy rows from the reference implementation: base64(IV ‖ TAG ‖ CIPHERTEXT),
            // decoded there with Node's lenient decoder, so decode leniently here too.
            (decode_base64_lenient(stored.trim()), false)
        };
        let raw = raw.ok_or(CryptoError::Malformed("not valid base64"))?;
        let (nonce, rest) = raw.split_first_chunk::<NONCE_LEN>().ok_or(TOO_SHORT)?;
        let tag_and_ciphertext = if tag_last {
            rest.split_last_chunk::<TAG_LEN>()
                .map(|(ciphertext, tag)| (tag, ciphertext))
        } else {
            rest.split_first_chunk::<TAG_LEN>()
        };
        let (tag, ciphertext) = tag_and_ciphertext.ok_or(TOO_SHORT)?;
        Ok(Sealed {
            nonce: *nonce,
            tag: *tag,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl SecretBox {
    pub fn new(current: SecretKey, old: Option<SecretKey>) -> SecretBox {
        let cipher = |key: SecretKey| Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.0));
        SecretBox {
            current: cipher(current),
            old: old.map(cipher),
        }
    }

    /// Seal under the current key with a fresh random 96-bit nonce, returning the `v1:` text form.
    /// Random nonces are safe here: secrets are written a handful of times per source, far below
    /// the 2^32 messages per key that NIST SP 800-38D allows for random 96-bit nonces.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        os_random(&mut nonce);
        self.seal_with_nonce(nonce, plaintext, aad)
    }

    /// `seal` with the nonce supplied, so tests can pin the exact output. Never reuse a nonce.
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        aad: &str,
    ) -> String {
        let (ciphertext, tag) = seal_raw(&self.current, &nonce, plaintext, aad.as_bytes());
        let raw = [&nonce[..], &ciphertext, &tag].concat();
        format!("{V1_PREFIX}{}", BASE64.encode(&raw))
    }

    /// Open a stored value (either format) bound to `aad`: current key first, then the old one.
    pub fn open(&self, stored: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        self.open_with_info(stored, aad)
            .map(|(plaintext, _)| plaintext)
    }

    /// Like `open`, and also says whether the old key was needed, so rotation can re-seal.
    pub fn open_with_info(
        &self,
        stored: &str,
        aad: &str,
    ) -> Result<(Vec<u8>, KeyUsed), CryptoError> {
        let sealed = Sealed::parse(stored)?;
        let old = self.old.as_ref().map(|cipher| (cipher, KeyUsed::Old));
        for (cipher, used) in std::iter::once((&self.current, KeyUsed::Current)).chain(old) {
            if let Some(plaintext) = open_raw(cipher, &sealed, aad.as_bytes()) {
                return Ok((plaintext, used));
            }
        }
        let tried_old = self.old.is_some();
        Err(CryptoError::Decrypt {
            aad: aad.to_string(),
            tried_old,
        })
    }
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("has_old_key", &self.old.is_some())
            .finish_non_exhaustive()
    }
}

/// AES-256-GCM over raw bytes; returns (ciphertext, tag) so each stored format can order them.
fn seal_raw(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> (Vec<u8>, [u8; TAG_LEN]) {
    let mut buffer = plaintext.to_vec();
    // GCM only fails past 2^36 bytes of plaintext or 2^61 of AAD; our secrets are kilobytes.
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buffer.as_mut_slice().into())
        .expect("AES-GCM input within the 64 GiB limit");
    (buffer, tag.into())
}

/// `None` when the tag does not verify; the caller decides which error that becomes.
fn open_raw(cipher: &Aes256Gcm, sealed: &Sealed, aad: &[u8]) -> Option<Vec<u8>> {
    // A fresh copy per attempt, so a failed try with the current key cannot leave the buffer
    // altered for the old-key try.
    let mut buffer = sealed.ciphertext.clone();
    let (nonce, tag) = (Nonce::from(sealed.nonce), Tag::from(sealed.tag));
    let result = cipher.decrypt_inout_detached(&nonce, aad, buffer.as_mut_slice().into(), &tag);
    result.ok().map(|()| buffer)
}

// --- Tokens, ids, hashes ---

/// Admin/agent token plaintext: 32 random bytes as 64 lowercase hex, no prefix.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    os_random(&mut bytes);
    HEXLOWER.encode(&bytes)
}

/// `hex(SHA-256(utf8(token)))`, lowercase: the `token_hash` column. Unsalted on purpose: the
/// token is 256 random bits, and the hash must be a lookup key.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Lowercase hex SHA-256 (token hashes, migration checksums, webhook payload hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(&Sha256::digest(bytes))
}

/// Constant-time equality for secrets (tokens, signatures). A length mismatch returns false at
/// once; lengths are public (a hex digest always has the same length), contents are not.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Random UUID v4, lowercase and hyphenated, for request ids and rows created in Rust.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    os_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 (RFC 9562 §5.4)
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
    uuid_text(&b)
}

/// Time-ordered UUID v7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then random bits. Row ids
/// that grow with time append to the right edge of their index instead of touching random
/// pages, which keeps inserts cheap (and full-page WAL images few) on busy tables.
pub fn uuid_v7(unix_millis: u64) -> String {
    let mut b = [0u8; 16];
    os_random(&mut b[6..]);
    b[..6].copy_from_slice(&unix_millis.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70; // version 7
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
    uuid_text(&b)
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = HEXLOWER.encode(b);
    [&h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]].join("-")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(bytes)
}

/// HMAC-SHA256, e.g. for `X-Hub-Signature-256`. Compare results with `ct_eq`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length (long keys are hashed, RFC 2104 §2), so this never fails.
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests;
