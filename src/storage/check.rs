//! `kici-admin storage check`: proves a storage configuration end to end. For S3, a probe object
//! is written, read back and deleted through presigned URLs built for each vantage point
//! (internal, agent, upload), plus the log bucket when split; the server's `Date` gives the clock
//! skew. For the filesystem backend, the folder is written directly and then through the
//! orchestrator's signed routes. Each problem becomes one line saying what to fix (`advice`,
//! pure).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use super::presign::{Presigner, Verb};
use super::s3::{self, Answer};
use super::{Area, Audience, Backend, Storage, StorageError};

/// AWS (and s3s) refuse requests whose date is further off than this.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
const PROBE_LIFETIME: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub ok: bool,
    /// `internal`, `agent`, `upload`, `logs`, `folder`, `signed-urls`.
    pub check: String,
    /// Endpoint (and bucket) or folder checked.
    pub target: String,
    pub detail: String,
    #[serde(rename = "clockSkewSeconds", skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<f64>,
}

impl Line {
    pub fn render(&self) -> String {
        format!(
            "{:<5} {:<11} {}: {}",
            if self.ok { "OK" } else { "FAIL" },
            self.check,
            self.target,
            self.detail
        )
    }
}

/// What a failed probe needs to be explained.
pub struct Context<'a> {
    pub endpoint_var: &'a str,
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub bucket_var: &'a str,
    pub path_style: bool,
}

/// One sentence: what went wrong and what to change.
pub fn advice(e: &StorageError, c: &Context<'_>) -> String {
    match e {
        StorageError::Unreachable { url, detail } => {
            let lookup = ["resolve", "lookup", "dns", "Name or service"]
                .iter()
                .any(|w| {
                    detail
                        .to_ascii_lowercase()
                        .contains(&w.to_ascii_lowercase())
                });
            if lookup && !c.path_style {
                format!(
                    "endpoint unreachable: cannot resolve the host of {url} ({detail}); stores \
                     other than AWS usually need path-style addressing: set KICI_STORAGE_FORCE_PATH_STYLE=true"
                )
            } else {
                format!(
                    "endpoint unreachable: {url} ({detail}); check {} (scheme, host and port) and that \
                     the store is running and reachable from here",
                    c.endpoint_var
                )
            }
        }
        StorageError::Refused {
            status,
            code,
            message,
            region,
            ..
        } => {
            let said = if message.is_empty() {
                code.clone()
            } else {
                format!("{code}: {message}")
            };
            match code.as_str() {
                "SignatureDoesNotMatch" => format!(
                    "signature rejected ({said}): check AWS_SECRET_ACCESS_KEY, and that nothing \
                     between here and {} rewrites the host or path",
                    c.endpoint
                ),
                "InvalidAccessKeyId" => {
                    format!("access key not recognised ({said}): check AWS_ACCESS_KEY_ID")
                }
                "NoSuchBucket" => format!(
                    "bucket {:?} missing at {}: create it, or fix {}",
                    c.bucket, c.endpoint, c.bucket_var
                ),
                "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException" => {
                    match region {
                        Some(r) if !r.is_empty() => format!(
                            "wrong region ({said}): bucket {:?} is in {r}; set KICI_STORAGE_REGION={r}",
                            c.bucket
                        ),
                        _ => format!(
                            "wrong region ({said}): set KICI_STORAGE_REGION to the region of bucket {:?}",
                            c.bucket
                        ),
                    }
                }
                "RequestTimeTooSkewed" => format!(
                    "clock skew ({said}): this machine's clock is off by more than 15 minutes; \
                     sync it (NTP)"
                ),
                "AccessDenied" if message.to_ascii_lowercase().contains("expired") => format!(
                    "presigned URL refused as expired ({said}): this machine's clock is probably \
                     ahead of the store's; sync it (NTP)"
                ),
                "AccessDenied" => format!(
                    "access denied ({said}): the credentials need s3:PutObject, s3:GetObject and \
                     s3:DeleteObject on bucket {:?}",
                    c.bucket
                ),
                _ if *status == 301 => match region {
                    Some(r) if !r.is_empty() => format!(
                        "wrong region (HTTP 301): bucket {:?} is in {r}; set KICI_STORAGE_REGION={r}",
                        c.bucket
                    ),
                    _ => "redirected (HTTP 301): set KICI_STORAGE_REGION to the bucket's region, \
                          or KICI_STORAGE_FORCE_PATH_STYLE=true"
                        .to_owned(),
                },
                _ => format!("the store refused the request: {e}"),
            }
        }
        other => other.to_string(),
    }
}

