#![allow(dead_code)]
pub mod daemon;
pub mod fake_github;
pub mod pg;
pub mod webhook;
