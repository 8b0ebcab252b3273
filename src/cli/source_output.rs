//! What the `source` commands print (docs/operations.md, "Admin CLI"), as pure functions from the
//! admin API's JSON to text (no trailing newline). Field names are the contract's: camelCase for
//! GitHub sources, snake_case for generic-source rows.

use serde_json::Value;

use super::output::{field, opt_field, pad};

/// `source add github`: the stored name (GitHub's App name, not `--name`) and where GitHub must
/// send webhooks.
pub fn github_added(answer: &Value) -> String {
    format!(
        "Source added: {} ({})\n{}",
        field(answer, "routingKey"),
        field(answer, "name"),
        webhook_url_lines(
            opt_field(answer, "webhookUrl").as_deref(),
            opt_field(answer, "webhookNote").as_deref()
        )
    )
}

/// The two `Webhook URL:` lines: the URL and what to do with it, or why there is none and what
/// to do about it.
pub fn webhook_url_lines(url: Option<&str>, note: Option<&str>) -> String {
    if let Some(url) = url {
        return format!(
            "Webhook URL:  {url}\n  ↳ Paste this into your GitHub App's \"Webhook URL\" field."
        );
    }
    let (reason, hint) = match note {
        Some("no-public-url") => (
            "KICI_WEBHOOK_PUBLIC_URL is not set on the orchestrator",
            "Set KICI_WEBHOOK_PUBLIC_URL on the orchestrator to its public base URL and restart it; \
             GitHub then posts to <KICI_WEBHOOK_PUBLIC_URL>/webhook/<org>/github: paste that into \
             your GitHub App's \"Webhook URL\" field.",
        ),
        Some("platform-unavailable") => (
            "could not reach the Platform",
            "In platform mode GitHub posts to the Platform: retry once the orchestrator is \
             connected to it, or find the URL in the dashboard under Sources.",
        ),
        Some("platform-no-public-url") => (
            "the Platform has no public webhook URL configured",
            "Find the webhook URL in the dashboard under Sources.",
        ),
        Some("github-ingress-platform-only") => (
            "GitHub webhooks are received by the Platform, not this orchestrator",
            "Find the webhook URL in the dashboard under Sources.",
        ),
        _ => (
            "the webhook URL could not be determined",
            "Find the webhook URL in the dashboard under Sources.",
        ),
    };
    format!("Webhook URL:  (unavailable — {reason})\n  ↳ {hint}")
}

