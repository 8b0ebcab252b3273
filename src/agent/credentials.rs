//! A job's credentials in its `job.dispatch` frame, obtained when the job is sent. The queue
//! holds only an opaque reference (`crate::runs::credentials`); whatever turns it into frame
//! fields is injected by the daemon (`Hub::set_credentials`), so this module knows nothing of
//! GitHub. Minting per dispatch means no token is stored at rest, and a job that waited long on
//! its `needs` still gets a live one.

use serde_json::Value;

pub use crate::runs::credentials::{CredentialsError, JobCredentials, CREDENTIALS_KEY};

use super::dispatch_frame;
use crate::runs::store::queue::Claimed;

/// The frame for a claimed job, with its credentials minted now.
pub fn frame(
    job: &Claimed,
    minter: Option<&dyn JobCredentials>,
) -> Result<Value, CredentialsError> {
    let mut frame = dispatch_frame(job);
    let Some(reference) = job.dispatch.get(CREDENTIALS_KEY) else {
        return Ok(frame);
    };
    let minter =
        minter.ok_or("this orchestrator cannot mint repository credentials (none configured)")?;
    for (k, v) in minter.frame_fields(reference)? {
        frame[k] = v;
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    struct Fixed(Result<&'static str, &'static str>);

    impl JobCredentials for Fixed {
        fn frame_fields(&self, reference: &Value) -> Result<Map<String, Value>, CredentialsError> {
            assert_eq!(reference["repository"], "acme/app");
            let token = self.0?;
            let mut m = Map::new();
            m.insert("token".into(), json!(token));
            Ok(m)
        }
    }

    fn claimed(dispatch: Value) -> Claimed {
        Claimed {
            id: "j".into(),
            run_id: "r".into(),
            job_name: "build".into(),
            dispatch,
            pending_secs: 0.0,
            org_secrets: false,
        }
    }

    #[test]
    fn the_reference_is_replaced_by_what_the_minter_gives() {
        let job = claimed(json!({"repoUrl": "u", CREDENTIALS_KEY: {"repository": "acme/app"}}));
        let f = frame(&job, Some(&Fixed(Ok("ghs_fresh")))).unwrap();
        assert_eq!(f["token"], "ghs_fresh");
        assert_eq!(f["type"], "job.dispatch");
        assert!(f.get(CREDENTIALS_KEY).is_none(), "{f}");
        let e = frame(&job, Some(&Fixed(Err("GitHub said no")))).unwrap_err();
        assert_eq!(e.to_string(), "GitHub said no");
        assert!(frame(&job, None)
            .unwrap_err()
            .to_string()
            .contains("cannot mint"));
        // A job without a reference (a local repository) needs no minter.
        let local = frame(&claimed(json!({"repoUrl": "file:///r"})), None).unwrap();
        assert!(local.get("token").is_none());
    }
}
