//! Embeds every `migrations/NNNN_name.sql` file into the binary (sorted by name) and stamps the
//! build with its git commit, so a forgotten migration or an unknown build can't ship silently.
use std::{env, fs, path::Path, process::Command};

fn main() {
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("migrations/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut code = String::from("&[\n");
    for n in &names {
        let stem = n.trim_end_matches(".sql");
        assert!(
            stem.len() > 5 && stem[..4].bytes().all(|b| b.is_ascii_digit()) && &stem[4..5] == "_",
            "migration file {n} must be named NNNN_description.sql"
        );
        let path = dir.join(n);
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!(
            "    Migration {{ name: {stem:?}, sql: include_str!({:?}) }},\n",
            path.display().to_string()
        ));
    }
    code.push_str("]\n");
    fs::write(out, code).expect("write migrations.rs");

    println!(
        "cargo:rustc-env=KICI_BUILD_COMMIT={}",
        first_line_of("git", &["rev-parse", "--short=12", "HEAD"])
    );
    println!(
        "cargo:rustc-env=KICI_BUILD_DATE={}",
        first_line_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
}

/// What a command printed, or "unknown" when it is missing or failed (e.g. no git checkout).
fn first_line_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
