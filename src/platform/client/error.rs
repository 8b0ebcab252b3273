//! Why a session with the Platform ended (`LinkError`), with the messages the link status
//! (`/ready`, `lastError`) and the log have always shown.

/// Why a session with the Platform ended: the link status shows it (`lastError`) and the relay
/// reconnects after any of them; the variant tells configuration, network, TLS and the
/// Platform's own refusals apart.
#[derive(Debug)]
pub enum LinkError {
    /// KICI_PLATFORM_URL cannot be used (the message says why).
    Config(String),
    /// Resolving or connecting to the Platform's host failed.
    Connect(String),
    /// The TLS or WebSocket handshake failed (an untrusted certificate, a refused upgrade).
    Handshake(String),
    /// `auth.request` got no answer in time.
    AuthTimeout,
    /// The Platform refused our token (`auth.failure`).
    AuthRefused(String),
    /// The Platform revoked an authenticated session.
    Revoked(String),
    /// The Platform closed the link, with its close code and reason if it sent them.
    Closed(Option<(u16, String)>),
    /// The socket failed while `doing` ("sending to", "reading from", "writing to").
    Io {
        doing: &'static str,
        source: tungstenite::Error,
    },
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Config(m) | LinkError::Connect(m) | LinkError::Handshake(m) => {
                f.write_str(m)
            }
            LinkError::AuthTimeout => write!(
                f,
                "no answer to auth.request within {} s",
                super::AUTH_TIMEOUT.as_secs()
            ),
            LinkError::AuthRefused(r) => {
                write!(f, "the Platform refused KICI_PLATFORM_TOKEN: {r}")
            }
            LinkError::Revoked(r) => write!(f, "the Platform revoked the session: {r}"),
            LinkError::Closed(Some((code, reason))) => {
                write!(f, "the Platform closed the link ({code} {reason})")
            }
            LinkError::Closed(None) => f.write_str("the Platform closed the link"),
            LinkError::Io { doing, source } => write!(f, "{doing} the Platform failed: {source}"),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(super) fn io_error(doing: &'static str) -> impl FnOnce(tungstenite::Error) -> LinkError {
    move |source| LinkError::Io { doing, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let closed = LinkError::Closed(Some((4001, "Auth failed".into())));
        assert_eq!(
            closed.to_string(),
            "the Platform closed the link (4001 Auth failed)"
        );
        assert_eq!(
            LinkError::Closed(None).to_string(),
            "the Platform closed the link"
        );
        assert_eq!(
            LinkError::AuthTimeout.to_string(),
            "no answer to auth.request within 10 s"
        );
        assert_eq!(
            LinkError::AuthRefused("bad token".into()).to_string(),
            "the Platform refused KICI_PLATFORM_TOKEN: bad token"
        );
        assert_eq!(
            LinkError::Revoked("rotated".into()).to_string(),
            "the Platform revoked the session: rotated"
        );
        let io = io_error("reading from")(tungstenite::Error::ConnectionClosed);
        assert!(io
            .to_string()
            .starts_with("reading from the Platform failed: "));
        assert!(std::error::Error::source(&io).is_some());
    }
}
