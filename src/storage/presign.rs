//! SigV4 query presigning for S3-compatible stores (docs/operations.md, "Object storage"). Pure:
//! the clock is a parameter, and nothing here does I/O.
//!
//! rusty-s3 builds the canonical request and the signature (its output is byte-identical to
//! botocore's); this module decides the URL: endpoint, addressing style, bucket, prefix,
//! sub-resources and signed headers. Every request the orchestrator sends itself
//! goes over such a URL too, so one signer serves agents and the orchestrator alike. Payloads
//! are never signed (`UNSIGNED-PAYLOAD`): SeaweedFS, MinIO and R2 reject presigned uploads that
//! carry a body checksum the client did not send.

use std::time::Duration;

use jiff::Timestamp;
use rusty_s3::{Bucket, Method, UrlStyle};
use url::Url;

/// How long agents may use a download / upload URL (the reference's lifetimes).
pub const GET_LIFETIME: Duration = Duration::from_secs(15 * 60);
pub const PUT_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// S3 refuses presigned URLs valid for longer than 7 days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// AWS credentials. `Debug` never shows the secret or the session token.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Credentials {
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) from `get`, else the
    /// `[profile]` section of a shared credentials file's text (`aws_access_key_id`, …).
    pub fn resolve(
        get: &dyn Fn(&str) -> Option<String>,
        credentials_file: Option<&str>,
        profile: &str,
    ) -> Option<S3Credentials> {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            return Some(S3Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: get("AWS_SESSION_TOKEN"),
            });
        }
        let text = credentials_file?;
        let mut section = String::new();
        let (mut id, mut secret, mut token) = (None, None, None);
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
            } else if section == profile {
                if let Some((k, v)) = line.split_once('=') {
                    let v = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
                    match k.trim() {
                        "aws_access_key_id" => id = v,
                        "aws_secret_access_key" => secret = v,
                        "aws_session_token" => token = v,
                        _ => {}
                    }
                }
            }
        }
        Some(S3Credentials {
            access_key_id: id?,
            secret_access_key: secret?,
            session_token: token,
        })
    }
}

/// One vantage point on the store: the orchestrator's own, the agents', or the developer CLI's.
/// The three presigners of a store differ only in this.
#[derive(Debug, Clone)]
pub struct Presigner {
    endpoint: Url,
    path_style: bool,
    region: String,
    credentials: S3Credentials,
}

/// What a URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Head,
    Get,
    Put,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Head => Method::Head,
            Verb::Get => Method::Get,
            Verb::Put => Method::Put,
            Verb::Delete => Method::Delete,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.method().to_str()
    }
}

/// The AWS endpoint for a region, used when `KICI_STORAGE_ENDPOINT` is not set.
pub fn aws_endpoint(region: &str) -> String {
    format!("https://s3.{region}.amazonaws.com")
}