/// Server time minus local time, from an HTTP `Date` header, measured at the request's midpoint.
pub fn skew_seconds(
    date_header: Option<&str>,
    sent: Timestamp,
    received: Timestamp,
) -> Option<f64> {
    let server = jiff::fmt::rfc2822::parse(date_header?.trim())
        .ok()?
        .timestamp();
    let mid = (sent.as_millisecond() + received.as_millisecond()) / 2;
    Some((server.as_millisecond() - mid) as f64 / 1000.0)
}

/// Runs every check for the opened storage.
pub fn run(storage: &Storage) -> Vec<Line> {
    match storage.backend() {
        Backend::S3(s) => {
            let mut lines = Vec::new();
            for (audience, signer, var) in [
                (Audience::Internal, &s.internal, "KICI_STORAGE_ENDPOINT"),
                (
                    Audience::Agent,
                    &s.external,
                    "KICI_STORAGE_EXTERNAL_ENDPOINT",
                ),
                (Audience::Upload, &s.upload, "KICI_STORAGE_UPLOAD_ENDPOINT"),
            ] {
                let bucket_var = "KICI_STORAGE_BUCKET";
                lines.push(probe_s3(
                    storage,
                    Area::Cache,
                    audience,
                    signer,
                    var,
                    bucket_var,
                ));
            }
            if storage.bucket(Area::Logs) != storage.bucket(Area::Cache) {
                let var = "KICI_STORAGE_ENDPOINT";
                let mut line = probe_s3(
                    storage,
                    Area::Logs,
                    Audience::Internal,
                    &s.internal,
                    var,
                    "KICI_STORAGE_LOG_BUCKET",
                );
                line.check = "logs".into();
                lines.push(line);
            }
            lines
        }
        Backend::Fs(f) => {
            let mut lines = vec![probe_folder(storage, f)];
            if lines[0].ok {
                lines.push(probe_signed_routes(storage, f));
            }
            lines
        }
    }
}

fn probe_key(tag: &str) -> String {
    format!(
        "kici-storage-check/{tag}-{}.txt",
        crate::crypto::random_uuid()
    )
}

fn probe_s3(
    storage: &Storage,
    area: Area,
    audience: Audience,
    signer: &Presigner,
    endpoint_var: &str,
    bucket_var: &str,
) -> Line {
    let bucket = storage.bucket(area).to_owned();
    let endpoint = signer.endpoint().to_string();
    let target = format!("{} bucket {bucket}", endpoint.trim_end_matches('/'));
    let mut line = Line {
        ok: false,
        check: audience.as_str().into(),
        target,
        detail: String::new(),
        clock_skew_seconds: None,
    };
    if signer.needs_path_style() {
        line.detail = format!(
            "path style needed: {endpoint} is an IP address or localhost, which cannot carry the \
             bucket in its host name; set KICI_STORAGE_FORCE_PATH_STYLE=true"
        );
        return line;
    }
    let ctx = Context {
        endpoint_var,
        endpoint: &endpoint,
        bucket: &bucket,
        bucket_var,
        path_style: signer.path_style(),
    };
    let key = match storage.full_key(&probe_key(audience.as_str())) {
        Ok(k) => k,
        Err(e) => {
            line.detail = e.to_string();
            return line;
        }
    };
    let agent = s3::agent();
    let body = format!("kici storage check {}", Timestamp::now());
    let started = Instant::now();
    let step = |verb: Verb, payload: &[u8]| {
        // HEAD addresses the bucket itself: some stores create a missing bucket on PUT.
        let object = (verb != Verb::Head).then_some(key.as_str());
        probe_step(&agent, signer, &bucket, object, verb, payload)
    };
    let result = (|| {
        // Only a missing bucket or no answer counts here: a HEAD error has no body to explain
        // itself, so other refusals are left to the PUT, whose error document says more.
        match step(Verb::Head, &[]) {
            Err(e) if e.code_is("NoSuchBucket") => return Err(e),
            Err(e @ StorageError::Unreachable { .. }) => return Err(e),
            _ => {}
        }
        let (put, sent, received) = step(Verb::Put, body.as_bytes())?;
        let skew = skew_seconds(put.header("date"), sent, received);
        let (got, _, _) = step(Verb::Get, &[])?;
        step(Verb::Delete, &[])?;
        if got.body != body.as_bytes() {
            return Err(StorageError::Invalid(format!(
                "read back {} byte(s) that differ from the {} written",
                got.body.len(),
                body.len()
            )));
        }
        Ok(skew)
    })();
    match result {
        Ok(skew) => {
            let millis = started.elapsed().as_millis();
            line.clock_skew_seconds = skew;
            let skew_text = skew.map_or("clock skew unknown (no Date header)".to_owned(), |s| {
                format!("clock skew {s:+.1} s")
            });
            let too_far = skew.is_some_and(|s| s.abs() > MAX_SKEW.as_secs_f64());
            line.ok = !too_far;
            line.detail = if too_far {
                format!("{skew_text}: more than 15 minutes, so signed requests will start failing; sync this machine's clock (NTP)")
            } else {
                format!("presigned put, get and delete in {millis} ms; {skew_text}")
            };
        }
        Err(e) => line.detail = advice(&e, &ctx),
    }
    line
}

