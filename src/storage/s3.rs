//! The S3 backend's I/O: the orchestrator's own operations (head, get, put, copy-with-metadata,
//! list, delete, lifecycle) sent with blocking ureq over URLs signed by `presign.rs`, short-lived
//! (one minute), built with the internal endpoint.

use std::time::Duration;

use jiff::Timestamp;

use super::presign::{copy_source, Presigner, Verb};
use super::{xml, Listed, Meta, ObjectInfo, StorageError};

/// Lifetime of the URLs the orchestrator signs for its own requests.
const OWN_LIFETIME: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The orchestrator reads hash files, probes and lifecycle documents, never tarballs.
const OWN_READ_LIMIT: u64 = 64 * 1024 * 1024;
const META_CREATED: &str = "x-amz-meta-created-at";
const META_ACCESSED: &str = "x-amz-meta-last-accessed-at";

/// An HTTP answer from the store.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// S3's error document as a `StorageError` naming what we were doing.
    pub fn refused(&self, op: &str, url: &str) -> StorageError {
        let body = String::from_utf8_lossy(&self.body);
        StorageError::Refused {
            op: op.to_owned(),
            url: strip_query(url),
            status: self.status,
            code: xml::text(&body, "Code").unwrap_or_default(),
            message: xml::text(&body, "Message").unwrap_or_default(),
            region: xml::text(&body, "Region")
                .or_else(|| self.header("x-amz-bucket-region").map(str::to_owned)),
        }
    }
}

