//! `GET /metrics` (docs/metrics.md): the access rule (`metrics::access`), then the scrape-time
//! gauges refreshed and every family written in the Prometheus text format. Also the counting
//! of direct webhook answers, which only the route table sees whole (refusals before the body
//! included).

use super::{server::Admission, Request, Response};
use crate::{
    app::App,
    metrics::{
        self,
        access::{decide, Decision, PROXY_HEADERS},
        hooks::with_status,
        text::CONTENT_TYPE,
    },
};

pub fn serve(app: &App, req: &Request) -> Response {
    let proxied = PROXY_HEADERS.iter().any(|h| req.header(h).is_some());
    let decision = decide(
        req.peer.ip(),
        proxied,
        req.header("authorization"),
        app.config.metrics_token.as_deref(),
        app.config.metrics_public,
    );
    match decision {
        Decision::Allow => {}
        Decision::Unauthorized(why) => {
            return Response::error(401, why).with_header("WWW-Authenticate", "Bearer")
        }
        Decision::Forbidden(why) => return Response::error(403, why),
    }
    metrics::collect::refresh(app);
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), CONTENT_TYPE.into())],
        body: metrics::render().into_bytes(),
        file: None,
    }
}

/// The source kind a webhook path names (`/webhook/<org>/generic/<name>` or
/// `/webhook/<org>/github`), `unknown` for anything else.
fn kind(path: &str) -> &'static str {
    let mut parts = path.trim_start_matches('/').split('/').skip(2);
    match (parts.next(), parts.next(), parts.next()) {
        (Some("generic"), Some(_), None) => "generic",
        (Some("github"), None, _) => "github",
        _ => "unknown",
    }
}

fn answered(path: &str, status: u16) {
    with_status(status, |s| {
        metrics::get().webhooks_answered.inc(&[kind(path), s]);
    });
}

/// Counts a webhook refused from its head alone, and passes the admission on.
pub fn webhook_admission(path: &str, admission: Admission) -> Admission {
    if let Admission::Refuse(r) = &admission {
        answered(path, r.status);
    }
    admission
}

/// Counts a webhook's answer, and passes it on.
pub fn webhook_answer(path: &str, response: Response) -> Response {
    answered(path, response.status);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_paths_name_their_kind() {
        assert_eq!(kind("/webhook/acme/generic/deploy"), "generic");
        assert_eq!(kind("/webhook/acme/github"), "github");
        assert_eq!(kind("/webhook/acme/gitlab"), "unknown");
        assert_eq!(kind("/webhook/acme/generic/a/b"), "unknown");
        assert_eq!(kind("/webhook"), "unknown");
    }
}
