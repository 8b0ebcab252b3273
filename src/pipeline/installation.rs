//! GitHub's `installation` webhook with action `new_permissions_accepted`: an organisation
//! accepted the permissions the App asks for (docs/check-runs.md, "Missing permission"). The
//! pipeline drops the installation's cached tokens (they carry the old permissions) and tells
//! the check reporter to try the source's parked reports now. Pure here; the effects are in
//! `process::evaluate`.

use serde_json::Value;

use super::process::Work;

/// The installation whose new permissions this delivery announces, if it is one.
pub fn permissions_accepted(work: &Work, payload: &Value) -> Option<u64> {
    (work.provider == "github"
        && work.event.as_deref() == Some("installation")
        && payload["action"] == "new_permissions_accepted")
        .then(|| payload["installation"]["id"].as_u64())
        .flatten()
}

/// What the event log says about it.
pub fn summary(installation: u64) -> String {
    format!(
        "installation {installation} accepted the App's new permissions: its cached tokens were \
         dropped and check reports parked for a missing permission are retried now"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn work(provider: &str, event: &str) -> Work {
        Work {
            event_log_id: String::new(),
            delivery_id: "d".into(),
            routing_key: "github:1".into(),
            provider: provider.into(),
            event: Some(event.into()),
            action: None,
            body: Vec::new(),
        }
    }

    #[test]
    fn only_a_github_installation_accepting_permissions_counts() {
        let accepted = json!({"action": "new_permissions_accepted", "installation": {"id": 42}});
        assert_eq!(
            permissions_accepted(&work("github", "installation"), &accepted),
            Some(42)
        );
        let created = json!({"action": "created", "installation": {"id": 42}});
        assert_eq!(
            permissions_accepted(&work("github", "installation"), &created),
            None
        );
        assert_eq!(
            permissions_accepted(&work("github", "push"), &accepted),
            None
        );
        assert_eq!(
            permissions_accepted(&work("generic", "installation"), &accepted),
            None
        );
        let no_id = json!({"action": "new_permissions_accepted"});
        assert_eq!(
            permissions_accepted(&work("github", "installation"), &no_id),
            None
        );
    }
}
