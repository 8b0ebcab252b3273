//! Workflow secrets and environments (docs/secrets.md): secrets sealed in `scoped_secrets` per
//! org and scope, org-wide secrets in the reserved scope `__org__`, environments that reach
//! scopes through bindings, their plain variables, key rotation and the audit log.
//!
//! `names` is pure validation; `store` and `audit` hold the SQL; `rotate` re-seals everything.
//! `resolve` decides (pure) which secrets and variables a job gets; `dispatch` does it when the
//! job is sent.

pub mod audit;
pub mod dispatch;
pub mod names;
pub mod resolve;
pub mod rotate;
pub mod store;

pub use names::ORG_WIDE_SCOPE;