/// One signed request of a probe; a non-2xx answer is an error naming the operation.
fn probe_step(
    agent: &ureq::Agent,
    signer: &Presigner,
    bucket: &str,
    key: Option<&str>,
    verb: Verb,
    payload: &[u8],
) -> Result<(Answer, Timestamp, Timestamp), StorageError> {
    let now = Timestamp::now();
    let url = signer
        .sign(verb, bucket, key, &[], &[], PROBE_LIFETIME, now)
        .map_err(StorageError::Invalid)?
        .to_string();
    let answer = s3::send(agent, verb, &url, &[], payload)?;
    if verb == Verb::Head && answer.status == 404 {
        // A HEAD answer has no body to carry the error code.
        return Err(StorageError::Refused {
            op: "head-bucket".into(),
            url: s3::strip_query(&url),
            status: 404,
            code: "NoSuchBucket".into(),
            message: String::new(),
            region: None,
        });
    }
    if !(200..300).contains(&answer.status) {
        return Err(answer.refused(&verb.as_str().to_ascii_lowercase(), &url));
    }
    Ok((answer, now, Timestamp::now()))
}

fn probe_folder(storage: &Storage, f: &super::fs::FsStore) -> Line {
    let mut line = Line {
        ok: false,
        check: "folder".into(),
        target: f.root().display().to_string(),
        detail: String::new(),
        clock_skew_seconds: None,
    };
    let key = probe_key("folder");
    let body = b"kici storage check";
    let result = f.prepare().and_then(|_| {
        storage.put(Area::Cache, &key, body, None)?;
        let back = storage.get(Area::Cache, &key)?;
        storage.delete(Area::Cache, &key)?;
        Ok(back)
    });
    match result {
        Ok(Some(b)) if b == body => {
            line.ok = true;
            line.detail = "write, read back and delete work".into();
        }
        Ok(_) => line.detail = "a written probe did not read back the same".into(),
        Err(e) => {
            line.detail = format!(
                "{e}; KICI_STORAGE_FS_PATH must be a folder the orchestrator's user can write"
            )
        }
    }
    line
}

