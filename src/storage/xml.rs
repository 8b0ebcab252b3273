//! Just enough XML for S3's answers (error bodies, lifecycle rules): element text by tag name,
//! entity unescaping and escaping. Pure. S3's XML is machine-written and flat enough that a
//! tag scan is exact for the elements read here; list results use rusty-s3's parser.

/// The inner text of every `<tag>…</tag>` (also `<tag attr="…">`), in document order.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<Rule>` but not `<Rules>`; `<Tag/>` is an empty element.
        let Some(gt) = after.find('>') else { break };
        let attrs = &after[..gt];
        if !(attrs.is_empty() || attrs.starts_with(' ') || attrs == "/") {
            rest = after;
            continue;
        }
        if attrs.ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>`.
pub fn text(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|t| unescape(t.trim()))
}

pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements() {
        let xml = r#"<?xml version="1.0"?><Error><Code>NoSuchBucket</Code><Message>a &amp; b</Message>
            <Rules><Rule><ID>x</ID></Rule><Rule id="2"><ID>y</ID><Empty/></Rule></Rules></Error>"#;
        assert_eq!(text(xml, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(text(xml, "Message").as_deref(), Some("a & b"));
        let rules = elements(xml, "Rule");
        assert_eq!(rules.len(), 2);
        assert_eq!(text(rules[1], "ID").as_deref(), Some("y"));
        assert_eq!(elements(xml, "Empty"), vec![""]);
        assert_eq!(text(xml, "Region"), None);
        assert_eq!(unescape(&escape("<a&\"b\">")), "<a&\"b\">");
    }
}
