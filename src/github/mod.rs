//! GitHub Apps: proving an App's credentials (docs/operations.md, "Admin API and tokens").
//!
//! `app_jwt.rs` is pure (PEM key → signed RS256 JWT, the clock passed in); `api.rs` is the only
//! code here that talks to GitHub, so tests run it against a fake REST server.

pub mod api;
pub mod app_jwt;
pub mod checks;
pub mod repo;

pub use api::{validate_app, AppIdentity, GitHubApi, GitHubError, ValidationError};
pub use app_jwt::{app_jwt, AppKey, KeyError};
