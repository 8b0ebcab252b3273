//! `install` pointed at a database that already holds an instance (docs/operations.md,
//! "Instances"): the settings must carry that instance's secret key (it must decrypt a stored
//! value) and bootstrap admin token (its hash must match), or `--force-new-instance` must say
//! the database is being taken over, which is then reported with what it breaks. The wizard
//! asks for both itself (`service::wizard`); this check holds for every way of installing.
//! A new instance's port is checked too: a taken one is a warning naming the next free port
//! (the wizard refuses it instead).

use crate::{
    db::url::redact_database_url,
    service::{existing, settings::Vars},
    Error,
};

pub fn another_instance(vars: &Vars, force_new_instance: bool) -> Result<(), Error> {
    let Some(url) = vars.get("KICI_DATABASE_URL") else {
        return Ok(());
    };
    let shown = redact_database_url(url);
    let found = match existing::inspect(url) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(()),
        Err(e) => {
            // The daemon checks the database at start; install works without it.
            eprintln!(
                "Warning: could not check whether {shown} already holds an instance ({e}); \
                 if it does, this instance needs that instance's KICI_SECRET_KEY"
            );
            return Ok(());
        }
    };
    let key = vars.get("KICI_SECRET_KEY").cloned().or_else(|| {
        vars.get("KICI_SECRET_KEY_FILE")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|k| k.trim().to_owned())
    });
    let key_ok = match key.as_deref().map(|k| existing::key_opens(url, k)) {
        Some(Ok(ok)) => ok,
        Some(Err(e)) => {
            return Err(Error::Config(format!(
                "cannot check the secret key against {shown}: {e}"
            )))
        }
        None => false,
    };
    let token = vars
        .get("KICI_BOOTSTRAP_ADMIN_TOKEN")
        .map_or("", String::as_str);
    let token_ok = found.token_matches(token);
    if key_ok && token_ok {
        return Ok(());
    }
    if force_new_instance {
        eprintln!(
            "Warning: --force-new-instance: {shown} holds another instance ({}); taking it over: {}.",
            found.describe(),
            found.what_breaks()
        );
        return Ok(());
    }
    let problem = match (key_ok, token_ok) {
        (false, false) => "neither the secret key nor the bootstrap admin token is that instance's",
        (false, true) => "the secret key does not decrypt its stored secrets",
        _ => "the bootstrap admin token is not that instance's",
    };
    Err(Error::Usage(format!(
        "the database {shown} already holds a KiCI orchestrator instance ({}), and {problem}. \
         Give that instance's KICI_SECRET_KEY and KICI_BOOTSTRAP_ADMIN_TOKEN (--secret-key @file \
         --admin-token @file, or the wizard's questions), or pass --force-new-instance to take the \
         database over: {}.",
        found.describe(),
        found.what_breaks()
    )))
}

/// Warns when nothing but this new instance should hold its port and something already does.
pub fn port_taken(vars: &Vars) {
    use crate::service::wizard::Checks;
    let checks = super::console::SystemChecks;
    let Some(port) = vars.get("KICI_PORT").and_then(|p| p.parse::<u16>().ok()) else {
        return;
    };
    if port == 0 || !checks.port_in_use(port) {
        return;
    }
    let next = (port..=port.saturating_add(100)).find(|p| !checks.port_in_use(*p));
    let hint = next.map_or(String::new(), |p| {
        format!("; the first free port after it is {p} (--port {p})")
    });
    eprintln!(
        "Warning: port {port} is in use on this machine, so the orchestrator cannot start on it \
         until it is free{hint}"
    );
}
