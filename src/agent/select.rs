//! Which agents may register (the token's gates, docs/agent-protocol.md, "Registration"). Pure.
//! Which registered agent may run which queued job is `crate::runs::requirements`.

use crate::db::agent_tokens::AgentToken;

/// Labels an agent reports about itself, allowed whatever its token lists.
const SELF_REPORTED: [&str; 3] = ["kici:os:", "kici:arch:", "kici:host:"];
const PRIVILEGED_ROOT: &str = "kici:privileged:root";

/// Why a registration is refused, and the close code (4010: the agent never retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub reason: String,
}

/// The register gates: root privilege claims, the token's label allow-list, ephemeral binding.
pub fn register_gates(
    token: Option<&AgentToken>,
    agent_id: &str,
    labels: &[String],
    running_as_uid: Option<i64>,
) -> Result<(), Refused> {
    let refuse = |reason: String| Err(Refused { code: 4010, reason });
    let mut all = labels.iter().map(String::as_str).collect::<Vec<_>>();
    if let Some(t) = token {
        all.extend(t.labels.iter().flatten().map(String::as_str));
        all.extend(t.mandatory_labels.iter().map(String::as_str));
    }
    if all.contains(&PRIVILEGED_ROOT) && running_as_uid != Some(0) {
        return refuse(format!(
            "label {PRIVILEGED_ROOT} requires an agent running as root"
        ));
    }
    let Some(token) = token else { return Ok(()) };
    if let Some(allowed) = &token.labels {
        let foreign: Vec<&str> = labels
            .iter()
            .map(String::as_str)
            .filter(|l| !SELF_REPORTED.iter().any(|p| l.starts_with(p)))
            .filter(|l| !allowed.iter().any(|a| a == l))
            .collect();
        if !foreign.is_empty() {
            return refuse(format!(
                "labels not allowed by this token: {}",
                foreign.join(", ")
            ));
        }
    }
    if token.agent_type == "ephemeral" && token.created_by.as_deref() != Some(agent_id) {
        return refuse("this token is bound to another agent".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn token(labels: Option<&[&str]>, mandatory: &[&str]) -> AgentToken {
        AgentToken {
            prefix: "kat_00000000".into(),
            id: "t".into(),
            labels: labels.map(s),
            mandatory_labels: s(mandatory),
            agent_type: "static".into(),
            created_by: None,
        }
    }

    #[test]
    fn gates() {
        let wire = s(&["linux", "kici:os:linux", "kici:arch:x64", "kici:host:vm"]);
        assert!(register_gates(None, "a", &wire, None).is_ok());
        assert!(register_gates(Some(&token(None, &[])), "a", &wire, None).is_ok());
        assert!(register_gates(Some(&token(Some(&["linux"]), &[])), "a", &wire, None).is_ok());
        let e = register_gates(Some(&token(Some(&["gpu"]), &[])), "a", &wire, None).unwrap_err();
        assert_eq!(e.code, 4010);
        assert!(e.reason.contains("linux"), "{e:?}");
        let root = s(&["kici:privileged:root"]);
        assert!(register_gates(None, "a", &root, Some(1000)).is_err());
        assert!(register_gates(None, "a", &root, Some(0)).is_ok());
        // A token that grants root privileges still needs a root process.
        assert!(register_gates(
            Some(&token(None, &["kici:privileged:root"])),
            "a",
            &wire,
            None
        )
        .is_err());
        let mut eph = token(None, &[]);
        eph.agent_type = "ephemeral".into();
        eph.created_by = Some("agent-7".into());
        assert!(register_gates(Some(&eph), "agent-7", &wire, None).is_ok());
        assert!(register_gates(Some(&eph), "agent-8", &wire, None).is_err());
    }
}
