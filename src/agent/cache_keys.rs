//! Which storage keys a job's agent may get upload URLs for (docs/agent-protocol.md,
//! "Cache and upload URLs"). Pure.
//!
//! The keys come from the job's own dispatch record, never from what the agent asks: an agent
//! that could name any `source/<hash>` or `deps/<platform>-<arch>/<hash>` could overwrite the
//! caches of other repositories and agent pools (they are shared by hash). So a request is
//! granted only when its hashes are the ones this job was dispatched with, and its platform and
//! architecture are the ones the agent registered with; everything else is refused with the key
//! and the reason. Source and deps tarballs are written only by a build job (`buildOnly`,
//! docs/caches.md, "The build job"): an execution job reads them, so a fork's job can never
//! replace what other runs start from.

use serde_json::Value;

use crate::storage::keys;

/// What a job's dispatch record says about the cache keys it may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobScope {
    pub run_id: String,
    pub job_id: String,
    /// `jobConfig.contentHash`: the workflow bundle the job runs (`source/<contentHash>…`).
    pub content_hash: Option<String>,
    /// `jobConfig.lockfileHash`: the repository's npm lockfile (`deps/…/<lockfileHash>…`).
    pub lockfile_hash: Option<String>,
    /// `jobConfig.buildOnly`: the job is a workflow's build job.
    pub build_only: bool,
    /// The stored dispatch's user-cache namespace (docs/caches.md, "Workflow caches").
    pub user_cache: Option<crate::caches::user::Namespace>,
}

impl JobScope {
    /// From the stored `job.dispatch` body (src/pipeline/dispatch.rs `dispatch_body`).
    pub fn of(run_id: &str, job_id: &str, dispatch: &Value) -> JobScope {
        let text = |k: &str| {
            dispatch
                .get("jobConfig")
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        JobScope {
            run_id: run_id.to_owned(),
            job_id: job_id.to_owned(),
            content_hash: text("contentHash"),
            lockfile_hash: text("lockfileHash"),
            build_only: dispatch
                .pointer("/jobConfig/buildOnly")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            user_cache: crate::caches::user::Namespace::of(run_id, dispatch),
        }
    }
}

/// The agent as it registered: what its deps tarballs are built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub platform: String,
    pub arch: String,
}

/// A key the agent may write, and for deps the companion `.hash` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub key: String,
    pub deps_hash_key: Option<String>,
}

/// Longest subject digest accepted (`sha512:` + 128 hex is 135).
const MAX_DIGEST: usize = 200;

fn field<'a>(frame: &'a Value, k: &str) -> &'a str {
    frame.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The key a `cache.upload.*` / `provenance.upload.*` frame may use for this job, or why not
