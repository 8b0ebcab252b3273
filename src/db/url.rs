//! `KICI_DATABASE_URL` as text: hiding its password in every message, and taking out the TLS
//! parameters the `postgres` crate cannot parse (see connect.rs). Both URL and libpq
//! `key=value` forms.

/// `url` with any password replaced by `***`, in the URL form (`postgres://user:pw@host/db`,
/// also `?password=`) and the libpq key=value form (`password=...`).
pub fn redact_database_url(url: &str) -> String {
    if let Some(i) = url.find("://") {
        let (scheme, rest) = url.split_at(i + 3);
        return format!("{scheme}{}", redact_query_password(&redact_userinfo(rest)));
    }
    if url.contains('=') {
        let mut out = String::with_capacity(url.len());
        let mut copied = 0;
        for (key, value) in keyword_pairs(url) {
            if key.eq_ignore_ascii_case("password") {
                out.push_str(&url[copied..value.start]);
                out.push_str("***");
                copied = value.end;
            }
        }
        out.push_str(&url[copied..]);
        return out;
    }
    // No scheme: maybe `user:pw@host/db` pasted without one; treat it like a URL rather than leak.
    redact_userinfo(url)
}

/// The userinfo ends at the *last* `@`: passwords pasted unencoded may hold `@`, `/` or `?`.
/// A stray `@` in the query then over-redacts, which beats leaking.
fn redact_userinfo(rest: &str) -> String {
    let Some(at) = rest.rfind('@') else {
        return rest.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}:***{}", &rest[..colon], &rest[at..]),
        None => rest.to_owned(),
    }
}

fn redact_query_password(url: &str) -> String {
    let host_start = url.rfind('@').map_or(0, |at| at + 1);
    let Some(q) = url[host_start..].find('?').map(|q| host_start + q) else {
        return url.to_owned();
    };
    let params: Vec<String> = url[q + 1..]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{}?{}", &url[..q], params.join("&"))
}

/// libpq `key = value` pairs: the key and the byte range of its value (quotes included).
/// Follows libpq's rules (optional spaces around `=`, single quotes, backslash escapes) so a
/// quoted password with spaces is redacted whole.
pub fn keyword_pairs(s: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    let b = s.as_bytes();
    let skip_space = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = skip_space(0);
    while i < b.len() {
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        let eq = skip_space(i);
        if eq >= b.len() || b[eq] != b'=' {
            i = skip_space(i);
            continue;
        }
        let start = skip_space(eq + 1);
        let mut end = start;
        let quoted = end < b.len() && b[end] == b'\'';
        if quoted {
            end += 1;
        }
        let stop = |c: u8| {
            if quoted {
                c == b'\''
            } else {
                c.is_ascii_whitespace()
            }
        };
        while end < b.len() && !stop(b[end]) {
            end += if b[end] == b'\\' { 2 } else { 1 };
        }
        end = if quoted { end + 1 } else { end }.min(b.len());
        pairs.push((key, start..end));
        i = skip_space(end);
    }
    pairs
}

/// `key=value` unquoted: single quotes removed, backslash escapes resolved (libpq's rules).
fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, PartialEq)]
pub struct TlsParts {
    /// The URL without `sslmode` and `sslrootcert`.
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

/// Removes `sslmode` and `sslrootcert` from either URL form, returning them apart.
pub fn split_tls_params(url: &str) -> TlsParts {
    let mut sslmode = None;
    let mut sslrootcert = None;
    let decode = |v: &str| crate::http::parse::percent_decode(v).unwrap_or_else(|| v.to_owned());
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                    match kv.split_once('=').unwrap_or((kv, "")) {
                        ("sslmode", v) => sslmode = Some(decode(v)),
                        ("sslrootcert", v) => sslrootcert = Some(decode(v)),
                        _ => kept.push(kv),
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut out = String::with_capacity(url.len());
        let mut copied = 0;
        for (key, value) in keyword_pairs(url) {
            let target = match key {
                "sslmode" => &mut sslmode,
                "sslrootcert" => &mut sslrootcert,
                _ => continue,
            };
            *target = Some(unquote(&url[value.clone()]));
            // Drop the pair: from the key's first byte to the value's end.
            let key_start = url[..value.start].rfind(key).unwrap_or(value.start);
            out.push_str(&url[copied..key_start]);
            copied = value.end;
        }
        out.push_str(&url[copied..]);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    TlsParts {
        rest,
        sslmode,
        sslrootcert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_tls_params_are_split_off() {
        let p = split_tls_params("postgresql://u:p@db:5432/kici?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(p.rest, "postgresql://u:p@db:5432/kici?application_name=x");
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let p = split_tls_params("postgres://db/kici?sslmode=require");
        assert_eq!(p.rest, "postgres://db/kici");
        assert_eq!(p.sslmode.as_deref(), Some("require"));
        let p = split_tls_params("postgres://db/kici");
        assert_eq!(
            p,
            TlsParts {
                rest: "postgres://db/kici".into(),
                sslmode: None,
                sslrootcert: None
            }
        );
    }

    #[test]
    fn keyword_form_tls_params_are_split_off() {
        let p = split_tls_params(
            "host=db user=ci password='a b\\'c' sslmode=verify-ca sslrootcert = /ca.pem dbname=k",
        );
        assert_eq!(p.rest, "host=db user=ci password='a b\\'c' dbname=k");
        assert_eq!(p.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/ca.pem"));
    }
}