impl Presigner {
    /// `endpoint` must be an http(s) URL with a host (a path is kept as a prefix).
    pub fn new(
        endpoint: &str,
        path_style: bool,
        region: &str,
        credentials: S3Credentials,
    ) -> Result<Presigner, String> {
        let endpoint: Url = endpoint
            .parse()
            .map_err(|e| format!("{endpoint:?} is not a valid URL ({e})"))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(format!(
                "{endpoint} must be an http:// or https:// URL with a host"
            ));
        }
        Ok(Presigner {
            endpoint,
            path_style,
            region: region.to_owned(),
            credentials,
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn path_style(&self) -> bool {
        self.path_style
    }

    /// Virtual-host addressing puts the bucket into the host name, which an IP address or
    /// `localhost` cannot carry.
    pub fn needs_path_style(&self) -> bool {
        let host = self.endpoint.host_str().unwrap_or_default();
        !self.path_style
            && (host == "localhost"
                || host.parse::<std::net::IpAddr>().is_ok()
                || host.starts_with('['))
    }

    fn bucket(&self, bucket: &str) -> Result<Bucket, String> {
        Bucket::new(
            self.endpoint.clone(),
            if self.path_style {
                UrlStyle::Path
            } else {
                UrlStyle::VirtualHost
            },
            bucket.to_owned(),
            self.region.clone(),
        )
        .map_err(|e| match e {
            rusty_s3::BucketError::ParseError(_) if !self.path_style => format!(
                "bucket {bucket:?} cannot be addressed as a host name under {}: set \
                 KICI_STORAGE_FORCE_PATH_STYLE=true",
                self.endpoint
            ),
            other => format!(
                "cannot address bucket {bucket:?} at {}: {other:?}",
                self.endpoint
            ),
        })
    }

    /// A presigned URL. `key` `None` addresses the bucket itself (sub-resources such as
    /// `lifecycle` go in `query`, `("lifecycle", "")`). `headers` (lowercase names) are signed
    /// and must be sent with exactly these values.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        verb: Verb,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<Url, String> {
        let b = self.bucket(bucket)?;
        let url = match key {
            Some(k) => b.object_url(k),
            None => b.base_url().clone(),
        };
        let mut query = query.to_vec();
        query.sort();
        let mut headers: Vec<(String, &str)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect();
        headers.sort();
        let seconds = lifetime.as_secs().clamp(1, MAX_LIFETIME.as_secs());
        Ok(rusty_s3::signing::sign(
            &now,
            verb.method(),
            url,
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            self.credentials.session_token.as_deref(),
            &self.region,
            seconds,
            query.iter().copied(),
            headers.iter().map(|(k, v)| (k.as_str(), *v)),
        ))
    }

    /// The URL of an object, unsigned (for messages).
    pub fn object_url(&self, bucket: &str, key: &str) -> Result<Url, String> {
        Ok(self.bucket(bucket)?.object_url(key))
    }
}

/// `x-amz-copy-source` for `bucket`/`key`: the key percent-encoded as a path, `/` kept.
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("/{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws_example_credentials() -> S3Credentials {
        S3Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// AWS's published example for query-string authentication ("Authenticating Requests:
    /// Using Query Parameters (AWS Signature Version 4)", S3 API reference): GET test.txt from
    /// examplebucket, 2013-05-24T00:00:00Z, 86400 s, us-east-1.
    #[test]
    fn reproduces_the_aws_presigned_url_example() {
        let p = Presigner::new(
            "https://s3.amazonaws.com",
            false,
            "us-east-1",
            aws_example_credentials(),
        )
        .unwrap();
        let now: Timestamp = "2013-05-24T00:00:00Z".parse().unwrap();
        let url = p
            .sign(
                Verb::Get,
                "examplebucket",
                Some("test.txt"),
                &[],
                &[],
                Duration::from_secs(86400),
                now,
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn three_vantage_points_differ_only_in_host() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let sign = |endpoint: &str| {
            Presigner::new(endpoint, true, "us-east-1", aws_example_credentials())
                .unwrap()
                .sign(
                    Verb::Put,
                    "b",
                    Some("source/x y.tar.gz"),
                    &[],
                    &[],
                    PUT_LIFETIME,
                    now,
                )
                .unwrap()
        };
        let internal = sign("http://127.0.0.1:9000");
        let external = sign("http://localhost:9000");
        assert_eq!(internal.path(), "/b/source/x%20y.tar.gz");
        assert_eq!(internal.path(), external.path());
        assert_eq!(external.host_str(), Some("localhost"));
        assert!(internal.query().unwrap().contains("X-Amz-Expires=1800"));
        // The host is signed, so the two signatures differ.
        assert_ne!(internal.query(), external.query());
    }

    #[test]
    fn signed_headers_and_sub_resources() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let p = Presigner::new(
            "http://127.0.0.1:9000/s3",
            true,
            "r",
            aws_example_credentials(),
        )
        .unwrap();
        let url = p
            .sign(
                Verb::Put,
                "b",
                None,
                &[("lifecycle", "")],
                &[],
                GET_LIFETIME,
                now,
            )
            .unwrap();
        assert_eq!(url.path(), "/s3/b/");
        assert!(url.query().unwrap().starts_with("X-Amz-Algorithm"));
        assert!(url.query().unwrap().contains("&lifecycle="));
        let url = p
            .sign(
                Verb::Put,
                "b",
                Some("k"),
                &[],
                &[
                    ("X-Amz-Metadata-Directive", "REPLACE"),
                    ("x-amz-copy-source", "/b/k"),
                ],
                GET_LIFETIME,
                now,
            )
            .unwrap();
        assert!(url
            .query()
            .unwrap()
            .contains("X-Amz-SignedHeaders=host%3Bx-amz-copy-source%3Bx-amz-metadata-directive"));
    }

    #[test]
    fn path_style_is_needed_for_ips_and_localhost() {
        let c = aws_example_credentials;
        for (endpoint, needed) in [
            ("http://127.0.0.1:9000", true),
            ("http://localhost:9000", true),
            ("http://[::1]:9000", true),
            ("https://s3.eu-west-1.amazonaws.com", false),
        ] {
            let p = Presigner::new(endpoint, false, "r", c()).unwrap();
            assert_eq!(p.needs_path_style(), needed, "{endpoint}");
            let p = Presigner::new(endpoint, true, "r", c()).unwrap();
            assert!(!p.needs_path_style());
        }
        assert!(Presigner::new("ftp://x", true, "r", c()).is_err());
        assert!(Presigner::new("not a url", true, "r", c()).is_err());
    }

    #[test]
    fn credentials_from_env_then_file() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_owned())
        };
        let c = S3Credentials::resolve(
            &env(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")]),
            None,
            "default",
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("a", None)
        );
        assert!(!format!("{c:?}").contains("\"s\""));
        let file = "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\
                    [ci]\naws_access_key_id=c\naws_secret_access_key=cs\naws_session_token=t\n";
        let c = S3Credentials::resolve(&env(&[]), Some(file), "ci").unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.secret_access_key.as_str(),
                c.session_token.as_deref()
            ),
            ("c", "cs", Some("t"))
        );
        assert!(S3Credentials::resolve(&env(&[]), Some(file), "nope").is_none());
        assert!(
            S3Credentials::resolve(&env(&[("AWS_ACCESS_KEY_ID", "a")]), None, "default").is_none()
        );
    }

    #[test]
    fn copy_source_encoding() {
        assert_eq!(copy_source("b", "a b/ü+c.txt"), "/b/a%20b/%C3%BC%2Bc.txt");
    }
}
