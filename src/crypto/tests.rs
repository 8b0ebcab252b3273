use super::*;

const SOURCE_AAD: &str = "__system__:__source__/6f1c0000-0000-4000-8000-000000000000:webhookSecret";

fn unhex(s: &str) -> Vec<u8> {
    HEXLOWER_PERMISSIVE.decode(s.as_bytes()).expect("test hex")
}

/// Key bytes `offset, offset+1, …` (offset 0 is the key 00..1f used by the external vectors).
fn key(offset: u8) -> SecretKey {
    SecretKey(std::array::from_fn(|i| i as u8 + offset))
}

fn parsed(input: &str) -> [u8; 32] {
    SecretKey::parse(input).expect("key parses").0
}

fn open_err(stored: &str) -> CryptoError {
    SecretBox::new(key(0), None).open(stored, "a").unwrap_err()
}

/// GCM spec (McGrew & Viega), Test Case 16: AES-256, 96-bit IV, 20-byte AAD, 60-byte
/// plaintext. Expected values cross-checked with Python `cryptography` and Node `crypto`.
#[test]
fn gcm_spec_test_case_16() {
    let k = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    let cipher = Aes256Gcm::new_from_slice(&k).unwrap();
    let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
    let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = unhex(concat!(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    ));
    let (ciphertext, tag) = seal_raw(&cipher, &nonce, &pt, &aad);
    let expected_ct = concat!(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa",
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    );
    assert_eq!(hex(&ciphertext), expected_ct);
    assert_eq!(hex(&tag), "76fc6ece0f4e1768cddf8853bb2d551b");
    let sealed = Sealed {
        nonce,
        tag,
        ciphertext,
    };
    assert_eq!(open_raw(&cipher, &sealed, &aad), Some(pt));
    assert_eq!(open_raw(&cipher, &sealed, b""), None);
}

/// A reference-format row made by Node's crypto (key 00..1f, IV a1..ac, AAD `SOURCE_AAD`),
/// emitted as base64(IV ‖ TAG ‖ CT); also decrypted independently with Python.
#[test]
fn opens_legacy_reference_format() {
    let stored = "oaKjpKWmp6ipqquseh5FnYfkcA99r8sEGb8Dv0qK4A6XLB4Y6xzaHzup7AAH9FhKA2WXLg==";
    let scope = "__source__/6f1c0000-0000-4000-8000-000000000000";
    assert_eq!(aad("__system__", scope, "webhookSecret"), SOURCE_AAD);
    let sb = SecretBox::new(key(0), None);
    let plaintext = sb.open(stored, SOURCE_AAD).expect("legacy row opens");
    assert_eq!(plaintext, "legacy webhook secret é".as_bytes());
    let moved = sb.open(stored, "__system__:__source__/other:webhookSecret");
    assert!(matches!(moved, Err(CryptoError::Decrypt { .. })));
}

/// Pins the v1 layout (nonce ‖ ct ‖ tag): the expected string was made with Python
/// `cryptography` (key 00..1f, nonce b1..bc), independently of this code.
#[test]
fn v1_format_is_byte_exact() {
    let sb = SecretBox::new(key(0), None);
    let aad = "__system__:__source__/6f1c0000-0000-4000-8000-000000000000:privateKey";
    let nonce: [u8; 12] = std::array::from_fn(|i| 0xb1 + i as u8);
    let expected = "v1:sbKztLW2t7i5uru8FZfEWI/9UIb5o+vGCh24mvagu9jDRyCUrD1FhUk8MWURR+Y=";
    let sealed = sb.seal_with_nonce(nonce, b"v1 private key body", aad);
    assert_eq!(sealed, expected);
    assert_eq!(sb.open(expected, aad).unwrap(), b"v1 private key body");
}

#[test]
fn round_trip_and_fresh_nonces() {
    let sb = SecretBox::new(SecretKey::generate(), None);
    let a = sb.seal(b"hunter2", SOURCE_AAD);
    let b = sb.seal(b"hunter2", SOURCE_AAD);
    assert!(a.starts_with("v1:"));
    assert_ne!(a, b);
    let opened = sb.open_with_info(&a, SOURCE_AAD).unwrap();
    assert_eq!(opened, (b"hunter2".to_vec(), KeyUsed::Current));
    assert_eq!(sb.open(&b, SOURCE_AAD).unwrap(), b"hunter2");
    assert_eq!(sb.open(&sb.seal(b"", SOURCE_AAD), SOURCE_AAD).unwrap(), b"");
}

#[test]
fn any_flipped_bit_is_rejected() {
    let sb = SecretBox::new(key(0), None);
    let stored = sb.seal_with_nonce([7; 12], b"sixteen byte msg", SOURCE_AAD);
    let raw = BASE64.decode(&stored.as_bytes()[3..]).unwrap();
    // first and last byte of nonce (0..12), ciphertext (12..28) and tag (28..44)
    for index in [0, 11, 12, 27, 28, 43] {
        let mut bad = raw.clone();
        bad[index] ^= 0x01;
        let result = sb.open(&format!("v1:{}", BASE64.encode(&bad)), SOURCE_AAD);
        assert!(
            matches!(result, Err(CryptoError::Decrypt { .. })),
            "{index}"
        );
    }
}

#[test]
fn wrong_aad_names_the_aad_and_never_the_secret() {
    let sb = SecretBox::new(key(0), None);
    let stored = sb.seal(b"topsecret", SOURCE_AAD);
    let err = sb.open(&stored, "__system__:__source__/x:privateKey");
    let err = err.unwrap_err();
    let text = err.to_string();
    let expected =
        "Failed to decrypt secret with current key (AAD: __system__:__source__/x:privateKey)";
    assert_eq!(text, expected);
    assert!(!text.contains("topsecret") && !format!("{err:?}").contains("topsecret"));
}

