//! The bounds on what a lock file (hence a fork's pull request) may ask of the pipeline, in one
//! place. Every parser fed by a lock file or a webhook checks its bound *before* doing the work
//! the bound protects against (a recursive descent, an allocation, a product of matrix
//! dimensions), and a lock file over a bound becomes a failed run whose reason names the bound
//! and the value that broke it (`process.rs`, `lockfile/mod.rs`, `plan/mod.rs`).
//!
//! Pure: values and the wording of the refusals, no I/O.

/// How deeply a glob or regex may nest groups (`(`, `@(`, `{`, `[`). Hand-written branch and
/// path filters nest two or three levels; the parsers recurse once per level, and a pipeline
/// worker's stack holds a few thousand levels at most, so 32 is generous for people and
/// harmless for the stack (the 20,000-level pattern this stops aborted the whole process).
pub const PATTERN_NESTING_DEPTH: usize = 32;

/// The longest glob, regex or JSON path, in bytes. A branch name is at most a few hundred
/// bytes (git refs are short in practice); 1 KiB fits any real filter while keeping the
/// compiled glob program (linear in the pattern) and the regex translation small.
pub const PATTERN_BYTES: usize = 1024;

/// How deeply the regex a glob translates to may nest. The translation wraps each glob level
/// in at most three regex groups (`!(…)` is `(?:(?!(?:…))…)`) plus a fixed few for anchors,
/// negation and `**`; this is the glob engine's own backstop, never reached by a glob within
/// [`PATTERN_NESTING_DEPTH`].
pub const PROGRAM_NESTING_DEPTH: usize = 4 * PATTERN_NESTING_DEPTH + 16;

/// Compilation steps of one glob program. `{n,m}` repetitions copy their body, so nested ones
/// multiply; this caps the program (and the memory of one match) at a few megabytes.
pub const PROGRAM_STEPS: usize = 200_000;

/// Jobs one run may create when `KICI_MAX_JOBS_PER_RUN` is unset: the product of each job's
/// matrix dimensions plus its `include` entries, plus one per plain job, summed over the
/// workflow — counted *before* expanding, so a 709-byte lock file cannot queue 10,000 jobs or
/// make the planner build 10^8 combinations. 256 is GitHub Actions' own per-matrix bound.
pub const DEFAULT_JOBS_PER_RUN: usize = 256;

/// The environment variable that overrides [`DEFAULT_JOBS_PER_RUN`].
pub const JOBS_PER_RUN_VAR: &str = "KICI_MAX_JOBS_PER_RUN";

/// Steps of one job. Every step is a row of the job configuration sent to the agent and a log
/// section; hand-written jobs have tens.
pub const STEPS_PER_JOB: usize = 256;

/// Workflows in one lock file. Each one is matched against every delivery of the repository
/// (its globs compiled, its trace stored in `event_log.decisions`), so the count bounds the
/// per-delivery work and the size of that row.
pub const WORKFLOWS_PER_LOCK_FILE: usize = 64;

/// The largest lock file read, in bytes. GitHub's Contents API serves files up to 1 MB inline;
/// real lock files are tens of kilobytes.
pub const LOCK_FILE_BYTES: usize = 1 << 20;

/// How deeply the lock file's JSON may nest: serde_json's own recursion limit (a budget of 128
/// that refuses the 128th level), which refuses deeper documents with an error rather than a
/// stack overflow. Stated here so the bound is documented with the others; a unit test in
/// `lockfile/tests.rs` pins it, so a serde_json upgrade that changed it would be noticed.
pub const LOCK_FILE_JSON_DEPTH: usize = 127;

/// `pattern nests {depth} levels deep, more than …` when `depth` is over the bound.
pub fn check_nesting(depth: usize) -> Result<(), String> {
    if depth > PATTERN_NESTING_DEPTH {
        return Err(format!(
            "the pattern nests {depth} levels deep, more than {PATTERN_NESTING_DEPTH} (the limit \
             on pattern nesting)"
        ));
    }
    Ok(())
}

/// `the pattern is {len} bytes long, more than …` when over the bound.
pub fn check_length(len: usize) -> Result<(), String> {
    if len > PATTERN_BYTES {
        return Err(format!(
            "the pattern is {len} bytes long, more than {PATTERN_BYTES} (the limit on pattern \
             length)"
        ));
    }
    Ok(())
}

/// A hostile value shown in a message: at most 64 characters, then how long it really was, so a
/// 40 KB pattern does not end up 40 KB into `runs show` and the event log.
pub fn excerpt(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// Product of the matrix dimensions' sizes, saturating: a count only ever compared with a
/// bound, so saturation cannot let anything through.
pub fn matrix_size(dimension_sizes: impl IntoIterator<Item = usize>) -> usize {
    dimension_sizes
        .into_iter()
        .fold(1usize, |acc, n| acc.saturating_mul(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_at_the_limit_passes_one_more_is_refused() {
        assert_eq!(check_nesting(PATTERN_NESTING_DEPTH), Ok(()));
        let err = check_nesting(PATTERN_NESTING_DEPTH + 1).expect_err("33 levels");
        assert!(err.contains("nests 33 levels deep, more than 32"), "{err}");
    }

    #[test]
    fn length_at_the_limit_passes_one_more_is_refused() {
        assert_eq!(check_length(PATTERN_BYTES), Ok(()));
        let err = check_length(PATTERN_BYTES + 1).expect_err("1025 bytes");
        assert!(err.contains("1025 bytes long, more than 1024"), "{err}");
    }

    #[test]
    fn excerpts_are_short_and_say_the_real_length() {
        assert_eq!(excerpt("main"), "\"main\"");
        let long = "@(".repeat(20_000);
        let shown = excerpt(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("… (40000 bytes)"), "{shown}");
        // multi-byte characters are cut on a character boundary
        assert!(excerpt(&"é".repeat(100)).ends_with("(200 bytes)"));
    }

    #[test]
    fn matrix_size_saturates_instead_of_wrapping() {
        assert_eq!(matrix_size([10; 8]), 100_000_000);
        assert_eq!(matrix_size([]), 1);
        assert_eq!(matrix_size([usize::MAX, 2]), usize::MAX);
    }
}
