//! `kici-admin rotate-key` (docs/secrets.md, "Key rotation"): asks the orchestrator to re-seal
//! every stored secret under its current `KICI_SECRET_KEY`, opening the old ones with
//! `KICI_SECRET_KEY_OLD`. All or nothing: an undecryptable value aborts it and is named.

use argh::FromArgs;
use serde_json::{json, Value};

use super::{client::AdminClient, output::show, Globals};
use crate::Error;

/// Re-seal every stored secret under the current key (needs an owner token). Run it after
/// setting the new KICI_SECRET_KEY and the old one as KICI_SECRET_KEY_OLD on every instance.
#[derive(FromArgs)]
#[argh(subcommand, name = "rotate-key")]
pub struct RotateKeyCmd {
    /// print the API's JSON answer
    #[argh(switch)]
    pub json: bool,
}

pub fn run(cmd: RotateKeyCmd, globals: &Globals) -> Result<(), Error> {
    let answer = AdminClient::from_globals(globals)?.post("/rotate-key", &json!({}))?;
    show(&answer, cmd.json, rotated_lines);
    Ok(())
}

/// The reference's line, then what it means for `KICI_SECRET_KEY_OLD`.
pub fn rotated_lines(a: &Value) -> String {
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let mut text = format!(
        "Re-encrypted {} secrets, {} config versions.",
        n("reEncrypted"),
        n("reEncryptedConfigs")
    );
    if n("skippedConfigs") > 0 {
        text.push_str(&format!(
            " Skipped {} config versions.",
            n("skippedConfigs")
        ));
    }
    if let Some(old) = a["reEncryptedWithOldKey"].as_u64() {
        text.push_str(&format!(
            "\n{old} of them were sealed with the old key; every value now opens with KICI_SECRET_KEY alone (key version {}), so KICI_SECRET_KEY_OLD can be removed from every instance.",
            n("keyVersion")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            rotated_lines(&json!({"reEncrypted": 3, "reEncryptedConfigs": 0, "skippedConfigs": 0})),
            "Re-encrypted 3 secrets, 0 config versions."
        );
        let ours = json!({"reEncrypted": 5, "reEncryptedConfigs": 0, "skippedConfigs": 0,
                          "reEncryptedWithOldKey": 4, "keyVersion": 2});
        assert!(rotated_lines(&ours).ends_with(
            "4 of them were sealed with the old key; every value now opens with KICI_SECRET_KEY alone (key version 2), so KICI_SECRET_KEY_OLD can be removed from every instance."
        ));
    }
}