fn probe_signed_routes(storage: &Storage, f: &super::fs::FsStore) -> Line {
    let mut line = Line {
        ok: false,
        check: "signed-urls".into(),
        target: f.base_url().to_owned(),
        detail: String::new(),
        clock_skew_seconds: None,
    };
    let key = probe_key("signed");
    let body = b"kici storage check through the orchestrator";
    let agent = s3::agent();
    let now = Timestamp::now();
    let result = (|| {
        let put = storage.presign(
            Area::Cache,
            &key,
            Verb::Put,
            Audience::Agent,
            PROBE_LIFETIME,
            now,
        )?;
        let answer = s3::send(&agent, Verb::Put, &put, &[], body)?;
        if answer.status != 200 {
            return Err(answer.refused("put", &put));
        }
        let get = storage.presign(
            Area::Cache,
            &key,
            Verb::Get,
            Audience::Agent,
            PROBE_LIFETIME,
            now,
        )?;
        let answer = s3::send(&agent, Verb::Get, &get, &[], &[])?;
        if answer.status != 200 {
            return Err(answer.refused("get", &get));
        }
        Ok(answer.body)
    })();
    let _ = storage.delete(Area::Cache, &key);
    match result {
        Ok(b) if b == body => {
            line.ok = true;
            line.detail = "signed put and get through the orchestrator work".into();
        }
        Ok(_) => line.detail = "the blob read back through the orchestrator differs".into(),
        Err(StorageError::Unreachable { url, detail }) => {
            line.detail = format!(
                "orchestrator unreachable at {url} ({detail}): start it (kici-admin orchestrator \
                 start), or set KICI_STORAGE_FS_BASE_URL to the URL agents use to reach it"
            )
        }
        Err(StorageError::Refused { status: 404, .. }) => {
            line.detail = format!(
                "{} answered 404 for the blob route: it is not this orchestrator with \
                 filesystem storage, or KICI_STORAGE_FS_BASE_URL lacks its KICI_BASE_PATH",
                f.base_url()
            )
        }
        Err(StorageError::Refused { status: 401, .. }) => {
            line.detail = "the orchestrator refused the signature: it runs with another \
                           KICI_SECRET_KEY than this command"
                .into()
        }
        Err(e) => line.detail = e.to_string(),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            endpoint_var: "KICI_STORAGE_ENDPOINT",
            endpoint: "http://s3:9000/",
            bucket: "b",
            bucket_var: "KICI_STORAGE_BUCKET",
            path_style: true,
        }
    }

    fn refused(status: u16, code: &str, message: &str, region: Option<&str>) -> StorageError {
        StorageError::Refused {
            op: "put".into(),
            url: "http://s3:9000/b/k".into(),
            status,
            code: code.into(),
            message: message.into(),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn every_failure_says_what_to_fix() {
        let cases = [
            (
                refused(403, "SignatureDoesNotMatch", "", None),
                "check AWS_SECRET_ACCESS_KEY",
            ),
            (
                refused(403, "InvalidAccessKeyId", "", None),
                "check AWS_ACCESS_KEY_ID",
            ),
            (
                refused(404, "NoSuchBucket", "", None),
                "bucket \"b\" missing at http://s3:9000/: create it, or fix KICI_STORAGE_BUCKET",
            ),
            (
                refused(
                    400,
                    "AuthorizationHeaderMalformed",
                    "wrong region",
                    Some("eu-west-1"),
                ),
                "set KICI_STORAGE_REGION=eu-west-1",
            ),
            (
                refused(301, "PermanentRedirect", "", None),
                "set KICI_STORAGE_REGION to the region of bucket \"b\"",
            ),
            (
                refused(301, "", "", Some("us-west-2")),
                "set KICI_STORAGE_REGION=us-west-2",
            ),
            (
                refused(403, "RequestTimeTooSkewed", "", None),
                "sync it (NTP)",
            ),
            (
                refused(403, "AccessDenied", "Request has expired", None),
                "clock is probably ahead",
            ),
            (refused(403, "AccessDenied", "", None), "s3:PutObject"),
            (
                StorageError::Unreachable {
                    url: "http://s3:9000/b/k".into(),
                    detail: "Connection refused".into(),
                },
                "check KICI_STORAGE_ENDPOINT (scheme, host and port)",
            ),
        ];
        for (e, wanted) in cases {
            let said = advice(&e, &ctx());
            assert!(said.contains(wanted), "{e:?}: {said}");
        }
        let dns = StorageError::Unreachable {
            url: "http://b.s3:9000/k".into(),
            detail: "failed to lookup address".into(),
        };
        let virtual_host = Context {
            path_style: false,
            ..ctx()
        };
        assert!(advice(&dns, &virtual_host).contains("KICI_STORAGE_FORCE_PATH_STYLE=true"));
        assert!(!advice(&dns, &ctx()).contains("FORCE_PATH_STYLE"));
    }

    #[test]
    fn skew_from_the_date_header() {
        let sent: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let received: Timestamp = "2026-11-28T10:00:02Z".parse().unwrap();
        let skew = skew_seconds(Some("Sat, 28 Nov 2026 10:00:31 GMT"), sent, received);
        assert_eq!(skew, Some(30.0));
        assert_eq!(skew_seconds(None, sent, received), None);
        assert_eq!(skew_seconds(Some("garbage"), sent, received), None);
    }
}
