//! The route table of workflow secrets, environments, key rotation and the audit log
//! (docs/secrets.md, "Admin API"), resolved from path and method alone like the other admin
//! routes (`mod.rs`), so an unknown path is refused before its body is read.

use super::{environments, secrets, ApiError, ApiResult};
use crate::{app::SecretCtx, http::Request, rbac::Caller};

/// One operation; the borrowed values are decoded path segments.
pub enum SecretOp<'a> {
    Scopes,
    Keys,
    ScopeCreate,
    ScopeRename,
    ScopeDelete(&'a str, &'a str),
    Set([&'a str; 3]),
    Delete([&'a str; 3]),
    Purge,
    RotateKey,
    Audit,
    EnvList,
    EnvCreate,
    EnvShow(&'a str),
    EnvDelete(&'a str),
    EnvBind(&'a str),
    EnvUnbind(&'a str),
    VarList(&'a str),
    VarSet(&'a str, &'a str),
    VarDelete(&'a str, &'a str),
}

/// The workflow-secret routes, or `None` when `seg` is none of their paths; 405 for one of their
/// paths with another method.
pub fn resolve<'a>(seg: &[&'a str], method: &str) -> Option<Result<SecretOp<'a>, ApiError>> {
    use SecretOp::*;
    let op = match (seg, method) {
        (["secrets", "scopes"], "GET") => Scopes,
        (["secrets", "scopes"], "POST") => ScopeCreate,
        (["secrets", "keys"], "GET") => Keys,
        (["secrets", "scopes", "rename"], "PUT") => ScopeRename,
        (["secrets", "purge"], "POST") => Purge,
        (["secrets", "scopes", org, scope], "DELETE") => ScopeDelete(org, scope),
        (["secrets", org, scope, key], "PUT") => Set([org, scope, key]),
        (["secrets", org, scope, key], "DELETE") => Delete([org, scope, key]),
        (["rotate-key"], "POST") => RotateKey,
        (["audit"], "GET") => Audit,
        (["environments"], "GET") => EnvList,
        (["environments"], "POST") => EnvCreate,
        (["environments", name], "GET") => EnvShow(name),
        (["environments", name], "DELETE") => EnvDelete(name),
        (["environments", name, "bind"], "POST") => EnvBind(name),
        (["environments", name, "unbind"], "POST") => EnvUnbind(name),
        (["environments", name, "variables"], "GET") => VarList(name),
        (["environments", name, "variables", key], "PUT") => VarSet(name, key),
        (["environments", name, "variables", key], "DELETE") => VarDelete(name, key),
        (["secrets", "scopes" | "keys" | "purge"] | ["secrets", "scopes", "rename"], _)
        | (["secrets", _, _, _] | ["rotate-key"] | ["audit"] | ["environments"], _)
        | (["environments", _] | ["environments", _, "bind" | "unbind" | "variables"], _)
        | (["environments", _, "variables", _], _) => {
            return Some(Err(ApiError::Status(405, "Method not allowed".into())))
        }
        _ => return None,
    };
    Some(Ok(op))
}

pub fn handle(ctx: &SecretCtx, c: &Caller, req: &Request, op: SecretOp) -> ApiResult {
    use SecretOp::*;
    match op {
        Scopes => secrets::list_scopes(ctx, c, req),
        Keys => secrets::list_keys(ctx, c, req),
        ScopeCreate => secrets::create_scope(ctx, c, req),
        ScopeRename => secrets::rename_scope(ctx, c, req),
        ScopeDelete(org, scope) => secrets::delete_scope(ctx, c, org, scope),
        Set(path) => secrets::set(ctx, c, req, path),
        Delete(path) => secrets::delete(ctx, c, path),
        Purge => secrets::purge(ctx, c, req),
        RotateKey => secrets::rotate_key(ctx, c),
        Audit => secrets::read_audit(ctx, c, req),
        EnvList => environments::list(ctx, c, req),
        EnvCreate => environments::create(ctx, c, req),
        EnvShow(name) => environments::show(ctx, c, req, name),
        EnvDelete(name) => environments::delete(ctx, c, req, name),
        EnvBind(name) => environments::bind(ctx, c, req, name),
        EnvUnbind(name) => environments::unbind(ctx, c, req, name),
        VarList(name) => environments::variables(ctx, c, req, name),
        VarSet(name, key) => environments::set_variable(ctx, c, req, name, key),
        VarDelete(name, key) => environments::delete_variable(ctx, c, req, name, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &[&str], method: &str) -> Option<Result<String, u16>> {
        resolve(path, method).map(|r| {
            r.map(|op| match op {
                SecretOp::ScopeDelete(o, s) => format!("scope-delete {o} {s}"),
                SecretOp::Set([o, s, k]) => format!("set {o} {s} {k}"),
                SecretOp::Delete([o, s, k]) => format!("delete {o} {s} {k}"),
                SecretOp::EnvBind(n) => format!("bind {n}"),
                SecretOp::VarSet(n, k) => format!("var-set {n} {k}"),
                SecretOp::Scopes => "scopes".into(),
                _ => "other".into(),
            })
            .map_err(|e| match e {
                ApiError::Status(s, _) => s,
                _ => 0,
            })
        })
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(op(&["secrets", "scopes"], "GET"), Some(Ok("scopes".into())));
        assert_eq!(
            op(&["secrets", "acme", "aws/prod", "K"], "PUT"),
            Some(Ok("set acme aws/prod K".into()))
        );
        // The reference's route order: DELETE …/scopes/:org/:scope is the scope route.
        assert_eq!(
            op(&["secrets", "scopes", "acme", "s"], "DELETE"),
            Some(Ok("scope-delete acme s".into()))
        );
        assert_eq!(
            op(&["secrets", "acme", "s", "K"], "DELETE"),
            Some(Ok("delete acme s K".into()))
        );
        assert_eq!(
            op(&["environments", "prod", "bind"], "POST"),
            Some(Ok("bind prod".into()))
        );
        assert_eq!(
            op(&["environments", "prod", "variables", "A"], "PUT"),
            Some(Ok("var-set prod A".into()))
        );
        assert_eq!(op(&["secrets", "acme", "s", "K"], "GET"), Some(Err(405)));
        assert_eq!(op(&["rotate-key"], "GET"), Some(Err(405)));
        assert_eq!(op(&["audit"], "POST"), Some(Err(405)));
        assert_eq!(op(&["environments", "prod", "bind"], "GET"), Some(Err(405)));
        assert!(op(&["secrets"], "GET").is_none());
        assert!(op(&["sources"], "GET").is_none());
    }
}