/// `source add generic`.
pub fn generic_created(row: &Value) -> String {
    [
        "Generic source created:".to_owned(),
        format!("  ID:           {}", field(row, "id")),
        format!("  Name:         {}", field(row, "name")),
        format!("  Routing key:  {}", field(row, "routing_key")),
        format!("  Org:          {}", field(row, "customer_id")),
        format!("  Enabled:      {}", field(row, "enabled")),
    ]
    .into_iter()
    .chain(generic_webhook_url_lines(row))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Where the sender posts (the row's `webhookUrl`, added by the CLI), and what to do with it.
fn generic_webhook_url_lines(row: &Value) -> Vec<String> {
    match opt_field(row, "webhookUrl") {
        Some(url) => vec![
            format!("  Webhook URL:  {url}"),
            "  ↳ Configure the sender to POST there (behind a proxy: the same path on the public \
             base URL)."
                .to_owned(),
        ],
        None => Vec::new(),
    }
}

/// `source list`: GitHub sources always, generic ones only for `--org` (`has_org`).
pub fn source_list(github: &[Value], generic: &[Value], has_org: bool) -> String {
    const TIP: &str = "Generic and local sources are listed per org: add --org <orgId> (the --org \
                       given to `source add generic`) to see them.";
    let mut lines = Vec::new();
    if !github.is_empty() {
        lines.push("GitHub sources:".to_owned());
        for s in github {
            lines.push(format!(
                "  {} {} ({})",
                pad(&field(s, "routingKey"), 20),
                pad(&field(s, "name"), 30),
                field(s, "provider")
            ));
        }
    }
    if has_org {
        if !generic.is_empty() {
            if !github.is_empty() {
                lines.push(String::new());
            }
            lines.push("Generic sources:".to_owned());
            for s in generic {
                let status = if s.get("enabled") == Some(&Value::Bool(true)) {
                    "enabled"
                } else {
                    "disabled"
                };
                let deleted = match opt_field(s, "deleted_at") {
                    Some(_) => " [deleted]",
                    None => "",
                };
                lines.push(format!(
                    "  {} {} {} {}{deleted}",
                    pad(&field(s, "id"), 38),
                    pad(&field(s, "name"), 25),
                    pad(status, 10),
                    field(s, "routing_key")
                ));
            }
        } else if github.is_empty() {
            lines.push("No sources configured.".to_owned());
        }
    } else if github.is_empty() {
        lines.push("No GitHub App sources.".to_owned());
        lines.push(TIP.to_owned());
    } else {
        lines.push(String::new());
        lines.push(TIP.to_owned());
    }
    lines.join("\n")
}

/// `source get`: `Generic source:` and one labelled line per field, optional ones only when
/// set. The verification secret is shown only when asked for (`--show-secrets`).
pub fn generic_source(row: &Value, show_secrets: bool) -> String {
    let mut lines = vec!["Generic source:".to_owned()];
    let mut line = |label: &str, value: String| {
        lines.push(format!("  {}{value}", pad(&format!("{label}:"), 22)));
    };
    line("ID", field(row, "id"));
    line("Name", field(row, "name"));
    line("Routing key", field(row, "routing_key"));
    line("Org", field(row, "customer_id"));
    line("Enabled", field(row, "enabled"));
    line("Verification", field(row, "verification_method"));
    if let Some(url) = opt_field(row, "webhookUrl") {
        line("Webhook URL", url);
    }
    if show_secrets {
        let config = row.get("verification_config").unwrap_or(&Value::Null);
        if let Some(secret) = opt_field(config, "secret") {
            line("Secret", secret);
        }
        if let Some(token) = opt_field(config, "token") {
            line("Token", token);
        }
    }
    for (label, key) in [
        ("Event type header", "event_type_header"),
        ("Event type path", "event_type_path"),
        ("Idempotency header", "idempotency_key_header"),
        ("Idempotency path", "idempotency_key_path"),
    ] {
        if let Some(value) = opt_field(row, key) {
            line(label, value);
        }
    }
    line(
        "Dedup window",
        format!("{}s", field(row, "dedup_window_seconds")),
    );
    line(
        "Max payload",
        format!("{} bytes", field(row, "max_payload_bytes")),
    );
    line(
        "Rate limit",
        format!("{} rpm", field(row, "rate_limit_rpm")),
    );
    if let Some(events) = list_field(row, "allowed_events") {
        line("Allowed events", events);
    }
    line(
        "Strip headers",
        list_field(row, "strip_headers").unwrap_or_default(),
    );
    line("Created", field(row, "created_at"));
    line("Updated", field(row, "updated_at"));
    if let Some(deleted) = opt_field(row, "deleted_at") {
        line("Deleted", deleted);
    }
    lines.join("\n")
}

/// A JSON array as `a, b`; `None` for null or absent.
fn list_field(row: &Value, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gh(rk: &str, name: &str) -> Value {
        json!({"id": "u", "provider": "github", "name": name, "routingKey": rk, "customerId": "__default__",
               "config": {"appId": "1"}, "createdAt": "t", "updatedAt": "t", "hasWebhookSecret": true})
    }

    fn generic(id: &str, name: &str, enabled: bool, deleted: Option<&str>) -> Value {
        json!({"id": id, "name": name, "enabled": enabled, "routing_key": format!("generic:acme:{id}"),
               "deleted_at": deleted})
    }

    #[test]
    fn github_added_with_a_url() {
        let answer = json!({"routingKey": "github:12345", "id": "x", "name": "KiCI Main", "slug": "kici-main",
                            "webhookUrl": "https://ci.example.com/webhook/acme/github"});
        assert_eq!(
            github_added(&answer),
            "Source added: github:12345 (KiCI Main)\n\
             Webhook URL:  https://ci.example.com/webhook/acme/github\n  \
             ↳ Paste this into your GitHub App's \"Webhook URL\" field."
        );
    }

    #[test]
    fn github_added_without_a_url_explains_why_and_what_to_do() {
        let answer = json!({"routingKey": "github:1", "name": "App", "webhookUrl": null, "webhookNote": "no-public-url"});
        let text = github_added(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Source added: github:1 (App)");
        assert_eq!(
            lines[1],
            "Webhook URL:  (unavailable — KICI_WEBHOOK_PUBLIC_URL is not set on the orchestrator)"
        );
        assert!(
            lines[2].starts_with("  ↳ Set KICI_WEBHOOK_PUBLIC_URL"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("/webhook/<org>/github"));
        let platform = webhook_url_lines(None, Some("platform-unavailable"));
        assert!(platform
            .starts_with("Webhook URL:  (unavailable — could not reach the Platform)\n  ↳ "));
        let unknown = webhook_url_lines(None, None);
        assert_eq!(
            unknown,
            "Webhook URL:  (unavailable — the webhook URL could not be determined)\n  \
             ↳ Find the webhook URL in the dashboard under Sources."
        );
    }

    #[test]
    fn generic_created_block() {
        let row = json!({"id": "6f1c", "name": "stripe", "routing_key": "generic:acme:6f1c",
                         "customer_id": "acme", "enabled": true});
        assert_eq!(
            generic_created(&row),
            "Generic source created:\n  ID:           6f1c\n  Name:         stripe\n  \
             Routing key:  generic:acme:6f1c\n  Org:          acme\n  Enabled:      true"
        );
    }

    #[test]
    fn list_without_org_and_no_sources() {
        assert_eq!(
            source_list(&[], &[], false),
            format!("No GitHub App sources.\n{}", "Generic and local sources are listed per org: add --org <orgId> (the --org given to `source add generic`) to see them.")
        );
    }

    #[test]
    fn list_without_org_pads_columns_and_ends_with_the_tip() {
        let text = source_list(&[gh("github:12345", "main-org")], &[], false);
        assert_eq!(
            text,
            format!(
                "GitHub sources:\n  github:12345{} main-org{} (github)\n\nGeneric and local sources are listed per org: add --org <orgId> (the --org given to `source add generic`) to see them.",
                " ".repeat(8),
                " ".repeat(22)
            )
        );
    }

    #[test]
    fn list_with_org_shows_both_sections_separated_by_a_blank_line() {
        let text = source_list(
            &[gh("github:1", "a")],
            &[
                generic("11111111-2222-3333-4444-555555555555", "stripe", true, None),
                generic(
                    "99999999-2222-3333-4444-555555555555",
                    "old",
                    false,
                    Some("2026-01-01T00:00:00.000Z"),
                ),
            ],
            true,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[2], "");
        assert_eq!(lines[3], "Generic sources:");
        assert_eq!(
            lines[4],
            format!(
                "  11111111-2222-3333-4444-555555555555   stripe{} enabled    generic:acme:11111111-2222-3333-4444-555555555555",
                " ".repeat(19)
            )
        );
        assert!(lines[5].contains(" disabled   generic:acme:9999"));
        assert!(lines[5].ends_with(" [deleted]"));
    }

    #[test]
    fn list_with_org_and_one_kind_only() {
        assert_eq!(source_list(&[], &[], true), "No sources configured.");
        let only_github = source_list(&[gh("github:1", "a")], &[], true);
        assert_eq!(only_github.lines().count(), 2);
        assert!(!only_github.contains("Tip"));
        let only_generic = source_list(&[], &[generic("g", "n", true, None)], true);
        assert!(only_generic.starts_with("Generic sources:\n  g "));
    }

    fn full_row() -> Value {
        json!({
            "id": "6f1c", "customer_id": "acme", "name": "stripe", "routing_key": "generic:acme:6f1c",
            "verification_method": "hmac_sha256", "verification_config": {"secret": "whsec"},
            "event_type_header": "X-Event-Type", "event_type_path": null,
            "idempotency_key_header": null, "idempotency_key_path": "$.id",
            "dedup_window_seconds": 300, "max_payload_bytes": 1048576,
            "allowed_events": ["push", "pull_request"], "strip_headers": ["authorization", "cookie"],
            "enabled": true, "rate_limit_rpm": 120,
            "created_at": "2026-11-28T01:57:00.123Z", "updated_at": "2026-11-28T02:00:00.000Z",
            "deleted_at": null, "provider_type": "generic", "git_config": null, "has_secret": true
        })
    }

    #[test]
    fn get_block_with_optional_lines() {
        assert_eq!(
            generic_source(&full_row(), false),
            "Generic source:\n\
             \x20 ID:                   6f1c\n\
             \x20 Name:                 stripe\n\
             \x20 Routing key:          generic:acme:6f1c\n\
             \x20 Org:                  acme\n\
             \x20 Enabled:              true\n\
             \x20 Verification:         hmac_sha256\n\
             \x20 Event type header:    X-Event-Type\n\
             \x20 Idempotency path:     $.id\n\
             \x20 Dedup window:         300s\n\
             \x20 Max payload:          1048576 bytes\n\
             \x20 Rate limit:           120 rpm\n\
             \x20 Allowed events:       push, pull_request\n\
             \x20 Strip headers:        authorization, cookie\n\
             \x20 Created:              2026-11-28T01:57:00.123Z\n\
             \x20 Updated:              2026-11-28T02:00:00.000Z"
        );
    }

    #[test]
    fn get_block_minimal_deleted_and_with_secrets() {
        let mut row = full_row();
        for key in [
            "event_type_header",
            "idempotency_key_path",
            "allowed_events",
        ] {
            row[key] = Value::Null;
        }
        row["deleted_at"] = json!("2026-12-01T00:00:00.000Z");
        let text = generic_source(&row, false);
        assert!(
            !text.contains("Event type")
                && !text.contains("Idempotency")
                && !text.contains("Allowed")
        );
        assert!(!text.contains("whsec"));
        assert!(text.ends_with("\n  Deleted:              2026-12-01T00:00:00.000Z"));
        let shown = generic_source(&row, true);
        assert!(shown
            .contains("\n  Verification:         hmac_sha256\n  Secret:               whsec\n"));
    }
}
