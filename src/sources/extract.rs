//! What a generic webhook says about itself (docs/operations.md, "Webhook sources"): the parsed
//! body, the event type, the idempotency key and the delivery id. Pure functions over headers and
//! bytes.
//!
//! Empty header values and empty strings found by a path count as absent throughout: the
//! reference tested them with JavaScript truthiness (`value || next`), and an empty idempotency
//! key would make every keyless delivery a duplicate of the first.

use serde_json::{Map, Value};

use crate::http::parse::query_pairs;

/// The value of the first header called `name`, compared case-insensitively.
pub(crate) use crate::http::parse::find_header as header;

/// A header's value if the header is there and not empty.
fn non_empty_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    header(headers, name).filter(|v| !v.is_empty())
}

/// A configured setting (header name or path), unless unset or empty.
fn configured(setting: Option<&str>) -> Option<&str> {
    setting.filter(|s| !s.is_empty())
}

/// The string at `path` in `payload`, if there is a non-empty one.
fn string_at<'a>(payload: &'a Value, path: &str) -> Option<&'a str> {
    dotted(payload, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Parsed body: JSON object kept; JSON scalar/array wrapped `{"value": v}`;
/// `application/x-www-form-urlencoded` → flat object of strings; otherwise `{"body": "<raw
/// text>"}`; empty body → `{}`. Invalid JSON with a JSON content type falls through to
/// `{"body": raw}`.
///
/// No `Content-Type` at all is tried as JSON, as in the reference. Media types are matched
/// case-insensitively (RFC 9110 §8.3.1). Bytes that are not UTF-8 become U+FFFD, as Node's
/// `toString("utf8")` did. A repeated form field keeps its last value (`Object.fromEntries`).
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Object(Map::new());
    }
    let media = content_type.map(str::to_ascii_lowercase);
    let is_json = media
        .as_deref()
        .is_none_or(|m| m.contains("application/json"));
    if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(object @ Value::Object(_)) => return object,
            Ok(other) => return Value::Object(Map::from_iter([("value".to_owned(), other)])),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let is_form = media
        .as_deref()
        .is_some_and(|m| m.contains("application/x-www-form-urlencoded"));
    if is_form {
        let fields = query_pairs(&text)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)));
        return Value::Object(fields.collect());
    }
    Value::Object(Map::from_iter([(
        "body".to_owned(),
        Value::String(text.into_owned()),
    )]))
}

/// `$.a.b` / `$a.b` / `a.b` dot path over objects only (no array indices, no wildcards), like
/// the reference's simple dot notation. Each `.`-separated part is one object key, taken
/// literally.
pub fn dotted<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path
        .strip_prefix("$.")
        .or_else(|| path.strip_prefix('$'))
        .unwrap_or(path);
    rest.split('.')
        .try_fold(v, |current, key| current.as_object()?.get(key))
}

/// Event type (docs/operations.md, "Webhook sources"): configured header (case-insensitive,
/// non-empty) → configured path (if it yields a string) → `x-event-type` header → `"default"`.
///
/// The last header step is why `X-Event-Type` works even though `event_type_header` is stored
/// NULL unless given.
pub fn event_type(
    headers: &[(String, String)],
    payload: &Value,
    header: Option<&str>,
    path: Option<&str>,
) -> String {
    configured(header)
        .and_then(|name| non_empty_header(headers, name))
        .or_else(|| configured(path).and_then(|p| string_at(payload, p)))
        .or_else(|| non_empty_header(headers, "x-event-type"))
        .unwrap_or("default")
        .to_owned()
}

/// Idempotency key: configured header → configured path (string only) →
/// `x-idempotency-key` → `x-delivery-id` → `None`.
///
/// Pass the `parse_body` result as `payload`. The reference only applied the path to JSON
/// bodies; here a form field or a wrapped scalar's `value` can match too, which only matters for
/// a path configured against a body that is not a JSON object.
pub fn idempotency_key(
    headers: &[(String, String)],
    payload: &Value,
    header: Option<&str>,
    path: Option<&str>,
) -> Option<String> {
    configured(header)
        .and_then(|name| non_empty_header(headers, name))
        .or_else(|| configured(path).and_then(|p| string_at(payload, p)))
        .or_else(|| non_empty_header(headers, "x-idempotency-key"))
        .or_else(|| non_empty_header(headers, "x-delivery-id"))
        .map(str::to_owned)
}

