//! The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP` and
//! `# TYPE` lines, then one `name{label="value"} number` line per sample. Pure string building.
//!
//! Escaping: in help text a backslash and a line feed become `\\` and `\n`; in label values a
//! double quote also becomes `\"`. Numbers: integers without a fraction, `+Inf`, `-Inf`, `NaN`.

use std::fmt::Write;

/// What `/metrics` answers with as its `Content-Type`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// One sample line: `name` + `suffix` (`_bucket`, `_sum`, `_count` or nothing), the labels, and
/// `le` last when given (histogram buckets).
pub fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<f64>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape(out, v, true);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            out.push_str("le=\"");
            number(out, le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    number(out, value);
    out.push('\n');
}

fn escape(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_label_values_are_escaped() {
        let mut out = String::new();
        header(&mut out, "x_total", "a \\ b\nc \"q\"", "counter");
        sample(&mut out, "x_total", "", &[("k", "a\"b\\c\nd")], None, 3.0);
        assert_eq!(
            out,
            "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\n\
             x_total{k=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn numbers_and_the_le_label() {
        let mut out = String::new();
        sample(&mut out, "h", "_bucket", &[("a", "b")], Some(0.25), 7.0);
        sample(&mut out, "h", "_bucket", &[], Some(f64::INFINITY), 8.0);
        sample(&mut out, "h", "_sum", &[], None, 1.5);
        sample(&mut out, "g", "", &[], None, f64::NAN);
        sample(&mut out, "g", "", &[], None, -2.0);
        assert_eq!(
            out,
            "h_bucket{a=\"b\",le=\"0.25\"} 7\nh_bucket{le=\"+Inf\"} 8\nh_sum 1.5\ng NaN\ng -2\n"
        );
    }
}
