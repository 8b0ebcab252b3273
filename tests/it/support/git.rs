//! git for tests: a fixed identity, no user or system configuration, no KICI_* variables.

use std::{
    path::Path,
    process::{Command, Output},
};

use super::daemon::{stderr, stdout};

/// `git <args>` in `cwd` with a fixed identity and no user or system configuration.
pub fn git(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.current_dir(cwd)
        .args([
            "-c",
            "user.name=KiCI Test",
            "-c",
            "user.email=test@kici.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KICI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.output().expect("run git")
}

pub fn git_ok(cwd: &Path, args: &[&str]) -> String {
    let out = git(cwd, args);
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}
