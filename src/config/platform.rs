//! `KICI_PLATFORM_URL` / `KICI_PLATFORM_TOKEN`: required in platform and hybrid modes, ignored
//! (with a warning) in independent mode.

use super::{Loader, Mode};

impl Loader {
    pub(super) fn platform(&mut self, mode: Option<Mode>) -> (Option<String>, Option<String>) {
        const URL: &str = "KICI_PLATFORM_URL";
        const TOKEN: &str = "KICI_PLATFORM_TOKEN";
        if mode == Some(Mode::Independent) {
            let ignored = [URL, TOKEN].map(|name| self.get(name).map(|_| name));
            for name in ignored.into_iter().flatten() {
                self.warnings.push(format!(
                    "{name} is ignored because KICI_MODE is independent"
                ));
            }
            return (None, None);
        }
        let url = self.url(URL, &["ws://", "wss://", "http://", "https://"]);
        // With an invalid mode the requirement is unknown; the mode's own problem is enough.
        if mode.is_none() {
            return (url, self.get(TOKEN));
        }
        let rule = "is required when KICI_MODE is platform or hybrid \
                    (the default mode is platform; set KICI_MODE=independent to run without the Platform)";
        self.required(URL, rule);
        (url, self.required(TOKEN, rule))
    }
}
