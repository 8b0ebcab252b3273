//! The build job, as data (docs/caches.md, "The build job"). Pure.
//!
//! A workflow's jobs start warm from two tarballs: its bundle (`source/<contentHash>.tar.gz`)
//! and its packed dependencies (`deps/<platform>-<arch>/<lockfileHash>.tar.gz`, with the SHA-256
//! in the `.hash` companion). Which tarballs a run needs follows from its jobs' stored dispatch
//! and labels; when one is missing, a synthetic `__build__<workflow>` job makes both, on an agent
//! of the jobs' platform with the `kici:role:builder` role.

use serde_json::{json, Value};

use crate::storage::keys;

/// Name prefix of the synthetic build job.
pub const BUILD_PREFIX: &str = "__build__";
/// Role label every build job requires.
pub const BUILDER_ROLE: &str = "kici:role:builder";
/// The platform and architecture assumed when no job names them (`kici:os:` / `kici:arch:`
/// labels): what agents report on the usual Linux x86-64 host.
pub const DEFAULT_PLATFORM: (&str, &str) = ("linux", "x64");
/// Where a stored execution job keeps the tarball keys its dispatch is given URLs for; removed
/// from the frame before it is sent.
pub const TARBALLS_KEY: &str = "__cacheTarballs";

/// The tarballs a workflow's jobs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarballs {
    pub content_hash: String,
    /// `None` when the lock file names no lockfile hash (no dependency tarball then).
    pub lockfile_hash: Option<String>,
    pub platform: String,
    pub arch: String,
}

