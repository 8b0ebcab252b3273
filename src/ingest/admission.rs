//! Whether a delivery may be accepted at all, before anything is recorded (pure).
//!
//! GitHub and local deliveries are processed from the event log (it is the pipeline's durable
//! queue: `Pipeline::sweep` re-reads payloads from it after a crash). One too large to keep there
//! would be recorded without its payload, answered 202, and lost if the process stopped before
//! its worker got to it; so it is refused instead (413 direct, `rejected_misconfigured` relayed)
//! and the sender keeps it. Plain generic deliveries start no pipeline work and are still recorded
//! without their payload.

use std::fmt;

use crate::pipeline::process::has_repository;

/// A pipeline delivery larger than `KICI_EVENT_LOG_MAX_PAYLOAD_BYTES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub size: u64,
    pub max: u64,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payload of {} bytes is over KICI_EVENT_LOG_MAX_PAYLOAD_BYTES ({} bytes); deliveries that \
             start runs are kept whole until processed, so raise KICI_EVENT_LOG_MAX_PAYLOAD_BYTES on \
             the orchestrator and redeliver",
            self.size, self.max
        )
    }
}

/// `Err` when a delivery of `provider` (`github`, `local`, `generic`) must be refused for its size.
pub fn check_size(provider: Option<&str>, size: u64, max: u64) -> Result<(), TooLarge> {
    if size > max && has_repository(provider.unwrap_or("")) {
        return Err(TooLarge { size, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_deliveries_over_the_limit_are_refused_with_the_variable() {
        assert_eq!(check_size(Some("github"), 10, 10), Ok(()));
        let e = check_size(Some("github"), 11, 10).unwrap_err();
        assert_eq!(e, TooLarge { size: 11, max: 10 });
        let text = e.to_string();
        assert!(
            text.contains("11 bytes")
                && text.contains("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES (10 bytes)"),
            "{text}"
        );
        assert!(check_size(Some("local"), 11, 10).is_err());
        // Plain generic deliveries keep being recorded without their payload.
        assert_eq!(check_size(Some("generic"), 11, 10), Ok(()));
        assert_eq!(check_size(None, 11, 10), Ok(()));
    }
}