/// Delivery id: raw = idempotency key ?? `x-request-id` header ?? `fallback` (a fresh
/// UUID the caller passes); the result is `"<routing_key>:<raw>"`.
///
/// Embedding the key means a keyed retry is suppressed by the 24 h dedup cache (docs/operations.md,
/// "Webhook intake and dedup") even after the idempotency window; that is the reference's behavior,
/// kept on purpose.
pub fn delivery_id(
    routing_key: &str,
    idempotency_key: Option<&str>,
    headers: &[(String, String)],
    fallback: &str,
) -> String {
    let raw = idempotency_key
        .filter(|k| !k.is_empty())
        .or_else(|| non_empty_header(headers, "x-request-id"))
        .unwrap_or(fallback);
    format!("{routing_key}:{raw}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_bodies() {
        let ct = Some("application/json; charset=utf-8");
        assert_eq!(parse_body(ct, br#"{"a":{"b":1}}"#), json!({"a": {"b": 1}}));
        assert_eq!(parse_body(ct, b"[1,2]"), json!({"value": [1, 2]}));
        assert_eq!(parse_body(ct, b"\"hi\""), json!({"value": "hi"}));
        assert_eq!(parse_body(ct, b"null"), json!({"value": null}));
        assert_eq!(parse_body(Some("Application/JSON"), b"{}"), json!({}));
        // No Content-Type is tried as JSON too.
        assert_eq!(parse_body(None, br#"{"x":true}"#), json!({"x": true}));
        assert_eq!(parse_body(None, b"42"), json!({"value": 42}));
    }

    #[test]
    fn invalid_json_falls_through_to_raw_text() {
        let ct = Some("application/json");
        assert_eq!(parse_body(ct, b"{not json"), json!({"body": "{not json"}));
        assert_eq!(parse_body(None, b"a=1"), json!({"body": "a=1"}));
        assert_eq!(parse_body(ct, b"\xff{"), json!({"body": "\u{fffd}{"}));
    }

    #[test]
    fn form_bodies_become_flat_string_objects() {
        let ct = Some("application/x-www-form-urlencoded");
        assert_eq!(
            parse_body(ct, b"event=push&ref=refs%2Fheads%2Fmain&msg=a+b&n=1&flag"),
            json!({"event": "push", "ref": "refs/heads/main", "msg": "a b", "n": "1", "flag": ""})
        );
        assert_eq!(parse_body(ct, b"a=1&a=2"), json!({"a": "2"}));
        // A form content type is not JSON, even when the body looks like JSON.
        assert_eq!(parse_body(ct, br#"{"a":1}"#), json!({r#"{"a":1}"#: ""}));
    }

    #[test]
    fn other_and_empty_bodies() {
        assert_eq!(
            parse_body(Some("text/plain"), br#"{"a":1}"#),
            json!({"body": r#"{"a":1}"#})
        );
        assert_eq!(
            parse_body(Some("application/xml"), b"<a/>"),
            json!({"body": "<a/>"})
        );
        for ct in [None, Some("application/json"), Some("text/plain")] {
            assert_eq!(parse_body(ct, b""), json!({}), "{ct:?}");
        }
    }

    #[test]
    fn dotted_paths() {
        let v = json!({"a": {"b": {"c": "deep"}}, "items": [{"id": "x"}], "": {"k": 1}});
        for path in ["$.a.b.c", "$a.b.c", "a.b.c"] {
            assert_eq!(dotted(&v, path), Some(&json!("deep")), "{path}");
        }
        assert_eq!(dotted(&v, "a.b"), Some(&json!({"c": "deep"})));
        assert_eq!(dotted(&v, "a.x.c"), None);
        assert_eq!(dotted(&v, "a.b.c.d"), None);
        assert_eq!(dotted(&v, "items.0.id"), None, "no array indices");
        assert_eq!(dotted(&v, "items[0].id"), None);
        assert_eq!(dotted(&json!("scalar"), "a"), None);
    }

    #[test]
    fn event_type_priority() {
        let payload = json!({"meta": {"kind": "from-path"}, "n": 3});
        let all = headers(&[
            ("X-Custom-Event", "from-header"),
            ("X-Event-Type", "fallback"),
        ]);
        let et = |h: &[(String, String)], header, path| event_type(h, &payload, header, path);
        assert_eq!(
            et(&all, Some("x-CUSTOM-event"), Some("$.meta.kind")),
            "from-header"
        );
        let no_custom = headers(&[("x-custom-event", ""), ("x-event-type", "fallback")]);
        assert_eq!(
            et(&no_custom, Some("X-Custom-Event"), Some("meta.kind")),
            "from-path"
        );
        // A path that finds nothing, or a non-string, falls through to x-event-type.
        assert_eq!(et(&no_custom, None, Some("meta.missing")), "fallback");
        assert_eq!(et(&no_custom, None, Some("n")), "fallback");
        assert_eq!(et(&no_custom, Some(""), Some("")), "fallback");
        assert_eq!(et(&[], None, None), "default");
        assert_eq!(et(&headers(&[("x-event-type", "")]), None, None), "default");
    }

    #[test]
    fn idempotency_key_priority() {
        let payload = json!({"id": "from-path", "num": 7});
        let all = headers(&[
            ("Idem", "from-header"),
            ("X-Idempotency-Key", "idem-key"),
            ("X-Delivery-Id", "delivery"),
        ]);
        let key = |h: &[(String, String)], header, path| idempotency_key(h, &payload, header, path);
        assert_eq!(
            key(&all, Some("IDEM"), Some("id")).as_deref(),
            Some("from-header")
        );
        assert_eq!(
            key(&all, Some("absent"), Some("$.id")).as_deref(),
            Some("from-path")
        );
        assert_eq!(key(&all, None, Some("num")).as_deref(), Some("idem-key"));
        let delivery_only = headers(&[("x-idempotency-key", ""), ("x-delivery-id", "delivery")]);
        assert_eq!(key(&delivery_only, None, None).as_deref(), Some("delivery"));
        assert_eq!(key(&[], None, Some("missing")), None);
    }

    #[test]
    fn delivery_id_priority() {
        let request = headers(&[("X-Request-ID", "req-1")]);
        assert_eq!(
            delivery_id("generic:o:s", Some("k1"), &request, "uuid"),
            "generic:o:s:k1"
        );
        assert_eq!(
            delivery_id("generic:o:s", None, &request, "uuid"),
            "generic:o:s:req-1"
        );
        assert_eq!(
            delivery_id("generic:o:s", Some(""), &request, "uuid"),
            "generic:o:s:req-1"
        );
        assert_eq!(
            delivery_id("generic:o:s", None, &[], "uuid"),
            "generic:o:s:uuid"
        );
        let blank = headers(&[("x-request-id", "")]);
        assert_eq!(delivery_id("rk", None, &blank, "uuid"), "rk:uuid");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            Just("x-event-type".to_owned()),
            Just("x-idempotency-key".to_owned()),
            Just("x-delivery-id".to_owned()),
            Just("x-request-id".to_owned()),
            "[a-z-]{1,12}",
        ];
        proptest::collection::vec((name, ".{0,16}"), 0..6)
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Bodies, content types, headers and the configured path all come from the sender or
        /// from an admin: any of them is read without a panic.
        #[test]
        fn never_panics_reading_webhook_bodies_and_headers(
            content_type in proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("application/x-www-form-urlencoded; charset=utf-8".to_owned()),
                ".{0,24}",
            ]),
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..256),
                "[a-z=&%+.0-9{}\\[\\]\":,]{0,64}".prop_map(String::into_bytes),
            ],
            headers in headers(),
            header in proptest::option::of("[a-z-]{0,12}"),
            path in proptest::option::of("[$.a-z0-9\\[\\]]{0,16}"),
        ) {
            let payload = parse_body(content_type.as_deref(), &body);
            let _ = event_type(&headers, &payload, header.as_deref(), path.as_deref());
            let key = idempotency_key(&headers, &payload, header.as_deref(), path.as_deref());
            let id = delivery_id("generic:o:s", key.as_deref(), &headers, "fallback");
            prop_assert!(id.starts_with("generic:o:s:"));
        }
    }
}
