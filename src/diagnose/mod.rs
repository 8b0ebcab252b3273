//! `kici-admin diagnose` (docs/operations.md, "Diagnose"): one line per check, in a fixed order,
//! each `OK`, `WARN` or `FAIL` with the fix. This module holds the pure part: the report's shape,
//! its rendering and exit code, and the checks as functions from what was found to a line
//! (`checks`). `probe` gathers the facts (database, storage, GitHub, the running daemon's
//! Platform link and agents) for the admin route and for the CLI's direct mode alike.

pub mod checks;
pub mod probe;

use serde::{Deserialize, Serialize};

/// How a check came out. Ordered: the worst level decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `configuration`, `database`, `migrations`, `clock`, `storage`, `github:<appId>`,
    /// `platform`, `agents`, `queue`.
    pub check: String,
    pub level: Level,
    pub message: String,
    /// What to do, for `WARN` and `FAIL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: &str, message: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            level: Level::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warn(check: &str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            level: Level::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(check: &str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            level: Level::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// `FAIL  storage        <message>` and, below it, `      fix: <fix>`.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{:<5} {:<14} {}",
            self.level.as_str(),
            self.check,
            self.message
        );
        if let Some(fix) = &self.fix {
            text.push_str(&format!("\n      fix: {fix}"));
        }
        text
    }
}

/// The worst level of a report (`Ok` when empty).
pub fn worst(checks: &[Check]) -> Level {
    checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok)
}

/// The process exit code: 0 all OK, 1 warnings, 2 failures.
pub fn exit_code(checks: &[Check]) -> i32 {
    match worst(checks) {
        Level::Ok => 0,
        Level::Warn => 1,
        Level::Fail => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_rendering() {
        let ok = Check::ok("database", "PostgreSQL 16.1");
        let warn = Check::warn("agents", "none connected", "start an agent");
        let fail = Check::fail("storage", "access denied", "check AWS_ACCESS_KEY_ID");
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 1);
        assert_eq!(exit_code(&[fail.clone(), warn.clone(), ok.clone()]), 2);
        assert_eq!(ok.render(), "OK    database       PostgreSQL 16.1");
        assert_eq!(
            fail.render(),
            "FAIL  storage        access denied\n      fix: check AWS_ACCESS_KEY_ID"
        );
        let json = serde_json::to_value(&warn).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"check": "agents", "level": "warn", "message": "none connected",
                               "fix": "start an agent"})
        );
    }
}
