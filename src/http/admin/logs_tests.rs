//! Unit tests of the run-log reader: the cursor's encoding, stored-line parsing and the walk
//! over a run's steps (http/admin/logs.rs).

use std::collections::HashMap;

use super::*;

fn stored(lines: &[&str]) -> Vec<u8> {
    crate::agent::logs::encode(
        &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        1_700_000_000_000,
    )
}

#[test]
fn cursors_round_trip_and_stay_opaque() {
    for c in [
        Cursor::start(),
        Cursor {
            job: "build (linux, x64)".into(),
            setup: 3,
            step: -1,
            offset: 0,
        },
        Cursor {
            job: "a\nb:c".into(),
            setup: 0,
            step: 12,
            offset: u64::MAX,
        },
    ] {
        let s = c.encode();
        assert!(s.starts_with("c1."));
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert_eq!(Cursor::parse(&s), Some(c));
    }
}

#[test]
fn cursor_parser_refuses_what_it_did_not_make() {
    for bad in [
        "",
        "c1.",
        "c1.0",
        "c1.zz",
        "c2.30",
        "30",
        "c1.300a",             // "0\n" then no offset
        "c1.ff0a0a",           // not UTF-8
        "c1.300a2d310a2d310a", // negative offset
    ] {
        assert_eq!(Cursor::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Cursor::parse(&format!("c1.{}", "30".repeat(3000))), None);
}

#[test]
fn lines_parse_in_file_order_and_malformed_ones_are_skipped() {
    let mut bytes = stored(&["one"]);
    bytes.extend_from_slice(b"not json\n{\"ts\":1}\n[]\n\n");
    bytes.extend(stored(&["two"]));
    let read = read_lines(&bytes, 0, 100, false);
    let texts: Vec<&str> = read.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(read.consumed, 6);
    assert!(read.at_end);
    assert_eq!(read.lines[0].stream, "stdout");
    assert_eq!(read.lines[0].ts, "2023-11-14T22:13:20.000Z");
}

#[test]
fn a_line_without_its_newline_waits_until_the_step_ends() {
    let mut bytes = stored(&["one"]);
    bytes.extend_from_slice(br#"{"ts":"t","level":"stderr","msg":"two"}"#);
    let live = read_lines(&bytes, 0, 10, false);
    assert_eq!((live.lines.len(), live.consumed, live.at_end), (1, 1, true));
    let ended = read_lines(&bytes, 1, 10, true);
    assert_eq!(ended.lines.len(), 1);
    assert_eq!(ended.lines[0].stream, "stderr");
    assert_eq!(ended.consumed, 1);
}

#[test]
fn reading_resumes_at_an_offset_and_stops_at_the_limit() {
    let bytes = stored(&["a", "b", "c", "d"]);
    let first = read_lines(&bytes, 1, 2, true);
    let texts: Vec<&str> = first.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["b", "c"]);
    assert_eq!((first.consumed, first.at_end), (2, false));
    let rest = read_lines(&bytes, 3, 2, true);
    assert_eq!((rest.lines.len(), rest.at_end), (1, true));
    assert_eq!(read_lines(&bytes, 99, 2, true).lines.len(), 0);
}

fn stop(job: &str, job_pos: usize, step: i64, settled: bool) -> Stop {
    Stop {
        job: job.into(),
        job_pos,
        step,
        key: Some(format!("{job}/{step}")),
        settled,
    }
}

fn whole(store: &HashMap<String, Vec<u8>>, k: &str) -> Option<Fetched> {
    store.get(k).map(|b| Fetched {
        bytes: b.clone(),
        base: 0,
    })
}

/// What the table gives: the lines from `start`, at most `max + 1` of them.
fn from_start(
    store: &HashMap<String, Vec<u8>>,
    k: &str,
    start: u64,
    max: usize,
) -> Option<Fetched> {
    let b = store.get(k)?;
    let lines: Vec<&[u8]> = b.split_inclusive(|c| *c == b'\n').collect();
    let from = (start as usize).min(lines.len());
    let to = (from + max + 1).min(lines.len());
    Some(Fetched {
        bytes: lines[from..to].concat(),
        base: start,
    })
}

fn texts(page: &Page) -> Vec<String> {
    page.lines
        .iter()
        .map(|(j, s, l)| format!("{j}/{s} {}", l.line))
        .collect()
}

#[test]
fn the_walk_goes_through_steps_in_order_and_resumes_from_its_cursor() {
    let store: HashMap<String, Vec<u8>> = [
        ("a/0".to_string(), stored(&["a0-1", "a0-2"])),
        ("a/1".to_string(), stored(&["a1-1"])),
        ("b/0".to_string(), stored(&["b0-1"])),
    ]
    .into();
    let fetch = |k: &str, _: u64, _: usize| Ok::<_, ()>(whole(&store, k));
    let plan = vec![
        stop("a", 0, -1, true),
        stop("a", 0, 0, true),
        stop("a", 0, 1, true),
        stop("b", 1, 0, true),
    ];
    let all = walk(&plan, &Cursor::start(), None, 100, true, fetch).unwrap();
    assert_eq!(
        texts(&all),
        ["a/0 a0-1", "a/0 a0-2", "a/1 a1-1", "b/0 b0-1"]
    );
    assert!(all.complete);
    // Two at a time, resuming each time from the cursor given back.
    let (mut cursor, mut pos, mut seen) = (Cursor::start(), None, Vec::new());
    loop {
        let page = walk(&plan, &cursor, pos, 2, true, fetch).unwrap();
        seen.extend(texts(&page));
        cursor = page.cursor.clone();
        pos = Some(if cursor.job == "a" { 0 } else { 1 });
        if page.complete {
            break;
        }
        assert!(seen.len() < 10, "no progress");
    }
    assert_eq!(seen, texts(&all));
    // The same pages from fetches that return only what follows the cursor.
    let fetch = |k: &str, start: u64, max: usize| Ok::<_, ()>(from_start(&store, k, start, max));
    let (mut cursor, mut pos, mut again) = (Cursor::start(), None, Vec::new());
    for _ in 0..10 {
        let page = walk(&plan, &cursor, pos, 2, true, fetch).unwrap();
        again.extend(texts(&page));
        cursor = page.cursor.clone();
        pos = Some(if cursor.job == "a" { 0 } else { 1 });
        if page.complete {
            break;
        }
    }
    assert_eq!(again, texts(&all));
}

#[test]
fn the_walk_never_passes_a_step_or_a_job_that_can_still_grow() {
    let store: HashMap<String, Vec<u8>> = [
        ("a/0".to_string(), stored(&["a0-1"])),
        ("b/0".to_string(), stored(&["b0-1"])),
    ]
    .into();
    let fetch = |k: &str, _: u64, _: usize| Ok::<_, ()>(whole(&store, k));
    // Step a/0 still runs: its line is read, the cursor stays on it, b waits.
    let plan = vec![stop("a", 0, 0, false), stop("b", 1, 0, true)];
    let page = walk(&plan, &Cursor::start(), None, 100, false, fetch).unwrap();
    assert_eq!(texts(&page), ["a/0 a0-1"]);
    assert!(!page.complete);
    assert_eq!(
        page.cursor,
        Cursor {
            job: "a".into(),
            setup: 0,
            step: 0,
            offset: 1
        }
    );
    // Job a may still gain steps (its end is a stop without a key).
    let mut end = stop("a", 0, i64::MAX, false);
    end.key = None;
    let plan = vec![stop("a", 0, 0, true), end, stop("b", 1, 0, true)];
    let page = walk(&plan, &Cursor::start(), None, 100, false, fetch).unwrap();
    assert_eq!(texts(&page), ["a/0 a0-1"]);
    assert_eq!(page.cursor.step, 0);
    assert!(!page.complete);
}

#[test]
fn a_growing_setup_log_does_not_hold_the_steps_back_and_its_late_lines_still_come() {
    let mut store: HashMap<String, Vec<u8>> = [
        ("a/-1".to_string(), stored(&["clone"])),
        ("a/0".to_string(), stored(&["step"])),
    ]
    .into();
    let mut end = stop("a", 0, i64::MAX, false);
    end.key = None;
    let plan = vec![stop("a", 0, -1, false), stop("a", 0, 0, true), end];
    let first = walk(
        &plan,
        &Cursor::start(),
        None,
        100,
        false,
        |k: &str, _, _| Ok::<_, ()>(whole(&store, k)),
    )
    .unwrap();
    assert_eq!(texts(&first), ["a/-1 clone", "a/0 step"]);
    assert!(!first.complete);
    store
        .get_mut("a/-1")
        .unwrap()
        .extend(stored(&["cache saved"]));
    let plan = vec![stop("a", 0, -1, true), stop("a", 0, 0, true)];
    let second = walk(&plan, &first.cursor, Some(0), 100, true, |k: &str, _, _| {
        Ok::<_, ()>(whole(&store, k))
    })
    .unwrap();
    assert_eq!(texts(&second), ["a/-1 cache saved"]);
    assert!(second.complete);
}

#[test]
fn a_storage_error_is_passed_on() {
    let plan = vec![stop("a", 0, 0, true)];
    let got = walk(&plan, &Cursor::start(), None, 10, true, |_, _, _| {
        Err::<Option<Fetched>, _>("down")
    });
    assert_eq!(got.err(), Some("down"));
}

#[test]
fn query_reports_every_bad_parameter_by_name() {
    let pairs: Vec<(String, String)> = [("step", "x"), ("limit", "10001"), ("after", "nope")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Err(ApiError::Validation(details)) = query(&pairs) else {
        panic!("accepted")
    };
    let names: Vec<&str> = details.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["step", "limit", "after"]);
    let ok = query(&[("limit".into(), "10000".into())]).unwrap();
    assert_eq!((ok.limit, ok.job, ok.step), (10_000, None, None));
    assert_eq!(query(&[]).unwrap().limit, 1000);
}

mod props {
    use proptest::prelude::*;

    use super::super::{read_lines, Cursor};

    proptest! {
        #![proptest_config(crate::props::config())]

        #[test]
        fn never_panics_parsing_a_cursor(s in "(c1\\.)?[0-9a-fA-Fx.\\-]{0,80}") {
            if let Some(c) = Cursor::parse(&s) {
                prop_assert_eq!(Cursor::parse(&c.encode()), Some(c));
            }
        }

        #[test]
        fn never_panics_on_any_cursor_string(s in ".{0,200}") {
            let _ = Cursor::parse(&s);
        }

        #[test]
        fn cursors_round_trip(
            job in ".{0,40}",
            setup in any::<u64>(),
            step in any::<i64>(),
            offset in any::<u64>(),
        ) {
            let c = Cursor { job, setup, step, offset };
            prop_assert_eq!(Cursor::parse(&c.encode()), Some(c));
        }

        #[test]
        fn never_panics_reading_stored_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            offset in any::<u64>(),
            max in 0usize..20,
            final_ in any::<bool>(),
        ) {
            let read = read_lines(&bytes, offset, max, final_);
            prop_assert!(read.lines.len() <= max);
        }
    }
}
