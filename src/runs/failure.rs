//! Why a step or a job failed, read from the agent's frames (docs/agent-protocol.md, "Frames
//! from the agent", how errors are read). The agent reports a failed step twice: `step.status`
//! carries `data.error` as an object `{message, exitCode}`, and the final `job.status` carries
//! `data.stepResults[].error` as a string. Either may be missing, and the message ends with the
//! runner's JavaScript stack and an `exit code: N` line. Here both shapes become the same
//! [`Failure`]: the exit code, and a message a person can read (stack frames and the exit-code
//! line removed, since the code is kept on its own). Nothing is ever rendered as
//! `[object Object]`, and an object is kept as JSON text only when it carries no message at all.
//! Pure: no I/O.

use serde_json::{Map, Value};

/// The longest message kept (longer ones are cut at a character boundary, with `…`).
pub const MAX_MESSAGE: usize = 2000;

/// A failure as recorded: either part may be unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    pub message: Option<String>,
    pub exit_code: Option<i32>,
}

impl Failure {
    /// Reads an agent's `error` value (an object, a string, or anything else). `None` when it
    /// says nothing (missing, null, an empty string or an empty object).
    pub fn read(error: Option<&Value>) -> Option<Failure> {
        let failure = match error? {
            Value::Null => return None,
            Value::String(s) => Failure::from_text(s, None),
            Value::Object(o) => Failure::from_object(o),
            other => Failure {
                message: Some(other.to_string()),
                exit_code: None,
            },
        };
        (failure.message.is_some() || failure.exit_code.is_some()).then_some(failure)
    }

    fn from_object(o: &Map<String, Value>) -> Failure {
        let code = ["exitCode", "exit_code", "code"]
            .iter()
            .find_map(|k| o.get(*k).and_then(exit_code_value));
        let text = ["message", "error", "reason"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str));
        match text {
            Some(text) => Failure::from_text(text, code),
            None if code.is_some() || o.is_empty() => Failure {
                message: None,
                exit_code: code,
            },
            // No message anywhere: the object itself is all there is to show.
            None => Failure {
                message: Some(cut(&Value::Object(o.clone()).to_string())),
                exit_code: None,
            },
        }
    }

    fn from_text(text: &str, code: Option<i32>) -> Failure {
        let exit_code = code.or_else(|| text.lines().find_map(exit_code_line));
        let kept: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !is_stack_frame(l))
            .filter(|l| exit_code_line(l).is_none())
            .collect();
        let message = (!kept.is_empty()).then(|| cut(&kept.join("\n")));
        Failure { message, exit_code }
    }

    /// The text stored as a step's `error_message`: the message, else `exit code N`.
    pub fn stored(&self) -> Option<String> {
        self.message
            .clone()
            .or_else(|| self.exit_code.map(|c| format!("exit code {c}")))
    }

    /// One line: `exit code 3: make failed`, `exit code 3` or `make failed`.
    pub fn summary(&self) -> Option<String> {
        let message = self.message.as_deref().map(one_line);
        match (self.exit_code, message) {
            (Some(c), Some(m)) => Some(format!("exit code {c}: {m}")),
            (Some(c), None) => Some(format!("exit code {c}")),
            (None, m) => m,
        }
    }
}

/// A failed step named in a `job.status`'s `stepResults` (its position in that list is taken
/// as its step index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub index: i32,
    pub name: String,
    pub failure: Option<Failure>,
}

/// The failed steps of a terminal `job.status` frame's `data`, in order.
pub fn failed_steps(data: &Value) -> Vec<StepFailure> {
    data.get("stepResults")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, s)| s["status"] == "failed")
        .map(|(i, s)| StepFailure {
            index: i as i32,
            name: s["name"].as_str().unwrap_or("").to_owned(),
            failure: Failure::read(s.get("error")),
        })
        .collect()
}

/// The job's `error_message` from its terminal `job.status` `data`: the first failed step named,
/// with its exit code and message (`step "build": exit code 3: make failed`), taking the job's
/// own `data.error` when the step carries none; without a failed step, the job's own error.
pub fn job_error(data: &Value) -> Option<String> {
    let own = Failure::read(data.get("error"));
    let Some(step) = failed_steps(data).into_iter().next() else {
        return own.and_then(|f| f.summary());
    };
    let name = if step.name.is_empty() {
        format!("step {}", step.index)
    } else {
        format!("step {:?}", step.name)
    };
    match step.failure.or(own).and_then(|f| f.summary()) {
        Some(why) => Some(format!("{name}: {why}")),
        None => Some(format!("{name} failed")),
    }
}

/// An exit code given as a number or a numeric string.
fn exit_code_value(v: &Value) -> Option<i32> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `exit code: 3` / `exit code 3` (the runner's last line of a failed step's message).
fn exit_code_line(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix("exit code")?;
    rest.trim_start_matches(':').trim().parse().ok()
}