impl Tarballs {
    /// From a job's stored dispatch (`jobConfig.contentHash`, `jobConfig.lockfileHash`) and its
    /// required labels; `None` when the job names no content hash (nothing to cache).
    pub fn of(dispatch: &Value, labels: &[String]) -> Option<Tarballs> {
        let text = |k: &str| {
            dispatch
                .pointer(&format!("/jobConfig/{k}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let content_hash = text("contentHash")?;
        let label = |prefix: &str| {
            labels
                .iter()
                .find_map(|l| l.strip_prefix(prefix).filter(|v| !v.is_empty()))
                .map(str::to_owned)
        };
        Some(Tarballs {
            content_hash,
            lockfile_hash: text("lockfileHash"),
            platform: label("kici:os:").unwrap_or_else(|| DEFAULT_PLATFORM.0.to_owned()),
            arch: label("kici:arch:").unwrap_or_else(|| DEFAULT_PLATFORM.1.to_owned()),
        })
    }

    pub fn source_key(&self) -> String {
        keys::source(&self.content_hash)
    }

    /// The deps tarball and its `.hash` companion.
    pub fn deps_keys(&self) -> Option<(String, String)> {
        let h = self.lockfile_hash.as_deref()?;
        Some((
            keys::deps(&self.platform, &self.arch, h),
            keys::deps_hash(&self.platform, &self.arch, h),
        ))
    }

    /// What one build makes: two runs with the same key share their build job.
    pub fn build_key(&self) -> String {
        format!(
            "{}|{}-{}|{}",
            self.source_key(),
            self.platform,
            self.arch,
            self.lockfile_hash.as_deref().unwrap_or("")
        )
    }

    /// The labels the build job requires.
    pub fn builder_labels(&self) -> Vec<String> {
        vec![
            BUILDER_ROLE.to_owned(),
            format!("kici:os:{}", self.platform),
            format!("kici:arch:{}", self.arch),
        ]
    }

    /// Stored with each execution job (under [`TARBALLS_KEY`]): the keys its dispatch gets URLs
    /// for.
    pub fn to_value(&self) -> Value {
        let mut v = json!({ "source": self.source_key(), "sourceHash": self.content_hash });
        if let Some((deps, hash)) = self.deps_keys() {
            v["deps"] = json!(deps);
            v["depsHashKey"] = json!(hash);
        }
        v
    }
}

pub fn build_job_name(workflow: &str) -> String {
    format!("{BUILD_PREFIX}{workflow}")
}

pub fn is_build_job(name: &str) -> bool {
    name.starts_with(BUILD_PREFIX)
}

/// The build job's stored dispatch, made from one execution job's: the same repository, commit,
/// credentials reference and event; a job configuration of its own (`buildOnly`, no steps,
/// needs, matrix or rules).
pub fn build_dispatch(execution: &Value, workflow: &str, t: &Tarballs) -> Value {
    let mut body = execution.clone();
    if let Value::Object(o) = &mut body {
        o.remove(TARBALLS_KEY);
    }
    let name = build_job_name(workflow);
    let from = &execution["jobConfig"];
    let mut config = json!({
        "workflowName": workflow,
        "name": name,
        "baseJobName": name,
        "buildOnly": true,
        "checkout": true,
        "contentHash": t.content_hash,
        "runsOn": t.builder_labels().join(","),
        "platform": t.platform,
        "arch": t.arch,
    });
    for k in ["source", "event", "provider"] {
        if let Some(v) = from.get(k) {
            config[k] = v.clone();
        }
    }
    if let Some(h) = &t.lockfile_hash {
        config["lockfileHash"] = json!(h);
    }
    body["jobConfig"] = config;
    body
}

/// A build job reporting `success` without `data.buildComplete: true` did not build: the data of
/// the failure it is recorded as instead. `None` for every other report.
pub fn incomplete_build(job_name: &str, state: &str, data: &Value) -> Option<Value> {
    let complete = data.get("buildComplete").and_then(Value::as_bool) == Some(true);
    (is_build_job(job_name) && state == "success" && !complete).then(|| {
        let mut d = data.clone();
        if !d.is_object() {
            d = json!({});
        }
        d["error"] = json!({
            "message": "the build job reported success without data.buildComplete: its tarballs \
                        are not known to be uploaded"
        });
        d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch() -> Value {
        json!({"repoUrl": "file:///r", "sha": "abc", "__credentials": {"x": 1},
               "jobConfig": {"workflowName": "basic", "name": "test (1)", "contentHash": "c0",
                             "lockfileHash": "l0", "steps": [1], "needs": ["a"],
                             "matrixValues": {"v": "1"}, "event": {"type": "push"},
                             "source": {"file": "f"}}})
    }

    #[test]
    fn tarballs_follow_the_dispatch_and_the_labels() {
        let labels = vec!["kici:os:darwin".to_owned(), "kici:arch:arm64".to_owned()];
        let t = Tarballs::of(&dispatch(), &labels).unwrap();
        assert_eq!(t.source_key(), "source/c0.tar.gz");
        assert_eq!(
            t.deps_keys(),
            Some((
                "deps/darwin-arm64/l0.tar.gz".into(),
                "deps/darwin-arm64/l0.hash".into()
            ))
        );
        assert_eq!(t.build_key(), "source/c0.tar.gz|darwin-arm64|l0");
        let plain = Tarballs::of(&dispatch(), &[]).unwrap();
        assert_eq!(
            (plain.platform.as_str(), plain.arch.as_str()),
            ("linux", "x64")
        );
        assert_eq!(
            plain.builder_labels(),
            ["kici:role:builder", "kici:os:linux", "kici:arch:x64"]
        );
        assert!(Tarballs::of(&json!({"jobConfig": {"contentHash": ""}}), &[]).is_none());
        let no_lock = Tarballs::of(&json!({"jobConfig": {"contentHash": "c"}}), &[]).unwrap();
        assert_eq!(no_lock.deps_keys(), None);
        assert_eq!(
            no_lock.to_value(),
            json!({"source": "source/c.tar.gz", "sourceHash": "c"})
        );
    }

    #[test]
    fn the_build_dispatch_keeps_the_checkout_and_drops_the_job() {
        let t = Tarballs::of(&dispatch(), &[]).unwrap();
        let mut stored = dispatch();
        stored[TARBALLS_KEY] = t.to_value();
        let b = build_dispatch(&stored, "basic", &t);
        assert_eq!(b["repoUrl"], "file:///r");
        assert_eq!(b["__credentials"], json!({"x": 1}));
        assert!(b.get(TARBALLS_KEY).is_none());
        let c = &b["jobConfig"];
        assert_eq!(c["name"], "__build__basic");
        assert_eq!(c["buildOnly"], true);
        assert_eq!(
            (c["contentHash"].as_str(), c["lockfileHash"].as_str()),
            (Some("c0"), Some("l0"))
        );
        for gone in ["steps", "needs", "matrixValues"] {
            assert!(c.get(gone).is_none(), "{gone}");
        }
        assert_eq!(c["event"]["type"], "push");
        assert!(is_build_job("__build__basic") && !is_build_job("build"));
    }

    #[test]
    fn a_build_succeeds_only_with_build_complete() {
        let done = json!({"buildComplete": true});
        assert_eq!(incomplete_build("__build__ci", "success", &done), None);
        assert_eq!(incomplete_build("test", "success", &json!({})), None);
        assert_eq!(incomplete_build("__build__ci", "failed", &json!({})), None);
        for data in [
            json!({"durationMs": 3}),
            json!({"buildComplete": "yes"}),
            Value::Null,
        ] {
            let d = incomplete_build("__build__ci", "success", &data).expect("a failure");
            let why = crate::runs::failure::job_error(&d).unwrap_or_default();
            assert!(why.contains("buildComplete"), "{why}");
        }
    }
}