/// A URL without its query (the signature) for messages.
pub fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Sends one request; any HTTP status is an `Answer`, no answer at all is `Unreachable`.
pub fn send(
    agent: &ureq::Agent,
    verb: Verb,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, StorageError> {
    let unreachable = |e: ureq::Error| StorageError::Unreachable {
        url: strip_query(url),
        detail: e.to_string(),
    };
    let result = match verb {
        Verb::Head | Verb::Get | Verb::Delete => {
            let mut req = match verb {
                Verb::Head => agent.head(url),
                Verb::Get => agent.get(url),
                _ => agent.delete(url),
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        Verb::Put => {
            let mut req = agent.put(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body)
        }
    };
    let mut resp = result.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = if verb == Verb::Head {
        Vec::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(OWN_READ_LIMIT)
            .read_to_vec()
            .map_err(unreachable)?
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A ureq agent for talking to a store: statuses are answers, bounded timeouts.
pub fn agent() -> ureq::Agent {
    crate::install_crypto_provider();
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// The three presigners of one store, and the agent the orchestrator's requests go through.
#[derive(Debug)]
pub struct S3Store {
    pub internal: Presigner,
    pub external: Presigner,
    pub upload: Presigner,
    agent: ureq::Agent,
}

impl S3Store {
    pub fn new(internal: Presigner, external: Presigner, upload: Presigner) -> S3Store {
        S3Store {
            internal,
            external,
            upload,
            agent: agent(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        op: &str,
        verb: Verb,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        signed: &[(&str, &str)],
        unsigned: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(Answer, String), StorageError> {
        let url = self
            .internal
            .sign(
                verb,
                bucket,
                key,
                query,
                signed,
                OWN_LIFETIME,
                Timestamp::now(),
            )
            .map_err(StorageError::Invalid)?
            .to_string();
        let mut headers = signed.to_vec();
        headers.extend_from_slice(unsigned);
        let answer = send(&self.agent, verb, &url, &headers, body);
        crate::metrics::hooks::storage(op, answer.as_ref().ok().map(|a| a.status));
        let answer = answer?;
        log::trace!("storage {op} {} -> {}", strip_query(&url), answer.status);
        Ok((answer, url))
    }

    pub fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let (a, url) = self.call("head", Verb::Head, bucket, Some(key), &[], &[], &[], &[])?;
        match a.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(Some(ObjectInfo {
                size: a
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                meta: Meta::parse(a.header(META_CREATED), a.header(META_ACCESSED)),
            })),
            _ => Err(a.refused("head", &url)),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let (a, url) = self.call("get", Verb::Get, bucket, Some(key), &[], &[], &[], &[])?;
        match a.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(Some(a.body)),
            _ => Err(a.refused("get", &url)),
        }
    }

    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        meta: Option<&Meta>,
    ) -> Result<(), StorageError> {
        let stamps = meta.map(Meta::to_strings);
        let signed: Vec<(&str, &str)> = stamps
            .as_ref()
            .map(|(c, a)| vec![(META_CREATED, c.as_str()), (META_ACCESSED, a.as_str())])
            .unwrap_or_default();
        let (a, url) = self.call("put", Verb::Put, bucket, Some(key), &[], &signed, &[], body)?;
        if a.ok() {
            Ok(())
        } else {
            Err(a.refused("put", &url))
        }
    }

    /// CopyObject onto itself with fresh metadata (`MetadataDirective=REPLACE`): how metadata
    /// reaches an object uploaded through a presigned PUT, and how a read touches it.
    /// `Ok(false)` when the object does not exist.
    pub fn set_meta(&self, bucket: &str, key: &str, meta: &Meta) -> Result<bool, StorageError> {
        self.copy(bucket, key, key, meta)
    }

    /// CopyObject `from` → `key` in `bucket` with `meta` (`MetadataDirective=REPLACE`);
    /// `Ok(false)` when `from` does not exist.
    pub fn copy(
        &self,
        bucket: &str,
        from: &str,
        key: &str,
        meta: &Meta,
    ) -> Result<bool, StorageError> {
        let (created, accessed) = meta.to_strings();
        let source = copy_source(bucket, from);
        let signed = [
            (META_CREATED, created.as_str()),
            (META_ACCESSED, accessed.as_str()),
            ("x-amz-copy-source", source.as_str()),
            ("x-amz-metadata-directive", "REPLACE"),
        ];
        let (a, url) = self.call("copy", Verb::Put, bucket, Some(key), &[], &signed, &[], &[])?;
        // CopyObject can also fail with a 200 whose body is an error document.
        let failed_late = xml::elements(&String::from_utf8_lossy(&a.body), "Error").len() == 1;
        match a.status {
            404 => Ok(false),
            s if (200..300).contains(&s) && !failed_late => Ok(true),
            _ => Err(a.refused("copy", &url)),
        }
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        let (a, url) = self.call(
            "delete",
            Verb::Delete,
            bucket,
            Some(key),
            &[],
            &[],
            &[],
            &[],
        )?;
        if a.ok() || a.status == 404 {
            Ok(())
        } else {
            Err(a.refused("delete", &url))
        }
    }

    /// ListObjectsV2 under `prefix`, every page, newest first.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = token.as_deref() {
                query.push(("continuation-token", t));
            }
            let (a, url) = self.call("list", Verb::Get, bucket, None, &query, &[], &[], &[])?;
            if !a.ok() {
                return Err(a.refused("list", &url));
            }
            let text = String::from_utf8_lossy(&a.body);
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                StorageError::Invalid(format!(
                    "unreadable ListObjectsV2 answer from {}: {e}",
                    strip_query(&url)
                ))
            })?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size.unwrap_or(0),
                last_modified: c.last_modified.unwrap_or_default(),
            }));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| b.last_modified.cmp(&a.last_modified));
        Ok(out)
    }

    /// The bucket's lifecycle document; `None` when it has none.
    pub fn get_lifecycle(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        let q = [("lifecycle", "")];
        let (a, url) = self.call("get-lifecycle", Verb::Get, bucket, None, &q, &[], &[], &[])?;
        match a.status {
            s if (200..300).contains(&s) => Ok(Some(String::from_utf8_lossy(&a.body).into_owned())),
            404 if a.refused("", "").code_is("NoSuchLifecycleConfiguration") => Ok(None),
            _ => Err(a.refused("get-lifecycle", &url)),
        }
    }

    /// PutBucketLifecycleConfiguration. rusty-s3 has no such action: the `?lifecycle`
    /// sub-resource is signed here, and `Content-MD5` (required by S3, not part of a presigned
    /// signature) is sent alongside.
    pub fn put_lifecycle(&self, bucket: &str, document: &str) -> Result<(), StorageError> {
        use md5::Digest;
        let md5 = data_encoding::BASE64.encode(&md5::Md5::digest(document.as_bytes()));
        let q = [("lifecycle", "")];
        let unsigned = [
            ("content-md5", md5.as_str()),
            ("content-type", "application/xml"),
        ];
        let (a, url) = self.call(
            "put-lifecycle",
            Verb::Put,
            bucket,
            None,
            &q,
            &[],
            &unsigned,
            document.as_bytes(),
        )?;
        if a.ok() {
            Ok(())
        } else {
            Err(a.refused("put-lifecycle", &url))
        }
    }
}