/// A JavaScript stack frame: an indented `at …` line ending with its place, `(file:1:2)` or
/// `file:1:2` (so an indented "at least one test failed" is kept).
fn is_stack_frame(line: &str) -> bool {
    let t = line.trim();
    let place = |t: &str| {
        t.rsplit(':')
            .next()
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
    };
    line.starts_with(char::is_whitespace) && t.starts_with("at ") && (t.ends_with(')') || place(t))
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join("; ")
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REAL: &str =
        "to stderr\n\n    at Object.run (/w/.kici/workflows/basic.ts:21:10)\n    exit code: 3";

    #[test]
    fn error_shapes_become_a_message_and_an_exit_code() {
        // (agent's `error`, stored message, exit code)
        let table: Vec<(Value, Option<&str>, Option<i32>)> = vec![
            // `step.status` of the real agent: an object with the stack in its message.
            (
                json!({"message": REAL, "exitCode": 3}),
                Some("to stderr"),
                Some(3),
            ),
            // `job.status` `stepResults[].error`: the same text as a string.
            (json!(REAL), Some("to stderr"), Some(3)),
            (
                json!({"message": "make failed", "exitCode": 2}),
                Some("make failed"),
                Some(2),
            ),
            (
                json!({"message": "exit code: 3", "exitCode": 3}),
                Some("exit code 3"),
                Some(3),
            ),
            (json!({"exitCode": 137}), Some("exit code 137"), Some(137)),
            (json!({"exitCode": "4", "message": "x"}), Some("x"), Some(4)),
            (json!({"error": "timed out"}), Some("timed out"), None),
            (json!("boom"), Some("boom"), None),
            (
                json!("line one\nline two"),
                Some("line one\nline two"),
                None,
            ),
            (
                json!("2 failed\n    at least one test failed\n    at run (file:///w/a.js:3:9)\n    at file:///w/b.js:1:1"),
                Some("2 failed\n    at least one test failed"),
                None,
            ),
            (
                json!({"code": "ENOENT"}),
                Some(r#"{"code":"ENOENT"}"#),
                None,
            ),
            (
                json!({"detail": {"a": 1}}),
                Some(r#"{"detail":{"a":1}}"#),
                None,
            ),
            (json!(42), Some("42"), None),
            (json!({}), None, None),
            (json!(""), None, None),
            (Value::Null, None, None),
        ];
        for (error, stored, code) in table {
            let f = Failure::read(Some(&error));
            assert_eq!(
                f.as_ref().and_then(Failure::stored).as_deref(),
                stored,
                "{error}"
            );
            assert_eq!(f.and_then(|f| f.exit_code), code, "{error}");
        }
        assert_eq!(Failure::read(None), None);
    }

    #[test]
    fn nothing_is_rendered_as_object_object_or_raw_json_when_a_message_exists() {
        for error in [
            json!({"message": "m", "exitCode": 1, "stack": "s"}),
            json!({"message": "m", "extra": {"deep": true}}),
        ] {
            let f = Failure::read(Some(&error)).unwrap();
            assert_eq!(f.message.as_deref(), Some("m"));
            assert!(!f.summary().unwrap().contains('{'));
        }
    }

    #[test]
    fn summaries_are_one_line() {
        let f = |m: Option<&str>, c| Failure {
            message: m.map(str::to_owned),
            exit_code: c,
        };
        assert_eq!(
            f(Some("make failed"), Some(3)).summary().as_deref(),
            Some("exit code 3: make failed")
        );
        assert_eq!(f(None, Some(3)).summary().as_deref(), Some("exit code 3"));
        assert_eq!(f(Some("a\nb"), None).summary().as_deref(), Some("a; b"));
        assert_eq!(f(None, None).summary(), None);
    }

    #[test]
    fn the_job_error_names_the_failing_step() {
        let data = json!({"durationMs": 10, "stepResults": [
            {"name": "setup", "status": "success", "durationMs": 1},
            {"name": "build", "status": "failed", "durationMs": 5, "error": "make failed\nexit code: 3"},
            {"name": "later", "status": "failed", "error": "not this one"},
        ]});
        assert_eq!(
            job_error(&data).as_deref(),
            Some(r#"step "build": exit code 3: make failed"#)
        );
        let steps = failed_steps(&data);
        assert_eq!(steps.len(), 2);
        assert_eq!((steps[0].index, steps[0].name.as_str()), (1, "build"));
        // The step has no error: the job's own is used.
        let data = json!({"error": {"message": "killed", "exitCode": 137},
                          "stepResults": [{"name": "build", "status": "failed"}]});
        assert_eq!(
            job_error(&data).as_deref(),
            Some(r#"step "build": exit code 137: killed"#)
        );
        let data = json!({"stepResults": [{"name": "", "status": "failed"}]});
        assert_eq!(job_error(&data).as_deref(), Some("step 0 failed"));
        // No failed step (cancelled: empty stepResults): the job's own error, if any.
        let data = json!({"error": {"message": "cancelled by the user"}, "stepResults": []});
        assert_eq!(job_error(&data).as_deref(), Some("cancelled by the user"));
        assert_eq!(job_error(&json!({"stepResults": []})), None);
        assert_eq!(job_error(&json!({})), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let f = Failure::read(Some(&json!(long))).unwrap();
        let m = f.message.unwrap();
        assert!(m.len() <= MAX_MESSAGE + '…'.len_utf8() && m.ends_with('…'));
    }
}
