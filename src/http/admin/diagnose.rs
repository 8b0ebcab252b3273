//! `GET /diagnose` (docs/operations.md, "Diagnose"): the daemon runs every `diagnose` check from
//! inside, where it knows its Platform link and its agents, and answers `{ok, worst, exitCode,
//! checks}`. Owner and admin only (the checks sign GitHub App tokens with the stored keys), with
//! an orchestrator-wide token.

use serde_json::json;

use super::ApiResult;
use crate::{
    app::App,
    diagnose::{
        self,
        checks::{self, AgentFacts, LinkFacts},
        probe::{self, Daemon, Inputs},
    },
    http::Response,
    rbac::{Caller, Permission},
};

pub fn run(app: &App, caller: &Caller) -> ApiResult {
    caller.require(Permission::Diagnose)?;
    caller.require_unscoped()?;
    let link = app.platform.as_ref().map(|l| {
        let s = l.state();
        LinkFacts {
            state: s.phase.as_str().to_owned(),
            since: s.since.to_string(),
            last_error: s.last_error,
            attempts: s.attempts,
        }
    });
    let agents = app
        .agents
        .connected()
        .iter()
        .map(|a| AgentFacts {
            id: a.id.clone(),
            labels: a.labels.clone(),
            taint: a.taint.clone(),
            free_slots: a.max.saturating_sub(a.active_count() as u32),
        })
        .collect();
    let daemon = Daemon { link, agents };
    let mode = app.config.mode.as_str();
    let inputs = Inputs {
        configuration: checks::configuration(mode, &[], &[]),
        mode,
        auto_migrate: app.config.auto_migrate,
        secrets: &app.secrets,
        github: &app.github,
        storage: app.storage.as_deref(),
        daemon: Some(&daemon),
    };
    let mut conn = app.pool.get().map_err(|e| e.to_string());
    let db = match &mut conn {
        Ok(c) => Ok(&mut **c),
        Err(e) => Err(e.clone()),
    };
    let found = probe::run(&inputs, db);
    Ok(Response::json(
        200,
        &json!({
            "ok": diagnose::worst(&found) == diagnose::Level::Ok,
            "worst": diagnose::worst(&found),
            "exitCode": diagnose::exit_code(&found),
            "checks": found,
        }),
    ))
}
