//! Which request headers a delivery keeps in the event log (`event_log.headers`, shown by
//! `kici-admin event-log show`; docs/operations.md, "Event log"): everything that helps tell what
//! the sender sent, never what proves who sent it. Signatures, tokens, cookies and credentials are
//! dropped by name before anything is stored, and the kept set is bounded. Pure code.

use serde_json::{Map, Value};

/// At most this many bytes of names and values are kept per delivery (a sender may send up to
/// the 32 KiB request head); headers beyond it are left out and counted.
pub const MAX_KEPT_BYTES: usize = 8 * 1024;
/// A longer value is cut here (with `…`).
pub const MAX_VALUE_CHARS: usize = 256;

/// Parts of a header name that mark a secret or a credential: `Authorization`,
/// `X-Hub-Signature-256`, `X-Gitlab-Token`, `X-Api-Key`, `Cookie`, `X-Webhook-Secret`, ...
const SECRET_PARTS: [&str; 9] = [
    "auth",
    "signature",
    "token",
    "secret",
    "key",
    "cookie",
    "password",
    "credential",
    "session",
];

/// Whether a header is left out: a secret by name, or the header the source verifies
/// (`secret_header`, which may be named anything).
pub fn is_secret(name: &str, secret_header: Option<&str>) -> bool {
    let lower = name.to_ascii_lowercase();
    secret_header.is_some_and(|h| h.eq_ignore_ascii_case(&lower))
        || SECRET_PARTS.iter().any(|p| lower.contains(p))
}

/// The headers kept, as a JSON object of lower-case name → value (repeated headers joined with
/// `, `), plus `"(omitted)"` counting those left out for the size bound.
pub fn kept(headers: &[(String, String)], secret_header: Option<&str>) -> Value {
    let mut out = Map::new();
    let (mut used, mut omitted) = (0usize, 0usize);
    for (name, value) in headers {
        if is_secret(name, secret_header) {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let value = match value.char_indices().nth(MAX_VALUE_CHARS) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.clone(),
        };
        if used + name.len() + value.len() > MAX_KEPT_BYTES {
            omitted += 1;
            continue;
        }
        used += name.len() + value.len();
        match out.get_mut(&name) {
            Some(Value::String(before)) => {
                before.push_str(", ");
                before.push_str(&value);
            }
            _ => {
                out.insert(name, Value::String(value));
            }
        }
    }
    if omitted > 0 {
        out.insert(
            "(omitted)".to_owned(),
            Value::String(format!(
                "{omitted} header(s) over the {MAX_KEPT_BYTES}-byte bound"
            )),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_are_dropped_and_the_rest_kept() {
        let got = kept(
            &h(&[
                ("authorization", "Bearer s3cret"),
                ("x-hub-signature-256", "sha256=abc"),
                ("x-hub-signature", "sha1=abc"),
                ("x-gitlab-token", "t"),
                ("x-api-key", "k"),
                ("cookie", "a=b"),
                ("x-my-check", "hmac"),
                ("x-github-event", "push"),
                ("X-GitHub-Delivery", "d-1"),
                ("accept", "a"),
                ("accept", "b"),
            ]),
            Some("X-My-Check"),
        );
        assert_eq!(
            got,
            serde_json::json!({"x-github-event": "push", "x-github-delivery": "d-1", "accept": "a, b"})
        );
    }

    #[test]
    fn the_kept_set_is_bounded() {
        let long = "v".repeat(1000);
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("x-h{i}"), long.clone()))
            .collect();
        let got = kept(&many, None);
        let text = got.to_string();
        assert!(text.len() < MAX_KEPT_BYTES + 1024, "{}", text.len());
        assert_eq!(
            got["x-h0"].as_str().map(|v| v.chars().count()),
            Some(MAX_VALUE_CHARS + 1)
        );
        assert!(
            got["(omitted)"]
                .as_str()
                .is_some_and(|v| v.ends_with("header(s) over the 8192-byte bound")),
            "{got}"
        );
    }

    proptest! {
        #[test]
        fn never_keeps_a_secret_name_nor_panics(
            pairs in prop::collection::vec(("[a-zA-Z-]{0,24}", ".{0,300}"), 0..40)
        ) {
            let got = kept(&pairs, Some("x-sig"));
            let map = got.as_object().expect("an object");
            for name in map.keys() {
                prop_assert!(name == "(omitted)" || !is_secret(name, Some("x-sig")));
            }
            prop_assert!(got.to_string().len() <= MAX_KEPT_BYTES * 2 + 256);
        }
    }
}
