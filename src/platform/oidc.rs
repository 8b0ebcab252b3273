//! Build-provenance ID tokens for agents (docs/platform-protocol.md, "OIDC mint relay"). An agent
//! asks through `agent.api.request{method:"oidc.token.request", params:{jobId, audience}}`; we mint
//! only when that job is dispatched to **that** agent and not finished, with the run id taken from
//! our own dispatch record (never from the agent), by calling the Platform's
//! `POST <http base>/internal/orchestrator/<instanceId>/mint-id-token` with the orchestrator token.

use std::time::Duration;

use serde_json::{json, Value};

pub const METHOD: &str = "oidc.token.request";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Which jobs an agent holds right now: the run id of `job_id` when it is dispatched to
/// `agent_id` (or recovering on it) and not finished. The agent link implements this over its
/// live sessions.
pub trait OwnedJobs {
    fn run_of(&self, agent_id: &str, job_id: &str) -> Option<String>;
}

/// Where tokens are minted: set in platform and hybrid modes only.
#[derive(Clone)]
pub struct Minter {
    http_base: String,
    token: String,
    instance_id: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("http_base", &self.http_base)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// `{jobId: string(min 1), audience: string(1..255)}`.
pub fn parse_params(params: &Value) -> Result<(String, String), String> {
    let text = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or("");
    let (job_id, audience) = (text("jobId"), text("audience"));
    if job_id.is_empty() {
        return Err("invalid params: jobId must be a non-empty string".into());
    }
    if audience.is_empty() || audience.chars().count() > 255 {
        return Err("invalid params: audience must be a string of 1 to 255 characters".into());
    }
    Ok((job_id.to_owned(), audience.to_owned()))
}

/// The error an agent gets for a refused mint, by the Platform's status.
pub fn status_error(status: u16) -> String {
    match status {
        404 | 409 => format!("token mint rejected ({status})"),
        503 => "provenance signing is not configured on the Platform".into(),
        other => format!("token mint failed ({other})"),
    }
}

impl Minter {
    /// Trusts the host's roots (`SSL_CERT_FILE` or the system bundle, see `crate::tls`).
    pub fn new(platform_url: &str, token: &str, instance_id: &str) -> Minter {
        Minter::with_roots(platform_url, token, instance_id, crate::tls::ureq_roots())
    }

    /// Trusts exactly `roots` (tests with a private CA, without touching the environment).
    pub fn with_roots(
        platform_url: &str,
        token: &str,
        instance_id: &str,
        roots: ureq::tls::RootCerts,
    ) -> Minter {
        crate::install_crypto_provider();
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .new_agent();
        Minter {
            http_base: super::http_base(platform_url),
            token: token.to_owned(),
            instance_id: instance_id.to_owned(),
            agent,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}/internal/orchestrator/{}/mint-id-token",
            self.http_base, self.instance_id
        )
    }

    /// The `result` of the agent's `agent.api.response` ([`result_of`]), or its `error`.
    pub fn mint(
        &self,
        owned: &dyn OwnedJobs,
        agent_id: &str,
        params: &Value,
    ) -> Result<Value, String> {
        let (job_id, audience) = parse_params(params)?;
        let run_id = owned
            .run_of(agent_id, &job_id)
            .ok_or_else(|| format!("job {job_id} not owned by agent {agent_id}"))?;
        let body = json!({ "run_id": run_id, "job_id": job_id, "audience": audience });
        let url = self.url();
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| format!("token mint failed (Platform unreachable: {e})"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(status_error(status));
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .map_err(|e| format!("token mint failed (unreadable answer: {e})"))?;
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| format!("token mint failed (answer is not JSON: {e})"))?;
        result_of(&answer)
    }
}

/// The agent's `result` from the Platform's answer (`{token, expires_in, jti}`): `token`
/// required, `expiresIn` (a whole number of seconds) and `jti` (a string) only when the answer
/// has them. A missing, `null` or mistyped one is left out, never sent as `null`
/// (docs/agent-protocol.md, "OIDC tokens").
pub fn result_of(answer: &Value) -> Result<Value, String> {
    let token = answer.get("token").and_then(Value::as_str);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err("token mint failed (answer without a token)".into());
    };
    let mut result = json!({ "token": token });
    if let Some(secs) = answer
        .get("expires_in")
        .filter(|v| v.is_i64() || v.is_u64())
    {
        result["expiresIn"] = secs.clone();
    }
    if let Some(jti) = answer.get("jti").filter(|v| v.is_string()) {
        result["jti"] = jti.clone();
    }
    Ok(result)
}

/// What an agent gets for `oidc.token.request`: minted where a Platform is configured, the
/// reference's unknown-method error in independent mode.
pub fn handle(
    minter: Option<&Minter>,
    owned: &dyn OwnedJobs,
    agent_id: &str,
    params: &Value,
) -> Result<Value, String> {
    match minter {
        Some(m) => m.mint(owned, agent_id, params),
        None => Err(format!("Unknown API method '{METHOD}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One;
    impl OwnedJobs for One {
        fn run_of(&self, agent: &str, job: &str) -> Option<String> {
            (agent == "a1" && job == "j1").then(|| "r1".to_owned())
        }
    }

    #[test]
    fn params_ownership_and_errors_before_any_request() {
        assert!(parse_params(&json!({"jobId": "", "audience": "x"})).is_err());
        assert!(parse_params(&json!({"jobId": "j", "audience": "a".repeat(256)})).is_err());
        assert!(parse_params(&json!({"jobId": 5, "audience": "x"})).is_err());
        assert_eq!(
            parse_params(&json!({"jobId": "j", "audience": "sigstore"})),
            Ok(("j".into(), "sigstore".into()))
        );
        // Port 9 is closed: reaching the network would fail differently.
        let m = Minter::new("ws://127.0.0.1:9/ws", "tok", "inst");
        assert_eq!(
            m.url(),
            "http://127.0.0.1:9/internal/orchestrator/inst/mint-id-token"
        );
        let e = m
            .mint(&One, "a2", &json!({"jobId": "j1", "audience": "x"}))
            .unwrap_err();
        assert_eq!(e, "job j1 not owned by agent a2");
        let e = handle(None, &One, "a1", &json!({"jobId": "j1", "audience": "x"})).unwrap_err();
        assert_eq!(e, "Unknown API method 'oidc.token.request'");
        assert_eq!(status_error(404), "token mint rejected (404)");
        assert_eq!(status_error(409), "token mint rejected (409)");
        assert_eq!(
            status_error(503),
            "provenance signing is not configured on the Platform"
        );
        assert_eq!(status_error(500), "token mint failed (500)");
    }

    #[test]
    fn a_minted_token_without_nulls() {
        let full = json!({"token": "t", "expires_in": 300, "jti": "j-1"});
        assert_eq!(
            result_of(&full),
            Ok(json!({"token": "t", "expiresIn": 300, "jti": "j-1"}))
        );
        for bare in [
            json!({"token": "t"}),
            json!({"token": "t", "expires_in": null, "jti": null}),
            json!({"token": "t", "expires_in": "300", "jti": 7}),
            json!({"token": "t", "expires_in": 1.5}),
        ] {
            assert_eq!(result_of(&bare), Ok(json!({"token": "t"})), "{bare}");
        }
        for refused in [
            json!({}),
            json!({"token": ""}),
            json!({"token": null}),
            json!([]),
        ] {
            assert_eq!(
                result_of(&refused),
                Err("token mint failed (answer without a token)".into())
            );
        }
    }
}
