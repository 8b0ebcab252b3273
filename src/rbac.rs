//! Roles and permissions of admin tokens (docs/operations.md, "Admin API and tokens"): a fixed
//! table, checked on every admin route, plus the routing-key scope of restricted tokens. Pure
//! code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match p {
            ContextRead | DbStatus | AuditRead => true,
            ContextCreate | ContextUpdate | ContextDelete | SecretRead | SecretWrite
            | SecretDelete | DbMigrate => self != Role::Auditor,
            TokenManage | KeyRotate | SecretPurge => self == Role::Owner,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admin route needs. `db.migrate` and `db.status` are ours: the reference checks no
/// permission on its migrate routes, which would let an auditor alter the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ContextCreate,
    ContextRead,
    ContextUpdate,
    ContextDelete,
    SecretRead,
    SecretWrite,
    SecretDelete,
    TokenManage,
    DbMigrate,
    DbStatus,
    /// Re-seal every stored secret under the current key (`rotate-key`).
    KeyRotate,
    /// Read `secret_audit_log`.
    AuditRead,
    /// Delete every workflow secret of an org at once. Ours: the reference checks no permission
    /// on its purge route.
    SecretPurge,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ContextCreate => "context.create",
            Permission::ContextRead => "context.read",
            Permission::ContextUpdate => "context.update",
            Permission::ContextDelete => "context.delete",
            Permission::SecretRead => "secret.read",
            Permission::SecretWrite => "secret.write",
            Permission::SecretDelete => "secret.delete",
            Permission::TokenManage => "token.manage",
            Permission::DbMigrate => "db.migrate",
            Permission::DbStatus => "db.status",
            Permission::KeyRotate => "key.rotate",
            Permission::AuditRead => "audit.read",
            Permission::SecretPurge => "secret.purge",
        }
    }
}

/// The authenticated caller of an admin route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
    /// Set for tokens restricted to one routing key.
    pub routing_key: Option<String>,
}

/// Why a caller was refused; the messages are the reference's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Permission {
        role: Role,
        permission: Permission,
    },
    OtherRoutingKey,
    ScopedToken,
    /// A scoped token tried to change a source's `providerType` or `gitConfig.localPath`.
    LocationChange,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Permission { role, permission } => {
                write!(f, "Role \"{role}\" does not have permission \"{}\"", permission.as_str())
            }
            Denied::OtherRoutingKey => f.write_str(
                "Access denied: token is restricted to a single routing key and this request targets a different one",
            ),
            Denied::ScopedToken => f.write_str(
                "Access denied: this route requires an unscoped admin token (the calling token is restricted to a single routing key)",
            ),
            Denied::LocationChange => f.write_str(
                "Access denied: changing a source's providerType or gitConfig.localPath needs an orchestrator-wide owner or admin token (the calling token is restricted to a single routing key)",
            ),
        }
    }
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), Denied> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(Denied::Permission {
                role: self.role,
                permission,
            })
        }
    }

    pub fn require_unscoped(&self) -> Result<(), Denied> {
        match self.routing_key {
            None => Ok(()),
            Some(_) => Err(Denied::ScopedToken),
        }
    }

    /// Where a source reads repositories from (`providerType`, `gitConfig.localPath`) is an
    /// orchestrator-wide decision: a token scoped to the source's key may not point it at `/`.
    pub fn require_location_change(&self) -> Result<(), Denied> {
        self.require(Permission::ContextCreate)?;
        match self.routing_key {
            None => Ok(()),
            Some(_) => Err(Denied::LocationChange),
        }
    }

    /// A scoped token may only touch its own routing key.
    pub fn require_key(&self, routing_key: &str) -> Result<(), Denied> {
        match &self.routing_key {
            Some(k) if k != routing_key => Err(Denied::OtherRoutingKey),
            _ => Ok(()),
        }
    }

    /// For list routes: whether a row with this key is visible to the caller.
    pub fn sees(&self, routing_key: &str) -> bool {
        self.routing_key.as_deref().is_none_or(|k| k == routing_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn the_permission_table() {
        let all = [
            ContextCreate,
            ContextRead,
            ContextUpdate,
            ContextDelete,
            SecretRead,
            SecretWrite,
            SecretDelete,
            TokenManage,
            DbMigrate,
            DbStatus,
            KeyRotate,
            AuditRead,
            SecretPurge,
        ];
        assert!(all.iter().all(|p| Role::Owner.allows(*p)));
        let admin: Vec<_> = all.iter().filter(|p| !Role::Admin.allows(**p)).collect();
        assert_eq!(admin, [&TokenManage, &KeyRotate, &SecretPurge]);
        let auditor: Vec<_> = all.iter().filter(|p| Role::Auditor.allows(**p)).collect();
        assert_eq!(auditor, [&ContextRead, &DbStatus, &AuditRead]);
    }

    #[test]
    fn denial_messages_and_scopes() {
        let auditor = Caller {
            token_id: "t".into(),
            role: Role::Auditor,
            routing_key: None,
        };
        assert_eq!(
            auditor.require(SecretRead).unwrap_err().to_string(),
            r#"Role "auditor" does not have permission "secret.read""#
        );
        let scoped = Caller {
            token_id: "t".into(),
            role: Role::Admin,
            routing_key: Some("github:1".into()),
        };
        assert!(scoped.require_key("github:1").is_ok());
        assert_eq!(scoped.require_key("github:2"), Err(Denied::OtherRoutingKey));
        assert_eq!(scoped.require_unscoped(), Err(Denied::ScopedToken));
        assert!(scoped.sees("github:1") && !scoped.sees("github:2"));
        assert!(auditor.sees("anything") && auditor.require_unscoped().is_ok());
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
