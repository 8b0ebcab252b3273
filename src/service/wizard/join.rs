//! The wizard's questions about what is already on this machine and in the database: joining
//! an instance the database already holds (its key and bootstrap token, verified), a free port,
//! the bind address (src/service/wizard.rs has the order of the questions).

use super::{parse_port, Answer, Checks, Options, Session, Vars};
use crate::crypto::SecretKey;

/// When the database already holds an instance: its secret key and bootstrap token, verified,
/// into `vars` (or, with `--force-new-instance`, what will break, said once).
pub(super) fn join_existing(
    s: &mut Session,
    given: &Vars,
    options: &Options,
    url: &str,
    vars: &mut Vars,
) -> Answer<()> {
    let existing = match s.checks.existing_instance(url) {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(()),
        Err(e) => {
            s.console.say(&format!(
                "  Could not check whether this database already holds an instance: {e}"
            ));
            return Ok(());
        }
    };
    s.console.say(&format!(
        "  This database already holds a KiCI orchestrator instance ({}).",
        existing.describe()
    ));
    if options.force_new_instance {
        s.console.say(&format!(
            "  --force-new-instance: this install takes it over with its own secret key and admin \
             token: {}.",
            existing.what_breaks()
        ));
        return Ok(());
    }
    s.console.say(
        "  To join it, give that instance's KICI_SECRET_KEY and KICI_BOOTSTRAP_ADMIN_TOKEN (from \
         its env file); to take the database over instead, re-run with --force-new-instance.",
    );
    let given_key = given.get("KICI_SECRET_KEY").cloned();
    let opens = |key: &str, checks: &dyn Checks| -> Result<String, String> {
        SecretKey::parse(key).map_err(|e| format!("not a usable secret key: {e}"))?;
        match checks.key_opens(url, key) {
            Ok(true) => Ok(key.to_owned()),
            Ok(false) => Err(
                "this key does not decrypt the instance's stored secrets: give the KICI_SECRET_KEY \
                 from that instance's env file"
                    .to_owned(),
            ),
            Err(e) => Err(format!("cannot check the key against the database: {e}")),
        }
    };
    let key = match given_key.as_deref().map(|k| opens(k, s.checks)) {
        Some(Ok(k)) => k,
        other => {
            if let Some(Err(e)) = other {
                s.console.say(&format!("  --secret-key: {e}"));
            }
            s.until(
                "Secret key of that instance (its KICI_SECRET_KEY, 64 hex characters): ",
                true,
                |a, checks| opens(a, checks),
            )?
        }
    };
    vars.insert("KICI_SECRET_KEY".into(), key);
    if existing.bootstrap_hash.is_some() {
        let given_token = given.get("KICI_BOOTSTRAP_ADMIN_TOKEN");
        let token = match given_token.filter(|t| existing.token_matches(t)) {
            Some(t) => t.clone(),
            None => {
                if given_token.is_some() {
                    s.console
                        .say("  --admin-token is not that instance's bootstrap admin token.");
                }
                s.until(
                    "Bootstrap admin token of that instance (its KICI_BOOTSTRAP_ADMIN_TOKEN): ",
                    true,
                    |a, _| {
                        if existing.token_matches(a) {
                            Ok(a.to_owned())
                        } else {
                            Err(
                                "this is not the instance's bootstrap admin token: give the \
                                 KICI_BOOTSTRAP_ADMIN_TOKEN from its env file"
                                    .to_owned(),
                            )
                        }
                    },
                )?
            }
        };
        vars.insert("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), token);
    }
    Ok(())
}

/// The port, offering the first free one from 4000 and refusing one that is taken.
pub(super) fn ask_port(s: &mut Session) -> Answer<String> {
    let default = first_free_port(4000, s.checks);
    if default != 4000 {
        s.console.say(&format!(
            "  Port 4000 is in use on this machine; the first free port after it is {default}."
        ));
    }
    let prompt = format!("Port [{default}]: ");
    s.until(&prompt, false, |a, checks| {
        let port = if a.is_empty() {
            default.to_string()
        } else {
            parse_port(a)?
        };
        let n: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port"))?;
        if checks.port_in_use(n) {
            return Err(format!(
                "port {n} is in use on this machine: pick another, e.g. {}",
                first_free_port(n, checks)
            ));
        }
        Ok(port)
    })
}

/// `from`, or the next port up that nothing listens on (`from` itself when none is found).
pub(super) fn first_free_port(from: u16, checks: &dyn Checks) -> u16 {
    (from..=from.saturating_add(100))
        .find(|p| !checks.port_in_use(*p))
        .unwrap_or(from)
}

pub fn parse_bind_address(a: &str, default: &str) -> Result<String, String> {
    let a = if a.is_empty() { default } else { a };
    a.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            format!(
                "{a:?} is not an IP address: e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all)"
            )
        })
}
