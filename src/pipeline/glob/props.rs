//! Never-panic properties of glob compilation and matching: branch and path filters come from
//! lock files of fork pull requests, branch names and paths from webhooks.

use proptest::prelude::*;

use super::Glob;

/// Text built from the glob syntax's own characters, so the tokenizer's corner cases are hit
/// far more often than by uniformly random text.
fn glob_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "*", "**", "?", "!", "@(", "!(", "+(", "*(", "?(", "(", ")", "|", "{", "}", ",",
            "..", "[", "]", "[!", "[^", "[:alpha:]", "\\", "/", "./", ".", "-", "$", "^", "a",
            "b", "1", "é", "😀", "(?", "(?=", "(?!", "(?<", "{1..3}", "\n",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn input_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/._-]{0,24}", any::<String>(), glob_text(),]
}

proptest! {
    #![proptest_config(crate::props::config())]

    #[test]
    fn never_panics_compiling_and_matching(pattern in glob_text(), input in input_text()) {
        if let Ok(glob) = Glob::new(&pattern) {
            glob.is_match(&input);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text(pattern in any::<String>(), input in any::<String>()) {
        if let Ok(glob) = Glob::new(&pattern) {
            glob.is_match(&input);
        }
    }

    #[test]
    fn never_panics_on_deep_nesting(
        openers in prop::collection::vec(
            prop::sample::select(vec!["@(", "!(", "+(", "*(", "?(", "(", "{", "[", "a,"]),
            0..40,
        ),
        closers in prop::collection::vec(prop::sample::select(vec![")", "}", "]", "|", ","]), 0..40),
        input in input_text(),
    ) {
        let pattern = format!("{}a{}", openers.concat(), closers.concat());
        if let Ok(glob) = Glob::new(&pattern) {
            glob.is_match(&input);
        }
    }
}