/// (the message names the key asked for and what the job allows).
pub fn upload_key(
    kind: &str,
    frame: &Value,
    scope: &JobScope,
    agent: &Platform,
) -> Result<Granted, String> {
    if kind.starts_with("provenance.upload") {
        let digest = field(frame, "subjectDigest");
        let key = keys::provenance(&scope.run_id, &scope.job_id, digest);
        let sane = !digest.is_empty()
            && digest.len() <= MAX_DIGEST
            && digest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-'));
        return if sane {
            Ok(Granted {
                key,
                deps_hash_key: None,
            })
        } else {
            Err(format!(
                "provenance key {key} refused: subjectDigest {digest:?} is not a digest \
                 (1 to {MAX_DIGEST} characters of A-Z a-z 0-9 : . _ -)"
            ))
        };
    }
    let cache_type = field(frame, "cacheType");
    if matches!(cache_type, "source" | "deps") && !scope.build_only {
        return Err(format!(
            "{cache_type} tarball upload refused: job {} is not a build job; only a workflow's \
             __build__ job writes source and deps tarballs",
            scope.job_id
        ));
    }
    match cache_type {
        "source" => {
            let asked = field(frame, "contentHash");
            let key = keys::source(asked);
            match &scope.content_hash {
                Some(own) if own == asked => Ok(Granted {
                    key,
                    deps_hash_key: None,
                }),
                Some(own) => Err(format!(
                    "cache key {key} refused: job {} may only write source/{own}.tar.gz \
                     (the contentHash it was dispatched with)",
                    scope.job_id
                )),
                None => Err(format!(
                    "cache key {key} refused: job {} was dispatched without a contentHash, \
                     so it has no source cache entry to write",
                    scope.job_id
                )),
            }
        }
        "deps" => {
            let (p, a, asked) = (
                field(frame, "platform"),
                field(frame, "arch"),
                field(frame, "lockfileHash"),
            );
            let key = keys::deps(p, a, asked);
            let Some(own) = &scope.lockfile_hash else {
                return Err(format!(
                    "cache key {key} refused: job {} was dispatched without a lockfileHash, \
                     so it has no deps cache entry to write",
                    scope.job_id
                ));
            };
            if own != asked {
                return Err(format!(
                    "cache key {key} refused: job {} may only write deps for lockfileHash {own} \
                     (the one it was dispatched with)",
                    scope.job_id
                ));
            }
            if p != agent.platform || a != agent.arch {
                return Err(format!(
                    "cache key {key} refused: this agent registered as {}-{}, so it may only \
                     write deps/{}-{}/…",
                    agent.platform, agent.arch, agent.platform, agent.arch
                ));
            }
            Ok(Granted {
                key,
                deps_hash_key: Some(keys::deps_hash(p, a, asked)),
            })
        }
        other => Err(format!(
            "cacheType {other:?} refused: only \"source\" and \"deps\" have upload URLs"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> JobScope {
        JobScope::of(
            "run1",
            "job1",
            &json!({"jobConfig": {"contentHash": "c0ffee", "lockfileHash": "l0ck", "buildOnly": true}}),
        )
    }

    fn linux() -> Platform {
        Platform {
            platform: "linux".into(),
            arch: "x64".into(),
        }
    }

    #[test]
    fn the_jobs_own_keys_are_granted() {
        let up = |f: Value| upload_key("cache.upload.request", &f, &scope(), &linux());
        assert_eq!(
            up(json!({"cacheType": "source", "contentHash": "c0ffee"})),
            Ok(Granted {
                key: "source/c0ffee.tar.gz".into(),
                deps_hash_key: None
            })
        );
        assert_eq!(
            up(
                json!({"cacheType": "deps", "lockfileHash": "l0ck", "platform": "linux", "arch": "x64"})
            ),
            Ok(Granted {
                key: "deps/linux-x64/l0ck.tar.gz".into(),
                deps_hash_key: Some("deps/linux-x64/l0ck.hash".into())
            })
        );
        let prov = upload_key(
            "provenance.upload.complete",
            &json!({"subjectDigest": "sha256:ab12"}),
            &scope(),
            &linux(),
        );
        assert_eq!(
            prov.map(|g| g.key),
            Ok("provenance/run1/job1/sha256:ab12.kici.json".into())
        );
    }

    #[test]
    fn other_keys_are_refused_naming_the_key_and_why() {
        let up = |f: Value| {
            upload_key("cache.upload.request", &f, &scope(), &linux()).expect_err("must be refused")
        };
        let e = up(json!({"cacheType": "source", "contentHash": "victim"}));
        assert!(
            e.contains("source/victim.tar.gz") && e.contains("source/c0ffee.tar.gz"),
            "{e}"
        );
        let e = up(
            json!({"cacheType": "deps", "lockfileHash": "victim", "platform": "linux", "arch": "x64"}),
        );
        assert!(
            e.contains("deps/linux-x64/victim.tar.gz") && e.contains("l0ck"),
            "{e}"
        );
        let e = up(
            json!({"cacheType": "deps", "lockfileHash": "l0ck", "platform": "darwin", "arch": "arm64"}),
        );
        assert!(
            e.contains("deps/darwin-arm64/l0ck.tar.gz") && e.contains("linux-x64"),
            "{e}"
        );
        let e = up(json!({"cacheType": "source", "contentHash": "../../x"}));
        assert!(e.contains("source/.._.._x.tar.gz"), "{e}");
        assert!(up(json!({"cacheType": "weird"})).contains("\"weird\""));
        let plain = JobScope::of("r", "j", &json!({"jobConfig": {"contentHash": "c0ffee"}}));
        let e = upload_key(
            "cache.upload.request",
            &json!({"cacheType": "source", "contentHash": "c0ffee"}),
            &plain,
            &linux(),
        )
        .unwrap_err();
        assert!(e.contains("not a build job"), "{e}");
        let bare = JobScope::of(
            "r",
            "j",
            &json!({"jobConfig": {"contentHash": "", "buildOnly": true}}),
        );
        let e = upload_key(
            "cache.upload.request",
            &json!({"cacheType": "source", "contentHash": ""}),
            &bare,
            &linux(),
        )
        .unwrap_err();
        assert!(e.contains("without a contentHash"), "{e}");
        for digest in ["", "a/b", "x y", &"a".repeat(201)] {
            let e = upload_key(
                "provenance.upload.request",
                &json!({ "subjectDigest": digest }),
                &scope(),
                &linux(),
            );
            assert!(e.is_err(), "{digest:?} accepted");
        }
    }
}