#[test]
fn old_key_fallback_reports_old() {
    let stored = SecretBox::new(key(0), None).seal(b"rotate me", SOURCE_AAD);
    let rotated = SecretBox::new(key(100), Some(key(0)));
    let opened = rotated.open_with_info(&stored, SOURCE_AAD).unwrap();
    assert_eq!(opened, (b"rotate me".to_vec(), KeyUsed::Old));
    let both = rotated.open(&stored, "other:aad:x").unwrap_err();
    let expected = "Failed to decrypt secret with both current and old key (AAD: other:aad:x)";
    assert_eq!(both.to_string(), expected);
    let current_only = SecretBox::new(key(100), None).open(&stored, SOURCE_AAD);
    let err = current_only.unwrap_err();
    assert!(matches!(
        &err,
        CryptoError::Decrypt {
            tried_old: false,
            ..
        }
    ));
    assert!(err.to_string().contains("with current key (AAD:"));
}

#[test]
fn malformed_values() {
    let short = BASE64.encode(&[0u8; 27]);
    let v1_short = format!("v1:{short}");
    let cases = [
        (short.as_str(), "too short"),
        (v1_short.as_str(), "too short"),
        ("", "too short"),
        ("v1:!!!!", "not valid base64"),
        ("%%%%", "not valid base64"),
        ("x:AAAA", "not valid base64"),
    ];
    for (stored, what) in cases {
        assert_eq!(open_err(stored), CryptoError::Malformed(what), "{stored:?}");
    }
    let v2 = open_err("v2:AAAA").to_string();
    assert!(
        v2.starts_with("Invalid encrypted data: unknown format version"),
        "{v2}"
    );
}

#[test]
fn key_parse_accepts_hex_and_both_base64_alphabets() {
    let lower = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let upper = format!("  {}\n", lower.to_uppercase());
    let standard = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    // bytes 200..=231 encode with both URL-safe symbols ('_' and '-')
    let url = "yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc";
    let cases = [
        (lower.to_string(), 0),
        (upper, 0),
        (format!("{standard}="), 0),
        (standard.to_string(), 0),
        // non-zero trailing bits: Node ignores them, so the reference accepted this key
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9".to_string(), 0),
        (format!("{url}="), 200),
        (url.to_string(), 200),
        (key(9).to_hex(), 9),
    ];
    for (input, offset) in cases {
        assert_eq!(parsed(&input), key(offset).0, "{input}");
    }
}

#[test]
fn key_parse_rejects_wrong_lengths_without_echoing_input() {
    let forms = "must be 64 hex characters or base64 of exactly 32 bytes";
    let b31 = BASE64.encode(&[0x5a; 31]);
    let err31 = SecretKey::parse(&b31).unwrap_err();
    let expected = format!("{forms}, got 31 bytes after decoding");
    assert_eq!(err31.to_string(), expected);
    let err33 = SecretKey::parse(&BASE64.encode(&[0x5a; 33])).unwrap_err();
    assert!(err33.to_string().contains("got 33 bytes"));
    // 63 hex digits are not hex, and as base64 they are not 32 bytes either
    assert!(SecretKey::parse(&"a".repeat(63)).is_err());
    assert!(SecretKey::parse("abc").is_err());
    let err = SecretKey::parse("sécret!").unwrap_err();
    let detail = "and it is neither valid hex nor valid base64 (7 characters)";
    assert_eq!(err.to_string(), format!("{forms}, {detail}"));
    for (input, e) in [(b31.as_str(), err31), ("sécret!", err)] {
        assert!(!e.to_string().contains(input) && !format!("{e:?}").contains(input));
    }
    assert_eq!(format!("{:?}", key(0)), "SecretKey(..)");
    let sb = format!("{:?}", SecretBox::new(key(0), Some(key(1))));
    assert_eq!(sb, "SecretBox { has_old_key: true, .. }");
}

#[test]
fn digest_vectors() {
    let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(hash_token("abc"), sha_abc);
    // RFC 4231 test case 2
    let rfc = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert_eq!(hex(&rfc), expected);
    // GitHub docs, "Validating webhook deliveries"
    let github = hmac_sha256(b"It's a Secret to Everybody", b"Hello, World!");
    let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(hex(&github), expected);
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn tokens_are_random_lowercase_hex() {
    let (a, b) = (generate_token(), generate_token());
    assert_ne!(a, b);
    for t in [&a, &b] {
        assert!(t.len() == 64 && is_lower_hex(t), "{t}");
    }
}

#[test]
fn uuid_v4_shape() {
    let u = random_uuid();
    assert_ne!(u, random_uuid());
    let lengths: Vec<usize> = u.split('-').map(str::len).collect();
    assert_eq!(lengths, [8, 4, 4, 4, 12], "{u}");
    assert!(is_lower_hex(&u.replace('-', "")), "{u}");
    assert_eq!(&u[14..15], "4", "{u}");
    assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
}

#[test]
fn ct_eq_cases() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
    assert!(!ct_eq(b"", b"a"));
}

#[test]
fn uuid_v7_is_time_ordered() {
    let a = uuid_v7(1_700_000_000_000);
    let b = uuid_v7(1_700_000_000_001);
    assert!(a < b, "{a} < {b}");
    assert_eq!(&a[..13], "018bcfe5-6800");
    assert_eq!(&a[14..15], "7");
    assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
}
