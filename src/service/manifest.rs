//! The instance manifest `.kici-orchestrator.json` (docs/operations.md, "Instances") and the host's
//! index of instances. The reference's fields are kept, so `cli::instance` (which reads
//! `envFilePath`) and the reference's tools find our instances; ours are added after them and
//! optional when read, so a reference manifest still loads.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::layout::{Layout, Supervisor};

pub const MANIFEST_FILE: &str = ".kici-orchestrator.json";
const COMPONENT: &str = "orchestrator";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub component: String,
    pub name: String,
    /// `systemd` or `process` (the reference also writes launchd, windows, compose).
    pub platform: String,
    pub is_user_level: bool,
    pub env_file_path: String,
    pub config_dir: String,
    pub log_dir: String,
    pub install_base: String,
    pub created_at: String,
    pub kici_version: String,
    /// The binary the daemon runs (`ExecStart`, or what `start` spawns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

impl Manifest {
    /// The manifest of `layout`; `created_at` is kept from an earlier install so re-running
    /// install with the same settings leaves the file unchanged.
    pub fn new(
        layout: &Layout,
        supervisor: Supervisor,
        binary: &str,
        service_user: Option<&str>,
        created_at: &str,
    ) -> Manifest {
        let show = |p: &std::path::Path| p.display().to_string();
        let log_dir = match supervisor {
            Supervisor::Systemd => "journald".to_owned(),
            Supervisor::Process => show(&layout.dir),
        };
        Manifest {
            component: COMPONENT.into(),
            name: layout.name.clone(),
            platform: supervisor.as_str().into(),
            is_user_level: supervisor == Supervisor::Process,
            env_file_path: show(&layout.env_file),
            config_dir: show(&layout.dir),
            log_dir,
            install_base: show(&layout.dir),
            created_at: created_at.into(),
            kici_version: env!("CARGO_PKG_VERSION").into(),
            binary: Some(binary.into()),
            unit_path: layout.unit_file.as_deref().map(show),
            service_user: service_user.map(str::to_owned),
            state_dir: Some(show(&layout.state_dir)),
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| {
            format!("not a kici orchestrator manifest ({e}); reinstall with `kici-admin orchestrator install --force`")
        })?;
        if m.component != COMPONENT {
            return Err(format!(
                "component is {:?}, not an orchestrator instance",
                m.component
            ));
        }
        Ok(m)
    }

    pub fn supervisor(&self) -> Result<Supervisor, String> {
        Supervisor::parse(&self.platform).ok_or_else(|| {
            format!(
                "platform {:?} is not managed by this kici-admin (systemd or process): manage it with the tool that installed it",
                self.platform
            )
        })
    }
}

/// One line of the host's `instances.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    pub component: String,
    pub name: String,
    pub platform: String,
    pub is_user_level: bool,
    pub instance_dir: String,
}

impl IndexEntry {
    pub fn of(m: &Manifest) -> IndexEntry {
        IndexEntry {
            component: m.component.clone(),
            name: m.name.clone(),
            platform: m.platform.clone(),
            is_user_level: m.is_user_level,
            instance_dir: m.config_dir.clone(),
        }
    }
}

/// The index's entries; an unreadable index counts as empty (it is a convenience, not a record).
pub fn parse_index(text: &str) -> Vec<IndexEntry> {
    serde_json::from_str(text).unwrap_or_default()
}

/// `entries` with `entry` replacing any entry of the same name (`None`: just removed).
pub fn update_index(
    mut entries: Vec<IndexEntry>,
    name: &str,
    entry: Option<IndexEntry>,
) -> Vec<IndexEntry> {
    entries.retain(|e| e.name != name);
    entries.extend(entry);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

pub fn render_index(entries: &[IndexEntry]) -> String {
    let mut text = serde_json::to_string_pretty(entries).unwrap_or_default();
    text.push('\n');
    text
}

/// The folder the index says holds instance `name`.
pub fn find_in_index(entries: &[IndexEntry], name: &str) -> Option<PathBuf> {
    entries
        .iter()
        .find(|e| e.name == name)
        .map(|e| PathBuf::from(&e.instance_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample() -> Manifest {
        let layout = Layout::new("orch", Path::new("/srv/ci"), Supervisor::Process);
        Manifest::new(
            &layout,
            Supervisor::Process,
            "/usr/local/bin/kici-admin",
            None,
            "2026-01-02T03:04:05Z",
        )
    }

    #[test]
    fn round_trips_and_keeps_the_reference_fields() {
        let m = sample();
        let text = m.to_json();
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "component",
            "name",
            "platform",
            "isUserLevel",
            "envFilePath",
            "configDir",
            "logDir",
            "installBase",
            "createdAt",
            "kiciVersion",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {text}");
        }
        assert_eq!(json["envFilePath"], "/srv/ci/orch.env");
        assert!(json.get("unitPath").is_none());
    }

    #[test]
    fn a_reference_manifest_loads_and_names_its_platform() {
        let text = r#"{"component":"orchestrator","name":"o","platform":"compose","isUserLevel":true,
            "envFilePath":"/x/o.env","configDir":"/x","logDir":"/l","installBase":"/x",
            "createdAt":"2025-01-01T00:00:00.000Z","kiciVersion":"1.2.3"}"#;
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.binary, None);
        assert!(m.supervisor().unwrap_err().contains("\"compose\""));
        assert!(Manifest::parse(r#"{"component":"agent"}"#).is_err());
    }

    #[test]
    fn index_replaces_by_name() {
        let m = sample();
        let entries = update_index(Vec::new(), "orch", Some(IndexEntry::of(&m)));
        let text = render_index(&entries);
        let back = parse_index(&text);
        assert_eq!(find_in_index(&back, "orch"), Some(PathBuf::from("/srv/ci")));
        assert_eq!(update_index(back, "orch", None), Vec::new());
        assert_eq!(parse_index("garbage"), Vec::new());
    }
}
