//! What an org id, scope, key, environment name, binding pattern and variable may look like, and
//! the limits on values (docs/secrets.md, "Names and limits"). Pure code: every check returns
//! the message the admin API puts in its 400, naming the value and the fix.

use crate::pipeline::glob::Glob;

/// The scope of an org's org-wide secrets: resolved for every job of the org, below the
/// secrets of its environments. Scopes starting with `__` are internal and refused otherwise,
/// so no user scope can ever be this one.
pub const ORG_WIDE_SCOPE: &str = "__org__";
/// The org owning the orchestrator's own secrets (GitHub App keys, generic-source secrets);
/// never reachable through the secret routes.
pub const SYSTEM_ORG: &str = crate::db::secrets::SYSTEM_ORG;
/// Key of the reference's empty-scope marker row; never a real secret.
pub const EMPTY_SENTINEL_KEY: &str = "__empty__";

pub const MAX_ORG_CHARS: usize = 255;
pub const MAX_SCOPE_CHARS: usize = 500;
pub const MAX_KEY_CHARS: usize = 255;
pub const MAX_ENV_NAME_CHARS: usize = 255;
/// A secret or variable value, in bytes: credentials, certificates and small key files fit;
/// every value of a job travels in one `job.dispatch` frame.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn length(what: &str, value: &str, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n == 0 {
        return Err(format!("{what} must not be empty"));
    }
    if n > max {
        return Err(format!("{what} must be at most {max} characters, got {n}"));
    }
    if has_control(value) {
        return Err(format!(
            "{what} {value:?} contains a control character; use printable characters only"
        ));
    }
    Ok(())
}

/// An org id. `:` is refused because it separates the parts of a secret's associated data
/// (`<org>:<scope>:<key>`): with it, two different rows could share one AAD.
pub fn check_org(org: &str) -> Result<(), String> {
    length("orgId", org, MAX_ORG_CHARS)?;
    if org == SYSTEM_ORG {
        return Err(format!(
            "orgId {SYSTEM_ORG:?} is reserved for the orchestrator's own source secrets; use your org's id"
        ));
    }
    if org.contains(':') {
        return Err(format!("orgId {org:?} must not contain ':'"));
    }
    Ok(())
}

/// A scope: `/`-separated segments, none empty; `__org__` or a name not starting with `__`.
pub fn check_scope(scope: &str) -> Result<(), String> {
    length("scope", scope, MAX_SCOPE_CHARS)?;
    if scope == ORG_WIDE_SCOPE {
        return Ok(());
    }
    if scope.starts_with("__") {
        return Err(format!(
            "scope {scope:?} is reserved: scopes starting with \"__\" are internal (use {ORG_WIDE_SCOPE:?} for org-wide secrets)"
        ));
    }
    if scope.contains(':') {
        return Err(format!("scope {scope:?} must not contain ':'"));
    }
    if scope.split('/').any(str::is_empty) {
        return Err(format!(
            "scope {scope:?} has an empty segment: no leading, trailing or doubled '/'"
        ));
    }
    Ok(())
}

/// A secret's key: what a step passes to `ctx.secrets.get`.
pub fn check_key(key: &str) -> Result<(), String> {
    length("key", key, MAX_KEY_CHARS)?;
    if key == EMPTY_SENTINEL_KEY {
        return Err(format!("key {key:?} is reserved"));
    }
    if key.chars().any(char::is_whitespace) {
        return Err(format!("key {key:?} must not contain whitespace"));
    }
    Ok(())
}

/// A variable's key becomes an environment variable of the job, so it must be one.
pub fn check_variable_key(key: &str) -> Result<(), String> {
    length("key", key, MAX_KEY_CHARS)?;
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "variable key {key:?} must be an environment variable name: letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

pub fn check_env_name(name: &str) -> Result<(), String> {
    length("name", name, MAX_ENV_NAME_CHARS)
}

/// A glob in the syntax the lock file's branch filters use (docs/architecture.md, "Trigger
/// matching"), for binding scope patterns and glob environments.
pub fn check_glob(what: &str, pattern: &str) -> Result<(), String> {
    length(what, pattern, MAX_SCOPE_CHARS)?;
    Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("{what} {pattern:?} is not a valid glob: {}", e.reason))
}

/// A binding's scope pattern: an exact scope or a glob; never an internal scope.
pub fn check_scope_pattern(pattern: &str) -> Result<(), String> {
    check_glob("scopePattern", pattern)?;
    if pattern.starts_with("__") {
        return Err(format!(
            "scopePattern {pattern:?} is reserved: internal scopes cannot be bound (org-wide secrets in {ORG_WIDE_SCOPE:?} reach every job without a binding)"
        ));
    }
    Ok(())
}

pub fn check_value(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "{what} is {} bytes; at most {MAX_VALUE_BYTES} bytes are allowed",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        for ok in ["prod", "aws/prod/db", ORG_WIDE_SCOPE, "a_b-c.d"] {
            assert_eq!(check_scope(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "__source__/x",
            "__org__/x",
            "a:b",
            "a\nb",
        ] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
        assert!(check_scope(&"s".repeat(MAX_SCOPE_CHARS)).is_ok());
        assert!(check_scope(&"s".repeat(MAX_SCOPE_CHARS + 1)).is_err());
        assert!(check_scope("__webhook__").unwrap_err().contains("reserved"));
    }

    #[test]
    fn orgs_keys_and_variables() {
        assert!(check_org("acme").is_ok());
        assert!(check_org("__default__").is_ok());
        assert!(check_org(SYSTEM_ORG).unwrap_err().contains("reserved"));
        assert!(check_org("a:b").is_err());
        assert!(check_key("NPM_TOKEN").is_ok());
        assert!(check_key("db.password").is_ok());
        assert!(check_key("A B").is_err());
        assert!(check_key(EMPTY_SENTINEL_KEY).is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_CHARS)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_CHARS + 1)).is_err());
        assert!(check_variable_key("REGION_1").is_ok());
        assert!(check_variable_key("_X").is_ok());
        for bad in ["1X", "A-B", "A.B", ""] {
            assert!(check_variable_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_and_values() {
        assert!(check_scope_pattern("aws/prod/**").is_ok());
        assert!(check_scope_pattern("aws/prod").is_ok());
        assert!(check_scope_pattern("__org__").is_err());
        assert!(check_scope_pattern("").is_err());
        assert!(check_glob("globPattern", "preview-*").is_ok());
        assert!(check_value("value", &"v".repeat(MAX_VALUE_BYTES)).is_ok());
        let m = check_value("value", &"v".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert_eq!(m, "value is 65537 bytes; at most 65536 bytes are allowed");
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics(s in "\\PC{0,40}|[a-z/_*{}\\[\\]!()@+?.:-]{0,40}") {
            let _ = check_org(&s);
            let _ = check_scope(&s);
            let _ = check_key(&s);
            let _ = check_variable_key(&s);
            let _ = check_env_name(&s);
            let _ = check_scope_pattern(&s);
            let _ = check_value("value", &s);
        }
    }
}
