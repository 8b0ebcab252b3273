//! `kici-admin runs logs <runId> [--job NAME] [--step N] [--follow] [--json]` (docs/operations.md,
//! "Run logs"): prints a run's step logs from `GET /runs/:runId/logs`, page after page with the
//! cursor the API gives back. `--follow` polls every second until the run is terminal and exits
//! 0 when it succeeded, 2 when it was cancelled and 1 otherwise, so a script can wait on a run.

use std::{
    io::Write,
    thread,
    time::{Duration, Instant},
};

use argh::FromArgs;
use serde_json::Value;

use super::{
    client::{encode_component, AdminClient, ApiError},
    Globals,
};
use crate::Error;

const PAGE: usize = 1000;
const POLL: Duration = Duration::from_secs(1);
/// How long `--follow` keeps retrying while the orchestrator cannot be reached or answers 503.
const OUTAGE: Duration = Duration::from_secs(60);

/// Print a run's step logs, in order: `[job/step] line` (plain lines when --job and --step pick
/// one step).
#[derive(FromArgs)]
#[argh(subcommand, name = "logs")]
pub struct LogsCmd {
    /// the run's ID (the first column of kici-admin runs list)
    #[argh(positional)]
    pub run_id: String,
    /// only this job's steps (a job name as kici-admin runs show prints it)
    #[argh(option)]
    pub job: Option<String>,
    /// only this step index (0 for the first step; -1 for a job's setup log)
    #[argh(option, arg_name = "N")]
    pub step: Option<i64>,
    /// keep printing new lines until the run ends, polling every second; then exit 0 if the run
    /// succeeded, 2 if it was cancelled, 1 otherwise
    #[argh(switch)]
    pub follow: bool,
    /// print each line as one JSON object per output line: {"ts","job","step","stream","line"}
    #[argh(switch)]
    pub json: bool,
}

/// The exit code `--follow` ends with for a terminal run status.
pub fn exit_code(run_status: &str) -> u8 {
    match run_status {
        "success" => 0,
        "cancelled" => 2,
        _ => 1,
    }
}

/// One line as printed: JSON, plain, or `[job/step] line` (`setup` for the step -1 log).
pub fn render(line: &Value, json: bool, plain: bool) -> String {
    if json {
        return line.to_string();
    }
    let text = line["line"].as_str().unwrap_or_default();
    if plain {
        return text.to_owned();
    }
    let step = match line["step"].as_i64() {
        Some(-1) => "setup".to_owned(),
        Some(n) => n.to_string(),
        None => "?".to_owned(),
    };
    format!("[{}/{step}] {text}", line["job"].as_str().unwrap_or("?"))
}

/// The query of one page request.
fn route(cmd: &LogsCmd, after: Option<&str>) -> String {
    let mut q = vec![format!("limit={PAGE}")];
    if let Some(job) = &cmd.job {
        q.push(format!("job={}", encode_component(job)));
    }
    if let Some(step) = cmd.step {
        q.push(format!("step={step}"));
    }
    if let Some(after) = after {
        q.push(format!("after={}", encode_component(after)));
    }
    format!(
        "/runs/{}/logs?{}",
        encode_component(&cmd.run_id),
        q.join("&")
    )
}

/// An API error as the person running the command can act on it.
fn explain(cmd: &LogsCmd, e: ApiError) -> Error {
    match e {
        ApiError::Status { status: 404, .. } => Error::Api(format!(
            "{e}: no run {:?} (see kici-admin runs list for the IDs)",
            cmd.run_id
        )),
        ApiError::Status { status: 400, .. } if e.to_string().contains("job") => Error::Api(
            format!("{e} (see kici-admin runs show {} for its jobs)", cmd.run_id),
        ),
        e => e.into(),
    }
}

fn transient(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Unreachable { .. } | ApiError::Status { status: 503, .. }
    )
}

pub fn run(cmd: LogsCmd, globals: &Globals) -> Result<(), Error> {
    if let Some(n) = cmd.step {
        if n < -1 {
            return Err(Error::Usage(format!(
                "--step {n}: a step index is 0 or more (or -1 for a job's setup log); see kici-admin runs show {} for the steps",
                cmd.run_id
            )));
        }
    }
    let client = AdminClient::from_globals(globals)?;
    let plain = cmd.job.is_some() && cmd.step.is_some();
    let mut cursor: Option<String> = None;
    let mut outage: Option<Instant> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let answer = match client.get(&route(&cmd, cursor.as_deref())) {
            Ok(a) => {
                outage = None;
                a
            }
            Err(e) if cmd.follow && transient(&e) => {
                let since = *outage.get_or_insert_with(Instant::now);
                if since.elapsed() > OUTAGE {
                    return Err(explain(&cmd, e));
                }
                thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(explain(&cmd, e)),
        };
        let bad = |reason: &str| {
            Error::Api(format!(
                "unexpected answer from the admin API (GET /runs/:runId/logs): {reason}"
            ))
        };
        let lines = answer["lines"]
            .as_array()
            .ok_or_else(|| bad("no \"lines\" array"))?;
        for line in lines {
            if let Err(e) = writeln!(out, "{}", render(line, cmd.json, plain)) {
                crate::cli::output::stdout_failed(&e);
            }
        }
        if let Err(e) = out.flush() {
            crate::cli::output::stdout_failed(&e);
        }
        if let Some(c) = answer["cursor"].as_str() {
            cursor = Some(c.to_owned());
        }
        let complete = answer["complete"].as_bool().unwrap_or(false);
        let full = lines.len() >= PAGE;
        if complete && cmd.follow {
            let status = answer["runStatus"].as_str().unwrap_or_default();
            let code = exit_code(status);
            if code != 0 {
                // The exit code carries the run's outcome (documented for scripts).
                return Err(Error::Outcome {
                    message: format!("Run {} ended: {status}", cmd.run_id),
                    code,
                });
            }
            return Ok(());
        }
        if full {
            continue;
        }
        if !cmd.follow {
            return Ok(());
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn exit_codes_follow_the_run() {
        assert_eq!(exit_code("success"), 0);
        assert_eq!(exit_code("failed"), 1);
        assert_eq!(exit_code("cancelled"), 2);
        assert_eq!(exit_code("something-new"), 1);
    }

    #[test]
    fn lines_render_with_their_job_and_step() {
        let l = json!({"ts": "t", "job": "build", "step": 2, "stream": "stdout", "line": "ok"});
        assert_eq!(render(&l, false, false), "[build/2] ok");
        assert_eq!(render(&l, false, true), "ok");
        assert_eq!(
            serde_json::from_str::<Value>(&render(&l, true, false)).unwrap(),
            l
        );
        let setup = json!({"job": "build", "step": -1, "line": "cloning"});
        assert_eq!(render(&setup, false, false), "[build/setup] cloning");
    }

    #[test]
    fn routes_encode_filters_and_the_cursor() {
        let cmd = LogsCmd {
            run_id: "r 1".into(),
            job: Some("build (linux)".into()),
            step: Some(-1),
            follow: false,
            json: false,
        };
        assert_eq!(
            route(&cmd, Some("c1.30")),
            "/runs/r%201/logs?limit=1000&job=build%20(linux)&step=-1&after=c1.30"
        );
    }
}
